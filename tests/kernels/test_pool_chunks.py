"""The thread pool's work sharing (pg_pool_next_chunks): over many stages separated by barriers,
every chunk is handed out exactly once whatever the thread count (more threads than cores
included) and chunk count, and when one thread is slow the others take its chunks."""
import numpy as np
import pytest

from pygguf._native import ffi, lib
from pygguf.model.kernels import ThreadPool


def check(pool, n, stages=20, slow=-1, slow_us=0):
    taken = np.zeros((stages, n), np.int32)
    stolen = ffi.new("int64_t *")
    rc = lib.pg_pool_check_chunks(pool.handle, n, stages, slow, slow_us, ffi.from_buffer("int32_t[]", taken), stolen)
    assert rc == lib.PG_OK
    return taken, stolen[0]


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_every_chunk_once_in_every_stage(threads):
    pool = ThreadPool(threads)
    try:
        for n in (1, 2, 3, 5, 16, 97, 1000):
            for _ in range(3):   # tasks one after another: each starts with fresh runs
                taken, _ = check(pool, n)
                assert (taken == 1).all(), f"{threads} threads, {n} chunks: counts {np.unique(taken)}"
    finally:
        pool.close()


def test_a_slow_thread_hands_its_chunks_over():
    pool = ThreadPool(2)
    try:
        # thread 1 sleeps 200 us after each piece it takes: thread 0 finishes its own 32 chunks
        # long before and takes what thread 1 has not started
        taken, stolen = check(pool, 64, stages=5, slow=1, slow_us=200)
        assert (taken == 1).all()
        assert stolen > 0
    finally:
        pool.close()


def test_bad_arguments_are_refused():
    pool = ThreadPool(2)
    try:
        taken = np.zeros(4, np.int32)
        stolen = ffi.new("int64_t *")
        buf = ffi.from_buffer("int32_t[]", taken)
        assert lib.pg_pool_check_chunks(pool.handle, 0, 1, -1, 0, buf, stolen) == lib.PG_EBADARG
        assert lib.pg_pool_check_chunks(pool.handle, 4, 0, -1, 0, buf, stolen) == lib.PG_EBADARG
        assert lib.pg_pool_check_chunks(ffi.NULL, 4, 1, -1, 0, buf, stolen) == lib.PG_EBADARG
    finally:
        pool.close()
