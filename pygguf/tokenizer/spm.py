"""SentencePiece-style BPE (tokenizer.ggml.model = llama), as llama.cpp runs it.

Spaces become U+2581; adjacent symbols merge highest-score-first (leftmost on ties) as long as
the merged text is a vocab token; what never forms a token falls back to <0xNN> byte tokens.
"""
from __future__ import annotations

import heapq

import regex

from .vocab import TokenizerError, Vocab

SPACE = "\u2581"
CACHE_LIMIT = 1 << 18


def glue_chars(texts) -> set[str]:
    """Characters that some token holds right before a U+2581 (other than U+2581 itself)."""
    glue: set[str] = set()
    for text in texts:
        pos = text.find(SPACE, 1)
        while pos > 0:
            if text[pos - 1] != SPACE:
                glue.add(text[pos - 1])
            pos = text.find(SPACE, pos + 1)
    return glue


class SPMTokenizer:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self._cache: dict[str, tuple[int, ...]] = {}
        # A merged symbol is always a vocab token, so no merge can cross a boundary whose two
        # characters never sit side by side in any token. Before each U+2581 that follows a
        # character no token glues to it, the text splits into independent chunks we can cache.
        glue = glue_chars(vocab.texts)
        if glue:
            self._chunker = None
        else:
            self._chunker = regex.compile(SPACE + "*[^" + SPACE + "]*")
        self._byte_ids = self._byte_tokens(vocab)

    @staticmethod
    def _byte_tokens(vocab: Vocab) -> list[int | None]:
        ids: list[int | None] = []
        for b in range(256):
            token = vocab.text_to_id.get(f"<0x{b:02X}>")
            if token is None and b < 0x80:
                token = vocab.text_to_id.get(chr(b))
            ids.append(token)
        return ids

    def encode_text(self, text: str, out: list[int], add_prefix: bool) -> None:
        if add_prefix:
            text = " " + text
        text = text.replace(" ", SPACE)
        if self._chunker is None:
            out.extend(self._encode_chunk(text))
            return
        cache = self._cache
        for chunk in self._chunker.findall(text):
            if not chunk:
                continue
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[chunk] = ids
            out.extend(ids)

    def _encode_chunk(self, text: str) -> tuple[int, ...]:
        out: list[int] = []
        for piece in self._merge(text):
            token = self.vocab.text_to_id.get(piece)
            if token is not None:
                out.append(token)
            else:
                self._append_bytes(piece, out)
        return tuple(out)

    def _append_bytes(self, piece: str, out: list[int]) -> None:
        for b in piece.encode("utf-8"):
            token = self._byte_ids[b]
            if token is None:
                unk = self.vocab.special_ids.get("unk")
                if unk is None:
                    raise TokenizerError(f"no byte token for 0x{b:02X} and no unknown token")
                token = unk
            out.append(token)

    def _merge(self, text: str) -> list[str]:
        text_to_id, scores = self.vocab.text_to_id, self.vocab.scores
        n = len(text)
        sym = list(text)
        if n < 2:
            return sym
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap: list[tuple[float, int, str, str]] = []

        def push(left: int, right: int) -> None:
            token = text_to_id.get(sym[left] + sym[right])
            if token is not None:
                # max-heap on score through negation; ties pop the smaller left index
                heap.append((-scores[token], left, sym[left], sym[right]))

        for i in range(n - 1):
            push(i, i + 1)
        heapq.heapify(heap)
        while heap:
            _, left, ltext, rtext = heapq.heappop(heap)
            right = nxt[left]
            if right < 0 or sym[left] != ltext or sym[right] != rtext:
                continue
            sym[left] = ltext + rtext
            sym[right] = ""
            nxt[left] = after = nxt[right]
            if after >= 0:
                prev[after] = left
            before = prev[left]
            if before >= 0:
                token = text_to_id.get(sym[before] + sym[left])
                if token is not None:
                    heapq.heappush(heap, (-scores[token], before, sym[before], sym[left]))
            if after >= 0:
                token = text_to_id.get(sym[left] + sym[after])
                if token is not None:
                    heapq.heappush(heap, (-scores[token], left, sym[left], sym[after]))
        return [s for s in sym if s]
