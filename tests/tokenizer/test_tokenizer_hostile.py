"""Hostile tokenizer metadata (issue 18: scores as strings, token text that is not UTF-8) is a
TokenizerError, never a traceback from deeper down."""
from __future__ import annotations

import pytest

from pygguf.errors import TokenizerError
from pygguf.tokenizer import Tokenizer

TOKENS = ["a", "b", "c", "ab", "abc", "Ġ", "<|end|>"]


def metadata(**changes):
    md = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm",
          "tokenizer.ggml.tokens": list(TOKENS), "tokenizer.ggml.scores": [0.0] * len(TOKENS),
          "tokenizer.ggml.token_type": [1] * 6 + [3], "tokenizer.ggml.merges": ["a b", "ab c"],
          "tokenizer.ggml.bos_token_id": 6, "tokenizer.ggml.eos_token_id": 6}
    md.update({k.replace("__", "."): v for k, v in changes.items()})
    return md


def test_the_tiny_vocabulary_works():
    tok = Tokenizer.from_metadata(metadata())
    assert tok.decode(tok.encode("abc", add_special=False)) == "abc"


@pytest.mark.parametrize("change, words", [
    ({"tokenizer__ggml__scores": ["1.0"] * 7}, "scores must be an array of numbers"),
    ({"tokenizer__ggml__scores": ["x"] * 7}, "scores must be an array of numbers"),       # main: ValueError
    ({"tokenizer__ggml__scores": [[1]] * 7}, "scores must be an array of numbers"),       # main: TypeError
    ({"tokenizer__ggml__scores": [True] * 7}, "scores must be an array of numbers"),
    ({"tokenizer__ggml__tokens": ["a", "b", "c", "ab", "abc", "\udcff", "<|end|>"]}, "tokens[5] is not valid UTF-8"),
    ({"tokenizer__ggml__tokens": ["a", "b", "c", "ab\udcc3", "abc", "Ġ", "<|end|>"]}, "tokens[3] is not valid UTF-8"),
    ({"tokenizer__ggml__merges": ["a b", "\udced\udca0\udc80 c"]}, "merges[1] is not valid UTF-8"),
    ({"tokenizer__ggml__model": "x" * 10**6}, "(1000000 characters)"),
    ({"tokenizer__ggml__tokens": ["a", "b", "c", "ab", "x" * 10**6, "x" * 10**6, "<|end|>"]}, "(1000000 characters)"),
])
def test_hostile_vocabulary_is_a_tokenizer_error(change, words):
    with pytest.raises(TokenizerError) as e:
        tok = Tokenizer.from_metadata(metadata(**change))
        tok.grammar_pieces()          # main: UnicodeEncodeError here for a token that is not UTF-8
        tok.decode(list(range(len(TOKENS))), special=True)
    assert words in str(e.value) and len(str(e.value)) < 300
