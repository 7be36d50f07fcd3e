"""The repacked 8-row layout (csrc/repack.c, api/repack.h): its x86 gemm must equal the GGUF-layout
gemm of the same ISA bit for bit, for every row count (groups padded) and token count."""
import numpy as np
import pytest

from pygguf.model import kernels
from pygguf._native import ffi, lib
from pygguf.gguf.types import by_name

R8_TYPES = ["Q4_0", "Q4_1", "Q8_0"]


def repack(qt, w, n, nrows):
    size = lib.pg_repack_r8_bytes(qt.ggml_id, n, nrows)
    assert size == -(-nrows // 8) * 8 * qt.row_bytes(n)
    out = np.zeros(max(size, 1), dtype=np.uint8)
    rc = lib.pg_repack_r8(qt.ggml_id, n, kernels._ptr(w), qt.row_bytes(n), nrows, kernels._ptr(out), size)
    assert rc == lib.PG_OK
    return out


def gemm_r8(isa, qt, n, packed, nrows, a, ntok):
    act = by_name(qt.act_name)
    y = np.empty((ntok, nrows), dtype=np.float32)
    rc = lib.pg_gemm_r8(kernels.ISAS[isa], qt.ggml_id, n, kernels._ptr(packed), packed.nbytes, nrows,
                        kernels._ptr(a), act.row_bytes(n), ntok, kernels._ptr(y, "float *"), nrows)
    assert rc == lib.PG_OK
    return y


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("name", R8_TYPES)
def test_r8_gemm_equals_gguf_layout_gemm(isa, name):
    if not kernels.isa_supported(isa):
        pytest.skip(f"{isa}: this CPU lacks it")
    qt = by_name(name)
    act = by_name(qt.act_name)
    r = np.random.default_rng(5)
    for n in (32, 96, 576, 1600):   # 1600: 50 blocks, two prefill panel chunks
        w = kernels.quantize(qt, r.standard_normal((33, n)).astype(np.float32))
        a = kernels.quantize(act, r.standard_normal((20, n)).astype(np.float32))
        for nrows in (1, 7, 8, 13, 17, 33):
            ws = w[:nrows * qt.row_bytes(n)]
            packed = repack(qt, ws, n, nrows)
            # 1: decode; 2..16: register tiles of 2 groups x 1-4 tokens; 17+: decoded panels
            for ntok in (1, 2, 3, 4, 5, 8, 11, 16, 17, 20):
                as_ = a[:ntok * act.row_bytes(n)]
                want = kernels.gemm(isa, qt, n, ws, nrows, as_, ntok)
                got = gemm_r8(isa, qt, n, packed, nrows, as_, ntok)
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (n, nrows, ntok)


def test_r8_rejects_bad_arguments():
    qt = by_name("Q4_1")
    n, nrows = 64, 8
    w = np.zeros(nrows * qt.row_bytes(n), dtype=np.uint8)
    out = np.zeros(lib.pg_repack_r8_bytes(qt.ggml_id, n, nrows), dtype=np.uint8)
    assert lib.pg_repack_r8_bytes(by_name("Q5_0").ggml_id, n, nrows) == 0
    assert lib.pg_repack_r8(by_name("Q5_0").ggml_id, n, kernels._ptr(w), qt.row_bytes(n), nrows,
                            kernels._ptr(out), out.nbytes) == lib.PG_ENOKERNEL
    assert lib.pg_repack_r8(qt.ggml_id, n, kernels._ptr(w), qt.row_bytes(n), nrows,
                            kernels._ptr(out), out.nbytes - 1) == lib.PG_EBADARG
    assert lib.pg_repack_r8(qt.ggml_id, 33, kernels._ptr(w), qt.row_bytes(n), nrows,
                            kernels._ptr(out), out.nbytes) == lib.PG_EBADSIZE
    a = np.zeros(by_name("Q8_1").row_bytes(n), dtype=np.uint8)
    y = np.zeros(nrows, dtype=np.float32)
    rc = lib.pg_gemm_r8(kernels.ISAS["scalar"], qt.ggml_id, n, kernels._ptr(out), out.nbytes - 1, nrows,
                        kernels._ptr(a), a.nbytes, 1, kernels._ptr(y, "float *"), nrows)
    assert rc == lib.PG_EBADARG
    rc = lib.pg_gemm_r8(kernels.ISAS["scalar"], qt.ggml_id, n, kernels._ptr(out), out.nbytes, nrows,
                        kernels._ptr(a), a.nbytes, 1, kernels._ptr(y, "float *"), nrows)
    assert rc == lib.PG_ENOKERNEL   # the scalar ISA has no repacked kernel
