"""The C merge loop (csrc/tokenizer/bpe.c) behind the same interface as the Python merges.

Symbols are ints: a vocab token's id, or an id past the vocab for texts that merges pass through
but that are not tokens themselves. The pair table is built once per vocabulary: from the merge
list for BPE (Python hands C the columns), from the tokens themselves for SentencePiece (built in
C, csrc/tokenizer/spm_table.c).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

try:
    from .._native import ffi, lib
    HAVE_NATIVE = hasattr(lib, "pg_merge_apply")
except ImportError:      # extension not built: the Python merges are used instead
    ffi = lib = None
    HAVE_NATIVE = False


class NativeMerger:
    def __init__(self, left: Sequence[int], right: Sequence[int], priority: Sequence[int],
                 result: Sequence[int]):
        arrays = [np.arange(a.start, a.stop, a.step, dtype=np.int32) if isinstance(a, range)
                  else np.ascontiguousarray(a, dtype=np.int32) for a in (left, right, priority, result)]
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError("pair table columns differ in length")
        ptrs = [ffi.cast("int32_t *", a.ctypes.data) for a in arrays]
        self._own(lib.pg_merge_table_new(n, *ptrs), "pg_merge_table_new")

    def _own(self, table, made_by: str) -> None:
        if table == ffi.NULL:
            raise MemoryError(f"{made_by} failed")
        self._table = ffi.gc(table, lib.pg_merge_table_free)

    @classmethod
    def sentencepiece(cls, texts: Sequence[str], scores: Sequence[float]) -> tuple["NativeMerger", dict[str, int]]:
        """SentencePiece's pairs, built in C from the vocabulary (csrc/tokenizer/spm_table.c):
        every token split in two parts that can be symbols (a token or a single character),
        ordered by the token's score. Returns the merger and every single character that can be
        a symbol -> its symbol (a token id, or past the vocab for characters that are no token)."""
        n = len(texts)
        blob = "".join(texts).encode("utf-8", "surrogatepass")
        n_chars = np.fromiter(map(len, texts), dtype=np.int32, count=n)
        priority = score_ranks(scores)
        max_extra = min(int(n_chars.sum(dtype=np.int64)), 0x110000)   # distinct characters, at most
        extra = np.empty(max(max_extra, 1), dtype=np.uint32)
        n_extra = ffi.new("int64_t *")
        merger = cls.__new__(cls)
        merger._own(lib.pg_spm_table_new(n, ffi.from_buffer(blob), len(blob), _i32(n_chars), _i32(priority),
                                         ffi.cast("uint32_t *", extra.ctypes.data), max_extra, n_extra),
                    "pg_spm_table_new")
        singles = np.flatnonzero(n_chars == 1).tolist()
        chars = dict(zip(map(texts.__getitem__, singles), singles))
        chars.update(zip(map(chr, extra[:n_extra[0]].tolist()), range(n, n + n_extra[0])))
        return merger, chars

    def merge(self, symbols: list[int]) -> tuple[list[int], list[int]]:
        """Initial symbols (one per character) -> (merged symbols, start index of each)."""
        n = len(symbols)
        sym = ffi.new("int32_t[]", symbols)
        start = ffi.new("int32_t[]", max(n, 1))
        m = lib.pg_merge_apply(self._table, sym, start, n)
        if m < 0:
            raise MemoryError("pg_merge_apply failed")
        return ffi.unpack(sym, m), ffi.unpack(start, m)


class SymbolTable:
    """Texts -> symbol ids: vocab ids first, then fresh ids for anything else."""

    def __init__(self, text_to_id, n_vocab: int):
        self._text_to_id = text_to_id
        self.extra: dict[str, int] = {}
        self.extra_texts: list[str] = []
        self.n_vocab = n_vocab

    def id(self, text: str) -> int:
        token = self._text_to_id.get(text)
        if token is not None:
            return token
        sym = self.extra.get(text)
        if sym is None:
            sym = self.n_vocab + len(self.extra_texts)
            self.extra[text] = sym
            self.extra_texts.append(text)
        return sym

    def ids(self, texts: Sequence[str]) -> list[int]:
        """id() of each text: one dict pass over them all, id() only for those not in the vocab."""
        found = list(map(self._text_to_id.get, texts))
        if None in found:
            for i in [i for i, sym in enumerate(found) if sym is None]:
                found[i] = self.id(texts[i])
        return found


def score_ranks(scores: Sequence[float]) -> np.ndarray:
    """Each score's rank, highest -> 0, equal scores sharing one (SentencePiece scores as merge
    priorities), as int32."""
    _, rank = np.unique(-np.asarray(scores, dtype=np.float64), return_inverse=True)
    return rank.astype(np.int32).reshape(-1)


def _i32(a: np.ndarray):
    return ffi.cast("int32_t *", a.ctypes.data)
