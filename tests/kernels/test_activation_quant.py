"""The run-time activation quantizers: llama.cpp's SIMD rounding (half to even, id = 127/amax) for
Q8_0/Q8_1, where the weight quantizers keep the reference's half-away-from-zero bytes."""
import numpy as np
import pytest

from harness import quantize_activation
from pygguf.model import kernels
from pygguf._native import ffi, lib


def blocks(raw, name):
    d = raw.reshape(-1, 34 if name == "Q8_0" else 36)
    return d[:, -32:].view(np.int8)


@pytest.mark.parametrize("name", ["Q8_0", "Q8_1"])
def test_ties_round_to_even_where_the_reference_rounds_away(name):
    # amax 127 makes id exactly 1, so x * id lands on .5 ties
    x = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.0] + [0.0] * 24, dtype=np.float32)
    act = blocks(quantize_activation(name, x), name)[0]
    ref = blocks(kernels.quantize(name, x), name)[0]
    assert list(act[:8]) == [127, 0, 2, 2, 0, -2, -2, 3]
    assert list(ref[:8]) == [127, 1, 2, 3, -1, -2, -3, 3]


@pytest.mark.parametrize("name", ["Q8_0", "Q8_1"])
def test_activation_quantizer_matches_the_reference_off_ties(name):
    x = np.random.default_rng(3).standard_normal(32 * 64).astype(np.float32)
    act = quantize_activation(name, x)
    ref = kernels.quantize(name, x)
    diff = np.abs(blocks(act, name).astype(int) - blocks(ref, name).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    n = x.size
    np.testing.assert_allclose(kernels.dequantize(name, act, n), x, atol=np.abs(x).max() / 127)


def test_other_types_use_their_reference_quantizer():
    x = np.random.default_rng(4).standard_normal(256 * 4).astype(np.float32)
    assert np.array_equal(quantize_activation("Q8_K", x), kernels.quantize("Q8_K", x))


# ---- each instruction set's quantizer gives the scalar one's bytes: test_kernels_vs_reference.py

def test_activation_quantizer_isa_refuses_bad_sizes():
    x = np.zeros(33, np.float32)
    out = np.zeros(64, np.uint8)
    assert lib.pg_quantize_activation_isa(0, 8, ffi.from_buffer("float[]", x), ffi.from_buffer(out), 33) == lib.PG_EBADSIZE
    assert lib.pg_quantize_activation_isa(0, 999, ffi.from_buffer("float[]", x), ffi.from_buffer(out), 32) == lib.PG_EBADTYPE
