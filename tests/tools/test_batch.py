"""pygguf-batch: records in, one JSONL result per record out, nothing lost on errors or kills.

The CLI runs through Click's CliRunner on the context-sensitive fake model (tests/batch_fakes.py);
the last tests run the installed command on the real SmolLM2 (exit codes, threads, SIGTERM + --resume).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from batch_fakes import CRASH_PROMPT, NAN_PROMPT, FaultyModel
from pygguf_cli import paths
from pygguf.api import Llama
from pygguf.tools.batch import BadRecord, ResultWriter, completed_ids, parse_record, read_records
from pygguf.tools.distributed import ModelOptions
from pygguf_cli.batch import main as batch_cli

REPLIES = {"Greet:": "Hello world STOP! more", "Accent:": "caf\u00e9 na\u00efve done"}


class Harness:
    """Builds the fake model the CLI loads; `interrupt_after` raises KeyboardInterrupt at that eval."""

    def __init__(self, n_ctx: int = 128, interrupt_after: int | None = None, chat_template: str | None = None):
        self.n_ctx = n_ctx
        self.interrupt_after = interrupt_after
        self.metadata = {"tokenizer.chat_template": chat_template} if chat_template else None
        self.loaded: list[tuple] = []

    def load(self, options):
        self.loaded.append(options)
        model = FaultyModel(REPLIES, n_ctx=self.n_ctx, n_seq=options.parallel, metadata=self.metadata)
        if self.interrupt_after is not None:
            calls, real_decode = [0], model.decode

            def decode_then_interrupt(*args):
                calls[0] += 1
                if calls[0] > self.interrupt_after:
                    raise KeyboardInterrupt
                return real_decode(*args)
            model.decode = decode_then_interrupt
        return Llama(options.path, model=model)


def write_jsonl(path, records) -> str:
    with open(path, "w") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


def read_results(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def run_cli(args, harness=None):
    harness = harness or Harness()
    return CliRunner().invoke(batch_cli, ["-m", "fake.gguf", *map(str, args)], obj={"load_llm": harness.load})


RECORDS = [
    {"id": "g", "prompt": "Greet:", "stop": "!"},
    {"id": 7, "prompt": "free text", "n_predict": 5, "seed": 11, "temperature": 1.0},
    {"id": "a", "prompt": "Accent:", "n_predict": 3},
    {"id": "chat", "messages": [{"role": "user", "content": "hi"}], "n_predict": 4, "seed": 2},
]


# ---- records -------------------------------------------------------------------------------

@pytest.mark.parametrize("line, error", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"id": "x"}', "exactly one of 'prompt' or 'messages'"),
    ('{"id": "x", "prompt": "a", "messages": []}', "exactly one of"),
    ('{"id": "x", "prompt": 5}', "'prompt' must be a string"),
    ('{"id": 1.5, "prompt": "a"}', "id must be"),
    ('{"id": "x", "prompt": "a", "top_k": "many"}', "bad parameter top_k"),
    ('{"id": "x", "prompt": "a", "temperature": true}', "bad parameter temperature"),
    ('{"id": "x", "prompt": "a", "seed": 1.0}', "bad parameter seed"),
    ('{"id": "x", "prompt": "a", "stop": [1]}', "bad parameter stop"),
    ('{"id": "x", "prompt": "a", "n_predict": -5}', "bad parameter n_predict"),
    ('{"id": "x", "prompt": "a", "top_p": 1.5}', "bad parameter top_p"),
])
def test_bad_records_say_why(line, error):
    record = parse_record(0, 4, line)
    assert isinstance(record, BadRecord) and error in record.error
    assert record.id in ("x", None) and record.line == 4          # a line number is never an id


def test_plain_text_input_ids_are_line_numbers(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("first prompt\n\nthird {line}\n")
    records = list(read_records(str(path)))
    assert [(r.index, r.id, r.prompt) for r in records] == [(0, 1, "first prompt"), (1, 3, "third {line}")]


def test_ordered_writer_flushes_every_finished_prefix():
    lines = []
    writer = ResultWriter(lines.append, ordered=True)
    writer.put(2, {"id": 2})
    writer.put(1, None)                                     # skipped by --resume
    assert lines == []
    writer.put(0, {"id": 0})
    assert [json.loads(x) for x in lines] == [{"id": 0}, {"id": 2}]
    writer.put(4, {"id": 4})
    writer.flush_pending()                                  # interrupted: finished work still written
    assert json.loads(lines[-1]) == {"id": 4}
    unordered = []
    writer = ResultWriter(unordered.append, ordered=False)
    writer.put(3, {"id": 3})
    assert len(unordered) == 1


def test_resume_ids_move_a_torn_last_line_aside(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "a", "text": "x"}\n{"id": 2, "line": 2, "error": "e"}\n{"id": "c", "te')
    assert completed_ids(str(out)) == {'"a"'}                 # an error line is not done: it is retried
    assert out.read_bytes() == b'{"id": "a", "text": "x"}\n'
    assert (tmp_path / "out.jsonl.damaged").read_bytes() == b'{"id": "c", "te\n'



# ---- the command on the fake model ---------------------------------------------------------

def test_results_in_input_order_with_error_records(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", RECORDS[:2] + ["oops", {"id": "long", "prompt": "y" * 200}]
                      + RECORDS[2:] + [{"id": "g"}])
    out = tmp_path / "out.jsonl"
    result = run_cli(["-i", inp, "-o", out, "-n", "8", "--logprobs", "2"])
    assert result.exit_code == 1, result.output
    got = read_results(out)
    assert [r.get("id") for r in got] == ["g", 7, None, "long", "a", "chat", "g"]
    assert [r.get("line") for r in got if "error" in r] == [3, 4, 7]
    by_id = {r["id"]: r for r in got[:2]}
    assert by_id["g"]["text"] == "Hello world STOP" and by_id["g"]["finish_reason"] == "stop"
    assert by_id[7]["finish_reason"] == "length" and by_id[7]["completion_tokens"] == 5 == len(by_id[7]["tokens"])
    assert "invalid JSON" in got[2]["error"] and "prompt is too long" in got[3]["error"]
    assert got[4]["text"] == "caf" and got[4]["finish_reason"] == "length"
    assert got[5]["prompt_tokens"] > 10 and "text" in got[5]
    assert "error" in got[6]                                # duplicate id without a prompt
    for r in got:
        if "text" in r:
            assert {"tokens", "prompt_tokens", "completion_tokens", "timings", "seed"} <= set(r)
            assert len(r["logprobs"]) == r["completion_tokens"]
            assert all(len(p["top"]) == 2 and p["logprob"] <= 0 for p in r["logprobs"])


def test_exit_zero_when_all_succeed_and_stdout_holds_only_results(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    result = run_cli(["-i", inp, "-n", "4", "--parallel", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["g", 7, "a", "chat"]
    assert result.stderr == ""


def test_same_seed_same_text_across_records_and_runs(tmp_path):
    recs = [{"id": i, "prompt": "free text", "seed": 5, "n_predict": 12, "temperature": 1.0} for i in range(3)]
    recs.insert(1, {"id": "other", "prompt": "free text but longer", "seed": 6, "n_predict": 3})
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    run_cli(["-i", inp, "-o", tmp_path / "a.jsonl"])
    run_cli(["-i", inp, "-o", tmp_path / "b.jsonl", "--unordered"])
    a, b = read_results(tmp_path / "a.jsonl"), read_results(tmp_path / "b.jsonl")
    texts = [r["text"] for r in a if r["id"] != "other"]
    assert texts[0] == texts[1] == texts[2] and len(texts[0]) > 0
    assert a[2]["cached_prompt_tokens"] > 0                 # the shared prefix came from the cache
    assert [r["text"] for r in a] == [r["text"] for r in b]


def test_interrupt_then_resume_gives_every_record_once(tmp_path):
    recs = [{"id": f"r{i}", "prompt": f"prompt number {i}", "seed": i, "n_predict": 4} for i in range(6)]
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    cut = run_cli(["-i", inp, "-o", out], Harness(interrupt_after=12))
    assert cut.exit_code == 130
    partial = read_results(out)                             # valid JSONL of finished records only
    assert 0 < len(partial) < 6 and all(r["finish_reason"] == "length" for r in partial)
    with open(out, "ab") as f:
        f.write(b'{"id": "r5", "text": "torn')               # as if killed mid-write
    done = run_cli(["-i", inp, "-o", out, "--resume"])
    assert done.exit_code == 0, done.output
    resumed = read_results(out)
    assert sorted(r["id"] for r in resumed) == [f"r{i}" for i in range(6)]
    full = run_cli(["-i", inp, "-o", tmp_path / "full.jsonl"])
    assert full.exit_code == 0
    assert {r["id"]: r["text"] for r in resumed} == {r["id"]: r["text"] for r in read_results(tmp_path / "full.jsonl")}


def test_resume_needs_an_output_file_and_model_errors_exit_1(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", RECORDS[:1])
    assert run_cli(["-i", inp, "--resume"]).exit_code == 2
    result = CliRunner().invoke(batch_cli, ["-m", str(tmp_path / "missing.gguf"), "-i", inp])
    assert result.exit_code == 1 and "cannot load" in result.stderr


def test_cache_types_are_run_wide_options_of_the_loaded_model(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", RECORDS[:1])
    harness = Harness()
    assert run_cli(["-i", inp, "-ctk", "Q8_0", "--cache-type-v", "q4_0", "-c", 64], harness).exit_code == 0
    assert run_cli(["-i", inp], harness).exit_code == 0
    assert [(o.type_k, o.type_v, o.n_ctx) for o in harness.loaded] == [("q8_0", "q4_0", 64), ("f16", "f16", 2048)]
    bad = run_cli(["-i", inp, "-ctv", "q5_0"], harness)
    assert bad.exit_code == 2 and "'q5_0' is not one of 'f16', 'q8_0', 'q4_0'" in bad.output
    assert len(harness.loaded) == 2


# ---- one record's failure is that record's line -----------------------------------------------

HOSTILE = [     # (record without an id, what its error line says; None: a result or any error, as the sampler
                #  decides): each one killed a whole run, and every --resume
    ({"prompt": "a", "temperature": 1e-45, "seed": 1}, None),                # 1/temp overflows to inf
    ('{"prompt": "a", "top_k": -1e30}', "bad parameter top_k"),
    ('{"prompt": "a", "n_predict": ' + "9" * 5000 + "}", "invalid JSON"),    # int(): over 4,300 digits
    ('{"prompt": "\\ud800 lone"}', "prompt: not valid Unicode text (a lone surrogate U+D800"),
    ('{"messages": [{"role": "user", "content": "x\\udfff"}]}', "messages[0].content: not valid Unicode"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "ZeroDivisionError"),      # the template divides by 0
    ({"prompt": NAN_PROMPT, "n_predict": 8, "seed": 1}, None),                         # logits turn NaN while decoding
    ({"prompt": CRASH_PROMPT, "n_predict": 8, "seed": 1}, "decoding: EngineFault"),    # the forward pass raises
]
DIVIDING_TEMPLATE = "{{ 1 // (messages|length - 1) }}{{ messages[0].content }}"


def hostile_input(tmp_path):
    """A good record between every two hostile ones (some of them ids of the lines' numbers)."""
    lines = []
    for i, (record, _) in enumerate(HOSTILE):
        lines.append({"id": 100 + i, "prompt": f"good record {i}", "n_predict": 6, "seed": i})
        lines.append(record if isinstance(record, str) else json.dumps(record))
    lines.append({"id": "last", "prompt": "the last one", "n_predict": 6, "seed": 99})
    return write_jsonl(tmp_path / "in.jsonl", lines)


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_hostile_record_is_its_own_error_line_and_the_run_goes_on(tmp_path, parallel):
    inp = hostile_input(tmp_path)
    out = tmp_path / "out.jsonl"
    result = run_cli(["-i", inp, "-o", out, "--parallel", parallel], Harness(chat_template=DIVIDING_TEMPLATE))
    assert result.exit_code == 1, result.output
    assert f" of {2 * len(HOSTILE) + 1} records failed" in result.stderr
    got = read_results(out)
    assert len(got) == 2 * len(HOSTILE) + 1                             # one line per input line, in order
    for i, (_, said) in enumerate(HOSTILE):
        good, bad = got[2 * i], got[2 * i + 1]
        assert good["id"] == 100 + i and good["completion_tokens"] == 6, good
        assert bad.get("id", bad.get("line")) == 2 * i + 2      # a good record without an id: its line number
        if said is not None or "error" in bad:
            assert set(bad) <= {"id", "line", "error"} and bad["line"] == 2 * i + 2, bad
            assert (said or "") in bad["error"] and "\n" not in bad["error"] and len(bad["error"]) <= 400, bad
    assert got[-1]["id"] == "last" and "text" in got[-1]
    alone = tmp_path / "good.jsonl"                                     # the good ones' text is their own
    good_only = [json.loads(x) for x in Path(inp).read_text().splitlines() if x.startswith('{"id"')]
    run_cli(["-i", write_jsonl(tmp_path / "good_in.jsonl", good_only), "-o", alone])
    assert [r["text"] for r in got if r.get("id") in (*range(100, 100 + len(HOSTILE)), "last")] == \
        [r["text"] for r in read_results(alone)]


def test_bad_lines_never_take_a_real_records_id_even_killed_and_resumed(tmp_path):
    """line 1 is bad; record 1 (on line 3) is real. --unordered writes the bad line's error first;
    killed there, --resume must still run record 1."""
    inp = write_jsonl(tmp_path / "in.jsonl", ["{oops", {"id": "x", "prompt": "free text", "n_predict": 3},
                                              {"id": 1, "prompt": "Greet:"}])
    out = tmp_path / "out.jsonl"
    cut = run_cli(["-i", inp, "-o", out, "--unordered"], Harness(interrupt_after=0))
    assert cut.exit_code == 130
    assert read_results(out) == [{"line": 1, "error": read_results(out)[0]["error"]}]   # no "id": 1
    done = run_cli(["-i", inp, "-o", out, "--resume"])
    got = read_results(out)
    assert sorted(map(str, (r.get("id") for r in got))) == ["1", "None", "x"], got
    assert next(r for r in got if r.get("id") == 1)["text"] == "Hello world STOP! more"
    assert done.exit_code == 1 and "0 records done (skipped), 1 error records retried" in done.stderr


# ---- the real model, the installed command -------------------------------------------------

def smol_path():
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    return str(path)


def batch_command(*args) -> list[str]:
    return [sys.executable, "-m", "pygguf_cli.batch", *map(str, args)]


def test_smollm2_threads_give_the_same_text(tmp_path):
    model = smol_path()
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "The capital of France is", "seed": 3},
                                              {"id": 2, "prompt": "The capital of Italy is", "seed": 4}])
    texts = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.jsonl"
        proc = subprocess.run(batch_command("-m", model, "-i", inp, "-o", out, "-n", "5", "-c", "128",
                                            "-t", threads), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        texts.append([(r["id"], r["text"]) for r in read_results(out)])
    assert texts[0] == texts[1] and all(t for _, t in texts[0])


def test_smollm2_quantized_cache_from_the_command_line(tmp_path):
    """the options reach the C model (ModelOptions.load, the one loader of the CLI and of Ray's
    workers): its cache is q8_0 / q4_0 and the records still run"""
    model = smol_path()
    llm = ModelOptions(model, n_ctx=128, type_k="q8_0", type_v="q4_0").load()
    try:
        assert (llm.model.type_k, llm.model.type_v, llm.n_ctx()) == ("q8_0", "q4_0", 128)
    finally:
        llm.close()
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "The capital of France is", "seed": 3}])
    out = tmp_path / "q.jsonl"
    proc = subprocess.run(batch_command("-m", model, "-i", inp, "-o", out, "-n", "4", "-c", "128", "-ctk", "q8_0",
                                        "-ctv", "q4_0"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert read_results(out)[0]["text"]


def test_smollm2_sigterm_leaves_valid_jsonl_and_resume_finishes(tmp_path):
    model = smol_path()
    recs = [{"id": i, "prompt": f"Write a number: {i}", "seed": i} for i in range(12)]
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(batch_command("-m", model, "-i", inp, "-o", out, "-n", "3", "-c", "128"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    partial = read_results(out)
    assert 1 <= len(partial) < 12
    done = subprocess.run(batch_command("-m", model, "-i", inp, "-o", out, "-n", "3", "-c", "128", "--resume"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(r["id"] for r in read_results(out)) == list(range(12))


def test_smollm2_progress_bar_only_on_a_terminal(tmp_path):
    model = smol_path()
    inp = tmp_path / "prompts.txt"
    inp.write_text("The sky is\nGrass is\n")
    out = tmp_path / "out.jsonl"
    master, slave = os.openpty()
    try:
        proc = subprocess.run(batch_command("-m", model, "-i", inp, "-o", out, "-n", "2", "-c", "128"),
                              stderr=slave, stdout=subprocess.PIPE, timeout=120)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:                                 # the pty closes with the child
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0 and proc.stdout == b""
    assert b"records" in shown and b"2/2" in shown and b"tok/s" in shown
    assert [r["id"] for r in read_results(out)] == [1, 2]
