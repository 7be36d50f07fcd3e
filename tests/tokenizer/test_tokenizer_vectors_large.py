"""llama.cpp's tokenizer test vectors, large vocabularies (100k-256k tokens), and any other
vocabulary with vectors found in the cache (non llama/gpt2 models are skipped with a reason)."""
from __future__ import annotations

import pytest

from test_tokenizer_vectors import SMALL_VOCABS
from tokenizer_vectors import check_all_cases, discovered_names

LARGE_VOCABS = ["llama-bpe", "qwen2", "qwen35", "deepseek-llm", "command-r"]
OTHERS = discovered_names(set(SMALL_VOCABS) | set(LARGE_VOCABS))


@pytest.mark.parametrize("name", LARGE_VOCABS + OTHERS)
def test_vocab_matches_llama_cpp(name):
    check_all_cases(name)
