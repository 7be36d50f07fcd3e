"""pygguf's grammar stage against llama.cpp's on SmolLM2 (tests/data/grammar/llamacpp_smollm2.json,
recorded by bench/record_grammar.py through llama-cpp-python 0.3.36's grammar sampler): along the
path llama.cpp decoded, the set of tokens the grammar allows is llama.cpp's at every step, for
grammars of its grammars/ folder and grammars made from JSON schemas; and greedy decoding under the
grammar picks llama.cpp's tokens until the first step where its best two allowed tokens are within
0.5 of each other (SmolLM2 Q4_1's own logits differ from llama.cpp's by up to ~0.6), where ours is
one of those two."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from model_runner import Runner
from pygguf_cli import paths
from testpaths import TESTS

DATA = TESTS / "data" / "grammar" / "llamacpp_smollm2.json"
SMALL_MARGIN = 0.5


def recorded() -> dict:
    if not DATA.exists():
        pytest.skip(f"{DATA} not recorded (bench/record_grammar.py)")
    return json.loads(DATA.read_text(encoding="utf-8"))


CASES = [c["name"] for c in json.loads(DATA.read_text(encoding="utf-8"))["cases"]] if DATA.exists() else ["-"]


def case(name: str) -> dict:
    return next(c for c in recorded()["cases"] if c["name"] == name)


@pytest.fixture(scope="module")
def model():
    from pygguf.model import Model
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    m = Model.load(path, n_ctx=512, n_threads=2)
    yield m
    m.close()


def allowed_set(state, n_vocab: int) -> np.ndarray:
    logits = np.zeros(n_vocab, dtype=np.float32)
    state.mask(logits)
    return np.flatnonzero(np.isfinite(logits))


def recorded_set(step: dict, n_vocab: int) -> np.ndarray | None:
    """the set when the data lists it (else only its size and hash are kept)"""
    if "allowed" in step:
        return np.asarray(step["allowed"], dtype=np.int64)
    if "refused" in step:
        return np.setdiff1d(np.arange(n_vocab), np.asarray(step["refused"], dtype=np.int64))
    return None


@pytest.mark.parametrize("name", CASES)
def test_allowed_tokens_equal_llama_cpp_at_every_step(model, name):
    from pygguf.grammar.compiled import matcher_for
    c, n_vocab = case(name), model.config.n_vocab
    tok = model.tokenizer
    state = matcher_for(c["grammar"], tok.grammar_pieces(), tok.eog_ids).start()
    for i, (token, step) in enumerate(zip(c["tokens"], c["steps"])):
        ours = allowed_set(state, n_vocab)
        want = recorded_set(step, n_vocab)
        if want is not None:
            assert np.array_equal(ours, want), \
                f"{name} step {i}: {ours.size} allowed, llama.cpp {step['count']}; " \
                f"extra {np.setdiff1d(ours, want)[:10].tolist()}, missing {np.setdiff1d(want, ours)[:10].tolist()}"
        assert ours.size == step["count"], f"{name} step {i}: {ours.size} allowed, llama.cpp {step['count']}"
        assert hashlib.sha256(ours.astype("<i4").tobytes()).hexdigest()[:16] == step["sha"], f"{name} step {i}"
        for t in (int(ours[0]), int(ours[-1]), token):         # the one-token check agrees with the mask
            assert state.allows(t)
        if tok.is_eog(token):
            break
        state.accept(token)


@pytest.mark.parametrize("name", CASES)
def test_greedy_under_the_grammar_picks_llama_cpp_tokens(model, name):
    from pygguf.sampling import Sampler, SamplerParams
    c = case(name)
    tok = model.tokenizer
    sampler = Sampler(SamplerParams(temp=0.0, grammar=c["grammar"]), model.config.n_vocab, eog_ids=tok.eog_ids,
                      pieces=tok.grammar_pieces())
    runner = Runner(model)
    model_logits = runner.eval(c["prompt_ids"])
    for i, (want, margin) in enumerate(zip(c["tokens"], c["margins"])):
        got = sampler.sample(model_logits)
        if margin < SMALL_MARGIN:
            allowed = np.flatnonzero(np.isfinite(masked(sampler, model_logits)))
            best_two = allowed[np.argsort(-model_logits[allowed], kind="stable")[:2]]
            assert got in best_two.tolist() or got == want, f"{name} step {i}"
            return
        assert got == want, f"{name} step {i}: token {got}, llama.cpp {want} (its margin {margin:.3f})"
        if tok.is_eog(got):
            return
        sampler.accept(got)
        model_logits = runner.eval([got])


def masked(sampler, logits: np.ndarray) -> np.ndarray:
    row = logits.copy()
    sampler.grammar.mask(row)
    return row


def grammar_files():
    folder = paths.grammars_dir()
    return sorted(p.name for p in folder.glob("*.gbnf")) if folder.is_dir() else ["(make vocab)"]


@pytest.mark.parametrize("fname", grammar_files())
def test_every_llama_cpp_grammar_file_constrains_a_generation(model, fname):
    """each of llama.cpp's grammars/*.gbnf drives 16 greedy steps on SmolLM2: every token the
    sampler picks is one the grammar allows, and the text so far stays a prefix the grammar accepts"""
    from pygguf.model.batch import Batch
    from pygguf.sampling import Sampler, SamplerParams
    path = paths.grammars_dir() / fname
    if not path.exists():
        pytest.skip(f"{path} not fetched (make vocab)")
    tok = model.tokenizer
    sampler = Sampler(SamplerParams(temp=0.0, grammar=path.read_text(encoding="utf-8")), model.config.n_vocab,
                      eog_ids=tok.eog_ids, pieces=tok.grammar_pieces())
    prompt = tok.encode("<|im_start|>user\nWrite something.<|im_end|>\n<|im_start|>assistant\n", add_special=True,
                        parse_special=True)
    logits = model.decode(Batch.of(prompt, 0, 0, "last"))[0].copy()
    from pygguf.grammar.compiled import matcher_for
    check = matcher_for(sampler.params.grammar, tok.grammar_pieces(), tok.eog_ids).start()
    for i in range(16):
        token = sampler.sample(logits)
        assert check.allows(token), f"{fname} step {i}: token {token} is not allowed"
        if tok.is_eog(token):
            break
        sampler.accept(token)
        check.accept(token)
        if sampler.grammar_done:
            break
        logits = model.decode(Batch.of([token], len(prompt) + i, 0, "last"))[0].copy()
