"""The repacked 8-row layout (csrc/kernels/repack.h): its entry points refuse bad arguments. That
its x86 gemm equals the GGUF-layout gemm of the same ISA bit for bit, for every row count (groups
padded) and token count, is test_kernels_vs_reference.py's."""
import numpy as np

from pygguf.model import kernels
from pygguf._native import lib
from pygguf.gguf.types import by_name


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
