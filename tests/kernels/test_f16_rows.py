"""F32 -> F16 rows (how keys and values enter the cache): each instruction set's conversion gives
the scalar pg_float_to_half's bits, which round to nearest even like numpy's float16."""
import numpy as np
import pytest

from harness import SIMD_ISAS as SIMD
from harness import f16_row as to_f16
from harness import sample_floats


def test_scalar_rounds_like_numpy():
    x = sample_floats()
    x = x[~np.isnan(x)]
    with np.errstate(over="ignore"):
        assert np.array_equal(to_f16("scalar", x), x.astype(np.float16).view(np.uint16))


# each ISA's conversion of sample_floats (NaNs included) against the scalar one:
# test_kernels_vs_reference.py

@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 100])
def test_simd_ragged_lengths(isa, n):
    x = np.random.default_rng(n).normal(0, 100, n).astype(np.float32)
    assert np.array_equal(to_f16(isa, x), to_f16("scalar", x))
