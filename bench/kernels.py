"""Matrix x vector throughput of the weight types' kernels on model-sized matrices, beside the
machine's read bandwidth; and matrix x several tokens (prompt processing) in multiply-adds/s.

    .venv/bin/python bench/kernels.py                          # Q4_K..Q8_0, 1B/7B/13B shapes, -t 1/2
    .venv/bin/python bench/kernels.py --models 7B --types Q4_K --tokens 1,64
    .venv/bin/python bench/kernels.py --shapes 576x576 --types Q4_1,Q8_0
    .venv/bin/python bench/kernels.py --gguf-rows              # never the repacked layout

GB/s = bytes of weights streamed per second through the forward pass's own matrix stage
(pg_matrix_set_stage, csrc/testing/model.h: the activation quantized by every thread with the
ISA's quantizer, the rows taken in the forward's chunks through pg_weight_gemm, repacked once
beforehand where the model repacks them at load), over enough copies of the matrix (SET_BYTES)
that every one is read from memory, not from the L3 cache, all in one C call. The weights are
random rows quantized with the reference quantizers. The kernel column names the function the
dispatch table chose. The read bandwidth is a plain streaming read of a 96 MiB and a 1 GiB buffer
by the same C thread pool, measured in the same run: a memory-bound matvec cannot beat it, and
"% read" divides by the 1 GiB figure at the same thread count. On a shared box, compare runs only
at a similar load average (printed) and repeat them; the last column divides by the process's
CPU time instead of wall time (one thread): what the kernel does while it runs, which other
processes taking turns on the CPU do not lower. This is a benchmark, not a test.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pygguf.model import kernels
from pygguf._native import ffi, lib
from pygguf.gguf.types import QuantType, by_name

# (rows, cols) of the matrices a decode step multiplies by, per model: q, k/v, o, gate/up, down,
# output (32000-token vocabulary). TinyLlama-1.1B has 4 KV heads (k/v 256 rows); LLaMA 7B/13B
# are multi-head (k/v as q).
MODEL_SHAPES = {
    "1B": [(2048, 2048), (256, 2048), (5632, 2048), (2048, 5632), (32000, 2048)],
    "7B": [(4096, 4096), (11008, 4096), (4096, 11008), (32000, 4096)],
    "13B": [(5120, 5120), (13824, 5120), (5120, 13824), (32000, 5120)],
}
SMALL_SHAPES = [(576, 576), (1536, 576), (49152, 576)]

# Copies of a matrix cycled through until they hold this many bytes: 8x the 32 MiB L3 of the
# EPYC this was tuned on, so each copy has left every cache before its next turn and the weights
# stream from memory as a model's do (a lone 25 MB matrix would be served from L3).
SET_BYTES = 256 << 20

# Rows quantized with the (slow) reference quantizer; a bigger matrix repeats them, which costs
# memory bandwidth the same as distinct rows would
QUANTIZED_ROWS = 512


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


def quantized_rows(qt: QuantType, floats: np.ndarray, rows: int) -> np.ndarray:
    """(rows, row bytes) of blocks: QUANTIZED_ROWS rows quantized, repeated down to `rows`"""
    q = kernels.quantize(qt, floats).reshape(floats.shape[0], -1)
    return np.ascontiguousarray(np.tile(q, (-(-rows // q.shape[0]), 1))[:rows])


def matrix_set(qt: QuantType, w: np.ndarray, repack: bool, copies: int):
    """`copies` matrices with w's rows, each in its own memory, as pg_matrix handles (kept alive
    with their buffers)"""
    rows, cols = w.shape[0], w.shape[1] * qt.block_size // qt.type_size
    buffers = [w.copy() for _ in range(copies)]
    handles = []
    for b in buffers:
        made = ffi.new("pg_matrix **")           # repacked once, as the model does at load
        kernels.check(lib.pg_matrix_new(qt.ggml_id, kernels._ptr(b), rows, cols, int(repack), made), "matrix")
        handles.append(ffi.gc(made[0], lib.pg_matrix_free))
    return buffers, handles


def matvec_rates(qt: QuantType, w: np.ndarray, cols: int, pools: dict[int, kernels.ThreadPool], budget: float,
                 repack: bool, ntok: int, cached: bool) -> dict:
    """Per thread count: weight GB/s (ntok 1; the set outgrows the caches unless `cached`) or
    GMAC/s (ntok > 1)"""
    rows = w.shape[0]
    copies = max(1, -(-SET_BYTES // w.nbytes)) if ntok == 1 and not cached else 1
    buffers, handles = matrix_set(qt, w, repack, copies)
    ms = ffi.new("pg_matrix *[]", handles)
    x = np.random.default_rng(1).standard_normal((ntok, cols)).astype(np.float32)
    y = np.empty((ntok, rows), dtype=np.float32)
    out = {}
    for threads, pool in pools.items():
        args = (pool.handle, ms, copies, kernels._ptr(x, "float *"), ntok, kernels._ptr(y, "float *"), 1)
        kernels.check(lib.pg_matrix_set_stage(*args), "matrix stage")
        work = copies * (w.nbytes if ntok == 1 else rows * cols * ntok)
        out[threads] = work / best_seconds(lambda: lib.pg_matrix_set_stage(*args), budget) / 1e9
        if threads == 1:   # CPU seconds: what the kernel does while it runs, on a busy box
            out["cpu"] = work / best_seconds(lambda: lib.pg_matrix_set_stage(*args), budget,
                                             clock=time.process_time) / 1e9
    del buffers
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


def parse_shapes(args) -> list[tuple[str, int, int]]:
    if args.shapes:
        return [("", *map(int, s.lower().split("x"))) for s in args.shapes.split(",")]
    return [(m, r, c) for m in args.models.split(",") for r, c in MODEL_SHAPES[m]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q4_K,Q6_K,Q5_K,Q4_0,Q8_0", help="comma-separated weight types")
    ap.add_argument("--models", default="1B,7B,13B", help="model shape sets: " + ",".join(MODEL_SHAPES))
    ap.add_argument("--shapes", default="", help="ROWSxCOLS,... instead of the models' shapes "
                    f"(the small model's: {','.join(f'{r}x{c}' for r, c in SMALL_SHAPES)})")
    ap.add_argument("--threads", default="1,2", help="thread counts (at most 2 on the shared box)")
    ap.add_argument("--tokens", default="1", help="tokens per call: 1 = decode (GB/s), more = prompt (GMAC/s)")
    ap.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    ap.add_argument("--gguf-rows", action="store_true", help="multiply by the GGUF rows, never the repacked layout")
    ap.add_argument("--cached", action="store_true", help="one copy of each matrix, read from the caches where it "
                    "fits: what the kernel does when memory is not the limit")
    args = ap.parse_args()
    repack = not args.gguf_rows

    isa = kernels.active_isa()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other work on the box lowers every number)")
    pools = {t: kernels.ThreadPool(t) for t in map(int, args.threads.split(","))}
    types = [by_name(t) for t in args.types.split(",")]

    bw, read_gbps = [], {}
    for mib in (96, 1024):
        buf = np.ones((mib << 20) // 8, dtype=np.uint64)   # touched, so every page is mapped
        rates = {t: read_bandwidth(p, buf, args.seconds * 2) for t, p in pools.items()}
        read_gbps = rates                                   # the 1 GiB one is the yardstick
        bw.append([f"{mib} MiB"] + [f"{r:.1f}" for r in rates.values()])
        del buf
    render(["buffer"] + [f"-t {t} GB/s" for t in pools], bw, "streaming read")

    rng = np.random.default_rng(0)
    for ntok in map(int, args.tokens.split(",")):
        table = []
        for model, rows, cols in parse_shapes(args):
            floats = rng.standard_normal((min(rows, QUANTIZED_ROWS), cols), dtype=np.float32)
            for qt in types:
                ok, kernel = benchable(qt, cols, isa, repack)
                if not ok:
                    continue
                rates = matvec_rates(qt, quantized_rows(qt, floats, rows), cols, pools, args.seconds, repack, ntok,
                                     args.cached)
                cells = []
                for t in pools:
                    cells.append(f"{rates[t]:.1f}")
                    if ntok == 1:
                        cells.append(f"{100 * rates[t] / read_gbps[t]:.0f}%")
                if "cpu" in rates:
                    cells.append(f"{rates['cpu']:.1f}")
                table.append([qt.name, model, f"{rows}x{cols}", kernel] + cells)
        unit = "GB/s" if ntok == 1 else "GMAC/s"
        header = ["type", "model", "shape", "kernel"]
        for t in pools:
            header += [f"-t {t} {unit}"] + (["% read"] if ntok == 1 else [])
        if 1 in pools:
            header += [f"-t 1 {unit.split('/')[0]}/CPU-s"]
        what = ("matrix x vector, weights streamed from memory per second, % of the 1 GiB read"
                if ntok == 1 else f"matrix x {ntok} tokens, multiply-adds per second")
        render(header, table, f"{what} (ISA {isa}, load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
