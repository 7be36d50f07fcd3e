"""Decode speed on a busy machine: tokens/s of one-token decode steps at -t 1 and -t 2, on an
idle machine and while one other CPU-bound process (a `while True: pass` Python) competes for
the cores, as a new user on a shared machine would run it.

Each (tree, -t) pair is a child process that loads the model once and then times on request,
so the conditions and builds can be interleaved: every repetition times every child idle, then
every child busy, in an order rotated per repetition, and the table shows medians. `--trees`
takes more than one pygguf checkout (each needs its built extension) to compare builds A/B in
one session: each child imports pygguf from its tree.

    python bench/busy.py                          # this checkout
    python bench/busy.py --trees /tmp/base,.      # before/after, interleaved
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pygguf.tools import benchmark

DEFAULT_MODEL = Path.home() / ".cache" / "pygguf" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# The child: load the model, then answer each line "N" on stdin with the tokens/s of N decode
# steps (positions 0..N-1 from an empty cache, as llama-bench's tg), after two warm-up steps.
CHILD = r"""
import sys, time
from pygguf.model import Model
from pygguf.model.batch import Batch
model = Model.load(sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), n_batch=8)
print(__import__("pygguf").__file__, flush=True)
one = Batch(1)
def step(i):
    one.clear()
    one.add((i * 7919) % 1000 + 100, i, 0, want=True)
    model.decode(one)
for line in sys.stdin:
    n = int(line)
    step(0); step(1)
    t = time.perf_counter()
    for i in range(n):
        step(i)
    print(n / (time.perf_counter() - t), flush=True)
model.close()
"""

SPIN = "while True: pass"


class Child:
    def __init__(self, tree: Path, threads: int, model: Path):
        env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.tree, self.threads = tree, threads
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(model), str(threads)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
        imported = self.proc.stdout.readline().strip()
        if not imported.startswith(str(tree.resolve())):
            raise SystemExit(f"{tree}: the child imported pygguf from {imported}")

    def tokens_per_s(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def measure(children: list[Child], reps: int, n: int) -> dict:
    """{(tree, threads, condition): [tok/s per repetition]}"""
    results: dict = {}
    for rep in range(reps):
        order = children[rep % len(children):] + children[:rep % len(children)]
        for condition in ("idle", "busy"):
            competitor = subprocess.Popen([sys.executable, "-c", SPIN]) if condition == "busy" else None
            try:
                if competitor:
                    time.sleep(0.3)   # let it start spinning
                for c in order:
                    results.setdefault((c.tree, c.threads, condition), []).append(c.tokens_per_s(n))
            finally:
                if competitor:
                    competitor.kill()
                    competitor.wait()
        print(f"rep {rep + 1}/{reps} done, loadavg {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    return results




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--trees", default=".", help="comma-separated pygguf checkouts to compare (default: this one)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-n", type=int, default=64, help="decode steps per timing")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()
    children = [Child(tree, t, args.model) for tree in trees for t in threads]
    try:
        results = measure(children, args.reps, args.n)
    finally:
        for c in children:
            c.close()
    print(f"{args.model.name}, {benchmark.cpu_name()}, {os.cpu_count()} CPUs; loadavg before {load_before[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}; median (min-max) tok/s of {args.reps} reps x {args.n} tokens")
    print(f"{'tree':<24} {'-t':>3} {'idle':>22} {'1 competitor':>22}")
    for tree in trees:
        for t in threads:
            cells = []
            for condition in ("idle", "busy"):
                v = results[(tree, t, condition)]
                cells.append(f"{statistics.median(v):7.1f} ({min(v):.0f}-{max(v):.0f})")
            print(f"{str(tree)[-24:]:<24} {t:>3} {cells[0]:>22} {cells[1]:>22}")


if __name__ == "__main__":
    main()
