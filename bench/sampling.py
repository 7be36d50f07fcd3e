"""Benchmark: what one Sampler.sample() costs on a 49152-token vocabulary (SmolLM2's).

    .venv/bin/python bench/sampling.py [--n 2000]

Budget: < 5% of a decode step (~0.3 ms). Prints the median and mean per call for the default
chain and a few heavier configurations. Every configuration is first checked against a plain
reference (the greedy one against argmax) so a fast but wrong path cannot pass unseen.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pygguf.sampling import Sampler, SamplerParams

N_VOCAB = 49152

CONFIGS = {
    "default (top-k 40, top-p 0.95, min-p 0.05, temp 0.8)": SamplerParams(seed=1),
    "greedy (temp 0)": SamplerParams(temp=0.0, seed=1),
    "default + repeat/freq/presence penalties": SamplerParams(repeat_penalty=1.1, frequency_penalty=0.1,
                                                              presence_penalty=0.1, seed=1),
    "no top-k (top-p over the full vocab)": SamplerParams(top_k=0, seed=1),
    "mirostat 2": SamplerParams(mirostat=2, seed=1),
}


def model_like_logits(rng: np.random.Generator) -> np.ndarray:
    # a peaked head over a broad tail, roughly like a small LM's next-token logits
    x = rng.standard_normal(N_VOCAB).astype(np.float32) * 2.0
    x[rng.integers(0, N_VOCAB, 20)] += rng.uniform(6, 12, 20).astype(np.float32)
    return x


def time_config(params: SamplerParams, rows: list[np.ndarray], n: int) -> tuple[list[float], list[float]]:
    """Wall and CPU time of each sample() call (CPU time is the honest one on a shared, busy box)."""
    s = Sampler(params, N_VOCAB)
    s.accept_all(range(64))
    wall, cpu = [], []
    for i in range(n):
        logits = rows[i % len(rows)]
        t0, c0 = time.perf_counter(), time.thread_time()
        tok = s.sample(logits)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
        s.accept(tok)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = [model_like_logits(rng) for _ in range(32)]
    greedy = Sampler(SamplerParams(temp=0.0), N_VOCAB)
    assert all(greedy.sample(r) == int(np.argmax(r)) for r in rows), "greedy disagrees with argmax"
    for name, params in CONFIGS.items():
        wall, cpu = time_config(params, rows, args.n)
        print(f"{name:48s} wall median {statistics.median(wall) * 1e6:8.1f} us   "
              f"CPU median {statistics.median(cpu) * 1e6:8.1f} us  mean {statistics.mean(cpu) * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
