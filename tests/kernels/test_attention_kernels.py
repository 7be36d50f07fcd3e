"""Attention over the F16 cache: the AVX2 scores and V sums against scalar code that writes out
their order of operations (exact), and every value independent of where its position falls in
the kernels' blocks. Each instruction set's kernels against the portable reference (the softmax
and its exp exact, the whole close: the dot products sum in another order) are
test_kernels_vs_reference.py's."""
import numpy as np
import pytest

from harness import ATTENTION_SHAPES as SHAPES
from harness import SIMD_ISAS as SIMD
from harness import attention, f32, halves, softmax, u16
from harness import attention_case as case
from harness import require_isa as skip_unless
from pygguf.model import kernels
from pygguf._native import ffi, lib
from pygguf.gguf.types import by_name


@pytest.mark.parametrize("n_rep,head_dim", SHAPES)
@pytest.mark.parametrize("n_kv", [1, 5, 8, 13, 61])
def test_avx2_follows_its_written_out_order(n_rep, head_dim, n_kv):
    skip_unless("avx2")
    q, k, v, scale = case(n_kv * 100 + head_dim, n_rep, head_dim, n_kv)
    out, scores = attention("avx2", q, k, v, scale)
    s = ffi.new("float *")
    for h in range(n_rep):
        for j in range(n_kv):
            kernels.check(lib.pg_attention_score_order_avx2(s, f32(q[h]), u16(k[j]), head_dim, scale), "order")
            assert scores[h, j] == s[0], (h, j)
    p = scores.copy()
    inv = np.empty(n_rep, np.float32)
    for h in range(n_rep):
        p[h], inv[h] = softmax("scalar", scores[h])
    acc = np.empty((n_rep, head_dim), np.float32)
    kernels.check(lib.pg_attention_accumulate_order_avx2(f32(acc), f32(p), n_rep, u16(v), n_kv, head_dim), "order")
    assert np.array_equal(out, acc * inv[:, None])


# each ISA's scores and outputs against the reference's: test_kernels_vs_reference.py


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("n_rep,head_dim", [(3, 64), (4, 24)])
def test_a_position_does_not_depend_on_its_place_in_a_block(isa, n_rep, head_dim):
    """Rows whose probability is exactly 0 (exp underflows) change nothing: prepending 1..9 of
    them moves every real row to another lane and block without changing a bit of the output."""
    skip_unless(isa)
    q, k, v, scale = case(7, n_rep, head_dim, 21)
    q = np.abs(q)
    out, scores = attention(isa, q, k, v, scale)
    for extra in range(1, 10):
        dead = halves(np.full((extra, head_dim), -300.0))     # scores < -100 below every real one
        out2, scores2 = attention(isa, q, np.concatenate([dead, k]), np.concatenate([dead, v]), scale)
        assert np.array_equal(scores2[:, extra:], scores)
        assert np.array_equal(out2, out), extra


# each ISA's softmax and its exp against the reference's bits and libm's expf:
# test_kernels_vs_reference.py


def test_bad_arguments_are_refused():
    q = np.zeros((1, 8), np.float32)
    k = np.zeros((1, 8), np.uint16)
    out = np.empty((1, 8), np.float32)
    f16 = by_name("F16").ggml_id
    assert lib.pg_attention_isa(0, f32(out), ffi.NULL, f32(q), 1, 8, 0, f16, u16(k), f16, u16(k), 1.0) == lib.PG_EBADARG
    assert lib.pg_attention_isa(99, f32(out), ffi.NULL, f32(q), 1, 8, 1, f16, u16(k), f16, u16(k), 1.0) != lib.PG_OK
