"""The C merge loop (csrc/bpe.c) behind the same interface as the Python merges.

Symbols are ints: a vocab token's id, or an id past the vocab for texts that merges pass through
but that are not tokens themselves. The pair table is built once per vocabulary.
"""
from __future__ import annotations

from typing import Iterable, Sequence

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
        table = lib.pg_merge_table_new(n, *ptrs)
        if table == ffi.NULL:
            raise MemoryError("pg_merge_table_new failed")
        self._table = ffi.gc(table, lib.pg_merge_table_free)

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

    def char_map(self, texts: Iterable[str]) -> dict[str, int]:
        """Every one-character symbol -> its id (the initial symbols of a word)."""
        chars = {t: i for i, t in enumerate(texts) if len(t) == 1}
        chars.update((t, i) for t, i in self.extra.items() if len(t) == 1)
        return chars


def dense_ranks(values: Iterable[float]) -> dict[float, int]:
    """Highest value -> 0, ties share a rank (SentencePiece scores as merge priorities)."""
    return {v: i for i, v in enumerate(sorted(set(values), reverse=True))}
