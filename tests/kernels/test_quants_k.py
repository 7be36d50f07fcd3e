"""K-quants (Q2_K..Q6_K, Q8_K): reference quantizer/dequantizer/dot and every ISA's gemm.

Oracles: gguf-py's numpy dequantizers (bit for bit), llama.cpp's test-quantize-fns bounds
(round trip and dot product on its cosine data), float64 numpy, and the scalar reference gemm,
which every SIMD gemm must reproduce EXACTLY (tolerance 0: the kernels compute the same int32
per super-block and run the same float chain, see csrc/quants/kquant_unpack.h; that comparison
is test_kernels_vs_reference.py's).
"""
import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

import harness
from harness import gemm
from pygguf.model import kernels
from pygguf.gguf.types import by_name

K_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
SIMD_ISAS = ["avx2", "avx512", "neon"]
QK_K = 256

# llama.cpp tests/test-quantize-fns.cpp
MAX_TOTAL_ERROR = {"Q2_K": 0.0075, "Q3_K": 0.0040, "Q4_K": 0.002, "Q5_K": 0.002, "Q6_K": 0.002}
MAX_DOT_ERROR = {"Q2_K": 0.04, "Q3_K": 0.02, "Q4_K": 0.02, "Q5_K": 0.02, "Q6_K": 0.02}


def cosine_data(offset: float, n: int) -> np.ndarray:
    """test-quantize-fns' generate_data: 0.1 + 2*cos(i + offset), in float32 as there."""
    i = np.arange(n, dtype=np.float32)
    return (np.float32(0.1) + np.float32(2) * np.cos(i + np.float32(offset))).astype(np.float32)


def random_blocks(name: str, nblocks: int, rng) -> np.ndarray:
    """Random bytes with finite fp16 scales (every bit pattern of the quants is legal)."""
    qt = by_name(name)
    raw = rng.integers(0, 256, size=(nblocks, qt.type_size), dtype=np.uint8)
    half_offsets = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[name]
    for off in half_offsets:
        scale = rng.uniform(-2.0, 2.0, size=nblocks).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(-1)


def gguf_type(name):
    return GGMLQuantizationType[name]


# ---- dequantization: bit-exact against gguf-py ---------------------------------------------

@pytest.mark.parametrize("name", K_TYPES)
def test_dequantize_matches_gguf_py_on_random_blocks(name):
    rng = np.random.default_rng(7)
    raw = random_blocks(name, 64, rng)
    ours = kernels.dequantize(name, raw, 64 * QK_K)
    theirs = gguf_dequantize(raw, gguf_type(name)).reshape(-1).astype(np.float32)
    assert ours.view(np.uint32).tolist() == theirs.view(np.uint32).tolist()


@pytest.mark.parametrize("name", K_TYPES)
def test_dequantize_matches_gguf_py_on_edge_cases(name):
    qt = by_name(name)
    cases = [np.zeros(qt.type_size, np.uint8), np.full(qt.type_size, 255, np.uint8)]
    # all-ones bits with tiny, huge, subnormal and negative fp16 scales
    for h in (0x0001, 0x7BFF, 0x8400, 0x3C00, 0xFBFF):
        blk = np.full(qt.type_size, 0xAA, np.uint8)
        offs = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[name]
        for off in offs:
            blk[off:off + 2] = np.array([h], np.uint16).view(np.uint8)
        cases.append(blk)
    raw = np.concatenate(cases)
    n = len(cases) * QK_K
    ours = kernels.dequantize(name, raw, n)
    theirs = gguf_dequantize(raw, gguf_type(name)).reshape(-1).astype(np.float32)
    assert ours.view(np.uint32).tolist() == theirs.view(np.uint32).tolist()


def test_q8_K_dequantize_and_signed_max_scale():
    x = np.zeros(QK_K, np.float32)
    x[3], x[10] = -4.0, 3.0
    raw = kernels.quantize("Q8_K", x)
    d = raw[:4].view(np.float32)[0]
    qs = raw[4:4 + QK_K].view(np.int8)
    bsums = raw[4 + QK_K:].view(np.int16)
    assert d == np.float32(1) / (np.float32(-127) / np.float32(-4.0))   # scale from the SIGNED max
    assert qs[3] == -127 and qs[10] == round(3.0 * 127 / 4.0)
    assert bsums.tolist() == qs.astype(np.int32).reshape(16, 16).sum(axis=1).tolist()
    back = kernels.dequantize("Q8_K", raw, QK_K)
    assert np.array_equal(back, d * qs.astype(np.float32))
    # all zeros: zero scale, quants and sums
    assert not kernels.quantize("Q8_K", np.zeros(QK_K, np.float32)).any()


# ---- quantization: llama.cpp's bounds and sane edge cases ----------------------------------

@pytest.mark.parametrize("name", K_TYPES)
def test_round_trip_error_within_llama_cpp_bound(name):
    n = 4096
    x = cosine_data(0.0, n)
    back = kernels.dequantize(name, kernels.quantize(name, x), n)
    err = np.sqrt(np.sum((x.astype(np.float64) - back) ** 2)) / n   # test-quantize-fns' array_rmse
    assert err < MAX_TOTAL_ERROR[name], err


@pytest.mark.parametrize("name", K_TYPES)
def test_quantize_zeros_and_constant_blocks(name):
    zeros = np.zeros(2 * QK_K, np.float32)
    assert not kernels.dequantize(name, kernels.quantize(name, zeros), zeros.size).any()
    const = np.full(QK_K, -0.75, np.float32)
    back = kernels.dequantize(name, kernels.quantize(name, const), QK_K)
    assert np.all(np.isfinite(back)) and np.abs(back - const).max() < 0.1


@pytest.mark.parametrize("name", K_TYPES)
def test_quantize_rejects_partial_blocks(name):
    with pytest.raises(ValueError):
        kernels.quantize(name, np.zeros(QK_K + 32, np.float32))


# ---- the reference dot product -------------------------------------------------------------

@pytest.mark.parametrize("name", K_TYPES)
def test_vec_dot_error_within_llama_cpp_bound(name):
    n = 4096
    x, y = cosine_data(0.0, n), cosine_data(1.0, n)
    got = harness.vec_dot(name, n, kernels.quantize(name, x), kernels.quantize("Q8_K", y))
    exact = float(np.dot(x.astype(np.float64), y.astype(np.float64)))
    assert abs(got - exact) / n < MAX_DOT_ERROR[name]


@pytest.mark.parametrize("name", K_TYPES)
def test_vec_dot_matches_float64_of_dequantized_operands(name):
    rng = np.random.default_rng(3)
    n = 1024
    w = kernels.quantize(name, rng.standard_normal(n).astype(np.float32))
    a = kernels.quantize("Q8_K", rng.standard_normal(n).astype(np.float32))
    exact = np.dot(kernels.dequantize(name, w, n).astype(np.float64),
                   kernels.dequantize("Q8_K", a, n).astype(np.float64))
    got = harness.vec_dot(name, n, w, a)
    # the integer part is exact; only the fp32 scale products and the per-block FMAs round
    assert abs(got - exact) <= 1e-5 * (1 + np.abs(exact)) + 1e-4


# ---- gemm: every SIMD ISA against the scalar reference, exactly --------------------------

def supported_simd():
    return [isa for isa in SIMD_ISAS if kernels.isa_supported(isa)]


make_operands = harness.kquant_operands


@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_isa_availability_is_reported(isa):
    if not kernels.isa_supported(isa):
        pytest.skip(f"{isa} is not supported by this CPU (its gemm is compiled but cannot run here)")
    assert isa in supported_simd()


@pytest.mark.parametrize("name", K_TYPES)
def test_gemm_is_tiling_invariant(name):
    """Each (row, token) value is the same bits alone, in any tile, in any batch."""
    n, nrows, ntok = 768, 21, 6
    w, a = make_operands(name, n, nrows, ntok, seed=11)
    rb, ab = by_name(name).row_bytes(n), by_name("Q8_K").row_bytes(n)
    for isa in ["scalar"] + supported_simd():
        full = gemm(isa, name, n, w, nrows, a, ntok)
        for r0, r1 in [(0, 1), (3, 12), (5, 21), (8, 16), (20, 21)]:
            for t0, t1 in [(0, 1), (1, 3), (2, 6), (5, 6)]:
                part = gemm(isa, name, n, w[r0 * rb:r1 * rb], r1 - r0, a[t0 * ab:t1 * ab], t1 - t0)
                assert np.array_equal(part.view(np.uint32), full[t0:t1, r0:r1].view(np.uint32)), (isa, r0, t0)


def test_gemm_rejects_bad_arguments():
    w, a = make_operands("Q4_K", 256, 2, 1, seed=0)
    with pytest.raises(ValueError):   # not a whole number of super-blocks
        gemm("scalar", "Q4_K", 255, w, 2, a, 1)
    with pytest.raises(ValueError):
        gemm("scalar", "Q4_K", 256, w[:100], 2, a, 1)


# ---- the forward pass's matrix stage on the pool ------------------------------------------------

@pytest.mark.parametrize("name", K_TYPES)
def test_matrix_stage_threads_match_float64(name):
    rng = np.random.default_rng(5)
    n, nrows, ntok = 512, 40, 3
    qt = by_name(name)
    w_f = (rng.standard_normal((nrows, n)) * 0.05).astype(np.float32)
    raw = kernels.quantize(qt, w_f)
    x = rng.standard_normal((ntok, n)).astype(np.float32)
    wq = kernels.dequantize(qt, raw, nrows * n).reshape(nrows, n).astype(np.float64)
    xq = np.stack([kernels.dequantize("Q8_K", kernels.quantize("Q8_K", row), n) for row in x]).astype(np.float64)
    expect = xq @ wq.T
    outs = []
    for threads in (1, 2):
        y = harness.matrix_stage(kernels.ThreadPool(threads), qt, raw, nrows, n, x)
        np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-4)
        outs.append(y)
    assert np.array_equal(outs[0], outs[1])
