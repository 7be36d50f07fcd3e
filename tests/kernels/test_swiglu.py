"""SwiGLU, g = silu(g) * u: a value does not depend on where a thread's share of the row is cut
(each instruction set's kernel against the libm reference and float64, over the whole float range
the forward pass meets, ragged lengths included: test_kernels_vs_reference.py)."""
import numpy as np
import pytest

from harness import SIMD_ISAS as SIMD
from harness import swiglu


@pytest.mark.parametrize("isa", SIMD)
def test_a_value_does_not_depend_on_where_the_row_is_cut(isa):
    rng = np.random.default_rng(1)
    g, u = rng.normal(0, 3, 100).astype(np.float32), rng.normal(0, 1, 100).astype(np.float32)
    whole = swiglu(isa, g, u)
    for cut in (1, 5, 8, 33):
        parts = np.concatenate([swiglu(isa, g[:cut], u[:cut]), swiglu(isa, g[cut:], u[cut:])])
        assert np.array_equal(parts, whole)
