"""The bulk paths that build a tokenizer quickly agree with the one-at-a-time paths they replace."""
from __future__ import annotations

import pytest

from pygguf.tokenizer import native
from pygguf.tokenizer.bpe import BYTE_TO_UNICODE, byte_symbol_map
from pygguf.tokenizer import Tokenizer
from pygguf.tokenizer.special import ids_with
from pygguf.tokenizer.vocab import _split_merge, _split_merges, build_vocab


@pytest.mark.parametrize("merges", [
    ["a b", "Ġ t", "ab c"],                      # the byte-level BPE shape: the join/split path
    [" a b", "a b"],                             # a half starting with a space
    ["ab", "a b"],                               # no space: ('', '')
    ["a b c", "x y"],                            # two spaces: the right half keeps one
    [" ab", "c d"],                              # leading space, one space only
    [" ", "a "],                                 # a lone space, an empty right half
    ["a b c", ""],                               # two spaces + none: the right count, wrong lines
    ["a b c", "d"],
    ["", "a b"],
    ["a\nb c", "d e"],                           # other whitespace is not a separator
    [],
])
def test_split_merges_matches_one_line_at_a_time(merges):
    pairs = [_split_merge(m) for m in merges]
    assert _split_merges(merges) == ([p[0] for p in pairs], [p[1] for p in pairs])


def test_symbol_ids_in_bulk_match_one_at_a_time():
    vocab = {"a": 0, "b": 1, "ab": 2}
    texts = ["a", "zz", "ab", "q", "zz", "b", "q"]
    bulk = native.SymbolTable(vocab, 3)
    single = native.SymbolTable(vocab, 3)
    assert bulk.ids(texts) == [single.id(t) for t in texts]
    assert bulk.extra == single.extra and bulk.extra_texts == single.extra_texts


def test_byte_symbol_map_covers_every_byte_character():
    vocab = {ch: i for i, ch in enumerate(BYTE_TO_UNICODE[:200])}
    symbols = native.SymbolTable(vocab, 200)
    chars = byte_symbol_map(symbols)
    assert set(chars) == set(BYTE_TO_UNICODE)
    assert all(chars[ch] == i for i, ch in enumerate(BYTE_TO_UNICODE[:200]))
    assert sorted(chars[ch] for ch in BYTE_TO_UNICODE[200:]) == list(range(200, 256))


def tiny_bpe_metadata(merges):
    tokens = ["a", "b", "c", "d", "ab", "cd", "abc", "abcd", "Ġ"]
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.token_type": [1] * len(tokens), "tokenizer.ggml.add_bos_token": False}


def test_a_repeated_merge_keeps_its_first_rank_in_python_and_in_c():
    # "c d" first at rank 0, repeated at rank 3, after "ab c" (rank 2): the first rank must win,
    # so "abcd" merges as ab + cd -> abcd; with the last rank it would stop at abc + d
    merges = ["c d", "a b", "ab c", "c d", "ab cd"]
    vocab = build_vocab(tiny_bpe_metadata(merges))
    assert vocab.merge_ranks == {("c", "d"): 0, ("a", "b"): 1, ("ab", "c"): 2, ("ab", "cd"): 4}
    python_side = Tokenizer(vocab, use_native=False).encode("abcd abcd")
    assert python_side[:1] == [7] and 6 not in python_side
    if native.HAVE_NATIVE:
        assert Tokenizer(vocab).encode("abcd abcd") == python_side


def test_ids_with_matches_a_plain_scan():
    attrs = [0, 8, 4, 12, 16, 1, 8 | 16, 0]
    for mask in (8, 16, 1 | 8 | 16, 0):
        assert ids_with(attrs, mask) == [i for i, a in enumerate(attrs) if a & mask]
