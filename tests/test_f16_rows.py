"""F32 -> F16 rows (how keys and values enter the cache): each instruction set's conversion gives
the scalar pg_float_to_half's bits, which round to nearest even like numpy's float16."""
import numpy as np
import pytest

from pygguf.model import kernels
from pygguf._native import ffi, lib

SIMD = [name for name in kernels.ISAS if name != "scalar"]


def to_f16(isa, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.size, np.uint16)
    rc = lib.pg_f16_row_isa(kernels.ISAS[isa], ffi.from_buffer("uint16_t[]", out), ffi.from_buffer("float[]", x), x.size)
    if rc == lib.PG_ENOKERNEL:
        pytest.skip(f"{isa}: this CPU lacks it")
    kernels.check(rc, "f16 row")
    return out


def sample_floats():
    """every 2039th bit pattern, and every float around the half range's edges"""
    bits = np.arange(0, 1 << 31, 2039, dtype=np.uint64).astype(np.uint32)
    edges = [np.float32(e).view(np.uint32) + np.arange(-20000, 20000) for e in (65504.0, 65520.0, 6.1035e-05, 5.96e-08)]
    signed = np.concatenate([bits] + [e.astype(np.uint32) for e in edges])
    return np.concatenate([signed, signed ^ np.uint32(0x80000000)]).view(np.float32)


def test_scalar_rounds_like_numpy():
    x = sample_floats()
    x = x[~np.isnan(x)]
    with np.errstate(over="ignore"):
        assert np.array_equal(to_f16("scalar", x), x.astype(np.float16).view(np.uint16))


@pytest.mark.parametrize("isa", SIMD)
def test_simd_gives_the_scalar_bits(isa):
    x = sample_floats()                      # NaNs with many payloads included
    assert np.isnan(x).sum() > 1000
    assert np.array_equal(to_f16(isa, x), to_f16("scalar", x))


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 100])
def test_simd_ragged_lengths(isa, n):
    x = np.random.default_rng(n).normal(0, 100, n).astype(np.float32)
    assert np.array_equal(to_f16(isa, x), to_f16("scalar", x))
