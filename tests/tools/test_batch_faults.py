"""pygguf-batch under faults, as real processes: a full disk or a dead output ends the run with one
line and nothing torn; and a seeded matrix of kill -9, write errors, damaged lines, bad records and
duplicate ids, each followed by --resume, loses no record and leaves each exactly one final line.

The processes run tests/batch_fake_app.py (the command on the fake model, faults and all);
PYGGUF_BATCH_MATRIX_MODEL=path/to/model.gguf runs the matrix on that real model instead, and
PYGGUF_BATCH_MATRIX_ROUNDS=N runs N rounds (3 by default).
"""
from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time

import pytest

from batch_fakes import CRASH_PROMPT, NAN_PROMPT
from testpaths import TESTS

APP = TESTS / "batch_fake_app.py"
REAL_MODEL = os.environ.get("PYGGUF_BATCH_MATRIX_MODEL")
ENV = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")


def command(*args, delay: float = 0.0) -> list[str]:
    if REAL_MODEL:
        return [sys.executable, "-m", "pygguf_cli.batch", "-m", REAL_MODEL, "-t", "1", *map(str, args)]
    return [sys.executable, str(APP), str(delay), *map(str, args)]


def file_size_limit(n_bytes: int):
    """preexec_fn: writes past n_bytes fail with EFBIG (a full disk, without filling one)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return limit


def run(*args, limit: int | None = None, stdout=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), stdout=stdout, stderr=subprocess.PIPE, text=True, env=ENV, timeout=300,
                          preexec_fn=file_size_limit(limit) if limit is not None else None)


def assert_whole_lines(path) -> list[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-80:]
    return [json.loads(line) for line in data.splitlines()]


def write_jsonl(path, lines) -> str:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


GOOD = [{"id": f"g{i}", "prompt": f"record number {i}", "seed": i, "n_predict": 4} for i in range(8)]


# ---- write errors ------------------------------------------------------------------------------

def test_a_full_disk_ends_the_run_with_one_line_and_nothing_torn(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", GOOD)
    out = tmp_path / "out.jsonl"
    full = run("-i", inp, "-o", out, "-c", 128, limit=1500)
    assert full.returncode == 1
    assert full.stderr.count("\n") == 1 and full.stderr.startswith(f"error: cannot write to {out}: File too large ("), \
        full.stderr
    assert "rerun with --resume to go on" in full.stderr and "Traceback" not in full.stderr
    partial = assert_whole_lines(out)
    assert 0 < len(partial) < len(GOOD) and out.stat().st_size <= 1500
    again = run("-i", inp, "-o", out, "-c", 128, "--resume", limit=out.stat().st_size + 10)   # still full
    assert again.returncode == 1 and again.stderr.count("\n") == 2 and "cannot write to" in again.stderr
    assert assert_whole_lines(out) == partial
    done = run("-i", inp, "-o", out, "-c", 128, "--resume")
    assert done.returncode == 0, done.stderr
    assert sorted(r["id"] for r in assert_whole_lines(out)) == sorted(r["id"] for r in GOOD)


@pytest.mark.parametrize("to", ["-o", "stdout"])
def test_dev_full_is_one_line_and_exit_1(tmp_path, to):
    inp = write_jsonl(tmp_path / "in.jsonl", GOOD[:2])
    with open("/dev/full", "wb") as full:
        result = (run("-i", inp, "-o", "/dev/full") if to == "-o" else run("-i", inp, stdout=full))
    name = "/dev/full" if to == "-o" else "stdout"
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: cannot write to {name}: No space left on device"
                                          + (" (0 records written; rerun with --resume to go on)" if to == "-o" else "")]


# ---- the fault matrix --------------------------------------------------------------------------

def matrix_input() -> tuple[list, dict]:
    """Input lines, and for each line number what its one final line must be: ("result", id),
    ("error", None) or ("either", id) (NaN logits, a temperature of 1e-45: an error, or a result
    if the sampler copes)."""
    bad = ['{"prompt": oops', '{"prompt": "x", "n_predict": ' + "9" * 5000 + "}", '{"prompt": "\\ud800"}',
           {"id": "tiny-temp", "prompt": "x", "temperature": 1e-45, "n_predict": 4, "seed": 1},
           '{"id": 3, "prompt": "x", "top_k": -1e30}', '[1, 2, 3]',
           {"id": "crash", "prompt": CRASH_PROMPT, "n_predict": 8, "seed": 1}]
    lines = []
    for i, good in enumerate(GOOD):
        lines.append(good)
        lines.append(bad[i % len(bad)])
    lines += [{"id": 2, "prompt": "an int id equal to a bad line's number", "seed": 5, "n_predict": 4},
              {"prompt": "no id: its line number is its id", "seed": 6, "n_predict": 3},
              {"id": "nan", "prompt": NAN_PROMPT, "n_predict": 8, "seed": 1},
              {"id": "g1", "prompt": "a duplicate id"}, {"id": 2, "prompt": "another duplicate"}]
    expect = {}
    for n, line in enumerate(lines, start=1):
        obj = line if isinstance(line, dict) else None
        if obj is None or (obj.get("id") == "crash" and not REAL_MODEL):
            expect[n] = ("error", None)
        else:           # a real model has no fault for "NaN:" or "CRASH:" prompts
            either = obj.get("id") in ("nan", "crash", "tiny-temp")
            expect[n] = ("either", obj["id"]) if either else ("result", obj.get("id", n))
    expect[len(lines) - 1] = expect[len(lines)] = ("error", None)          # the duplicates
    return lines, expect


def final_lines(out, expect) -> dict[int, list[dict]]:
    """Input line number -> the output lines that answer it (results found by their id)."""
    line_of_id = {want[1]: n for n, want in expect.items() if want[0] != "error"}
    answers: dict[int, list[dict]] = {n: [] for n in expect}
    for r in assert_whole_lines(out):
        n = r["line"] if "error" in r else line_of_id[r["id"]]
        answers[n].append(r)
    return answers


def kill_mid_run(args, rng, out) -> bool:
    """Start a run, kill -9 it once the output has grown by a few lines (or a moment passed);
    False when it finished first."""
    before = out.stat().st_size if out.exists() else 0
    proc = subprocess.Popen(command(*args, delay=0.02), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV)
    grow = rng.randint(0, 2500)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.stat().st_size > before + grow:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.1))
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


def damage(out, rng) -> int:
    """Tear the last line or garble a middle one; the number of lines damaged."""
    data = out.read_bytes()
    lines = data.splitlines(keepends=True)
    if len(lines) < 3:
        return 0
    if rng.random() < 0.5:
        out.write_bytes(data + lines[rng.randrange(len(lines))][:rng.randint(1, 30)])
    else:
        i = rng.randrange(1, len(lines) - 1)
        lines[i] = lines[i][:10] + b"\x00\xff garbled" + lines[i][20:]
        out.write_bytes(b"".join(lines))
    return 1


def faulted_run(args, out, rng, counts, may_run_clean: bool) -> bool:
    """One run under a random fault (a damaged output first, sometimes); True when it ran clean."""
    if out.exists() and rng.random() < 0.3:
        counts["damaged"] += damage(out, rng)
    fault = rng.choice(["kill", "write"] + (["none"] if may_run_clean else []))
    if fault == "kill":
        counts["kills"] += kill_mid_run(args, rng, out)
    elif fault == "write":
        size = out.stat().st_size if out.exists() else 0
        result = run(*args, limit=size + rng.randint(0, 800))
        assert "Traceback" not in result.stderr and result.returncode == 1, result.stderr
        counts["write_errors"] += "cannot write" in result.stderr or "cannot repair" in result.stderr
    else:
        result = run(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    return fault == "none"


def test_fault_matrix_loses_no_record(tmp_path):
    """Rounds of: a fresh run, then --resume after --resume, each under a random fault (at most
    5, the first 3 always), until one runs clean; then every input line has exactly one final line."""
    rng = random.Random(18)
    lines, expect = matrix_input()
    inp = write_jsonl(tmp_path / "in.jsonl", lines)
    clean = tmp_path / "clean.jsonl"
    run("-i", inp, "-o", clean, "-c", 128)
    want_texts = {r["id"]: r["text"] for r in assert_whole_lines(clean) if "text" in r}
    counts = dict(runs=0, kills=0, write_errors=0, damaged=0, lost=0)
    rounds = int(os.environ.get("PYGGUF_BATCH_MATRIX_ROUNDS", "3"))
    for round_ in range(rounds):
        out = tmp_path / f"out{round_}.jsonl"
        for attempt in range(6):
            args = ["-i", inp, "-o", out, "-c", 128, "--parallel", rng.choice([1, 2, 3]),
                    *(["--unordered"] if rng.random() < 0.5 else []), *(["--resume"] if attempt else [])]
            counts["runs"] += 1
            if attempt == 5:
                assert run(*args).returncode == 1                   # the bad records' errors remain
            elif faulted_run(args, out, rng, counts, may_run_clean=attempt >= 3):
                break
            final_lines(out, expect)                                # whole lines, each answering one record
        answers = final_lines(out, expect)
        lost = [n for n, got in answers.items() if not got]
        repeated = [n for n, got in answers.items() if len(got) > 1]
        assert lost == [] and repeated == [], (round_, lost, repeated)
        counts["lost"] += len(lost)
        for n, (want, _) in expect.items():
            assert want == "either" or ("error" in answers[n][0]) == (want == "error"), (n, answers[n])
        assert {r["id"]: r["text"] for r in assert_whole_lines(out) if "text" in r} == want_texts
    n_bad = sum(want != "result" for want, _ in expect.values())
    print(f"\nbatch fault matrix: {counts['runs']} runs in {rounds} rounds, {counts['kills']} kills -9, "
          f"{counts['write_errors']} write errors, {counts['damaged']} damaged lines, {n_bad} bad records "
          f"(2 of them duplicate ids) of {len(lines)} per round, records lost {counts['lost']}")
