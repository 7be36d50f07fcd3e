"""The AMX tile kernel of the repacked layout (csrc/isa/r8_amx.h) must equal the AVX2 repacked gemm
bit for bit. Its driver runs everywhere with the tile product computed in C (emulate=1); the tile
instructions themselves only where the CPU has AMX-INT8 (Sapphire Rapids and later)."""
import numpy as np
import pytest

from pygguf.model import kernels
from pygguf._native import lib
from pygguf.gguf.types import by_name
from test_repack_r8 import R8_TYPES, gemm_r8, repack

pytestmark = pytest.mark.skipif(not kernels.isa_supported("avx2"), reason="the x86 kernels need AVX2")


def gemm_amx(emulate, qt, n, packed, nrows, a, ntok):
    act = by_name(qt.act_name)
    y = np.empty((ntok, nrows), dtype=np.float32)
    rc = lib.pg_gemm_r8_amx(emulate, qt.ggml_id, n, kernels._ptr(packed), packed.nbytes, nrows,
                            kernels._ptr(a), act.row_bytes(n), ntok, kernels._ptr(y, "float *"), nrows)
    assert rc == lib.PG_OK
    return y


@pytest.mark.parametrize("emulate", [1, 0], ids=["emulated", "amx"])
@pytest.mark.parametrize("name", R8_TYPES)
def test_amx_gemm_equals_avx2_repacked_gemm(emulate, name):
    if not emulate and not lib.pg_amx_available():
        pytest.skip("AMX-INT8: this CPU lacks it (or Linux does not grant it)")
    qt = by_name(name)
    act = by_name(qt.act_name)
    r = np.random.default_rng(7)
    # 4160: 130 blocks, too many for 16 tokens' scales in the table (read from the blocks instead)
    for n in (32, 96, 576, 4160):
        w = kernels.quantize(qt, r.standard_normal((33, n)).astype(np.float32))
        a = kernels.quantize(act, r.standard_normal((40, n)).astype(np.float32))
        for nrows in (1, 7, 8, 13, 33):
            ws = w[:nrows * qt.row_bytes(n)]
            packed = repack(qt, ws, n, nrows)
            for ntok in (1, 2, 3, 8, 15, 16, 17, 40):   # passes of 16 tokens and what is left
                as_ = a[:ntok * act.row_bytes(n)]
                want = gemm_r8("avx2", qt, n, packed, nrows, as_, ntok)
                got = gemm_amx(emulate, qt, n, packed, nrows, as_, ntok)
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (n, nrows, ntok)


def test_amx_gemm_rejects_bad_arguments():
    qt = by_name("Q4_1")
    n, nrows = 64, 8
    w = kernels.quantize(qt, np.ones((nrows, n), dtype=np.float32))
    packed = repack(qt, w, n, nrows)
    a = np.zeros(by_name("Q8_1").row_bytes(n), dtype=np.uint8)
    y = np.zeros(nrows, dtype=np.float32)

    def call(emulate, type_id=qt.ggml_id, packed_bytes=packed.nbytes, a_stride=a.nbytes):
        return lib.pg_gemm_r8_amx(emulate, type_id, n, kernels._ptr(packed), packed_bytes, nrows, kernels._ptr(a),
                                  a_stride, 1, kernels._ptr(y, "float *"), nrows)
    assert call(1) == lib.PG_OK
    assert call(1, packed_bytes=packed.nbytes - 1) == lib.PG_EBADARG
    assert call(1, a_stride=a.nbytes - 1) == lib.PG_EBADARG
    assert call(1, type_id=by_name("Q5_0").ggml_id) == lib.PG_ENOKERNEL
    if not lib.pg_amx_available():
        assert call(0) == lib.PG_EBADISA
