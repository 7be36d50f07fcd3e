"""The 32-value ("legacy") formats and the float formats' gemm kernels.

Oracles: gguf-py (llama.cpp's own numpy quantizers/dequantizers) for bytes and floats,
float64 numpy for dot products, the scalar reference gemm for every ISA's kernel (its plain
comparison is test_kernels_vs_reference.py's; here the shapes and values that stress it).
"""
import numpy as np
import pytest

import harness
from harness import GEMM_ATOL, GEMM_RTOL, dequant_rows, gemm, gemm_operands
from pygguf.model import kernels
from pygguf._native import ffi, lib
from pygguf.gguf.types import TYPES, by_name

gguf_quants = pytest.importorskip("gguf.quants", reason="the gguf package is the test oracle")
from gguf.constants import GGMLQuantizationType  # noqa: E402

LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
FLOATS = ["F32", "F16", "BF16"]
GEMM_TYPES = LEGACY + FLOATS
FAST_ISAS = ["avx2", "avx512", "neon"]


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- the type table ------------------------------------------------------------------------

@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_block_sizes_match_c(qt):
    blck, size, act = ffi.new("int64_t *"), ffi.new("size_t *"), ffi.new("int *")
    rc = lib.pg_type_info(qt.ggml_id, blck, size, act)
    assert rc in (lib.PG_OK, lib.PG_ENOKERNEL)
    assert (blck[0], size[0], act[0]) == (qt.block_size, qt.type_size, by_name(qt.act_name).ggml_id)
    assert lib.pg_type_alignment(qt.ggml_id) == qt.align     # what a block's address must be a multiple of
    if qt.name in LEGACY + FLOATS + ["Q8_1"]:
        assert rc == lib.PG_OK, f"{qt.name}: a reference function is missing"


# ---- dequantizers vs gguf-py -----------------------------------------------------------------

def random_blocks(name, nblocks, seed):
    """Random quant bytes with finite fp16 scales of every magnitude (normal and subnormal)."""
    qt = by_name(name)
    raw = rng(seed).integers(0, 256, size=(nblocks, qt.type_size), dtype=np.uint8)
    halves = 2 if name in ("Q4_1", "Q5_1") else 1
    for h in range(halves):
        bits = rng(seed + 10 + h).integers(0, 0x7C00, size=nblocks, dtype=np.uint16)   # finite, positive
        bits |= (rng(seed + 20 + h).integers(0, 2, size=nblocks, dtype=np.uint16) << 15)
        raw[:, 2 * h:2 * h + 2] = bits.view(np.uint8).reshape(nblocks, 2)
    return raw


def edge_blocks(name):
    """Zero blocks, extreme nibbles/bytes, subnormal/largest/negative fp16 scales."""
    qt = by_name(name)
    scales = [0x0000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF, 0x8001]
    blocks = []
    for d in scales:
        for fill in (0x00, 0xFF, 0x0F, 0xF0, 0x80, 0x7F):
            b = np.full(qt.type_size, fill, dtype=np.uint8)
            b[0:2] = np.array([d], dtype=np.uint16).view(np.uint8)
            if name in ("Q4_1", "Q5_1"):
                b[2:4] = np.array([scales[(scales.index(d) + 3) % len(scales)]], dtype=np.uint16).view(np.uint8)
            blocks.append(b)
    blocks.append(np.zeros(qt.type_size, dtype=np.uint8))
    return np.stack(blocks)


@pytest.mark.parametrize("name", LEGACY)
def test_dequantize_bit_exact_vs_gguf(name):
    qt = by_name(name)
    for raw in (random_blocks(name, 512, 1), edge_blocks(name)):
        n = raw.shape[0] * qt.block_size
        ours = kernels.dequantize(qt, raw.reshape(-1), n)
        theirs = gguf_quants.dequantize(raw.reshape(-1), GGMLQuantizationType[name]).reshape(-1).astype(np.float32)
        assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


def test_dequantize_q8_1_is_d_times_q():
    # gguf-py has no Q8_1 dequantizer: x = d * q, s ignored
    raw = random_blocks("Q8_1", 256, 3)
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = raw[:, 4:].view(np.int8).astype(np.float32)
    assert np.array_equal(kernels.dequantize("Q8_1", raw.reshape(-1), raw.shape[0] * 32), (d * q).reshape(-1))


# ---- reference quantizers vs gguf-py ---------------------------------------------------------

def quantizer_inputs():
    r = rng(5)
    blocks = [
        r.standard_normal(32 * 256).astype(np.float32),
        (r.standard_normal(32 * 64) * 1e-6).astype(np.float32),             # fp16-subnormal scales
        (r.standard_normal(32 * 64) * 3e4).astype(np.float32),              # near the fp16 max
        r.uniform(0.5, 2.0, 32 * 64).astype(np.float32),                    # all positive (mins > 0)
        np.round(r.standard_normal(32 * 64) * 8) .astype(np.float32) / 8,   # many exact ties
        np.zeros(32 * 4, dtype=np.float32),                                 # zero blocks
        np.full(32 * 4, -1.25, dtype=np.float32),                           # constant blocks
        np.tile(np.linspace(-1, 1, 32, dtype=np.float32), 8),               # evenly spread
    ]
    return np.concatenate(blocks)


@pytest.mark.filterwarnings("ignore:overflow encountered")   # blocks near the fp16 max overflow to inf, as in ggml
@pytest.mark.parametrize("name", LEGACY)
def test_reference_quantizer_bytes_match_gguf(name):
    x = quantizer_inputs()
    ours = kernels.quantize(name, x)
    theirs = gguf_quants.quantize(x.reshape(1, -1), GGMLQuantizationType[name]).reshape(-1)
    mismatch = np.flatnonzero(ours != theirs)
    assert mismatch.size == 0, f"first differing byte {mismatch[:5]}"


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_q8_1_is_q8_0_plus_block_sum():
    # gguf-py has no Q8_1 quantizer: d and qs as Q8_0, s = fp16(sum(q) * d) with d before rounding
    x = quantizer_inputs()
    q81 = kernels.quantize("Q8_1", x).reshape(-1, 36)
    q80 = gguf_quants.quantize(x.reshape(1, -1), GGMLQuantizationType.Q8_0).reshape(-1, 34)
    assert np.array_equal(q81[:, 0:2], q80[:, 0:2]) and np.array_equal(q81[:, 4:], q80[:, 2:])
    d = np.abs(x.reshape(-1, 32)).max(axis=1) / np.float32(127)
    s = (q81[:, 4:].view(np.int8).astype(np.int32).sum(axis=1).astype(np.float32) * d).astype(np.float16)
    assert np.array_equal(q81[:, 2:4].copy().view(np.uint16).reshape(-1), s.view(np.uint16))


# ---- llama.cpp's test-quantize-fns bounds ----------------------------------------------------

def synthetic(offset, n=32 * 128):
    """test-quantize-fns' data: 0.1 + 2 cos(i + offset)"""
    return (0.1 + 2 * np.cos(np.arange(n, dtype=np.float32) + np.float32(offset))).astype(np.float32)


def rmse(a, b):
    """test-quantize-fns' array_rmse: sqrt(sum of squared differences) / n"""
    return float(np.sqrt(np.sum((a.astype(np.float64) - b) ** 2)) / a.size)


@pytest.mark.parametrize("name", LEGACY + ["Q8_1"])
def test_round_trip_error_within_llama_cpp_bound(name):
    x = synthetic(0.0)
    back = kernels.dequantize(name, kernels.quantize(name, x), x.size)
    assert rmse(x, back) < 0.002   # MAX_QUANTIZATION_TOTAL_ERROR


@pytest.mark.parametrize("name", LEGACY)
def test_vec_dot_error_within_llama_cpp_bound(name):
    qt, act = by_name(name), by_name(by_name(name).act_name)
    x, y = synthetic(0.0), synthetic(1.0)
    s = harness.vec_dot(qt, x.size, kernels.quantize(qt, x), kernels.quantize(act, y))
    assert abs(s - float(x.astype(np.float64) @ y)) / x.size < 0.02   # MAX_DOT_PRODUCT_ERROR
    # and against the float64 dot of the values the blocks actually hold: only float rounding.
    # Q4_1/Q5_1 add their offset as m * s per block, s = fp16(d * sum q) stored in the Q8_1 block.
    wraw, araw = kernels.quantize(qt, x), kernels.quantize(act, y)
    wq = kernels.dequantize(qt, wraw, x.size).astype(np.float64)
    aq = kernels.dequantize(act, araw, y.size).astype(np.float64)
    if act.name == "Q8_1":
        m = np.repeat(wraw.reshape(-1, qt.type_size)[:, 2:4].copy().view(np.float16).astype(np.float64), 32)
        s_blocks = araw.reshape(-1, act.type_size)[:, 2:4].copy().view(np.float16).astype(np.float64)
        want = (wq - m) @ aq + m[::32] @ s_blocks.reshape(-1)
    else:
        want = wq @ aq
    assert abs(s - want) <= 1e-5 * (np.abs(wq) @ np.abs(aq))


# ---- every ISA's gemm vs the reference gemm, on the values and shapes that stress it ----------

require_isa = harness.require_isa


def extreme_rows(name, rows, n, seed):
    """Raw weight rows of the largest magnitudes the bytes allow (all-ones nibbles and high bits,
    Q8_0 bytes -128/127), scale 1.0: what would overflow a saturating int16 step."""
    qt = by_name(name)
    r = rng(seed)
    blocks = np.full((rows * n // 32, qt.type_size), 0xFF, dtype=np.uint8)
    if name == "Q8_0":
        blocks[:, 2:] = r.choice(np.array([0x80, 0x7F, 0x81], dtype=np.uint8), size=(blocks.shape[0], 32))
    else:
        blocks[:, 2:] = r.choice(np.array([0x00, 0xFF, 0xF0, 0x0F], dtype=np.uint8), size=(blocks.shape[0], qt.type_size - 2))
    blocks[:, 0:2] = np.array([0x3C00], dtype=np.uint16).view(np.uint8)                   # d = 1.0
    if name in ("Q4_1", "Q5_1"):
        blocks[:, 2:4] = np.array([0xBC00], dtype=np.uint16).view(np.uint8)               # m = -1.0
    return blocks.reshape(-1)


def extreme_activations(name, ntok, n, seed):
    act = by_name(by_name(name).act_name)
    qs = rng(seed).choice(np.array([127, -127], dtype=np.int8), size=(ntok * n // 32, 32))
    blocks = np.zeros((qs.shape[0], act.type_size), dtype=np.uint8)
    blocks[:, 0:2] = np.array([0x3C00], dtype=np.uint16).view(np.uint8)
    if act.name == "Q8_1":
        s = qs.astype(np.int32).sum(axis=1).astype(np.float16)
        blocks[:, 2:4] = s.view(np.uint8).reshape(-1, 2)
    blocks[:, -32:] = qs.view(np.uint8)
    return blocks.reshape(-1)


@pytest.mark.parametrize("isa", FAST_ISAS)
@pytest.mark.parametrize("name", LEGACY)
def test_gemm_extreme_values_do_not_saturate(isa, name):
    require_isa(isa)
    n, rows, ntok = 96, 6, 3
    w, a = extreme_rows(name, rows, n, 1), extreme_activations(name, ntok, n, 2)
    ref = gemm("scalar", name, n, w, rows, a, ntok)
    got = gemm(isa, name, n, w, rows, a, ntok)
    # every block sum is an integer below 2^24 with unit scales: the result is exact
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("isa", FAST_ISAS)
@pytest.mark.parametrize("name,n", [(t, 96 if t in LEGACY else 101) for t in GEMM_TYPES]
                         + [(t, 1600) for t in LEGACY])   # 50 blocks: the x86 prefill panels go in 2 chunks
def test_gemm_is_tile_invariant(isa, name, n):
    """Every output alone, and inside sub-tiles at odd offsets, equals the big gemm bit for bit."""
    require_isa(isa)
    qt, act, w, a, _ = gemm_operands(name, n, rows=17, ntok=5, seed=7)
    wrow, arow = qt.row_bytes(n), act.row_bytes(n)
    full = gemm(isa, qt, n, w, 17, a, 5)
    for r in range(17):
        for t in range(5):
            alone = gemm(isa, qt, n, w[r * wrow:(r + 1) * wrow], 1, a[t * arow:(t + 1) * arow], 1)
            assert alone.view(np.uint32)[0, 0] == full.view(np.uint32)[t, r], (r, t)
    for r0, nr, t0, nt in [(1, 5, 1, 3), (3, 9, 2, 3), (13, 4, 4, 1), (2, 15, 0, 5)]:
        part = gemm(isa, qt, n, w[r0 * wrow:(r0 + nr) * wrow], nr, a[t0 * arow:(t0 + nt) * arow], nt)
        assert np.array_equal(part.view(np.uint32), full[t0:t0 + nt, r0:r0 + nr].view(np.uint32))


@pytest.mark.parametrize("isa", FAST_ISAS)
@pytest.mark.parametrize("name", LEGACY)
def test_gemm_many_tokens_equal_one_at_a_time(isa, name):
    """40 tokens (past the x86 prefill's 32-token activation groups) x 2 panel chunks x a
    partial row group: each token's row equals that token run alone (the decode path)."""
    require_isa(isa)
    n, rows, ntok = 1600, 9, 40
    qt, act, w, a, _ = gemm_operands(name, n, rows=rows, ntok=ntok, seed=9)
    arow = act.row_bytes(n)
    full = gemm(isa, qt, n, w, rows, a, ntok)
    for t in range(ntok):
        alone = gemm(isa, qt, n, w, rows, a[t * arow:(t + 1) * arow], 1)
        assert np.array_equal(alone.view(np.uint32)[0], full.view(np.uint32)[t]), t


@pytest.mark.parametrize("name", GEMM_TYPES)
def test_avx512_equals_avx2_bit_for_bit(name):
    """Same per-output operations, only the tile shape and the integer dot instruction differ."""
    require_isa("avx2")
    require_isa("avx512")
    qt, act, w, a, _ = gemm_operands(name, 576, rows=17, ntok=5, seed=3)
    assert np.array_equal(gemm("avx2", qt, 576, w, 17, a, 5).view(np.uint32),
                          gemm("avx512", qt, 576, w, 17, a, 5).view(np.uint32))


# ---- the forward pass's matrix stage on the pool vs float64 numpy -------------------------------

# |Y - W X^T| / (|W| |X|^T): what quantizing the activations (Q8_0/Q8_1: <= half a step of
# amax/127 per value) and the weights' storage format add on top of float rounding
MATMUL_BOUND = {"Q4_0": 5e-3, "Q4_1": 5e-3, "Q5_0": 5e-3, "Q5_1": 5e-3, "Q8_0": 5e-3,
                "F32": 1e-6, "F16": 2e-3, "BF16": 1e-2}


@pytest.mark.parametrize("repack", [True, False], ids=["repacked", "gguf-rows"])
@pytest.mark.parametrize("name", GEMM_TYPES)
def test_matrix_stage_threads_vs_float64(name, repack):
    qt = by_name(name)
    n, rows, ntok = 576, 37, 3
    r = rng(11)
    w = kernels.quantize(qt, r.standard_normal((rows, n)).astype(np.float32))
    x = r.standard_normal((ntok, n)).astype(np.float32)
    wq = dequant_rows(qt, w, rows, n)
    want = x.astype(np.float64) @ wq.T
    scale = np.abs(x.astype(np.float64)) @ np.abs(wq).T
    results = []
    for threads in (1, 2):
        y = harness.matrix_stage(kernels.ThreadPool(threads), qt, w, rows, n, x, repack=repack)
        assert np.all(np.abs(y - want) <= MATMUL_BOUND[name] * scale), f"{threads} threads"
        results.append(y)
    assert np.array_equal(results[0].view(np.uint32), results[1].view(np.uint32))


@pytest.mark.parametrize("isa", FAST_ISAS)
@pytest.mark.parametrize("name", ["Q4_0", "Q5_0", "Q5_1"])
def test_decode_past_the_decoded_activation_cap(isa, name):
    """The x86 Q4_0/Q5 decode decodes the activation row's scales once per call up to 512 blocks
    and per row group beyond: both ways (and the prefill panels) give the same bits."""
    require_isa(isa)
    n, rows, ntok = 32 * 520, 11, 2
    qt, act, w, a, bound = gemm_operands(name, n, rows=rows, ntok=ntok, seed=11)
    arow = act.row_bytes(n)
    full = gemm(isa, qt, n, w, rows, a, ntok)
    ref = gemm("scalar", qt, n, w, rows, a, ntok)
    assert (np.abs(full - ref) <= GEMM_RTOL * bound + GEMM_ATOL).all()
    for t in range(ntok):
        alone = gemm(isa, qt, n, w, rows, a[t * arow:(t + 1) * arow], 1)
        assert np.array_equal(alone.view(np.uint32)[0], full.view(np.uint32)[t]), t


@pytest.mark.parametrize("isa", FAST_ISAS)
@pytest.mark.parametrize("name", ["Q5_0", "Q5_1"])
def test_q5_extreme_quants_do_not_overflow(isa, name):
    """Every weight quant 31 (all 5th bits set) against activations +-127: the largest int16
    partial sums the x86 kernels form (8 products of 31*127); d = 1 so the dots are exact."""
    require_isa(isa)
    qt = by_name(name)
    n, rows = 64, 9
    one = np.array([1.0], np.float16).view(np.uint8)
    head = [one, np.zeros(2, np.uint8)] if name == "Q5_1" else [one]   # d (, m = 0)
    block = np.concatenate(head + [np.full(4, 0xFF, np.uint8), np.full(16, 0xFF, np.uint8)])
    w = np.tile(block, rows * n // 32)
    for sign in (1, -1):
        q = np.full(32, 127 * sign, np.int8).view(np.uint8)
        s = np.array([32 * 127 * sign], np.float16).view(np.uint8)
        ablock = np.concatenate([one, s, q] if name == "Q5_1" else [one, q])
        a = np.tile(ablock, n // 32)
        want = (31 - (16 if name == "Q5_0" else 0)) * 127 * sign * n
        for ntok in (1, 3):   # decode, and the prefill panels
            got = gemm(isa, qt, n, w, rows, np.tile(a, ntok), ntok)
            assert np.array_equal(got, np.full((ntok, rows), want, np.float32)), (sign, ntok, got)
