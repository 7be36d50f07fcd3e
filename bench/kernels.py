"""Matrix x vector throughput of every weight type's kernel, beside the machine's read bandwidth.

    .venv/bin/python bench/kernels.py                 # all types, all shapes, -t 1 and -t 2
    .venv/bin/python bench/kernels.py --types Q4_1,Q8_0 --shapes 576x576 --seconds 0.3
    .venv/bin/python bench/kernels.py --gguf-rows     # never the repacked layout

GB/s = bytes of weights streamed per second through the forward pass's own matrix stage
(pg_matrix_stage, csrc/testing/model.h: one token, the decode case; the activation quantized by
every thread with the ISA's quantizer, the rows taken in the forward's chunks through
pg_weight_gemm, repacked once beforehand where the model repacks them at load), repeated inside
one C call so Python's per-call cost is not counted (the forward pass calls C once per token), on
random weights quantized with the reference quantizers. The kernel column names the function the dispatch table
chose. The read bandwidth is a plain streaming read of a 96 MiB and a 1 GiB buffer by the same C
thread pool: a memory-bound matvec cannot beat it. The last column divides by the process's CPU
time instead of wall time (one thread only): on a shared, busy box it shows what the kernel does
when it is running. This is a benchmark, not a test: the default run takes about a minute.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pygguf.model import kernels
from pygguf._native import ffi, lib
from pygguf.gguf.types import WEIGHT_TYPES, QuantType, by_name

SHAPES = [(576, 576), (1536, 576), (49152, 576), (4096, 4096), (11008, 4096)]   # (rows, cols)


def best_seconds(fn, budget: float, min_reps: int = 3, clock=time.perf_counter) -> float:
    """The fastest of repeated calls, within about `budget` seconds (after one warm-up call).
    clock=time.process_time gives CPU seconds: for one thread, immune to being descheduled."""
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or spent < budget:
        t0, w0 = clock(), time.perf_counter()
        fn()
        best, spent, reps = min(best, clock() - t0), spent + time.perf_counter() - w0, reps + 1
    return max(best, 1e-9)


def read_bandwidth(pool: kernels.ThreadPool, buf: np.ndarray, budget: float, clock=time.perf_counter) -> float:
    seconds = best_seconds(lambda: lib.pg_stream_read(pool.handle, kernels._ptr(buf), buf.nbytes), budget, clock=clock)
    return buf.nbytes / seconds / 1e9


def kernel_name(isa: str, qt: QuantType, repack: bool) -> str | None:
    """The gemm the dispatch table gives one token of this type (the repacked one where the model
    repacks)."""
    op = lib.PG_OP_GEMM_R8 if repack else lib.PG_OP_GEMM
    name = lib.pg_kernel_name(kernels.ISAS[isa], op, qt.ggml_id, 1, int(kernels.amx_available()), 0)
    if name == ffi.NULL and repack:
        return kernel_name(isa, qt, False)
    return None if name == ffi.NULL else ffi.string(name).decode()


def benchable(qt: QuantType, cols: int, isa: str, repack: bool) -> tuple[bool, str]:
    """A type is measured when its reference functions exist; K-quants only with a SIMD kernel."""
    if cols % qt.block_size:
        return False, f"cols % {qt.block_size}"
    blck, size, act = ffi.new("int64_t *"), ffi.new("size_t *"), ffi.new("int *")
    if lib.pg_type_info(qt.ggml_id, blck, size, act) != lib.PG_OK:
        return False, "no reference"
    name = kernel_name(isa, qt, repack)
    if name is None:
        return False, "no gemm"
    if qt.block_size == 256 and name.endswith("_ref"):
        return False, "no SIMD kernel"
    return True, name.removeprefix("pg_gemm_")


def matvec_gbps(qt: QuantType, floats: np.ndarray, pools: dict[int, kernels.ThreadPool], budget: float,
                repack: bool) -> dict[int, float]:
    rows, cols = floats.shape
    w = kernels.quantize(qt, floats)
    x = np.random.default_rng(1).standard_normal(cols).astype(np.float32)
    y = np.empty(rows, dtype=np.float32)
    made = ffi.new("pg_matrix **")           # repacked once, as the model does at load
    kernels.check(lib.pg_matrix_new(qt.ggml_id, kernels._ptr(w), rows, cols, int(repack), made), "matrix")
    matrix = ffi.gc(made[0], lib.pg_matrix_free)
    out = {}
    reps = max(1, 16_000_000 // w.nbytes)        # ~16 MB of weights per timed C call
    for threads, pool in pools.items():
        args = (pool.handle, matrix, kernels._ptr(x, "float *"), 1, kernels._ptr(y, "float *"), reps)
        kernels.check(lib.pg_matrix_stage(*args), "matrix stage")
        out[threads] = reps * w.nbytes / best_seconds(lambda: lib.pg_matrix_stage(*args), budget) / 1e9
        if threads == 1:
            out["cpu"] = reps * w.nbytes / best_seconds(lambda: lib.pg_matrix_stage(*args), budget,
                                                        clock=time.process_time) / 1e9
    return out


def render(header: list[str], rows: list[list[str]], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        return
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(t.name for t in WEIGHT_TYPES), help="comma-separated weight types")
    ap.add_argument("--shapes", default=",".join(f"{r}x{c}" for r, c in SHAPES), help="ROWSxCOLS,...")
    ap.add_argument("--threads", default="1,2", help="thread counts (at most 2 on the shared box)")
    ap.add_argument("--seconds", type=float, default=0.12, help="time budget per measurement")
    ap.add_argument("--gguf-rows", action="store_true", help="multiply by the GGUF rows, never the repacked layout")
    args = ap.parse_args()
    repack = not args.gguf_rows

    isa = kernels.active_isa()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the box lowers every number)")
    pools = {t: kernels.ThreadPool(t) for t in map(int, args.threads.split(","))}
    shapes = [tuple(map(int, s.lower().split("x"))) for s in args.shapes.split(",")]
    types = [by_name(t) for t in args.types.split(",")]

    bw = []
    for mib in (96, 1024):
        buf = np.ones((mib << 20) // 8, dtype=np.uint64)   # touched, so every page is mapped
        row = [f"{mib} MiB"] + [f"{read_bandwidth(p, buf, args.seconds * 2):.1f}" for p in pools.values()]
        if 1 in pools:
            row.append(f"{read_bandwidth(pools[1], buf, args.seconds * 2, clock=time.process_time):.1f}")
        bw.append(row)
        del buf
    render(["buffer"] + [f"-t {t} GB/s" for t in pools] + (["-t 1 GB/CPU-s"] if 1 in pools else []), bw,
           "streaming read")

    rng = np.random.default_rng(0)
    table = []
    for rows, cols in shapes:
        floats = rng.standard_normal((rows, cols), dtype=np.float32)
        for qt in types:
            ok, kernel = benchable(qt, cols, isa, repack)
            if not ok:
                continue
            gbps = matvec_gbps(qt, floats, pools, args.seconds, repack)
            table.append([qt.name, f"{rows}x{cols}", kernel] + [f"{gbps[t]:.1f}" for t in pools]
                         + ([f"{gbps['cpu']:.1f}"] if "cpu" in gbps else []))
        del floats
    render(["type", "shape", "kernel"] + [f"-t {t} GB/s" for t in pools]
           + (["-t 1 GB/CPU-s"] if 1 in pools else []), table,
           f"matrix x vector, weights streamed per second (ISA {isa})")


if __name__ == "__main__":
    main()
