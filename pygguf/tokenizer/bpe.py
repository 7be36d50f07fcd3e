"""Byte-level BPE (tokenizer.ggml.model = gpt2): pre-tokenize, map bytes to unicode, merge by rank.

Merging follows llama.cpp: repeatedly merge the adjacent pair with the lowest merge rank, the
leftmost one on ties. Words repeat a lot in real text, so results are cached per word.
"""
from __future__ import annotations

from itertools import chain

from . import native
from .merge import merge_with_heap
from .pretokenize import PreTokenizer, resolve_pre
from .vocab import Vocab

CACHE_LIMIT = 1 << 18   # words kept before the cache is dropped (bounds memory on huge inputs)


def byte_to_unicode() -> list[str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = [""] * 256
    for b in printable:
        table[b] = chr(b)
    n = 0
    for b in range(256):
        if not table[b]:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_UNICODE = byte_to_unicode()
UNICODE_TO_BYTE = {ch: b for b, ch in enumerate(BYTE_TO_UNICODE)}
# str.translate table: a latin-1 decoded byte string -> its byte-level unicode spelling
_LATIN1_TO_BYTE_UNICODE = {b: ch for b, ch in enumerate(BYTE_TO_UNICODE)}


def byte_encode(word: str) -> str:
    return word.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_BYTE_UNICODE)


SHORT_WORD = 24   # below this many symbols a plain rescan beats the heap


def merge_word(symbols: list[str], ranks) -> list[str]:
    """Lowest-rank-first merging of adjacent symbols; ties go to the leftmost pair."""
    n = len(symbols)
    if n < 2:
        return symbols
    if n <= SHORT_WORD:
        return _merge_short(list(symbols), ranks)
    return _merge_heap(symbols, ranks)


def _merge_short(sym: list[str], ranks) -> list[str]:
    get = ranks.get
    while len(sym) > 1:
        found = list(map(get, zip(sym, sym[1:])))
        best = min((r for r in found if r is not None), default=None)
        if best is None:
            break
        i = found.index(best)                  # leftmost pair with the lowest rank
        sym[i:i + 2] = [sym[i] + sym[i + 1]]
    return sym


def _merge_heap(symbols: list[str], ranks) -> list[str]:
    """The same merge order with a priority queue (llama.cpp's), for long words: lowest rank first."""
    return merge_with_heap(symbols, lambda left, right: ranks.get((left, right)))


def native_merger(vocab: Vocab) -> tuple["native.NativeMerger", "native.SymbolTable"]:
    """The C merge table for a BPE vocab: every merge rule as (left, right) -> (rank, result)."""
    symbols = native.SymbolTable(vocab.text_to_id, vocab.n_vocab)
    symbols.ids(BYTE_TO_UNICODE)
    lefts, rights = vocab.merge_pairs
    # whole columns at a time: ~50k merges, where a per-merge Python loop dominated model load.
    # Rank = line number; a repeated pair keeps its first rank (the C table keeps the first insert).
    results = list(map(str.__add__, lefts, rights))
    merger = native.NativeMerger(symbols.ids(lefts), symbols.ids(rights), range(len(lefts)),
                                 symbols.ids(results))
    return merger, symbols


def byte_symbol_map(symbols: "native.SymbolTable") -> dict[str, int]:
    """The symbol of each of the 256 byte characters: every initial symbol of a byte-encoded word."""
    return dict(zip(BYTE_TO_UNICODE, symbols.ids(BYTE_TO_UNICODE)))


class BPETokenizer:
    def __init__(self, vocab: Vocab, use_native: bool = True):
        self.vocab = vocab
        warnings: list[str] = []
        self.pre_spec = resolve_pre(vocab.pre, warnings)
        self.pretokenizer = PreTokenizer(self.pre_spec.family)
        self._cache: dict[str, tuple[int, ...]] = {}
        self._native = native_merger(vocab) if use_native and native.HAVE_NATIVE else None
        if self._native is not None:
            self._char_get = byte_symbol_map(self._native[1]).get

    def encode_text(self, text: str, out: list[int]) -> None:
        cache = self._cache
        words = self.pretokenizer.split(text)
        found = list(map(cache.get, words))       # one C-level pass for the common case
        for i, ids in enumerate(found):
            if ids is None:
                word = words[i]
                ids = cache.get(word)             # an earlier miss in this text may have filled it
                if ids is None:
                    ids = self._encode_word(word)
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[word] = ids
                found[i] = ids
        out.extend(chain.from_iterable(found))

    def _encode_word(self, word: str) -> tuple[int, ...]:
        text_to_id = self.vocab.text_to_id
        encoded = byte_encode(word)
        if self.vocab.ignore_merges and encoded in text_to_id:
            return (text_to_id[encoded],)
        if self._native is not None and len(encoded) > 1:
            syms, starts = self._native[0].merge([self._char_get(c, -1) for c in encoded])
            if all(0 <= s < self.vocab.n_vocab for s in syms):    # every symbol is a token
                return tuple(syms)
            ends = starts[1:] + [len(encoded)]
            pieces = [encoded[s:e] for s, e in zip(starts, ends)]
        else:
            pieces = self._merge(encoded)
        ids: list[int] = []
        for piece in pieces:
            token = text_to_id.get(piece)
            if token is not None:
                ids.append(token)
                continue
            # no token for a merged piece: llama.cpp looks each UTF-8 byte of it up as a
            # one-byte token text and drops what it does not find; only ASCII can be found
            for ch in piece:
                token = text_to_id.get(ch) if ch < "\x80" else None
                if token is not None:
                    ids.append(token)
        return tuple(ids)

    def _merge(self, encoded: str) -> list[str]:
        if self._native is None or len(encoded) < 2:
            return merge_word(list(encoded), self.vocab.merge_ranks)
        _, starts = self._native[0].merge([self._char_get(c, -1) for c in encoded])
        ends = starts[1:] + [len(encoded)]
        return [encoded[s:e] for s, e in zip(starts, ends)]
