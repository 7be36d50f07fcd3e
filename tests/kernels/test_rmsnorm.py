"""RMSNorm, each instruction set's kernel against the scalar one: the same floats, bit for bit,
although the SIMD kernel sums the squares in lanes (its bracket on the sum's rounding sends the
rows it cannot decide to a term-by-term sum; some rows here are built to land there)."""
import numpy as np
import pytest

from harness import SIMD_ISAS as SIMD
from harness import rmsnorm


def test_scalar_is_the_double_sum_reference():
    x = np.random.default_rng(0).standard_normal(576).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(576).astype(np.float32)
    mean = np.float32(np.sum((x * x).astype(np.float64)) / 576)
    scale = np.float32(1) / np.sqrt(mean + np.float32(1e-5))
    np.testing.assert_allclose(rmsnorm("scalar", x, w), (x * scale) * w, rtol=1e-6)


# each ISA's kernel on many rows of each kind against the scalar one: test_kernels_vs_reference.py

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
