"""Measurement: decode tokens/s with each KV cache type (-ctk/-ctv) at a short and a long context.

    .venv/bin/python bench/kv_cache.py [-m MODEL] [-t 2] [--positions 64,4000] [--tokens 32]

For each cache type the cache is filled to each position by one prefill, then --tokens tokens are
decoded one at a time from there (the best of 3 runs). At a long context attention reads the
whole cache for every token, so a smaller cache is read faster; at a short one the weights
dominate. Timing, so not a test.
"""
from __future__ import annotations

import argparse
import time

from pygguf.model import Model
from pygguf.model.batch import Batch
from pygguf.tools import benchmark
from pygguf_cli.paths import default_model_path




def decode_rate(model: Model, position: int, n_tokens: int) -> float:
    """tokens/s of n_tokens single-token decodes starting at `position` (already filled)"""
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(n_tokens):
            model.decode(Batch.of([(i * 7919) % 1000 + 100], position + i))
        best = max(best, n_tokens / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=str(default_model_path()))
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--positions", default="64,4000")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--types", default="f16,q8_0,q4_0")
    args = ap.parse_args()
    positions = [int(p) for p in args.positions.split(",")]
    n_ctx = max(positions) + args.tokens
    print(f"{benchmark.cpu_name()}, {args.threads} threads, {args.model}")
    for cache in args.types.split(","):
        model = Model.load(args.model, n_ctx=n_ctx, n_threads=args.threads, n_batch=512, type_k=cache, type_v=cache)
        rates, filled = [], 0
        for position in positions:
            prompt = [(i * 31) % 1000 + 100 for i in range(filled, position)]
            for i in range(0, len(prompt), model.n_batch):
                model.decode(Batch.of(prompt[i:i + model.n_batch], filled + i, logits="none"))
            filled = position
            rates.append(f"{decode_rate(model, position, args.tokens):7.1f} tok/s at {position}")
        mib = model.cache.bytes(n_ctx) / 2**20
        print(f"-ctk {cache:5} -ctv {cache:5} ({mib:6.1f} MiB cache): " + ", ".join(rates))
        model.close()


if __name__ == "__main__":
    main()
