"""Attention over the F16 cache, each instruction set's kernels against the portable reference:
the AVX2 scores and V sums against scalar code that writes out their order of operations (exact),
the AVX2 softmax against libm's expf and a term-by-term double sum (exact), the whole against
the reference (close: the dot products sum in another order), and every value independent of
where its position falls in the kernels' blocks."""
import platform

import numpy as np
import pytest

from pygguf.model import kernels
from pygguf._native import ffi, lib

SIMD = [name for name in kernels.ISAS if name != "scalar"]
SHAPES = [(3, 64), (1, 64), (2, 8), (4, 24), (5, 80), (8, 128), (3, 72)]   # (n_rep, head_dim)


def f32(a):
    return ffi.from_buffer("float[]", a)


def u16(a):
    return ffi.from_buffer("uint16_t[]", a)


def halves(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float16).view(np.uint16)


def skip_unless(isa):
    if not kernels.isa_supported(isa):
        pytest.skip(f"{isa}: this CPU lacks it")


def attention(isa, q, k, v, scale):
    n_rep, head_dim = q.shape
    n_kv = k.shape[0]
    out = np.empty((n_rep, head_dim), np.float32)
    scores = np.empty((n_rep, n_kv), np.float32)
    kernels.check(lib.pg_attention_isa(kernels.ISAS[isa], f32(out), f32(scores), f32(q), n_rep, head_dim, n_kv,
                                       u16(k), u16(v), scale), "attention")
    return out, scores


def softmax(isa, s):
    s = np.array(s, np.float32)
    inv = ffi.new("float *")
    kernels.check(lib.pg_attention_softmax_isa(kernels.ISAS[isa], f32(s), s.size, inv), "softmax")
    return s, inv[0]


def case(seed, n_rep, head_dim, n_kv):
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 1, (n_rep, head_dim)).astype(np.float32)
    k = halves(rng.normal(0, 1, (n_kv, head_dim)))
    v = halves(rng.normal(0, 1, (n_kv, head_dim)))
    return q, k, v, np.float32(1 / np.sqrt(head_dim))


@pytest.mark.parametrize("n_rep,head_dim", SHAPES)
@pytest.mark.parametrize("n_kv", [1, 5, 8, 13, 61])
def test_avx2_follows_its_written_out_order(n_rep, head_dim, n_kv):
    skip_unless("avx2")
    q, k, v, scale = case(n_kv * 100 + head_dim, n_rep, head_dim, n_kv)
    out, scores = attention("avx2", q, k, v, scale)
    s = ffi.new("float *")
    for h in range(n_rep):
        for j in range(n_kv):
            kernels.check(lib.pg_attention_score_order_avx2(s, f32(q[h]), u16(k[j]), head_dim, scale), "order")
            assert scores[h, j] == s[0], (h, j)
    p = scores.copy()
    inv = np.empty(n_rep, np.float32)
    for h in range(n_rep):
        p[h], inv[h] = softmax("scalar", scores[h])
    acc = np.empty((n_rep, head_dim), np.float32)
    kernels.check(lib.pg_attention_accumulate_order_avx2(f32(acc), f32(p), n_rep, u16(v), n_kv, head_dim), "order")
    assert np.array_equal(out, acc * inv[:, None])


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n_rep,head_dim", SHAPES)
@pytest.mark.parametrize("n_kv", [1, 7, 16, 61, 300])
def test_simd_matches_the_reference(isa, n_rep, head_dim, n_kv):
    skip_unless(isa)
    q, k, v, scale = case(n_kv + head_dim, n_rep, head_dim, n_kv)
    out, scores = attention(isa, q, k, v, scale)
    ref_out, ref_scores = attention("scalar", q, k, v, scale)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=2e-6 * np.abs(ref_scores).max())
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=2e-6 * np.abs(ref_out).max())


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n_rep,head_dim", [(3, 64), (4, 24)])
def test_a_position_does_not_depend_on_its_place_in_a_block(isa, n_rep, head_dim):
    """Rows whose probability is exactly 0 (exp underflows) change nothing: prepending 1..9 of
    them moves every real row to another lane and block without changing a bit of the output."""
    skip_unless(isa)
    q, k, v, scale = case(7, n_rep, head_dim, 21)
    q = np.abs(q)
    out, scores = attention(isa, q, k, v, scale)
    for extra in range(1, 10):
        dead = halves(np.full((extra, head_dim), -300.0))     # scores < -100 below every real one
        out2, scores2 = attention(isa, q, np.concatenate([dead, k]), np.concatenate([dead, v]), scale)
        assert np.array_equal(scores2[:, extra:], scores)
        assert np.array_equal(out2, out), extra


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n", [1, 3, 8, 9, 61, 64, 200, 1000])
def test_simd_softmax_is_the_reference_bit_for_bit(isa, n):
    skip_unless(isa)
    rng = np.random.default_rng(n)
    for scale in (0.1, 3.0, 30.0):
        for _ in range(50):
            s = (rng.normal(0, scale, n)).astype(np.float32)
            e, inv = softmax(isa, s)
            e_ref, inv_ref = softmax("scalar", s)
            assert np.array_equal(e, e_ref) and inv == inv_ref
    # ties, -inf and a NaN
    s = np.resize(np.array([2.0, 2.0, -np.inf, 0.5, -200.0, 2.0, 1e-30, -1e-30, 0.0], np.float32), n)
    e, inv = softmax(isa, s)
    e_ref, inv_ref = softmax("scalar", s)
    assert np.array_equal(e, e_ref) and inv == inv_ref
    if n > 2:
        s[n // 2] = np.nan
        e, inv = softmax(isa, s)
        assert np.isnan(inv) and np.isnan(e[n // 2])


def expf(isa, x):
    y = np.empty_like(x)
    kernels.check(lib.pg_attention_expf_isa(kernels.ISAS[isa], f32(y), f32(x), x.size), "expf")
    return y


def glibc_expf() -> bool:
    """glibc 2.28 and later ship the expf whose values the AVX2 exp reproduces."""
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(int(p) for p in version.split(".")[:2]) >= (2, 28)


@pytest.mark.parametrize("isa", SIMD)
def test_simd_exp_gives_libms_values(isa):
    """every 251st float and every float near 0, near the underflow limit and near overflow
    (all 1.1e9 floats in [-104, 0] were compared once, when the kernel was written)"""
    skip_unless(isa)
    bits = np.arange(0, 1 << 32, 251, dtype=np.uint64).astype(np.uint32)
    dense = [np.float32(c).view(np.uint32) + np.arange(-50000, 50000) for c in (-103.97, -87.3, 88.72, 1e-3, -1e-3)]
    x = np.concatenate([bits] + [d.astype(np.uint32) for d in dense]).view(np.float32)
    x = np.concatenate([x, np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)])
    got, want = expf(isa, x), expf("scalar", x)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    if glibc_expf():
        assert same.all(), f"{(~same).sum()} differ, e.g. x={x[~same][:4]}"
    else:
        ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32))
        assert np.all(same | (ulps <= 1))


def test_bad_arguments_are_refused():
    q = np.zeros((1, 8), np.float32)
    k = np.zeros((1, 8), np.uint16)
    out = np.empty((1, 8), np.float32)
    assert lib.pg_attention_isa(0, f32(out), ffi.NULL, f32(q), 1, 8, 0, u16(k), u16(k), 1.0) == lib.PG_EBADARG
    assert lib.pg_attention_isa(99, f32(out), ffi.NULL, f32(q), 1, 8, 1, u16(k), u16(k), 1.0) != lib.PG_OK
