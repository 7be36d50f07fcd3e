"""The thread pool and matmul driver, on the float types (quantized types have their own tests)."""
import numpy as np
import pytest

from pygguf.model import kernels
from pygguf.gguf.types import by_name


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matmul_matches_numpy_and_is_thread_invariant(name, threads):
    rng = np.random.default_rng(0)
    n, rows, ntok = 96, 37, 5
    w = rng.standard_normal((rows, n)).astype(np.float32)
    x = rng.standard_normal((ntok, n)).astype(np.float32)
    qt = by_name(name)
    raw = kernels.quantize(qt, w)
    wq = kernels.dequantize(qt, raw, rows * n).reshape(rows, n).astype(np.float64)
    xq = kernels.dequantize(qt, kernels.quantize(qt, x), ntok * n).reshape(ntok, n).astype(np.float64)
    pool = kernels.ThreadPool(threads)
    mm = kernels.MatMul(pool, qt, raw, rows, n, max_tokens=ntok)
    y = mm(x)
    np.testing.assert_allclose(y, xq @ wq.T, rtol=1e-5, atol=1e-4)
    one = kernels.MatMul(kernels.ThreadPool(1), qt, raw, rows, n, max_tokens=ntok)(x)
    assert np.array_equal(y, one)
    # every token alone gives the same bits as the batch
    for t in range(ntok):
        assert np.array_equal(mm(x[t]), y[t])


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


def test_matmul_refuses_a_too_small_output():
    pool = kernels.ThreadPool(1)
    qt = by_name("F32")
    mm = kernels.MatMul(pool, qt, kernels.quantize(qt, np.ones((8, 32), np.float32)), 8, 32, max_tokens=2)
    with pytest.raises(ValueError):
        mm(np.ones((2, 32), np.float32), out=np.empty(8, np.float32))
    with pytest.raises(ValueError):
        mm(np.ones(32, np.float32), out=np.empty(8, np.float64))
