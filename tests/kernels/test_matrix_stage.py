"""The thread pool and the forward pass's matrix stage (pg_weight_gemm over the pool's chunks, the
ISA's activation quantizer), on the float types (the quantized types have their own files)."""
import numpy as np
import pytest

from harness import matrix_stage
from pygguf.model import kernels
from pygguf._native import ffi, lib
from pygguf.gguf.types import by_name


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matrix_stage_matches_numpy_and_is_thread_invariant(name, threads):
    rng = np.random.default_rng(0)
    n, rows, ntok = 96, 37, 5
    w = rng.standard_normal((rows, n)).astype(np.float32)
    x = rng.standard_normal((ntok, n)).astype(np.float32)
    qt = by_name(name)
    raw = kernels.quantize(qt, w)
    wq = kernels.dequantize(qt, raw, rows * n).reshape(rows, n).astype(np.float64)
    xq = kernels.dequantize(qt, kernels.quantize(qt, x), ntok * n).reshape(ntok, n).astype(np.float64)
    pool = kernels.ThreadPool(threads)
    y = matrix_stage(pool, qt, raw, rows, n, x)
    np.testing.assert_allclose(y, xq @ wq.T, rtol=1e-5, atol=1e-4)
    one = matrix_stage(kernels.ThreadPool(1), qt, raw, rows, n, x)
    assert np.array_equal(y, one)
    # every token alone gives the same bits as the batch
    for t in range(ntok):
        assert np.array_equal(matrix_stage(pool, qt, raw, rows, n, x[t]), y[t])


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        kernels.quantize("Q4_0", np.zeros(33, dtype=np.float32))
    with pytest.raises(ValueError):
        kernels.set_isa("sse9")
    with pytest.raises(ValueError):
        kernels.ThreadPool(0)


def test_isa_is_reported():
    assert kernels.active_isa() in kernels.ISAS
    assert kernels.isa_supported("scalar")


def test_isa_names_come_from_c():
    """pygguf's ISA names and values are csrc/api/isa.h's enum, read from the extension"""
    assert kernels.ISAS == {"scalar": lib.PG_ISA_SCALAR, "avx2": lib.PG_ISA_AVX2, "avx512": lib.PG_ISA_AVX512,
                            "neon": lib.PG_ISA_NEON}
    assert len(kernels.ISAS) == lib.PG_ISA_COUNT
    assert ffi.string(lib.pg_isa_name(lib.PG_ISA_COUNT)) == b"unknown"


def test_matrix_stage_refuses_bad_arguments():
    pool = kernels.ThreadPool(1)
    qt = by_name("F32")
    w = kernels.quantize(qt, np.ones((8, 32), np.float32))
    x, y = np.ones(32, np.float32), np.empty(8, np.float32)
    out = ffi.new("pg_matrix **")

    def new(type_id=qt.ggml_id, nrows=8, n=32):
        return lib.pg_matrix_new(type_id, ffi.from_buffer(w), nrows, n, 1, out)
    assert new(type_id=999) == lib.PG_EBADTYPE
    assert new(nrows=0) == lib.PG_EBADARG
    assert new(type_id=by_name("Q4_0").ggml_id, n=33) == lib.PG_EBADSIZE
    assert new(type_id=by_name("Q8_K").ggml_id, n=256) == lib.PG_ENOKERNEL   # an activation format only
    assert new() == lib.PG_OK
    m = ffi.gc(out[0], lib.pg_matrix_free)

    def stage(ntok=1, handle=pool.handle, matrix=m):
        return lib.pg_matrix_stage(handle, matrix, ffi.from_buffer("float[]", x), ntok, ffi.from_buffer("float[]", y), 1)
    assert stage() == lib.PG_OK
    assert stage(ntok=0) == lib.PG_EBADARG
    assert stage(handle=ffi.NULL) == lib.PG_EBADARG
    assert stage(matrix=ffi.NULL) == lib.PG_EBADARG
    with pytest.raises(ValueError):
        matrix_stage(pool, qt, w[:100], 8, 32, x)
