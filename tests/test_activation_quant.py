"""The run-time activation quantizers: llama.cpp's SIMD rounding (half to even, id = 127/amax) for
Q8_0/Q8_1, where the weight quantizers keep the reference's half-away-from-zero bytes."""
import numpy as np
import pytest

from pygguf.model import kernels
def blocks(raw, name):
    d = raw.reshape(-1, 34 if name == "Q8_0" else 36)
    return d[:, -32:].view(np.int8)


@pytest.mark.parametrize("name", ["Q8_0", "Q8_1"])
def test_ties_round_to_even_where_the_reference_rounds_away(name):
    # amax 127 makes id exactly 1, so x * id lands on .5 ties
    x = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.0] + [0.0] * 24, dtype=np.float32)
    act = blocks(kernels.quantize_activation(name, x), name)[0]
    ref = blocks(kernels.quantize(name, x), name)[0]
    assert list(act[:8]) == [127, 0, 2, 2, 0, -2, -2, 3]
    assert list(ref[:8]) == [127, 1, 2, 3, -1, -2, -3, 3]


@pytest.mark.parametrize("name", ["Q8_0", "Q8_1"])
def test_activation_quantizer_matches_the_reference_off_ties(name):
    x = np.random.default_rng(3).standard_normal(32 * 64).astype(np.float32)
    act = kernels.quantize_activation(name, x)
    ref = kernels.quantize(name, x)
    diff = np.abs(blocks(act, name).astype(int) - blocks(ref, name).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    n = x.size
    np.testing.assert_allclose(kernels.dequantize(name, act, n), x, atol=np.abs(x).max() / 127)


def test_other_types_use_their_reference_quantizer():
    x = np.random.default_rng(4).standard_normal(256 * 4).astype(np.float32)
    assert np.array_equal(kernels.quantize_activation("Q8_K", x), kernels.quantize("Q8_K", x))


# ---- each instruction set's quantizer: the same bytes as the scalar one ------------------------

from pygguf._native import ffi, lib  # noqa: E402

SIMD = [name for name in kernels.ISAS if name != "scalar"]
BLOCK = {"Q8_0": 32, "Q8_1": 32, "Q8_K": 256}


def quantize_with(isa, name, x):
    from pygguf.gguf.types import by_name
    qtype = by_name(name)
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros(qtype.row_bytes(x.size), dtype=np.uint8)
    rc = lib.pg_quantize_activation_isa(kernels.ISAS[isa], qtype.ggml_id, ffi.from_buffer("float[]", x),
                                        ffi.from_buffer(out), x.size)
    if rc == lib.PG_ENOKERNEL:
        pytest.skip(f"{isa}: this CPU lacks it")
    kernels.check(rc, f"quantize {name} with {isa}")
    return out


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


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("name", ["Q8_0", "Q8_1", "Q8_K"])
def test_simd_activation_quantizer_gives_the_scalar_bytes(isa, name):
    rng = np.random.default_rng(5)
    with np.errstate(over="ignore"):
        edges = edge_blocks(name, rng, nan=False)
        inputs = [edges, np.roll(edges, 3 * BLOCK[name]), edge_blocks(name, rng)]
    for scale in (1e-3, 1.0, 40.0, 1e4):
        inputs.append((rng.standard_normal(BLOCK[name] * 97) * scale).astype(np.float32))
    inputs.append(np.round(rng.standard_normal(BLOCK[name] * 31) * 8) / 2)    # many exact ties
    mid_nan = rng.standard_normal(BLOCK[name] * 40).astype(np.float32)
    mid_nan[BLOCK[name] * 9 + 5] = np.nan                                      # NaN early in a row
    inputs.append(mid_nan)
    for x in inputs:
        want = quantize_with("scalar", name, x)
        assert np.array_equal(want, kernels.quantize_activation(name, x))
        assert np.array_equal(quantize_with(isa, name, x), want)


def test_activation_quantizer_isa_refuses_bad_sizes():
    x = np.zeros(33, np.float32)
    out = np.zeros(64, np.uint8)
    assert lib.pg_quantize_activation_isa(0, 8, ffi.from_buffer("float[]", x), ffi.from_buffer(out), 33) == lib.PG_EBADSIZE
    assert lib.pg_quantize_activation_isa(0, 999, ffi.from_buffer("float[]", x), ffi.from_buffer(out), 32) == lib.PG_EBADTYPE
