"""Checked wrappers over the C kernel API (csrc/api/): every return code becomes a typed exception.

The test and benchmark entry points (csrc/testing/) have their wrappers in tests/kernels/harness.py."""
from __future__ import annotations

import numpy as np

from pygguf._native import ffi, lib
from pygguf.errors import KernelError, c_status_message
from pygguf.gguf.types import QuantType, by_name

# instruction set name -> enum value, as csrc/api/isa.h defines them
ISAS = {ffi.string(lib.pg_isa_name(i)).decode(): i for i in range(lib.PG_ISA_COUNT)}


def check(rc: int, what: str) -> None:
    if rc != lib.PG_OK:
        raise KernelError(f"{what}: {c_status_message(rc)}")


def _ptr(a: np.ndarray, ctype: str = "void *"):
    """A C pointer to a contiguous array's data. ffi.from_buffer costs ~0.3 us where
    ffi.cast(..., a.ctypes.data) costs ~3 us: it matters in per-call paths."""
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


# ---- reference quantizer / dequantizer ----------------------------------------------------

def quantize(qtype: QuantType | str, x: np.ndarray) -> np.ndarray:
    """floats -> raw blocks (uint8), with the reference quantizer."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    x = np.require(x, np.float32, ["C", "A"]).reshape(-1)      # aligned: a view of a file may not be
    out = np.empty(qtype.row_bytes(x.size), dtype=np.uint8)
    check(lib.pg_quantize(qtype.ggml_id, _ptr(x, "float *"), _ptr(out), x.size), f"quantize {qtype.name}")
    return out


def dequantize(qtype: QuantType | str, raw: np.ndarray, n: int) -> np.ndarray:
    """raw blocks -> n float32 values."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if raw.size < qtype.row_bytes(n):
        raise ValueError(f"{qtype.name}: {raw.size} bytes hold fewer than {n} values")
    if raw.ctypes.data % qtype.align:      # a tensor of a file with general.alignment = 1: C reads blocks as structs
        raw = raw[:qtype.row_bytes(n)].copy()
    out = np.empty(n, dtype=np.float32)
    check(lib.pg_dequantize(qtype.ggml_id, _ptr(raw), _ptr(out, "float *"), n), f"dequantize {qtype.name}")
    return out


# ---- thread pool --------------------------------------------------------------------------

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
