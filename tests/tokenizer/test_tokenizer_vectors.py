"""llama.cpp's tokenizer test vectors, smaller vocabularies (the big ones are in *_large.py)."""
from __future__ import annotations

import pytest

from tokenizer_vectors import check_all_cases

SMALL_VOCABS = ["llama-spm", "phi-3", "gpt-2", "deepseek-coder", "falcon", "mpt", "starcoder",
                "refact"]


@pytest.mark.parametrize("name", SMALL_VOCABS)
def test_vocab_matches_llama_cpp(name):
    check_all_cases(name)
