"""llama-bench's measurements through the one model primitive (Model.decode), and what they reach
of the machine.

A prompt test (pp N) decodes N tokens as one batch into an empty cache; a generation test (tg N)
decodes N tokens one at a time into an empty cache, as llama-bench does (no sampling, no
tokenizer). Each test is run once to warm up, then `reps` times; t/s is reported as mean and
standard deviation over the repetitions. Beside them: the GB/s of weights a generation test
streamed (bytes of the matrices one decode step multiplies by, times tokens/s) against the
machine's streaming-read rate at the same thread count, and a prompt test's GMAC/s (one
multiply-add per weight per token). Of a mixture of experts' expert tensors (blk.N.ffn_*_exps) a
token multiplies by n_used of the n_expert experts' rows, so that share of them counts.
"""
from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pygguf.model import Model
from pygguf.model.batch import Batch
from pygguf.tools.quant_mix import FILE_TYPES


def cpu_name() -> str:
    """The CPU's model name, for the line a benchmark prints beside its figures"""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"

READ_BUFFER_BYTES = 1 << 30   # far past any last-level cache: the rate a big model's weights stream at


@dataclass(frozen=True)
class BenchTest:
    kind: str      # "pp" or "tg"
    n: int

    @property
    def name(self) -> str:
        return f"{self.kind}{self.n}"


@dataclass
class ModelFacts:
    """What llama-bench's table says of a model, and the bytes one decode step reads."""
    path: Path
    arch: str
    label: str          # size label, "7B"
    ftype: str          # file type, "Q4_K_M"
    size: int           # bytes of tensor data
    params: int
    step_bytes: int     # bytes of weights one generated token reads (its experts' only)
    macs_per_token: int

    @property
    def description(self) -> str:
        return f"{self.arch} {self.label} {self.ftype}"


@dataclass
class Result:
    model: ModelFacts
    threads: int
    test: BenchTest
    samples: list[float] = field(default_factory=list)   # tokens/s per repetition
    read_gbps: float = 0.0                                 # the machine's streaming-read rate at `threads`
    type_k: str = "f16"
    type_v: str = "f16"

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    @property
    def std(self) -> float:
        return statistics.stdev(self.samples) if len(self.samples) > 1 else 0.0

    @property
    def weights_gbps(self) -> float:
        """Generation: bytes of weights streamed per second."""
        return self.model.step_bytes * self.mean / 1e9

    @property
    def gmacs(self) -> float:
        """Prompt: weight multiply-adds per second, in billions."""
        return self.model.macs_per_token * self.mean / 1e9


def model_facts(path, model: Model) -> ModelFacts:
    tensors = model.tensors
    matrices = {n: t for n, t in tensors.items() if len(t.shape) > 1 and n != "token_embd.weight"}
    if model.tied_output:
        matrices["token_embd.weight"] = tensors["token_embd.weight"]
    params = sum(int(np.prod(t.shape)) for t in tensors.values())
    c = model.config

    def per_token(name: str, amount: int) -> int:
        """amount (bytes, multiply-adds) of a matrix that one token reads: its experts' share"""
        return amount * c.n_expert_used // c.n_expert if c.n_expert and name.endswith("_exps.weight") else amount

    return ModelFacts(
        path=Path(path),
        arch=str(model.metadata.get("general.architecture", "?")),
        label=size_label(params),
        ftype=file_type_name(model.metadata.get("general.file_type")),
        size=sum(t.nbytes for t in tensors.values()),
        params=params,
        step_bytes=sum(per_token(n, t.nbytes) for n, t in matrices.items()),
        macs_per_token=sum(per_token(n, int(np.prod(t.shape))) for n, t in matrices.items()),
    )


def size_label(params: int) -> str:
    """1.10e9 -> '1B', 6.74e9 -> '7B', 1.35e8 -> '135M' (as model cards round them)."""
    if params >= 1e9:
        return f"{params / 1e9:.0f}B"
    return f"{params / 1e6:.0f}M"


def file_type_name(ftype_id) -> str:
    for f in FILE_TYPES:
        if ftype_id is not None and f.ftype_id == int(ftype_id):
            return f.name
    return "?"


def prompt_tokens(n: int, n_vocab: int) -> list[int]:
    """Deterministic token ids spread over the vocabulary (speed does not depend on which)."""
    return [(i * 7919) % (n_vocab - 100) + 100 for i in range(n)]


def run_prompt(model: Model, n: int) -> float:
    """Seconds to decode n prompt tokens into an empty cache, in n_batch-sized batches."""
    tokens = prompt_tokens(n, model.config.n_vocab)
    batches = []
    for start in range(0, n, model.n_batch):
        chunk = tokens[start:start + model.n_batch]
        batch = Batch(len(chunk))
        for i, t in enumerate(chunk):
            batch.add(t, start + i, 0, want=start + i == n - 1)
        batches.append(batch)
    t0 = time.perf_counter()
    for batch in batches:
        model.decode(batch)
    return time.perf_counter() - t0


def run_generation(model: Model, n: int) -> float:
    """Seconds to decode n tokens one at a time into an empty cache, each wanting its logits."""
    tokens = prompt_tokens(n, model.config.n_vocab)
    one = Batch(1)
    t0 = time.perf_counter()
    for i, t in enumerate(tokens):
        one.clear()
        one.add(t, i, 0, want=True)
        model.decode(one)
    return time.perf_counter() - t0


def run_test(model: Model, test: BenchTest, reps: int) -> list[float]:
    """tokens/s of each repetition, after llama-bench's warm-up (the whole prompt, or one
    generated token). Positions restart at 0 each time: the cache is overwritten, which is what
    clearing it means for a fresh run."""
    if test.kind == "pp":
        run_prompt(model, test.n)
        return [test.n / run_prompt(model, test.n) for _ in range(reps)]
    run_generation(model, 1)
    return [test.n / run_generation(model, test.n) for _ in range(reps)]


def stream_read_gbps(threads: int, reps: int = 5, nbytes: int = READ_BUFFER_BYTES) -> float:
    """The machine's streaming-read rate with `threads` threads: best of reps reads of a buffer far
    larger than the caches."""
    from pygguf._native import lib
    from pygguf.model import kernels

    buf = np.ones(nbytes // 8, dtype=np.uint64)    # touched, so every page is really there
    pool = kernels.ThreadPool(threads)
    try:
        ptr = kernels._ptr(buf)
        lib.pg_stream_read(pool.handle, ptr, buf.nbytes)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            lib.pg_stream_read(pool.handle, ptr, buf.nbytes)
            best = min(best, time.perf_counter() - t0)
        return buf.nbytes / best / 1e9
    finally:
        pool.close()


def bench_model(path, tests: list[BenchTest], threads: list[int], reps: int, read_rates: dict[int, float],
                n_batch: int = 2048, type_k: str = "f16", type_v: str = "f16",
                on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Every (threads, test) of one model file, the model loaded once per thread count with a
    context just large enough for the longest test."""
    n_ctx = max(t.n for t in tests)
    results = []
    for nt in threads:
        model = Model.load(path, n_ctx=n_ctx, n_threads=nt, n_batch=min(n_batch, n_ctx),
                           type_k=type_k, type_v=type_v)
        try:
            facts = model_facts(path, model)
            for test in tests:
                r = Result(facts, nt, test, run_test(model, test, reps), read_rates.get(nt, 0.0), type_k, type_v)
                results.append(r)
                if on_result:
                    on_result(r)
        finally:
            model.close()
    return results

