"""Llama(type_k=, type_v=): the KV cache types by name or by llama-cpp-python's ggml type ids."""
from __future__ import annotations

import pytest

from pygguf.api import Llama
from pygguf.errors import ModelError


def test_cache_types_reach_the_model_and_it_generates(smol_path):
    llm = Llama(smol_path, n_ctx=256, n_threads=2, type_k="q8_0", type_v=2)    # 2: ggml's Q4_0
    try:
        assert (llm.model.type_k, llm.model.type_v) == ("q8_0", "q4_0")
        out = llm("The capital of France is", max_tokens=4, temperature=0.0)
        assert out["usage"]["completion_tokens"] >= 1
    finally:
        llm.close()
    llm = Llama(smol_path, n_ctx=256, n_threads=2)
    try:
        assert (llm.model.type_k, llm.model.type_v) == ("f16", "f16")
    finally:
        llm.close()


def test_an_unknown_cache_type_is_refused(smol_path):
    with pytest.raises(ModelError, match="type_k=0 is not a KV cache type"):
        Llama(smol_path, n_ctx=256, type_k=0)                                   # ggml F32
