"""RMSNorm, each instruction set's kernel against the scalar one: the same floats, bit for bit,
although the SIMD kernel sums the squares in lanes (its bracket on the sum's rounding sends the
rows it cannot decide to a term-by-term sum; some rows here are built to land there)."""
import numpy as np
import pytest

from pygguf.model import kernels
from pygguf._native import ffi, lib

SIMD = [name for name in kernels.ISAS if name != "scalar"]


def rmsnorm(isa, x, w, eps=1e-5):
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    out = np.empty_like(x)
    rc = lib.pg_rmsnorm_isa(kernels.ISAS[isa], ffi.from_buffer("float[]", out), ffi.from_buffer("float[]", x),
                            ffi.from_buffer("float[]", w), x.size, eps)
    if rc == lib.PG_ENOKERNEL:
        pytest.skip(f"{isa}: this CPU lacks it")
    kernels.check(rc, "rmsnorm")
    return out


def test_scalar_is_the_double_sum_reference():
    x = np.random.default_rng(0).standard_normal(576).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(576).astype(np.float32)
    mean = np.float32(np.sum((x * x).astype(np.float64)) / 576)
    scale = np.float32(1) / np.sqrt(mean + np.float32(1e-5))
    np.testing.assert_allclose(rmsnorm("scalar", x, w), (x * scale) * w, rtol=1e-6)


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n", [576, 2048, 13, 8, 1])
def test_simd_gives_the_scalar_floats_on_many_rows(isa, n):
    rng = np.random.default_rng(n)
    w = rng.normal(1, 0.2, n).astype(np.float32)
    rows = 3000 if n < 1000 else 600
    for kind in range(3):
        for _ in range(rows // 3):
            if kind == 0:
                x = rng.standard_normal(n)
            elif kind == 1:                       # residual-stream-like: a few huge outliers
                x = rng.standard_normal(n) * np.where(rng.random(n) < 0.01, 300.0, 1.0)
            else:                                 # magnitudes over 60 binades: the sum rounds often
                x = rng.standard_normal(n) * np.exp2(rng.uniform(-30, 30, n))
            x = x.astype(np.float32)
            assert np.array_equal(rmsnorm(isa, x, w), rmsnorm("scalar", x, w))


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n", [4, 16, 64, 1024])
@pytest.mark.parametrize("small", [1, 3])
def test_simd_on_a_mean_at_a_rounding_tie(isa, n, small):
    """sum of squares = 1 + k 2^-24 (k = 1: the tie rounds down to even; k = 3: up), so sum / n
    sits halfway between two floats: the lanes' bracket cannot decide, and the kernel must take
    the reference's term-by-term sum"""
    x = np.zeros(n, np.float32)
    x[0] = 1.0
    x[1:1 + small] = 2.0 ** -12
    w = np.ones(n, np.float32)
    assert np.array_equal(rmsnorm(isa, x, w), rmsnorm("scalar", x, w))


@pytest.mark.parametrize("isa", SIMD)
def test_simd_on_special_values(isa):
    w = np.ones(16, np.float32)
    for x in (np.zeros(16), np.r_[np.inf, np.ones(15)], np.r_[np.nan, np.ones(15)], np.full(16, 3e38),
              np.full(16, 1e-40)):
        x = x.astype(np.float32)
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(rmsnorm(isa, x, w), rmsnorm("scalar", x, w))
