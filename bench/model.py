"""Prompt processing and generation speed of a model file, as llama-bench measures them:
pp = one batch of N prompt tokens from an empty cache, tg = N tokens one at a time from an
empty cache; best of --reps, at each thread count."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import pygguf_side  # noqa: E402

from pygguf_cli.paths import default_model_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-m", "--model", default=str(default_model_path()))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(f"{Path(args.model).name}  loadavg {os.getloadavg()[0]:.2f}")
    print(f"{'-t':>3} {'pp' + str(args.p) + ' tok/s':>14} {'tg' + str(args.n) + ' tok/s':>14} {'load s':>8}")
    for threads in (int(t) for t in args.threads.split(",")):
        r = pygguf_side(Path(args.model), threads, args.p, args.n, args.reps)
        print(f"{threads:>3} {r['pp']:>14.1f} {r['tg']:>14.1f} {r['load_s']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
