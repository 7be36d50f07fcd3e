"""The RNG llama.cpp's samplers own: std::mt19937, read the way libstdc++'s distributions read it.

A fixed seed therefore replays llama.cpp's draws: `uniform()` is
`std::uniform_real_distribution<double>(0, 1)` (two 32-bit words, generate_canonical),
`uniform_float()` the `<float>` one (one word), `discrete(p)` `std::discrete_distribution`.
The state lives in C (csrc/sampling/mt19937.c) so the C sampling chain draws from the same stream.
"""
from __future__ import annotations

import secrets

import numpy as np

from pygguf._native import ffi as _ffi
from pygguf._native import lib as _native

DEFAULT_SEED = 0xFFFFFFFF    # LLAMA_DEFAULT_SEED: -1 as uint32, means "pick a random seed"


def resolve_seed(seed: int) -> int:
    """The seed actually used: -1 (or 0xFFFFFFFF) draws one from the OS, like std::random_device."""
    seed = int(seed) & 0xFFFFFFFF
    if seed == DEFAULT_SEED:
        return secrets.randbits(32)
    return seed


class Mt19937:
    def __init__(self, seed: int):
        self.state = _ffi.new("pg_mt19937 *")   # what pg_chain_sample draws from
        self.seed(seed)

    def seed(self, seed: int) -> None:
        _native.pg_mt19937_seed(self.state, int(seed) & 0xFFFFFFFF)   # as std::mt19937(seed)

    def next_u32(self, n: int = 1) -> np.ndarray:
        out = np.empty(int(n), dtype=np.uint32)
        _native.pg_mt19937_fill(self.state, _ffi.from_buffer("uint32_t[]", out), out.shape[0])
        return out

    def uniform(self) -> float:
        return _native.pg_mt19937_uniform(self.state)

    def uniform_float(self) -> float:
        return _native.pg_mt19937_uniform_float(self.state)

    def discrete(self, probs: np.ndarray) -> int:
        """std::discrete_distribution: normalized partial sums (last forced to 1), lower_bound."""
        weights = np.asarray(probs, dtype=np.float64)
        cum = np.cumsum(weights / weights.sum())
        cum[-1] = 1.0
        return int(np.searchsorted(cum, self.uniform(), side="left"))
