"""The C sampling chain (csrc/sampling/chain.c): the usual chains in one call per token.

It covers logit bias, penalties, top-k, top-p, min-p, temperature and dist in any order, and
greedy; each step computes what the function of the same name in `filters` computes, in the same
float32 operations and candidate order, so the same token comes out of the same RNG draw (the RNG
state is shared: `Mt19937.state`). `plan_steps` says whether a configuration is covered; anything
else (DRY, typical, XTC, top-n-sigma, dynamic temperature, mirostat) stays in Python. Logits with a
NaN or +inf never get here (the Sampler refuses them: NonFiniteLogits); when they hold something
else the two could round differently (no finite logit, a NaN made by a bias) the C chain declines
before drawing, and the Python chain decides.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pygguf._native import ffi as _ffi
from pygguf._native import lib as _native
from pygguf.errors import SamplerError
from pygguf.sampling.rng import Mt19937

if TYPE_CHECKING:
    from pygguf.sampling.params import SamplerParams

PENALTIES, TOP_K, TOP_P, MIN_P, TEMPERATURE = (_native.PG_CHAIN_PENALTIES, _native.PG_CHAIN_TOP_K,
                                               _native.PG_CHAIN_TOP_P, _native.PG_CHAIN_MIN_P,
                                               _native.PG_CHAIN_TEMPERATURE)
Step = tuple   # (kind, k, value, freq, present)


def plan_steps(params: SamplerParams, order: list[str], n_vocab: int, *, greedy: bool,
               dry_enabled: bool) -> list[Step] | None:
    """The C steps for the Sampler's chain (greedy: the steps _sample_greedy applies), or None
    when a step of the chain is not covered. Steps their parameters switch off are still listed
    where C skips them the same way; ones Python skips without a trace (DRY off, ...) are left out."""
    p = params
    if p.mirostat != 0:
        return None
    numbers = (p.temp, p.top_p, p.min_p, p.repeat_penalty, p.frequency_penalty, p.presence_penalty)
    if not all(math.isfinite(x) for x in numbers):
        return None    # NaN or inf parameters: the float semantics are the reference's business
    k_limit = n_vocab + 1     # min(k, n) and min_keep behave the same above the vocabulary size
    steps: list[Step] = []
    for name in order:
        if name == "penalties":
            if p.repeat_last_n > 0:
                steps.append((PENALTIES, 0, p.repeat_penalty, p.frequency_penalty, p.presence_penalty))
        elif name == "dry":
            if dry_enabled:
                return None
        elif greedy:
            continue      # Sampler._sample_greedy applies only the logit-changing samplers
        elif name == "top_n_sigma":
            if p.top_n_sigma > 0.0:
                return None
        elif name == "top_k":
            steps.append((TOP_K, min(p.top_k, k_limit), 0.0, 0.0, 0.0))
        elif name == "typ_p":
            if p.typical_p < 1.0:
                return None
        elif name == "top_p":
            steps.append((TOP_P, min(p.min_keep, k_limit), p.top_p, 0.0, 0.0))
        elif name == "min_p":
            steps.append((MIN_P, min(p.min_keep, k_limit), p.min_p, 0.0, 0.0))
        elif name == "xtc":
            if p.xtc_probability > 0.0 and p.xtc_threshold <= 0.5:
                return None
        elif name == "temperature":
            if p.dynatemp_range > 0.0:
                return None
            steps.append((TEMPERATURE, 0, p.temp, 0.0, 0.0))
        else:
            return None
    return steps if len(steps) <= _native.PG_CHAIN_MAX_STEPS else None


class FastChain:
    """One sampler's C chain: its steps, bias and scratch, built once."""

    def __init__(self, n_vocab: int, steps: list[Step], *, greedy: bool, bias: dict[int, float]):
        if any(math.isnan(v) for v in bias.values()):
            raise SamplerError("a logit bias is NaN")
        c_steps = _ffi.new("pg_chain_step[]", max(len(steps), 1))
        for i, (kind, k, value, freq, present) in enumerate(steps):
            c_steps[i].kind, c_steps[i].k = kind, int(k)
            c_steps[i].value, c_steps[i].freq, c_steps[i].present = value, freq, present
        ids = np.fromiter(bias.keys(), dtype=np.int32, count=len(bias))
        values = np.fromiter(bias.values(), dtype=np.float32, count=len(bias))
        out = _ffi.new("pg_chain **")
        rc = _native.pg_chain_new(n_vocab, c_steps, len(steps), int(greedy), _ffi.from_buffer("int32_t[]", ids),
                                  _ffi.from_buffer("float[]", values), len(bias), out)
        if rc != 0:
            raise SamplerError(f"cannot build the C sampling chain (error {rc})")
        self._chain = _ffi.gc(out[0], _native.pg_chain_free)
        self.n_vocab = n_vocab

    def sample(self, logits: np.ndarray, window, n_window: int, rng: Mt19937) -> int | None:
        """The chosen token, or None when the Python chain must decide (nothing was drawn).
        logits: C-contiguous float32 (n_vocab,); window: an int32_t cdata of >= n_window tokens."""
        token = _native.pg_chain_sample(self._chain, _ffi.from_buffer("float[]", logits), self.n_vocab,
                                        window, n_window, rng.state)
        if token >= 0:
            return token
        if token == _native.PG_CHAIN_DECLINED:
            return None
        raise SamplerError(f"the C sampling chain failed (error {token})")
