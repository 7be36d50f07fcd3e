"""The kernel harness: every op x type x ISA of the dispatch table against its oracle, the scalar
reference (for the repacked layouts, the same ISA's GGUF-row gemm, itself checked against the
scalar one here). Each op's cases are the inputs its kernels were written against; an ISA this
machine cannot run skips with the reason (NEON's gemms run under qemu: tests/kernels/test_neon.py).

    op            types                 oracle, comparison
    gemm          32-value, float       scalar gemm, within GEMM_RTOL * sum|w*a| + GEMM_ATOL
    gemm          K-quants              scalar gemm, bit for bit
    gemm_r8       Q4_0 Q4_1 Q8_0        the ISA's GGUF-row gemm, bit for bit
    gemm_r8_amx   Q4_0 Q4_1 Q8_0        AVX2's gemm_r8, bit for bit (avx2: the tile product in C)
    quantize_act  Q8_0 Q8_1 Q8_K        scalar bytes
    rmsnorm, f16_row, softmax, exp      scalar bits (exp: libm's expf)
    swiglu                              float64, within 4e-7 relative (the reference within 1e-6)
    geglu                               scalar bits, and the scalar the numpy oracle's (geglu_oracle.py)
    attention     F16                   scalar, within 2e-6 of the largest value
    attention     Q8_0 Q4_0 K (x any V) scalar, bit for bit (exact integer block dots, the same
                                        float operations in the same order)
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import geglu_oracle
import harness as h
from pygguf.model import kernels
from pygguf.gguf.types import by_name

LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
FLOATS = ["F32", "F16", "BF16"]
K_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
R8_TYPES = ["Q4_0", "Q4_1", "Q8_0"]   # the 8-row layout (and its AMX tiles)
SLICED_TYPES = ["Q4_K", "Q5_K"]        # the sliced layout
R8_SIZES = {"8-row": [32, 96, 576, 1600], "sliced": [256, 512, 16640, 33024]}


@dataclass
class Op:
    name: str
    types: list[str]
    cases: Callable[[str], list]              # type -> the case ids
    check: Callable[[str, str, object], None]  # (isa, type, case): asserts
    isas: tuple[str, ...] = tuple(h.SIMD_ISAS)


# ---- gemm: every ISA's gemm of the GGUF rows ---------------------------------------------------

def gemm_cases(name):
    if name in K_TYPES:
        return [256, 512, 768, 1536]
    return [32, 64, 96, 576, 1536] + ([1, 7, 33, 100] if name in FLOATS else [])


def check_gemm(isa, name, n):
    h.require_isa(isa)
    if name in K_TYPES:   # exactly: same int32 per super-block, same float chain
        w, a = h.kquant_operands(name, n, 33, 5, seed=n)
        for nrows in (1, 3, 4, 5, 17, 33):
            for ntok in (1, 2, 3, 5):
                wr, ar = w[:nrows * by_name(name).row_bytes(n)], a[:ntok * by_name("Q8_K").row_bytes(n)]
                ref = h.gemm("scalar", name, n, wr, nrows, ar, ntok)
                got = h.gemm(isa, name, n, wr, nrows, ar, ntok)
                assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), (isa, nrows, ntok)
        return
    qt, act, w, a, bound = h.gemm_operands(name, n)
    wrow, arow = qt.row_bytes(n), act.row_bytes(n)
    for nrows in (1, 3, 4, 5, 17, 33):
        for ntok in (1, 2, 3, 5):
            ws, as_ = w[:nrows * wrow], a[:ntok * arow]
            ref = h.gemm("scalar", qt, n, ws, nrows, as_, ntok)
            got = h.gemm(isa, qt, n, ws, nrows, as_, ntok)
            tol = h.GEMM_RTOL * bound[:ntok, :nrows] + h.GEMM_ATOL
            bad = np.abs(got.astype(np.float64) - ref) > tol
            assert not bad.any(), f"n={n} nrows={nrows} ntok={ntok}: {got[bad][:3]} vs {ref[bad][:3]}"


# ---- the repacked layout, and the AMX tiles over it ------------------------------------------------

def require_r8(isa, name):
    h.require_isa(isa)
    if h.kernel_name(isa, "gemm_r8", name) is None:
        pytest.skip(f"{isa} has no repacked {name} kernel (its model multiplies the GGUF rows)")


def check_gemm_r8(isa, name, n):
    """8-row layout, 1 token: decode; 2..16: register tiles of 2 groups x 1-4 tokens; 17+: decoded
    panels. Sliced layout, 1..15 tokens: groups of 1-4 tokens over blocks of rows, the row in pieces
    of the reordered activation (16640 values: 3 pieces for 4 tokens; 33024: 2 for 1); 16+: the
    panels, unpacked back to natural order."""
    require_r8(isa, name)
    qt, act = by_name(name), by_name(by_name(name).act_name)
    r = np.random.default_rng(5)
    sizes = R8_SIZES["sliced" if name in SLICED_TYPES else "8-row"]
    for n_before in sizes[:sizes.index(n)]:   # the rng as the loop left it
        r.standard_normal((33, n_before)), r.standard_normal((20, n_before))
    w = kernels.quantize(qt, r.standard_normal((33, n)).astype(np.float32))
    a = kernels.quantize(act, r.standard_normal((20, n)).astype(np.float32))
    for nrows in (1, 7, 8, 13, 17, 33):
        ws = w[:nrows * qt.row_bytes(n)]
        packed = h.repack(qt, ws, n, nrows)
        for ntok in (1, 2, 3, 4, 5, 8, 11, 16, 17, 20):
            as_ = a[:ntok * act.row_bytes(n)]
            want = h.gemm(isa, qt, n, ws, nrows, as_, ntok)
            got = h.gemm_r8(isa, qt, n, packed, nrows, as_, ntok)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (n, nrows, ntok)


def check_gemm_r8_amx(isa, name, n):
    """passes of 16 tokens and what is left; 4160 = 130 blocks, too many for 16 tokens' scales in
    the table (read from the blocks instead)"""
    h.require_isa("avx2")
    emulate = isa == "avx2"
    if not emulate and not kernels.amx_available():
        pytest.skip("AMX-INT8: this CPU lacks it (or Linux does not grant it); avx2 runs the tile product in C")
    qt, act = by_name(name), by_name(by_name(name).act_name)
    r = np.random.default_rng(7)
    for n_before in [32, 96, 576, 4160][:[32, 96, 576, 4160].index(n)]:
        r.standard_normal((33, n_before)), r.standard_normal((40, n_before))
    w = kernels.quantize(qt, r.standard_normal((33, n)).astype(np.float32))
    a = kernels.quantize(act, r.standard_normal((40, n)).astype(np.float32))
    for nrows in (1, 7, 8, 13, 33):
        ws = w[:nrows * qt.row_bytes(n)]
        packed = h.repack(qt, ws, n, nrows)
        for ntok in (1, 2, 3, 8, 15, 16, 17, 40):
            as_ = a[:ntok * act.row_bytes(n)]
            want = h.gemm_r8("avx2", qt, n, packed, nrows, as_, ntok)
            got = h.gemm_amx(int(emulate), qt, n, packed, nrows, as_, ntok)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (n, nrows, ntok)


# ---- activation quantizers ----------------------------------------------------------------------

BLOCK = {"Q8_0": 32, "Q8_1": 32, "Q8_K": 256}


def edge_blocks(name, rng, nan=True):
    """blocks of BLOCK[name] values that probe every branch of the quantizers (the NaN ones last:
    a NaN sends the rest of a row to the one-block code)"""
    b = BLOCK[name]
    tiny = np.float32(1e-40)                            # subnormal: 127 / amax overflows to inf
    rows = [
        np.zeros(b), -np.zeros(b), np.full(b, 3.0), np.full(b, -2.5),
        np.r_[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.0, np.zeros(b - 8)],      # ties to even
        np.r_[-127.0, 63.5, -63.5, np.zeros(b - 3)],
        np.r_[5.0, -5.0, np.ones(b - 2)], np.r_[-5.0, 5.0, np.ones(b - 2)],      # first largest wins
        np.r_[np.ones(b - 1), -7.0], np.r_[np.ones(b // 2), 9.0, -9.0, np.ones(b // 2 - 2)],
        np.r_[np.inf, np.ones(b - 1)], np.r_[np.ones(b - 1), -np.inf], np.r_[np.inf, -np.inf, np.zeros(b - 2)],
        np.r_[tiny, -tiny, np.zeros(b - 2)], np.full(b, tiny), np.r_[3e38, -3.4e38, rng.normal(0, 1e38, b - 2)],
        rng.normal(0, 1e-30, b), rng.normal(0, 1e-42, b), rng.standard_normal(b) * 1e30,
    ]
    if nan:
        rows += [np.r_[np.nan, np.ones(b - 1)], np.r_[np.ones(b - 1), np.nan], np.r_[np.ones(3), np.nan, 8.0, np.ones(b - 5)]]
    return np.concatenate(rows).astype(np.float32)


def activation_inputs(name):
    """edge blocks (rolled, and with NaNs), normal rows at four scales, many exact ties, and a
    NaN early in a row"""
    rng = np.random.default_rng(5)
    with np.errstate(over="ignore"):
        edges = edge_blocks(name, rng, nan=False)
        inputs = [edges, np.roll(edges, 3 * BLOCK[name]), edge_blocks(name, rng)]
    for scale in (1e-3, 1.0, 40.0, 1e4):
        inputs.append((rng.standard_normal(BLOCK[name] * 97) * scale).astype(np.float32))
    inputs.append(np.round(rng.standard_normal(BLOCK[name] * 31) * 8) / 2)
    mid_nan = rng.standard_normal(BLOCK[name] * 40).astype(np.float32)
    mid_nan[BLOCK[name] * 9 + 5] = np.nan
    inputs.append(mid_nan)
    return inputs


def check_quantize_act(isa, name, _case):
    h.require_isa(isa)
    for x in activation_inputs(name):
        want = h.quantize_activation(name, x, "scalar")
        assert np.array_equal(h.quantize_activation(name, x, isa), want)


# ---- rmsnorm, SwiGLU, GEGLU, F16 rows -----------------------------------------------------------

def check_rmsnorm(isa, _type, n):
    """normal rows, residual-stream-like rows with a few huge outliers, and rows whose magnitudes
    span 60 binades (the lanes' sum rounds often: the kernel's bracket must send them to the
    term-by-term sum)"""
    h.require_isa(isa)
    rng = np.random.default_rng(n)
    w = rng.normal(1, 0.2, n).astype(np.float32)
    rows = 3000 if n < 1000 else 600
    for kind in range(3):
        for _ in range(rows // 3):
            if kind == 0:
                x = rng.standard_normal(n)
            elif kind == 1:
                x = rng.standard_normal(n) * np.where(rng.random(n) < 0.01, 300.0, 1.0)
            else:
                x = rng.standard_normal(n) * np.exp2(rng.uniform(-30, 30, n))
            x = x.astype(np.float32)
            assert np.array_equal(h.rmsnorm(isa, x, w), h.rmsnorm("scalar", x, w))


def swiglu_exact(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    g64 = g.astype(np.float64)
    with np.errstate(over="ignore"):
        return g64 / (1.0 + np.exp(-g64)) * u.astype(np.float64)


def check_swiglu(isa, _type, n):
    """the whole float range the forward pass meets, ragged lengths included"""
    h.require_isa(isa)
    rng = np.random.default_rng(n)
    g = np.concatenate([rng.normal(0, 4, n), [-100.0, -88.5, -87.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 87.0, 89.0, 100.0]])
    g = g[:max(n, 11)].astype(np.float32) if n >= 11 else g[-n:].astype(np.float32)
    u = rng.normal(0, 1, g.size).astype(np.float32)
    want, ref = swiglu_exact(g, u), h.swiglu("scalar", g, u)
    got = h.swiglu(isa, g, u)
    scale = np.maximum(np.abs(want), 1e-30)
    assert np.all(np.abs(ref - want) / scale < 1e-6)            # the reference itself
    assert np.all(np.abs(got - want) <= np.maximum(4e-7 * scale, 1e-35)), \
        f"{isa}: max rel err {np.max(np.abs(got - want) / scale):.2e}"


def geglu_gates(n: int, rng) -> np.ndarray:
    """n gates: normal ones at the scale of Gemma's FFN, then the edges: the clamps and the floats
    beside them (-9.999 rounds to the binary16 -10 and reads the table), the binary16 ties
    (nearest even), signed zeros, subnormals, halves that overflow, infinities and NaNs"""
    halves_from_1 = (np.uint16(0x3c00) + np.arange(3, dtype=np.uint16)).view(np.float16).astype(np.float32)
    ties = halves_from_1 + np.float32(2 ** -11)                       # halfway to the next binary16
    edges = np.concatenate([
        np.nextafter(np.float32([-10, -10, 10, 10]), np.float32([-11, -9, 9, 11])), [-10.0, 10.0, -9.999, 9.999],
        ties, -ties, [0.0, -0.0, 1e-30, -1e-30, 6e-8, -3e-8, 65504.0, 65520.0, -70000.0, 1e30, -1e30],
        [np.inf, -np.inf, np.nan, -np.nan]]).astype(np.float32)
    payloads = np.uint32([0x7fa00001, 0xffc12345, 0x7f800fff]).view(np.float32)   # a signalling one too
    normal = rng.normal(0, 3, max(n - edges.size - payloads.size, 0)).astype(np.float32)
    return np.concatenate([normal, edges, payloads])[-n:]


def check_geglu(isa, _type, n):
    """the reference's bits on every ISA (a NaN's payload aside), and the reference the oracle's;
    ups with infinities and NaNs beside gates <= -10 (still +0) and >= 10"""
    h.require_isa(isa)
    rng = np.random.default_rng(n)
    g = geglu_gates(n, rng)
    for u in (rng.normal(0, 1, g.size), np.resize(np.float32([np.inf, -1.0, np.nan, 2.5]), g.size)):
        u = u.astype(np.float32)
        ref, got = h.geglu("scalar", g, u), h.geglu(isa, g, u)
        assert geglu_oracle.same_floats(ref, geglu_oracle.geglu(g, u)).all()
        same = geglu_oracle.same_floats(got, ref)
        assert same.all(), f"{isa}: g={g[~same][:4]} u={u[~same][:4]}: {got[~same][:4]} vs {ref[~same][:4]}"


def check_f16_row(isa, _type, _case):
    """NaNs with many payloads included"""
    h.require_isa(isa)
    x = h.sample_floats()
    assert np.isnan(x).sum() > 1000
    assert np.array_equal(h.f16_row(isa, x), h.f16_row("scalar", x))


# ---- attention ----------------------------------------------------------------------------------

def attention_cases(_type):
    return [(n_rep, head_dim, n_kv) for n_rep, head_dim in h.ATTENTION_SHAPES for n_kv in (1, 7, 16, 61, 300)]


def check_attention(isa, _type, case):
    """close, not equal: the dot products sum in another order"""
    h.require_isa(isa)
    n_rep, head_dim, n_kv = case
    q, k, v, scale = h.attention_case(n_kv + head_dim, n_rep, head_dim, n_kv)
    out, scores = h.attention(isa, q, k, v, scale)
    ref_out, ref_scores = h.attention("scalar", q, k, v, scale)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=2e-6 * np.abs(ref_scores).max())
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=2e-6 * np.abs(ref_out).max())


def attention_quant_cases(_type_k):
    return [(n_rep, head_dim, n_kv, type_v) for n_rep, head_dim in h.QUANT_ATTENTION_SHAPES
            for n_kv in (1, 7, 8, 16, 61, 300) for type_v in ("F16", "Q8_0", "Q4_0")]


def check_attention_quant(isa, type_k, case):
    """a quantized K (and any V; a quantized V also behind an F16 K, below): the reference's bits"""
    h.require_isa(isa)
    n_rep, head_dim, n_kv, type_v = case
    q, k, v, scale, _, _ = h.attention_quant_case(n_kv * 7 + head_dim, n_rep, head_dim, n_kv, type_k, type_v)
    out, scores = h.attention(isa, q, k, v, scale, type_k, type_v)
    ref_out, ref_scores = h.attention("scalar", q, k, v, scale, type_k, type_v)
    assert np.array_equal(scores, ref_scores)
    if type_v != "F16":
        assert np.array_equal(out, ref_out)
    if type_k != "Q8_0" or type_v == "F16":
        return
    _, _, v_q, _, _, _ = h.attention_quant_case(n_kv, n_rep, head_dim, n_kv, "F16", type_v)
    k_f16 = h.cache_rows("F16", np.random.default_rng(n_kv).normal(0, 1, (n_kv, head_dim)))
    out, _ = h.attention(isa, q, k_f16, v_q, scale, "F16", type_v)
    ref_out, _ = h.attention("scalar", q, k_f16, v_q, scale, "F16", type_v)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=2e-6 * np.abs(ref_out).max())   # F16 scores' order


def check_softmax(isa, _type, n):
    """normal scores at three scales, then ties, -inf and a NaN"""
    h.require_isa(isa)
    rng = np.random.default_rng(n)
    for scale in (0.1, 3.0, 30.0):
        for _ in range(50):
            s = (rng.normal(0, scale, n)).astype(np.float32)
            e, inv = h.softmax(isa, s)
            e_ref, inv_ref = h.softmax("scalar", s)
            assert np.array_equal(e, e_ref) and inv == inv_ref
    s = np.resize(np.array([2.0, 2.0, -np.inf, 0.5, -200.0, 2.0, 1e-30, -1e-30, 0.0], np.float32), n)
    e, inv = h.softmax(isa, s)
    e_ref, inv_ref = h.softmax("scalar", s)
    assert np.array_equal(e, e_ref) and inv == inv_ref
    if n > 2:
        s[n // 2] = np.nan
        e, inv = h.softmax(isa, s)
        assert np.isnan(inv) and np.isnan(e[n // 2])


def glibc_expf() -> bool:
    """glibc 2.28 and later ship the expf whose values the AVX2 exp reproduces."""
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(int(p) for p in version.split(".")[:2]) >= (2, 28)


def check_exp(isa, _type, _case):
    """every 251st float and every float near 0, near the underflow limit and near overflow
    (all 1.1e9 floats in [-104, 0] were compared once, when the kernel was written)"""
    h.require_isa(isa)
    bits = np.arange(0, 1 << 32, 251, dtype=np.uint64).astype(np.uint32)
    dense = [np.float32(c).view(np.uint32) + np.arange(-50000, 50000) for c in (-103.97, -87.3, 88.72, 1e-3, -1e-3)]
    x = np.concatenate([bits] + [d.astype(np.uint32) for d in dense]).view(np.float32)
    x = np.concatenate([x, np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)])
    got, want = h.expf(isa, x), h.expf("scalar", x)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    if glibc_expf():
        assert same.all(), f"{(~same).sum()} differ, e.g. x={x[~same][:4]}"
    else:
        ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32))
        assert np.all(same | (ulps <= 1))


# ---- the table of ops, and the one test -------------------------------------------------------

OPS_UNDER_TEST = [
    Op("gemm", LEGACY + FLOATS + K_TYPES, gemm_cases, check_gemm),
    Op("gemm_r8", R8_TYPES + SLICED_TYPES, lambda t: R8_SIZES["sliced" if t in SLICED_TYPES else "8-row"],
       check_gemm_r8, ("avx2", "avx512")),
    Op("gemm_r8_amx", R8_TYPES, lambda t: [32, 96, 576, 4160], check_gemm_r8_amx, ("avx2", "avx512")),
    Op("quantize_act", ["Q8_0", "Q8_1", "Q8_K"], lambda t: ["rows"], check_quantize_act),
    Op("rmsnorm", ["F32"], lambda t: [576, 2048, 13, 8, 1], check_rmsnorm),
    Op("swiglu", ["F32"], lambda t: [1, 7, 8, 13, 1536, 1541], check_swiglu),
    Op("geglu", ["F32"], lambda t: [1, 7, 8, 13, 15, 16, 17, 40, 1536, 1541], check_geglu),
    Op("f16_row", ["F32"], lambda t: ["sampled"], check_f16_row),
    Op("attention", ["F16"], attention_cases, check_attention),
    Op("attention", ["Q8_0", "Q4_0"], attention_quant_cases, check_attention_quant),
    Op("softmax", ["F32"], lambda t: [1, 3, 8, 9, 61, 64, 200, 1000], check_softmax),
    Op("exp", ["F32"], lambda t: ["sampled"], check_exp),
]

CASES = [pytest.param(op, name, case, isa, id=f"{op.name}-{name}-{'x'.join(map(str, case)) if isinstance(case, tuple) else case}-{isa}")
         for op in OPS_UNDER_TEST for name in op.types for case in op.cases(name) for isa in op.isas]


@pytest.mark.parametrize("op,name,case,isa", CASES)
def test_kernel_matches_its_oracle(op, name, case, isa):
    op.check(isa, name, case)
