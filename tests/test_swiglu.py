"""SwiGLU, g = silu(g) * u: each instruction set's kernel against the libm reference (the scalar
path), over the whole float range the forward pass meets, ragged lengths included."""
import numpy as np
import pytest

from pygguf.model import kernels
from pygguf._native import ffi, lib

SIMD = [name for name in kernels.ISAS if name != "scalar"]


def swiglu(isa: str, g: np.ndarray, u: np.ndarray) -> np.ndarray:
    out = g.astype(np.float32).copy()
    u = np.ascontiguousarray(u, dtype=np.float32)
    rc = lib.pg_swiglu_isa(kernels.ISAS[isa], ffi.from_buffer("float[]", out), ffi.from_buffer("float[]", u), out.size)
    if rc == lib.PG_ENOKERNEL:
        pytest.skip(f"{isa}: this CPU lacks it")
    kernels.check(rc, "swiglu")
    return out


def exact(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    g64 = g.astype(np.float64)
    with np.errstate(over="ignore"):
        return g64 / (1.0 + np.exp(-g64)) * u.astype(np.float64)


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n", [1, 7, 8, 13, 1536, 1541])
def test_simd_matches_the_reference(isa, n):
    rng = np.random.default_rng(n)
    g = np.concatenate([rng.normal(0, 4, n), [-100.0, -88.5, -87.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 87.0, 89.0, 100.0]])
    g = g[:max(n, 11)].astype(np.float32) if n >= 11 else g[-n:].astype(np.float32)
    u = rng.normal(0, 1, g.size).astype(np.float32)
    want, ref = exact(g, u), swiglu("scalar", g, u)
    got = swiglu(isa, g, u)
    scale = np.maximum(np.abs(want), 1e-30)
    assert np.all(np.abs(ref - want) / scale < 1e-6)            # the reference itself
    assert np.all(np.abs(got - want) <= np.maximum(4e-7 * scale, 1e-35)), f"{isa}: max rel err {np.max(np.abs(got - want) / scale):.2e}"


@pytest.mark.parametrize("isa", SIMD)
def test_a_value_does_not_depend_on_where_the_row_is_cut(isa):
    rng = np.random.default_rng(1)
    g, u = rng.normal(0, 3, 100).astype(np.float32), rng.normal(0, 1, 100).astype(np.float32)
    whole = swiglu(isa, g, u)
    for cut in (1, 5, 8, 33):
        parts = np.concatenate([swiglu(isa, g[:cut], u[:cut]), swiglu(isa, g[cut:], u[cut:])])
        assert np.array_equal(parts, whole)
