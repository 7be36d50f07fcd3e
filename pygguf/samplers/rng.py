"""The RNG llama.cpp's samplers own: std::mt19937, read the way libstdc++'s distributions read it.

A fixed seed therefore replays llama.cpp's draws: `uniform()` is
`std::uniform_real_distribution<double>(0, 1)` (two 32-bit words, generate_canonical),
`uniform_float()` the `<float>` one (one word), `discrete(p)` `std::discrete_distribution`.
"""
from __future__ import annotations

import secrets

import numpy as np

DEFAULT_SEED = 0xFFFFFFFF    # LLAMA_DEFAULT_SEED: -1 as uint32, means "pick a random seed"
_TWO_32 = 4294967296.0


def resolve_seed(seed: int) -> int:
    """The seed actually used: -1 (or 0xFFFFFFFF) draws one from the OS, like std::random_device."""
    seed = int(seed) & 0xFFFFFFFF
    if seed == DEFAULT_SEED:
        return secrets.randbits(32)
    return seed


class Mt19937:
    def __init__(self, seed: int):
        self.seed(seed)

    def seed(self, seed: int) -> None:
        self._bits = np.random.MT19937(0)
        self._bits._legacy_seeding(int(seed) & 0xFFFFFFFF)   # init_genrand(seed), as std::mt19937(seed)

    def next_u32(self, n: int = 1) -> np.ndarray:
        return self._bits.random_raw(n)

    def uniform(self) -> float:
        lo, hi = (float(w) for w in self._bits.random_raw(2))
        r = (lo + hi * _TWO_32) / (_TWO_32 * _TWO_32)
        return r if r < 1.0 else float(np.nextafter(1.0, 0.0))

    def uniform_float(self) -> float:
        r = np.float32(float(self._bits.random_raw(1)[0])) / np.float32(_TWO_32)
        return float(r) if r < 1.0 else float(np.nextafter(np.float32(1.0), np.float32(0.0)))

    def discrete(self, probs: np.ndarray) -> int:
        """std::discrete_distribution: normalized partial sums (last forced to 1), lower_bound."""
        weights = np.asarray(probs, dtype=np.float64)
        cum = np.cumsum(weights / weights.sum())
        cum[-1] = 1.0
        return int(np.searchsorted(cum, self.uniform(), side="left"))
