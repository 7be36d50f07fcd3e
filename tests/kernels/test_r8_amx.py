"""The AMX tile kernel of the repacked layout (csrc/kernels/x86/r8_amx.h) refuses bad arguments.
That it equals the AVX2 repacked gemm bit for bit, with the tile product computed in C (any AVX2
CPU) or by the tiles themselves (AMX-INT8: Sapphire Rapids and later), is
test_kernels_vs_reference.py's."""
import numpy as np
import pytest

from harness import repack
from pygguf.model import kernels
from pygguf._native import lib
from pygguf.gguf.types import by_name

pytestmark = pytest.mark.skipif(not kernels.isa_supported("avx2"), reason="the x86 kernels need AVX2")


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
