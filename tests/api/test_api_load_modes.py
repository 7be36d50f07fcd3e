"""Llama(use_mmap=, use_mlock=) (llama-cpp-python's names) and its context limit named as n_ctx."""
from __future__ import annotations

import pytest

from pygguf.api import Llama
from pygguf.errors import ContextTooLarge
from pygguf.model.config import MAX_CONTEXT


def complete(path, **kwargs) -> str:
    llm = Llama(path, n_ctx=128, n_threads=1, **kwargs)
    try:
        return llm("The capital of France is", max_tokens=6, temperature=0.0)["choices"][0]["text"]
    finally:
        llm.close()


def test_read_into_memory_or_locked_gives_the_same_text(smol_path):
    mapped = complete(smol_path)
    assert complete(smol_path, use_mmap=False) == mapped
    assert complete(smol_path, use_mlock=True) == mapped        # locked, or a warning and the same run


def test_a_context_past_the_loader_is_named_n_ctx(smol_path):
    with pytest.raises(ContextTooLarge, match=rf"^n_ctx={MAX_CONTEXT * 2} is beyond the largest context"):
        Llama(smol_path, n_ctx=MAX_CONTEXT * 2)
