"""Benchmark: what one Sampler.sample() costs on a 49152-token vocabulary (SmolLM2's).

    .venv/bin/python bench/sampling.py [--n 2000] [--model FILE.gguf | --no-model]

Budget: < 5% of a decode step. Prints the median and mean per call for the default chain and a
few heavier configurations on synthetic logits, then the cost inside a real decode loop (where
the forward pass has just written the logits from both threads, so reading them costs more) on
the default model when it is present (`make model`), or on --model. Every configuration is first
checked token for token against the Python chain (the functions of pygguf.sampling.filters in
turn), so a fast but wrong path cannot pass unseen; the greedy one also against argmax.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pygguf_cli.paths import default_model_path
from pygguf.sampling import Sampler, SamplerParams

N_VOCAB = 49152
BUDGET = 0.05     # of a decode step

CONFIGS = {
    "default (top-k 40, top-p 0.95, min-p 0.05, temp 0.8)": SamplerParams(seed=1),
    "greedy (temp 0)": SamplerParams(temp=0.0, seed=1),
    "default + repeat/freq/presence penalties": SamplerParams(repeat_penalty=1.1, frequency_penalty=0.1,
                                                              presence_penalty=0.1, seed=1),
    "no top-k (top-p over the full vocab)": SamplerParams(top_k=0, seed=1),
    "mirostat 2": SamplerParams(mirostat=2, seed=1),
}
# the decode-loop figures: the chains a generation loop runs most
LOOP_CONFIGS = {"default": SamplerParams(seed=1), "greedy": SamplerParams(temp=0.0, seed=1),
                "penalties": SamplerParams(repeat_penalty=1.1, frequency_penalty=0.1, presence_penalty=0.1,
                                           seed=1)}


def model_like_logits(rng: np.random.Generator) -> np.ndarray:
    # a peaked head over a broad tail, roughly like a small LM's next-token logits
    x = rng.standard_normal(N_VOCAB).astype(np.float32) * 2.0
    x[rng.integers(0, N_VOCAB, 20)] += rng.uniform(6, 12, 20).astype(np.float32)
    return x


def python_chain(params: SamplerParams, n_vocab: int) -> Sampler:
    """A Sampler that runs the Python chain even where the C one covers the configuration."""
    s = Sampler(params, n_vocab)
    s._fast = None
    return s


def check_against_python(params: SamplerParams, rows: list[np.ndarray]) -> str:
    """Same tokens as the Python chain on every row (tokens accepted, so penalties move)."""
    fast, ref = Sampler(params, N_VOCAB), python_chain(params, N_VOCAB)
    for s in (fast, ref):
        s.accept_all(range(64))
    for x in rows:
        a, b = fast.sample(x), ref.sample(x)
        assert a == b, f"sampler disagrees with the Python chain: {a} != {b} ({params})"
        fast.accept(a)
        ref.accept(b)
    return "C chain" if fast._fast is not None else "Python chain"


def time_config(params: SamplerParams, rows: list[np.ndarray], n: int) -> tuple[list[float], list[float]]:
    """Wall and CPU time of each sample() call (CPU time is the honest one on a shared, busy box)."""
    s = Sampler(params, N_VOCAB)
    s.accept_all(range(64))
    wall, cpu = [], []
    logits = np.empty(N_VOCAB, dtype=np.float32)   # like Model.decode's reused output buffer
    for i in range(n):
        np.copyto(logits, rows[i % len(rows)])      # untimed: the model just wrote its logits
        t0, c0 = time.perf_counter(), time.thread_time()
        tok = s.sample(logits)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
        s.accept(tok)
    return wall, cpu


def in_decode_loop(path: str, steps: int = 128) -> None:
    """sample() right after each Model.decode, as a generation loop runs it: each step times one of
    the loop configurations in turn, or (as a floor) one plain read of the logits, logits.max()."""
    from pygguf.model import Model
    from pygguf.model.batch import Batch
    m = Model.load(path, n_ctx=steps + 16, n_threads=2)
    samplers = {name: Sampler(p, m.config.n_vocab) for name, p in LOOP_CONFIGS.items()}
    prompt = m.tokenizer.encode("The three primary colors are", add_special=True)
    for s in samplers.values():
        s.accept_all(prompt)
    driver = samplers["default"]
    token = driver.sample(m.decode(Batch.of(prompt))[0])
    one = Batch(1)
    timed = {name: [] for name in [*samplers, "read once (logits.max())"]}
    names = list(timed)
    step = []
    for i in range(steps):
        t0 = time.perf_counter()
        one.clear()
        one.add(token, len(prompt) + i, 0, want=True)
        logits = m.decode(one)[0]
        t1 = time.perf_counter()
        name = names[i % len(names)]
        chosen = samplers[name].sample(logits) if name in samplers else logits.max()
        timed[name].append(time.perf_counter() - t1)
        step.append(t1 - t0)
        token = chosen if name == "default" else driver.sample(logits)   # the default chain drives
        for s in samplers.values():
            s.accept(token)
    e = statistics.median(step)
    print(f"in a decode loop ({path.rsplit('/', 1)[-1]}, 2 threads): eval median {e * 1e3:.2f} ms")
    for name, times in timed.items():
        q = statistics.median(times)
        verdict = "" if name not in samplers else ("  (within the 5% budget)" if q < BUDGET * e else "  OVER the 5% budget")
        print(f"  {name:28s} median {q * 1e6:6.0f} us = {100 * q / e:4.1f}% of a step{verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--model", help="measure inside a real decode loop with this GGUF (default: the default model)")
    ap.add_argument("--no-model", action="store_true", help="skip the decode-loop measurement")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = [model_like_logits(rng) for _ in range(32)]
    greedy = Sampler(SamplerParams(temp=0.0), N_VOCAB)
    assert all(greedy.sample(r) == int(np.argmax(r)) for r in rows), "greedy disagrees with argmax"
    for name, params in CONFIGS.items():
        path = check_against_python(params, rows)
        wall, cpu = time_config(params, rows, args.n)
        print(f"{name:48s} wall median {statistics.median(wall) * 1e6:8.1f} us   "
              f"CPU median {statistics.median(cpu) * 1e6:8.1f} us  mean {statistics.mean(cpu) * 1e6:8.1f} us  [{path}]")
    model = args.model or (str(default_model_path()) if default_model_path().exists() else None)
    if args.no_model:
        return
    if model is None:
        print(f"decode loop: skipped, {default_model_path()} is missing (make model)")
        return
    in_decode_loop(model)


if __name__ == "__main__":
    main()
