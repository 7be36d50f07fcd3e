"""A KV-cache operation that fails half done (a prefix copy, a context shift) leaves the slot's
cached tokens empty, never stale: the next request recomputes its prompt instead of reusing cells
that no longer hold what the slot says (before, it got text from a corrupted context)."""
from __future__ import annotations

import pytest

from batch_fakes import FakeContextModel
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import Request
from pygguf.sampling import SamplerParams

PROMPT = "free text one"


def text_of(engine: Engine, prompt: str, seed: int, n_predict: int = 8, shift: bool = False) -> str:
    request = Request(engine.tokenizer.encode(prompt), n_predict=n_predict,
                      sampling=SamplerParams(temp=1.0, seed=seed), context_shift=shift)
    return "".join(engine.stream(engine.new_sequence(request)))


def fresh() -> Engine:
    return Engine(FakeContextModel(n_ctx=32))


def test_a_failed_context_shift_leaves_the_cached_tokens_true():
    engine = fresh()
    model = engine.model

    def half_shift(seq, n_past, keep, discard):          # moved some cells, then failed
        del model.caches[seq][keep:keep + discard // 2]
        raise RuntimeError("shift failed")
    model.kv_shift = half_shift
    with pytest.raises(RuntimeError, match="shift failed"):
        text_of(engine, PROMPT, 3, n_predict=64, shift=True)   # runs into the end of the context
    del model.kv_shift
    assert text_of(engine, PROMPT, 5) == text_of(fresh(), PROMPT, 5)
