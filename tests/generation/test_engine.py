"""The engine (pygguf.generation.engine) running several sequences per forward pass, and the batch
paths built on it: every record must get exactly the text it gets alone, whatever --parallel and
-t; slots are refilled as soon as a sequence ends; shared prompt prefixes are computed once.

Most tests use the fake model of tests/batch_fakes.py, whose logits depend on each sequence's whole
cached context (so a wrong position, a mixed-up sequence or a bad prefix copy changes the text);
the last ones run SmolLM2 through the C forward pass."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from batch_fakes import FakeContextModel
from pygguf_cli import paths
from pygguf.api import Llama
from pygguf.generation.engine import MIN_SHARED_PREFIX, Engine
from pygguf.generation.sequence import FinishReason, Request
from pygguf.sampling import SamplerParams
from pygguf_cli.batch import main as batch_cli

REPLIES = {"Greet:": "Hello world STOP! more"}
PROMPTS = ["free text one", "Greet:", "another free text", "x", "free text one but longer", "numbers 1 2 3",
           "free text one", "the last one"]


def fake_llm(parallel: int, n_batch: int = 512) -> Llama:
    return Llama("fake.gguf", model=FakeContextModel(REPLIES, n_ctx=128, n_seq=parallel, n_batch=n_batch),
                 n_seq_max=parallel)


def texts(outs) -> list[str]:
    return [o["choices"][0]["text"] for o in outs]


@pytest.mark.parametrize("parallel,n_batch", [(2, 512), (3, 512), (8, 512), (4, 5)])
def test_batched_texts_equal_one_at_a_time(parallel, n_batch):
    kwargs = dict(max_tokens=12, temperature=0.9, seed=11)
    alone = fake_llm(1)
    want = [texts([alone(p, **kwargs)])[0] for p in PROMPTS]
    llm = fake_llm(parallel, n_batch)
    assert texts(llm.batch(PROMPTS, **kwargs)) == want
    assert texts(llm.batch(PROMPTS, parallel=1, **kwargs)) == want


def test_slots_are_refilled_as_sequences_finish():
    llm = fake_llm(3)
    engine = llm.engine
    tok = llm.tokenizer
    lengths = [2, 9, 4, 6, 3]
    seqs = [engine.new_sequence(Request(tok.encode(f"prompt {i}"), n_predict=n, sampling=SamplerParams(seed=i)))
            for i, n in enumerate(lengths)]
    order = [s for s in engine.run(seqs)]
    assert {id(s) for s in order} == {id(s) for s in seqs}
    assert all(s.finish_reason == "length" and len(s.tokens) == n or s.finish_reason == "eos" and len(s.tokens) < n
               for s, n in zip(seqs, lengths))
    # 3 slots: the long sequence (9) keeps one slot while the others pass through the other two,
    # so the whole run takes about as many steps as the longest sequence, not the sum
    assert llm.model.decode_calls <= max(lengths) + 3
    assert engine.running == 0


def test_shared_system_prompt_is_computed_once():
    llm = fake_llm(4)
    system = "You are a careful assistant who answers briefly. "
    prompts = [system + q for q in ("Why is the sky blue?", "Name a prime.", "Say hi.", "Count to 3.")]
    shared = len(llm.tokenize(system))
    assert shared >= MIN_SHARED_PREFIX
    outs = llm.batch(prompts, max_tokens=3, seed=1)
    prompt_tokens = sum(len(llm.tokenize(p)) for p in prompts)
    generated = sum(o["usage"]["completion_tokens"] for o in outs)
    # the system prompt is evaluated for the first prompt only; the other three copy its cells
    assert llm.model.evaluated <= prompt_tokens - 3 * shared + generated
    alone = fake_llm(1)
    assert texts(outs) == [texts([alone(p, max_tokens=3, seed=1)])[0] for p in prompts]


def test_engine_refuses_more_slots_than_the_model_holds():
    llm = fake_llm(2)
    with pytest.raises(ValueError, match="n_seq_max"):
        llm.parallel(3)
    assert len(Engine(llm.model, slots=5).slots) == 2


def test_a_call_after_a_batch_gets_the_text_it_gets_alone():
    llm = fake_llm(2)
    kwargs = dict(max_tokens=6, seed=4)
    first = texts([llm("free text one", **kwargs)])[0]
    llm.batch(["other words here", "free text two"], **kwargs)
    assert texts([llm("free text one", **kwargs)])[0] == first


class SamplerBug(RuntimeError):
    pass


def broken_sequence(engine, prompt: str):
    seq = engine.new_sequence(Request(engine.tokenizer.encode(prompt), n_predict=5, sampling=SamplerParams(seed=1)))

    def sample(logits):
        raise SamplerBug("a bug of this sequence's sampler")
    seq.sampler.sample = sample
    return seq


def test_a_sequence_whose_sampling_raises_ends_and_the_others_go_on():
    llm = fake_llm(3)
    engine = llm.engine
    ok = [engine.new_sequence(Request(engine.tokenizer.encode(p), n_predict=5, sampling=SamplerParams(seed=1)))
          for p in ("free text one", "another free text")]
    bad = broken_sequence(engine, "x")
    for seq in (ok[0], bad, ok[1]):
        assert engine.admit(seq) is not None
    while engine.running:
        engine.step()
    assert bad.finish_reason is FinishReason.ERROR and isinstance(bad.error, SamplerBug)
    alone = fake_llm(1)
    for seq, prompt in zip(ok, ("free text one", "another free text")):
        assert len(seq.tokens) == 5
        assert seq.text == alone(prompt, max_tokens=5, seed=1)["choices"][0]["text"]
    with pytest.raises(SamplerBug):                     # one sequence driven alone (the API): its error raises
        list(engine.stream(broken_sequence(engine, "x")))


def test_cli_parallel_gives_the_same_results(tmp_path):
    recs = [{"id": i, "prompt": p, "seed": i, "n_predict": 8} for i, p in enumerate(PROMPTS)]
    recs.append({"id": "long", "prompt": "word " * 200})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs))

    def load(options):
        return Llama(options.path, model=FakeContextModel(REPLIES, n_ctx=128, n_seq=options.parallel),
                     n_seq_max=options.parallel)
    outs = {}
    for parallel in (1, 4):
        out = tmp_path / f"p{parallel}.jsonl"
        result = CliRunner().invoke(batch_cli, ["-m", "fake.gguf", "-i", str(inp), "-o", str(out),
                                                "--parallel", str(parallel)], obj={"load_llm": load})
        assert result.exit_code == 1, result.output          # the too-long record failed, the rest ran
        outs[parallel] = [json.loads(x) for x in out.read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("timings", "cached_prompt_tokens")}  # noqa: E731
    assert [strip(r) for r in outs[1]] == [strip(r) for r in outs[4]]
    assert [r["id"] for r in outs[4]] == [r["id"] for r in recs]
    assert "too long" in outs[4][-1]["error"]


# ---- SmolLM2 through the C forward pass ---------------------------------------------------------

@pytest.fixture(scope="module")
def smol_path():
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    return str(path)


def test_smollm2_alone_batched_and_threads_agree(smol_path):
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, a small robot",
               "The three primary colours are", "import numpy as np\n", "My favourite fruit is",
               "In 1969, astronauts", "The best way to learn is"]
    kwargs = dict(max_tokens=10, temperature=0.8, seed=5)
    with Llama(smol_path, n_ctx=128, n_threads=2, n_seq_max=8) as llm:
        batched = texts(llm.batch(prompts, **kwargs))
        alone = [texts([llm(p, **kwargs)])[0] for p in prompts]
    with Llama(smol_path, n_ctx=128, n_threads=1, n_seq_max=3) as one_thread:
        three = texts(one_thread.batch(prompts, **kwargs))
    assert batched == alone == three
    assert all(batched)
