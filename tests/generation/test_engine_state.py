"""Engine.save_state / load_state: a restored slot is reused like any cached prefix (the last
prompt token evaluated again, so its logits exist), and a refused state changes nothing."""
from __future__ import annotations

import pytest

from pygguf.errors import StateError
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import Request
from pygguf.model import Model
from pygguf.sampling import SamplerParams
from pygguf_cli import paths

SMOL = paths.default_model_path()
pytestmark = pytest.mark.skipif(not SMOL.is_file(), reason=f"default model absent ({SMOL}); run `make model`")


@pytest.fixture(scope="module")
def models():
    with Model.load(SMOL, n_ctx=128) as a, Model.load(SMOL, n_ctx=128) as b:
        yield a, b


def run(engine: Engine, tokens: list[int], n_predict: int = 4):
    seq = engine.new_sequence(Request(tokens, n_predict=n_predict, sampling=SamplerParams(seed=3)))
    text = "".join(engine.stream(seq))
    return seq, text


def test_restored_slot_reuses_all_but_the_last_prompt_token(models):
    a, b = models
    tokens = a.tokenizer.encode("Saved states let a prompt be evaluated once and reused", add_special=True)
    engine = Engine(a)
    _, text = run(engine, tokens)
    data = engine.save_state(0, len(tokens))         # the prompt's cells only (generated ones follow)
    restored = Engine(b)
    assert restored.load_state(data) == tokens
    again, text_again = run(restored, tokens)
    assert again.cached_prompt_tokens == len(tokens) - 1 and again.timings.n_prompt_eval == 1
    assert text_again == text


def test_a_refused_state_changes_nothing(models):
    a, _ = models
    engine = Engine(a)
    tokens = a.tokenizer.encode("Nothing changes", add_special=True)
    run(engine, tokens)
    before = list(engine.slots[0].cached)
    data = bytearray(engine.save_state())
    data[100] ^= 1
    with pytest.raises(StateError, match="corrupt"):
        engine.load_state(bytes(data))
    assert engine.slots[0].cached == before
