"""Byte-level BPE (tokenizer.ggml.model = gpt2): pre-tokenize, map bytes to unicode, merge by rank.

Merging follows llama.cpp: repeatedly merge the adjacent pair with the lowest merge rank, the
leftmost one on ties. Words repeat a lot in real text, so results are cached per word.
"""
from __future__ import annotations

import heapq

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


def merge_word(symbols: list[str], ranks) -> list[str]:
    """Lowest-rank-first merging of adjacent symbols; ties go to the leftmost pair."""
    n = len(symbols)
    if n < 2:
        return symbols
    sym = list(symbols)
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    heap: list[tuple[int, int, str, str]] = []
    for i in range(n - 1):
        rank = ranks.get((sym[i], sym[i + 1]))
        if rank is not None:
            heap.append((rank, i, sym[i], sym[i + 1]))
    heapq.heapify(heap)
    while heap:
        _, left, ltext, rtext = heapq.heappop(heap)
        right = nxt[left]
        # stale entry: one side already merged into something else
        if right < 0 or sym[left] != ltext or sym[right] != rtext:
            continue
        sym[left] = ltext + rtext
        sym[right] = ""
        nxt[left] = after = nxt[right]
        if after >= 0:
            prev[after] = left
        before = prev[left]
        if before >= 0:
            rank = ranks.get((sym[before], sym[left]))
            if rank is not None:
                heapq.heappush(heap, (rank, before, sym[before], sym[left]))
        if after >= 0:
            rank = ranks.get((sym[left], sym[after]))
            if rank is not None:
                heapq.heappush(heap, (rank, left, sym[left], sym[after]))
    return [s for s in sym if s]


class BPETokenizer:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        warnings: list[str] = []
        self.pre_spec = resolve_pre(vocab.pre, warnings)
        self.pretokenizer = PreTokenizer(self.pre_spec.family)
        self._cache: dict[str, tuple[int, ...]] = {}

    def encode_text(self, text: str, out: list[int]) -> None:
        cache = self._cache
        for word in self.pretokenizer.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = self._encode_word(word)
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)

    def _encode_word(self, word: str) -> tuple[int, ...]:
        text_to_id = self.vocab.text_to_id
        encoded = byte_encode(word)
        if self.vocab.ignore_merges and encoded in text_to_id:
            return (text_to_id[encoded],)
        ids: list[int] = []
        for piece in merge_word(list(encoded), self.vocab.merge_ranks):
            token = text_to_id.get(piece)
            if token is not None:
                ids.append(token)
                continue
            # no token for a merged piece: fall back to one token per byte-character, dropping
            # characters the vocab lacks (llama.cpp does the same)
            for ch in piece:
                token = text_to_id.get(ch)
                if token is not None:
                    ids.append(token)
        return tuple(ids)
