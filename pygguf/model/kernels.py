"""Checked wrappers over the C kernels: every return code becomes a typed exception."""
from __future__ import annotations

import numpy as np

from pygguf._native import ffi, lib
from pygguf.errors import KernelError, c_status_message
from pygguf.gguf.types import QuantType, by_name

ISAS = {"scalar": 0, "avx2": 1, "avx512": 2, "neon": 3}


def check(rc: int, what: str) -> None:
    if rc != lib.PG_OK:
        raise KernelError(f"{what}: {c_status_message(rc)}")


def _ptr(a: np.ndarray, ctype: str = "void *"):
    """A C pointer to a contiguous array's data. ffi.from_buffer costs ~0.3 us where
    ffi.cast(..., a.ctypes.data) costs ~3 us: it matters in per-call paths such as MatMul."""
    if not a.flags.c_contiguous:
        raise ValueError("array must be C-contiguous")
    if ctype == "void *":
        return ffi.from_buffer(a)
    return ffi.from_buffer(ctype.replace(" *", "[]"), a)


# ---- instruction sets ---------------------------------------------------------------------

def isa_supported(name: str) -> bool:
    return name in ISAS and bool(lib.pg_isa_supported(ISAS[name]))


def amx_available() -> bool:
    """AMX-INT8 tiles usable under the avx512 ISA (CPU, Linux's leave, PYGGUF_AMX not 0)."""
    return bool(lib.pg_amx_available())


def active_isa() -> str:
    return ffi.string(lib.pg_isa_name(lib.pg_isa_active())).decode()


def set_isa(name: str) -> None:
    if name not in ISAS:
        raise ValueError(f"unknown instruction set {name!r}; known: {', '.join(ISAS)}")
    check(lib.pg_isa_set(ISAS[name]), f"set instruction set {name}")


# ---- reference quantizer / dequantizer / dot ----------------------------------------------

def quantize(qtype: QuantType | str, x: np.ndarray) -> np.ndarray:
    """floats -> raw blocks (uint8), with the reference quantizer."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(qtype.row_bytes(x.size), dtype=np.uint8)
    check(lib.pg_quantize(qtype.ggml_id, _ptr(x, "float *"), _ptr(out), x.size), f"quantize {qtype.name}")
    return out


def quantize_activation(qtype: QuantType | str, x: np.ndarray) -> np.ndarray:
    """floats -> raw blocks with the run-time activation quantizer (what matmuls use)."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(qtype.row_bytes(x.size), dtype=np.uint8)
    check(lib.pg_quantize_activation(qtype.ggml_id, _ptr(x, "float *"), _ptr(out), x.size),
          f"quantize activation {qtype.name}")
    return out


def dequantize(qtype: QuantType | str, raw: np.ndarray, n: int) -> np.ndarray:
    """raw blocks -> n float32 values."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if raw.size < qtype.row_bytes(n):
        raise ValueError(f"{qtype.name}: {raw.size} bytes hold fewer than {n} values")
    out = np.empty(n, dtype=np.float32)
    check(lib.pg_dequantize(qtype.ggml_id, _ptr(raw), _ptr(out, "float *"), n), f"dequantize {qtype.name}")
    return out


def vec_dot(qtype: QuantType | str, n: int, w: np.ndarray, a: np.ndarray) -> float:
    """Reference dot of one weight row with one activation row (already in the activation format)."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    s = ffi.new("float *")
    check(lib.pg_vec_dot(qtype.ggml_id, n, s, _ptr(np.ascontiguousarray(w)), _ptr(np.ascontiguousarray(a))),
          f"vec_dot {qtype.name}")
    return float(s[0])


def gemm(isa: str, qtype: QuantType | str, n: int, w: np.ndarray, nrows: int, a: np.ndarray, ntok: int) -> np.ndarray:
    """One ISA's single-threaded gemm: (ntok, nrows) = A (ntok, n) @ W (nrows, n)^T, A pre-quantized."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    act = by_name(qtype.act_name)
    w = np.ascontiguousarray(w).view(np.uint8)
    a = np.ascontiguousarray(a).view(np.uint8)
    if w.size < nrows * qtype.row_bytes(n) or a.size < ntok * act.row_bytes(n):
        raise ValueError("weight or activation buffer too small")
    y = np.empty((ntok, nrows), dtype=np.float32)
    check(lib.pg_gemm(ISAS[isa], qtype.ggml_id, n, _ptr(w), qtype.row_bytes(n), nrows,
                      _ptr(a), act.row_bytes(n), ntok, _ptr(y, "float *"), nrows), f"gemm {qtype.name} {isa}")
    return y


# ---- thread pool and matmul ---------------------------------------------------------------

class ThreadPool:
    """A persistent pool of C worker threads (llama.cpp's -t)."""

    _pool = None

    def __init__(self, n_threads: int):
        if n_threads < 1:
            raise ValueError("thread count must be at least 1")
        self._pool = lib.pg_pool_new(n_threads)
        if self._pool == ffi.NULL:
            raise KernelError(f"could not start {n_threads} threads")
        self.n_threads = n_threads

    @property
    def handle(self):
        return self._pool

    def close(self) -> None:
        if self._pool is not None and self._pool != ffi.NULL:
            lib.pg_pool_free(self._pool)
        self._pool = None

    def __del__(self):
        self.close()


class MatMul:
    """Y = X @ W^T for one weight matrix, with its activation scratch allocated once."""

    def __init__(self, pool: ThreadPool, qtype: QuantType, w: np.ndarray, nrows: int, n: int, max_tokens: int = 1):
        self.pool, self.qtype, self.nrows, self.n = pool, qtype, nrows, n
        self.w = np.ascontiguousarray(w).view(np.uint8)
        if self.w.size < nrows * qtype.row_bytes(n):
            raise ValueError(f"weight buffer holds fewer than {nrows} rows of {n} {qtype.name} values")
        self.max_tokens = max_tokens
        self.scratch = np.empty(lib.pg_matmul_scratch_bytes(qtype.ggml_id, n, max_tokens), dtype=np.uint8)
        self._w_ptr, self._scratch_ptr = _ptr(self.w), _ptr(self.scratch)   # cast once, not per call
        self._row_bytes = qtype.row_bytes(n)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        ntok = 1 if x.ndim == 1 else x.shape[0]
        if x.size != ntok * self.n or ntok > self.max_tokens:
            raise ValueError(f"expected up to {self.max_tokens} rows of {self.n} values, got shape {x.shape}")
        if out is None:
            out = np.empty((ntok, self.nrows) if x.ndim > 1 else self.nrows, dtype=np.float32)
        elif out.dtype != np.float32 or out.size < ntok * self.nrows or not out.flags.c_contiguous:
            raise ValueError(f"out must be a contiguous float32 array of at least {ntok * self.nrows} values")
        rc = lib.pg_matmul(self.pool.handle, self.qtype.ggml_id, self._w_ptr, self._row_bytes, self.nrows, self.n,
                           ffi.from_buffer("float[]", x), ntok, ffi.from_buffer("float[]", out),
                           self._scratch_ptr, self.scratch.nbytes)
        if rc != lib.PG_OK:                      # the message is only built when there is an error
            check(rc, f"matmul {self.qtype.name}")
        return out
