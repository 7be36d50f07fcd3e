"""GEGLU, g = gelu(g) * u, as llama.cpp's CPU backend computes it (csrc/kernels/ref.c): the numpy
oracle of its formula (geglu_oracle.py) against llama.cpp's own table, the C reference and every
ISA against the oracle on every binary16 gate, and a value that does not depend on where a
thread's share of the row is cut. Each ISA against the reference on edge and random rows:
test_kernels_vs_reference.py."""
import hashlib

import numpy as np
import pytest

import geglu_oracle as oracle
from harness import SIMD_ISAS as SIMD
from harness import geglu, require_isa

# sha256 of the 65536 binary16 entries of ggml_table_gelu_f16 (little-endian uint16, index order)
# as llama-cpp-python 0.3.36's libggml-cpu.so (x86-64, FMA) fills it in ggml_cpu_init under
# glibc 2.36, read from the library's exported symbol. Its NaN entries are all 0x7e00 / 0xfe00.
LLAMA_CPP_GELU_TABLE_SHA256 = "5eceda6f287dec9dc0bcfa24516d6744a031a5c52d1984688b4558aeb1daf909"


def every_half() -> np.ndarray:
    """every binary16 bit pattern, as the float32 it widens to"""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def test_the_oracle_table_is_llama_cpps():
    bits = oracle.gelu_table().astype(np.float16).view(np.uint16)
    nan = np.isnan(bits.view(np.float16))
    bits = np.where(nan, (bits & 0x8000) | 0x7e00, bits).astype("<u2")   # a NaN's payload aside
    assert hashlib.sha256(bits.tobytes()).hexdigest() == LLAMA_CPP_GELU_TABLE_SHA256


def test_the_oracle_needs_the_fma():
    """the one entry that 1 + 0.044715 x x rounded twice would move (what a build without FMA has)"""
    x = np.float32(np.float16(-1.999))
    inner = oracle.ONE + oracle.GELU_COEF_A * x * x
    unfused = oracle.HALF * x * (oracle.ONE + np.float32(np.tanh(np.float64(oracle.SQRT_2_OVER_PI * x * inner))))
    assert np.float16(unfused) != np.float16(oracle.gelu_f32(np.array([x]))[0])


@pytest.mark.parametrize("isa", ["scalar"] + SIMD)
def test_every_binary16_gate_matches_the_oracle(isa):
    """u = 1 reads each table entry as it is; the clamps take +-10 and beyond, NaN reads a NaN
    entry, -0 and the subnormals their own"""
    require_isa(isa)
    x = every_half()
    got, want = geglu(isa, x, np.ones_like(x)), oracle.geglu(x, np.ones_like(x))
    same = oracle.same_floats(got, want)
    assert same.all(), f"{(~same).sum()} differ, e.g. x={x[~same][:4]}: {got[~same][:4]} vs {want[~same][:4]}"
    assert np.all(got[x <= -10] == 0) and np.array_equal(got[x >= 10], x[x >= 10])
    assert np.isnan(got[np.isnan(x)]).all()


@pytest.mark.parametrize("isa", SIMD)
def test_a_value_does_not_depend_on_where_the_row_is_cut(isa):
    rng = np.random.default_rng(1)
    g, u = rng.normal(0, 4, 100).astype(np.float32), rng.normal(0, 1, 100).astype(np.float32)
    whole = geglu(isa, g, u)
    for cut in (1, 5, 8, 16, 33):
        parts = np.concatenate([geglu(isa, g[:cut], u[:cut]), geglu(isa, g[cut:], u[cut:])])
        assert np.array_equal(parts, whole)
