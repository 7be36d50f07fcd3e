"""Batched decoding's gemm shapes: 2..16 tokens per call, every output bit-identical to the
one-token (decode) path, on weight rows back to back and on strided rows, with row groups
cut short (R < 8) and rows long enough to take several panel chunks.

Oracle: the same ISA's gemm run one token at a time on contiguous rows (the pg_gemm_fn
contract: y[t, r] depends only on W row r and A row t).
"""
import numpy as np
import pytest

from harness import gemm, gemm_strided as raw_gemm, require_isa
from pygguf.model import kernels
from pygguf.gguf.types import by_name

LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
K_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
X86 = ["avx2", "avx512"]
NROWS = [5, 8, 13, 24]   # a short group alone, one full group, a full one and a tail, three groups
STRIDE_PAD = 96          # bytes between strided rows: not a multiple of any block size


def operands(name, n, nrows, ntok, seed):
    qt = by_name(name)
    rng = np.random.default_rng(seed)
    w = kernels.quantize(qt, rng.standard_normal((nrows, n)).astype(np.float32))
    a = kernels.quantize(by_name(qt.act_name), rng.standard_normal((ntok, n)).astype(np.float32))
    return qt, w, a


def strided(w, nrows, row_bytes, pad):
    """The same rows, each followed by `pad` bytes of noise."""
    out = np.random.default_rng(1).integers(0, 256, size=(nrows, row_bytes + pad), dtype=np.uint8)
    out[:, :row_bytes] = w.reshape(nrows, row_bytes)
    return out.reshape(-1), row_bytes + pad


def one_token_at_a_time(isa, qt, n, w, nrows, a, ntok):
    arow = by_name(qt.act_name).row_bytes(n)
    return np.stack([gemm(isa, qt, n, w, nrows, a[t * arow:(t + 1) * arow], 1)[0] for t in range(ntok)])


def check_every_token_count(isa, name, n, seed):
    nrows_max, ntok_max = max(NROWS), 16
    qt, w, a = operands(name, n, nrows_max, ntok_max, seed)
    wrow = qt.row_bytes(n)
    decode = one_token_at_a_time(isa, qt, n, w, nrows_max, a, ntok_max).view(np.uint32)
    w_strided, stride = strided(w, nrows_max, wrow, STRIDE_PAD)
    for nrows in NROWS:
        for ntok in range(2, ntok_max + 1):
            packed = gemm(isa, qt, n, w[:nrows * wrow], nrows, a, ntok).view(np.uint32)
            assert np.array_equal(packed, decode[:ntok, :nrows]), (nrows, ntok, "packed rows")
            spread = raw_gemm(isa, qt, n, w_strided, stride, nrows, a, ntok).view(np.uint32)
            assert np.array_equal(spread, decode[:ntok, :nrows]), (nrows, ntok, "strided rows")


@pytest.mark.parametrize("isa", X86)
@pytest.mark.parametrize("name", LEGACY)
@pytest.mark.parametrize("n", [576, 1600])   # one panel chunk; 50 blocks = two chunks
def test_legacy_tokens_2_to_16_equal_decode(isa, name, n):
    require_isa(isa)
    check_every_token_count(isa, name, n, seed=n)


@pytest.mark.parametrize("isa", X86)
@pytest.mark.parametrize("name", K_TYPES)
@pytest.mark.parametrize("n", [256, 2560])   # one super-block; 10 = two unpack chunks
def test_kquant_tokens_2_to_16_equal_decode(isa, name, n):
    require_isa(isa)
    check_every_token_count(isa, name, n, seed=n + 1)


def test_strided_rows_are_really_read_with_the_stride():
    """The strided layout's padding must change nothing; with the packed stride the same bytes
    give other rows (so the strided case above is not trivially the packed one)."""
    require_isa("avx2")
    qt, w, a = operands("Q4_1", 576, 8, 3, seed=5)
    w_strided, stride = strided(w, 8, qt.row_bytes(576), STRIDE_PAD)
    good = raw_gemm("avx2", qt, 576, w_strided, stride, 8, a, 3)
    wrong = raw_gemm("avx2", qt, 576, w_strided, qt.row_bytes(576), 8, a, 3)
    assert np.array_equal(good, gemm("avx2", qt, 576, w, 8, a, 3))
    assert not np.array_equal(good[:, 1:], wrong[:, 1:])
