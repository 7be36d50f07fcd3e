"""The kernel test harness: checked wrappers over the test entry points of csrc/testing/ (each
ISA's kernels called on their own, the dispatch table's choices, the model's matrix stage), for
the tests in this folder. pygguf itself never calls these; its own wrappers are pygguf/kernels.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from pygguf.model import kernels
from pygguf._native import ffi, lib
from pygguf.model.kernels import ISAS, _ptr, check
from pygguf.gguf.types import QuantType, by_name

SIMD_ISAS = [name for name in ISAS if name != "scalar"]


def qtype_of(qtype: QuantType | str) -> QuantType:
    return by_name(qtype) if isinstance(qtype, str) else qtype


def skip_reason(isa: str) -> str | None:
    """Why `isa` cannot run here, or None when it can."""
    if kernels.isa_supported(isa):
        return None
    if isa == "neon":
        return "neon: not runnable here (its gemms run under qemu: make neon-test, tests/kernels/test_neon.py)"
    return f"{isa}: this CPU lacks it (its kernels are compiled, and tested where it runs)"


def require_isa(isa: str) -> None:
    reason = skip_reason(isa)
    if reason:
        pytest.skip(reason)


# ---- the dispatch table -------------------------------------------------------------------

OPS = {"gemm": lib.PG_OP_GEMM, "gemm_r8": lib.PG_OP_GEMM_R8, "quantize_act": lib.PG_OP_QUANTIZE_ACT,
       "rmsnorm": lib.PG_OP_RMSNORM, "swiglu": lib.PG_OP_SWIGLU, "geglu": lib.PG_OP_GEGLU, "f16_row": lib.PG_OP_F16_ROW,
       "attention": lib.PG_OP_ATTENTION}


def kernel_name(isa: str, op: str, qtype: QuantType | str | None = None, ntok: int = 1, amx: bool = False,
                head_dim: int = 0) -> str | None:
    """The function the dispatch table gives `isa` for op (None: no kernel), without running it."""
    type_id = qtype_of(qtype).ggml_id if qtype is not None else -1
    name = lib.pg_kernel_name(ISAS[isa], OPS[op], type_id, ntok, int(amx), head_dim)
    return None if name == ffi.NULL else ffi.string(name).decode()


# ---- reference dot and activation quantizers --------------------------------------------------

def vec_dot(qtype: QuantType | str, n: int, w: np.ndarray, a: np.ndarray) -> float:
    """Reference dot of one weight row with one activation row (already in the activation format)."""
    qtype = qtype_of(qtype)
    s = ffi.new("float *")
    check(lib.pg_vec_dot(qtype.ggml_id, n, s, _ptr(np.ascontiguousarray(w)), _ptr(np.ascontiguousarray(a))),
          f"vec_dot {qtype.name}")
    return float(s[0])


def quantize_activation(qtype: QuantType | str, x: np.ndarray, isa: str = "scalar") -> np.ndarray:
    """floats -> raw blocks with the run-time activation quantizer an ISA's forward pass uses."""
    qtype = qtype_of(qtype)
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.zeros(qtype.row_bytes(x.size), dtype=np.uint8)
    rc = lib.pg_quantize_activation_isa(ISAS[isa], qtype.ggml_id, _ptr(x, "float *"), _ptr(out), x.size)
    if rc == lib.PG_ENOKERNEL:
        require_isa(isa)
    check(rc, f"quantize activation {qtype.name} with {isa}")
    return out


# ---- gemm -----------------------------------------------------------------------------------

def gemm(isa: str, qtype: QuantType | str, n: int, w: np.ndarray, nrows: int, a: np.ndarray, ntok: int) -> np.ndarray:
    """One ISA's single-threaded gemm: (ntok, nrows) = A (ntok, n) @ W (nrows, n)^T, A pre-quantized."""
    qtype = qtype_of(qtype)
    act = by_name(qtype.act_name)
    w = np.ascontiguousarray(w).view(np.uint8)
    a = np.ascontiguousarray(a).view(np.uint8)
    if w.size < nrows * qtype.row_bytes(n) or a.size < ntok * act.row_bytes(n):
        raise ValueError("weight or activation buffer too small")
    y = np.empty((ntok, nrows), dtype=np.float32)
    check(lib.pg_gemm(ISAS[isa], qtype.ggml_id, n, _ptr(w), qtype.row_bytes(n), nrows,
                      _ptr(a), act.row_bytes(n), ntok, _ptr(y, "float *"), nrows), f"gemm {qtype.name} {isa}")
    return y


def gemm_strided(isa: str, qtype: QuantType, n: int, w: np.ndarray, w_stride: int, nrows: int, a: np.ndarray,
                 ntok: int) -> np.ndarray:
    """pg_gemm with an explicit weight row stride (gemm always packs rows)."""
    act = by_name(qtype.act_name)
    y = np.full((ntok, nrows), np.nan, dtype=np.float32)
    rc = lib.pg_gemm(ISAS[isa], qtype.ggml_id, n, ffi.from_buffer(w), w_stride, nrows,
                     ffi.from_buffer(a), act.row_bytes(n), ntok, ffi.cast("float *", ffi.from_buffer(y)), nrows)
    assert rc == lib.PG_OK
    return y


def repack(qt: QuantType, w: np.ndarray, n: int, nrows: int) -> np.ndarray:
    """W's rows in the repacked layout (csrc/kernels/repack.h): 8-row groups (the last padded), or
    for Q4_K/Q5_K rows of the same size, each super-block's quants sliced."""
    size = lib.pg_repack_r8_bytes(qt.ggml_id, n, nrows)
    sliced = qt.name in ("Q4_K", "Q5_K")
    assert size == (nrows if sliced else -(-nrows // 8) * 8) * qt.row_bytes(n)
    out = np.zeros(max(size, 1), dtype=np.uint8)
    rc = lib.pg_repack_r8(qt.ggml_id, n, _ptr(w), qt.row_bytes(n), nrows, _ptr(out), size)
    assert rc == lib.PG_OK
    return out


def gemm_r8(isa: str, qt: QuantType, n: int, packed: np.ndarray, nrows: int, a: np.ndarray, ntok: int) -> np.ndarray:
    act = by_name(qt.act_name)
    y = np.empty((ntok, nrows), dtype=np.float32)
    rc = lib.pg_gemm_r8(ISAS[isa], qt.ggml_id, n, _ptr(packed), packed.nbytes, nrows,
                        _ptr(a), act.row_bytes(n), ntok, _ptr(y, "float *"), nrows)
    assert rc == lib.PG_OK
    return y


def gemm_amx(emulate: int, qt: QuantType, n: int, packed: np.ndarray, nrows: int, a: np.ndarray, ntok: int) -> np.ndarray:
    act = by_name(qt.act_name)
    y = np.empty((ntok, nrows), dtype=np.float32)
    rc = lib.pg_gemm_r8_amx(emulate, qt.ggml_id, n, _ptr(packed), packed.nbytes, nrows,
                            _ptr(a), act.row_bytes(n), ntok, _ptr(y, "float *"), nrows)
    assert rc == lib.PG_OK
    return y


class Matrix:
    """One weight matrix as the model holds it (pg_matrix_new): its GGUF rows, repacked as the
    model repacks them for the active ISA unless repack is False."""

    def __init__(self, qtype: QuantType | str, w: np.ndarray, nrows: int, n: int, repack: bool = True):
        self.qtype, self.nrows, self.n = qtype_of(qtype), nrows, n
        self.w = np.ascontiguousarray(w).view(np.uint8)   # the C matrix points into it
        if self.w.size < nrows * self.qtype.row_bytes(n):
            raise ValueError(f"weight buffer holds fewer than {nrows} rows of {n} {self.qtype.name} values")
        out = ffi.new("pg_matrix **")
        check(lib.pg_matrix_new(self.qtype.ggml_id, _ptr(self.w), nrows, n, int(repack), out),
              f"matrix {self.qtype.name}")
        self.handle = ffi.gc(out[0], lib.pg_matrix_free)

    def stage(self, pool: kernels.ThreadPool, x: np.ndarray, reps: int = 1) -> np.ndarray:
        """Y = X @ W^T by the forward pass's matrix stage on the pool, with the active ISA: x (n,)
        or (ntok, n) floats, quantized by the ISA's activation quantizer; y shaped like x's rows."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        ntok = 1 if x.ndim == 1 else x.shape[0]
        if x.size != ntok * self.n:
            raise ValueError(f"expected rows of {self.n} values, got shape {x.shape}")
        y = np.empty((ntok, self.nrows) if x.ndim > 1 else self.nrows, dtype=np.float32)
        check(lib.pg_matrix_stage(pool.handle, self.handle, _ptr(x, "float *"), ntok, _ptr(y, "float *"), reps),
              f"matrix stage {self.qtype.name}")
        return y


def matrix_stage(pool: kernels.ThreadPool, qtype: QuantType | str, w: np.ndarray, nrows: int, n: int,
                 x: np.ndarray, repack: bool = True) -> np.ndarray:
    """Matrix(qtype, w, nrows, n, repack).stage(pool, x)"""
    return Matrix(qtype, w, nrows, n, repack).stage(pool, x)


# ---- the forward pass's other kernels --------------------------------------------------------

def f32(a):
    return ffi.from_buffer("float[]", a)


def u16(a):
    return ffi.from_buffer("uint16_t[]", a)


def _ran(rc: int, isa: str, what: str) -> None:
    if rc == lib.PG_ENOKERNEL:
        require_isa(isa)
    check(rc, what)


def rmsnorm(isa: str, x: np.ndarray, w: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    out = np.empty_like(x)
    _ran(lib.pg_rmsnorm_isa(ISAS[isa], f32(out), f32(x), f32(w), x.size, eps), isa, "rmsnorm")
    return out


def swiglu(isa: str, g: np.ndarray, u: np.ndarray) -> np.ndarray:
    out = g.astype(np.float32).copy()
    u = np.ascontiguousarray(u, dtype=np.float32)
    _ran(lib.pg_swiglu_isa(ISAS[isa], f32(out), f32(u), out.size), isa, "swiglu")
    return out


def geglu(isa: str, g: np.ndarray, u: np.ndarray) -> np.ndarray:
    out = g.astype(np.float32).copy()
    u = np.ascontiguousarray(u, dtype=np.float32)
    _ran(lib.pg_geglu_isa(ISAS[isa], f32(out), f32(u), out.size), isa, "geglu")
    return out


def f16_row(isa: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.size, np.uint16)
    _ran(lib.pg_f16_row_isa(ISAS[isa], u16(out), f32(x), x.size), isa, "f16 row")
    return out


def attention(isa: str, q: np.ndarray, k: np.ndarray, v: np.ndarray, scale, type_k: str = "F16",
              type_v: str = "F16") -> tuple[np.ndarray, np.ndarray]:
    """out (n_rep, head_dim) and the scores (n_rep, n_kv) of q over the n_kv cached rows K, V of
    the cache types type_k, type_v (F16: binary16 bits (n_kv, head_dim); Q8_0, Q4_0: their blocks,
    (n_kv, row bytes))."""
    n_rep, head_dim = q.shape
    n_kv = k.shape[0]
    out = np.empty((n_rep, head_dim), np.float32)
    scores = np.empty((n_rep, n_kv), np.float32)
    k, v = np.ascontiguousarray(k), np.ascontiguousarray(v)
    _ran(lib.pg_attention_isa(ISAS[isa], f32(out), f32(scores), f32(q), n_rep, head_dim, n_kv,
                              by_name(type_k).ggml_id, ffi.from_buffer(k), by_name(type_v).ggml_id,
                              ffi.from_buffer(v), scale), isa, "attention")
    return out, scores


def softmax(isa: str, s) -> tuple[np.ndarray, float]:
    s = np.array(s, np.float32)
    inv = ffi.new("float *")
    _ran(lib.pg_attention_softmax_isa(ISAS[isa], f32(s), s.size, inv), isa, "softmax")
    return s, inv[0]


def expf(isa: str, x: np.ndarray) -> np.ndarray:
    y = np.empty_like(x)
    _ran(lib.pg_attention_expf_isa(ISAS[isa], f32(y), f32(x), x.size), isa, "expf")
    return y


# ---- inputs several tests share ------------------------------------------------------------

# gemm tolerance of the 32-value and float formats: the integer block dots are exact, so an ISA's
# kernel differs from the reference only in the order of float additions:
# |y - ref| <= GEMM_RTOL * sum|w*a| + GEMM_ATOL (the K-quants' kernels give the reference's bits)
GEMM_RTOL, GEMM_ATOL = 2e-5, 1e-6


def dequant_rows(qt, raw, rows, n):
    return kernels.dequantize(qt, raw, rows * n).reshape(rows, n).astype(np.float64)


def gemm_operands(name, n, rows=33, ntok=5, seed=0):
    """32-value or float format: W (rows, n) and A (ntok, n) from normal floats, and the bound
    sum|w*a| (ntok, rows) of each output"""
    qt = by_name(name)
    act = by_name(qt.act_name)
    r = np.random.default_rng(seed + n)
    w = kernels.quantize(qt, r.standard_normal((rows, n)).astype(np.float32))
    a = kernels.quantize(act, r.standard_normal((ntok, n)).astype(np.float32))
    bound = np.abs(dequant_rows(act, a, ntok, n)) @ np.abs(dequant_rows(qt, w, rows, n)).T
    return qt, act, w, a, bound


def kquant_operands(name, n, nrows, ntok, seed):
    """K-quant W (nrows, n) of small weights and Q8_K A (ntok, n)"""
    rng = np.random.default_rng(seed)
    w = kernels.quantize(name, (rng.standard_normal((nrows, n)) * 0.05).astype(np.float32))
    a = kernels.quantize("Q8_K", rng.standard_normal((ntok, n)).astype(np.float32))
    return w, a


def sample_floats():
    """every 2039th float bit pattern, and every float around the half range's edges"""
    bits = np.arange(0, 1 << 31, 2039, dtype=np.uint64).astype(np.uint32)
    edges = [np.float32(e).view(np.uint32) + np.arange(-20000, 20000) for e in (65504.0, 65520.0, 6.1035e-05, 5.96e-08)]
    signed = np.concatenate([bits] + [e.astype(np.uint32) for e in edges])
    return np.concatenate([signed, signed ^ np.uint32(0x80000000)]).view(np.float32)


def halves(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float16).view(np.uint16)


# (n_rep, head_dim) of the attention tests
ATTENTION_SHAPES = [(3, 64), (1, 64), (2, 8), (4, 24), (5, 80), (8, 128), (3, 72)]


def attention_case(seed, n_rep, head_dim, n_kv):
    """q (n_rep, head_dim), K and V (n_kv, head_dim) as binary16 bits, and the scale"""
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 1, (n_rep, head_dim)).astype(np.float32)
    k = halves(rng.normal(0, 1, (n_kv, head_dim)))
    v = halves(rng.normal(0, 1, (n_kv, head_dim)))
    return q, k, v, np.float32(1 / np.sqrt(head_dim))


# (n_rep, head_dim) of the quantized-cache attention tests: whole 32-value blocks
QUANT_ATTENTION_SHAPES = [(3, 64), (1, 64), (2, 32), (5, 96), (8, 128)]


def cache_rows(qtype: str, x: np.ndarray) -> np.ndarray:
    """rows of floats (n, head_dim) as a cache of qtype holds them: binary16 bits for F16, else
    the blocks of each row (n, row bytes), from the reference quantizer"""
    if qtype == "F16":
        return halves(x)
    return np.stack([kernels.quantize(qtype, row.astype(np.float32)) for row in x])


def attention_quant_case(seed, n_rep, head_dim, n_kv, type_k, type_v):
    """q (n_rep, head_dim) floats; K, V rows of the cache types; the scale; and the float rows K
    and V were made from"""
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 1, (n_rep, head_dim)).astype(np.float32)
    kf = rng.normal(0, 1, (n_kv, head_dim)).astype(np.float32)
    vf = rng.normal(0, 1, (n_kv, head_dim)).astype(np.float32)
    return q, cache_rows(type_k, kf), cache_rows(type_v, vf), np.float32(1 / np.sqrt(head_dim)), kf, vf
