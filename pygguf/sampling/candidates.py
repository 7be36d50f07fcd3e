"""The candidates structure every sampler reads and returns, and the shared sort/softmax helpers.

Mirrors llama.cpp's `llama_token_data_array`: parallel arrays of token ids and logits, optional
probabilities, and a `sorted` flag (descending logit). Samplers return a new Candidates (or the same
one when they do nothing); the arrays given in are never written to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pygguf._native import ffi as _ffi
from pygguf._native import lib as _native


@dataclass
class Candidates:
    ids: np.ndarray                   # (n,) int64 token ids
    logits: np.ndarray                # (n,) float32
    sorted: bool = False              # True when logits are in descending order
    probs: np.ndarray | None = None   # (n,) float32, set by softmax-using samplers
    identity: bool = False            # ids == arange(n): the whole vocabulary in id order

    def with_logits(self, logits: np.ndarray, sorted: bool) -> Candidates:
        """Same tokens in the same places, new logits (probabilities dropped)."""
        return Candidates(self.ids, logits, sorted, None, self.identity)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, index: np.ndarray | slice, *, sorted: bool) -> Candidates:
        probs = None if self.probs is None else self.probs[index]
        return Candidates(self.ids[index], self.logits[index], sorted, probs)


def sort_order(logits: np.ndarray) -> np.ndarray:
    """Positions in descending-logit order; ties keep their current order (stable)."""
    return np.argsort(-logits, kind="stable")


def top_positions(logits: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest logits, in descending order (ties: earlier position first).
    Over a whole vocabulary this is one C pass (pg_top_k); numpy below is its reference."""
    n = logits.shape[0]
    if 0 < k < n and n >= 4096 and logits.dtype == np.float32 and logits.flags.c_contiguous:
        positions = np.empty(k, dtype=np.int64)
        got = _native.pg_top_k(_ffi.from_buffer("float[]", logits), n, k, _ffi.from_buffer("int64_t[]", positions))
        if got == k:                    # fewer means NaNs: the reference below decides
            return positions
    return top_positions_numpy(logits, k)


def top_positions_numpy(logits: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest logits, in descending order (ties: earlier position first).

    Exact without sorting everything: if at least k elements are >= t, the top k all lie in
    {x >= t}. t is taken from a strided subsample, aggressively first (a pool of a few k), and
    from the subsample's own k-th largest when that was too tight (which always holds).
    """
    n = logits.shape[0]
    if k >= n:
        return sort_order(logits)
    stride = n // max(2048, 32 * k)
    pool = None
    if stride >= 2:
        sub = logits[::stride]
        m = sub.shape[0]
        j = min(k, 2 + -(-2 * k // stride))
        ranked = np.partition(sub, (m - k, m - j))
        pool = np.flatnonzero(logits >= ranked[m - j])
        if pool.shape[0] < k:
            pool = np.flatnonzero(logits >= ranked[m - k])
    if pool is None or pool.shape[0] < k:     # NaNs: no threshold holds k, so rank everything
        pool = np.arange(n)
    order = np.argsort(-logits[pool], kind="stable")[:k]
    return pool[order]


def sort_candidates(cand: Candidates) -> Candidates:
    if cand.sorted:
        return cand
    return cand.take(sort_order(cand.logits), sorted=True)


def exp_f32(x: np.ndarray) -> np.ndarray:
    """e^x of float32 values, rounded to float32 from a double-precision exp: C's (float)exp(x).

    numpy's own float32 exp is a SIMD approximation whose last bit depends on the CPU it
    dispatches to (a third of its results differ from the correctly rounded value on AVX2),
    so neither a C port nor another machine could reproduce it; this one is (nearly always)
    correctly rounded, like llama.cpp's expf, and the C sampling chain computes the same."""
    return np.exp(x.astype(np.float64)).astype(np.float32)


def softmax_probs(logits: np.ndarray, is_sorted: bool = False) -> np.ndarray:
    """llama.cpp's softmax: float32 exp(l - max), float32 running sum, float32 division."""
    max_l = logits[0] if is_sorted else logits.max()
    if not np.isfinite(max_l):
        return np.zeros(logits.shape, dtype=np.float32)   # nothing sampleable; dist will say so
    e = exp_f32(logits - max_l)
    total = np.cumsum(e, dtype=np.float32)[-1]   # sequential float sum, as the C loop does
    return e / total


def softmax(cand: Candidates, *, sort: bool) -> Candidates:
    """Probabilities for the candidates (sorted first when asked), like llama_sampler_softmax_impl."""
    if sort:
        cand = sort_candidates(cand)
    return Candidates(cand.ids, cand.logits, cand.sorted, softmax_probs(cand.logits, cand.sorted))
