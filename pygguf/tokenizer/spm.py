"""SentencePiece-style BPE (tokenizer.ggml.model = llama), as llama.cpp runs it.

Spaces become U+2581; adjacent symbols merge highest-score-first (leftmost on ties) as long as
the merged text is a vocab token; what never forms a token falls back to <0xNN> byte tokens.
"""
from __future__ import annotations

import regex

from . import native
from .merge import merge_with_heap
from .vocab import TokenizerError, Vocab

SPACE = "\u2581"
CACHE_LIMIT = 1 << 18
SHORT_CHUNK = 16   # below this many characters a plain rescan beats the heap


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
    def __init__(self, vocab: Vocab, use_native: bool = True):
        self.vocab = vocab
        self._native: native.NativeMerger | None = None
        self._n_vocab = vocab.n_vocab
        if use_native and native.HAVE_NATIVE:
            self._native, chars = native.NativeMerger.sentencepiece(vocab.texts, vocab.scores)
            self._char_get = chars.get
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
        if self._native is not None and len(text) > 1:
            syms, starts = self._native.merge([self._char_get(c, -1) for c in text])
            if all(0 <= s < self._n_vocab for s in syms):    # every symbol is a token
                return tuple(syms)
            pieces = [text[s:e] for s, e in zip(starts, starts[1:] + [len(text)])]
        else:
            pieces = self._merge(text)
        out: list[int] = []
        for piece in pieces:
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
        if len(text) < 2:
            return list(text)
        if self._native is not None:
            _, starts = self._native.merge([self._char_get(c, -1) for c in text])
            ends = starts[1:] + [len(text)]
            return [text[s:e] for s, e in zip(starts, ends)]
        if len(text) <= SHORT_CHUNK:
            return self._merge_short(list(text))
        return self._merge_heap(text)

    def _merge_short(self, sym: list[str]) -> list[str]:
        """Rescan all pairs each step: best score wins, the leftmost pair on ties."""
        get, scores = self.vocab.text_to_id.get, self.vocab.scores
        while len(sym) > 1:
            best_i, best = -1, 0.0
            for i in range(len(sym) - 1):
                token = get(sym[i] + sym[i + 1])
                if token is not None and (best_i < 0 or scores[token] > best):
                    best_i, best = i, scores[token]
            if best_i < 0:
                break
            sym[best_i:best_i + 2] = [sym[best_i] + sym[best_i + 1]]
        return sym

    def _merge_heap(self, text: str) -> list[str]:
        """The same merge order with llama.cpp's priority queue, for long chunks: highest score first."""
        text_to_id, scores = self.vocab.text_to_id, self.vocab.scores

        def priority(left: str, right: str):
            token = text_to_id.get(left + right)
            return None if token is None else -scores[token]

        return merge_with_heap(list(text), priority)
