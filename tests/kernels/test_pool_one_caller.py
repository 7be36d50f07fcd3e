"""A thread pool serves one caller at a time: a second thread entering it while a task runs is
refused with PG_EBUSY at once, where it used to join the first caller's workers, barriers and
task words and livelock both (two threads calling one Llama hung at 100% CPU). A model on the
pool refuses a second thread's decode, shift, copy, read and write of its KV cache the same way,
before it touches anything."""
import threading

import numpy as np
import pytest

from model_factory import encode, random_weights, tiny_config
from pygguf._native import ffi, lib
from pygguf.errors import KernelError
from pygguf.gguf.types import by_name
from pygguf.model import Model
from pygguf.model.batch import Batch
from pygguf.model.kernels import ThreadPool

HANG_S = 120   # far beyond any run of these checks: reaching it means a caller never came back


def finishes(fn, *args):
    result = []
    worker = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    worker.start()
    worker.join(HANG_S)
    assert not worker.is_alive(), f"{fn.__name__}{args} hung"
    return result[0]


def contest(threads: int, contenders: int):
    pool = ThreadPool(threads)
    rcs = np.full(contenders, 99, dtype=np.int32)
    try:
        seen = lib.pg_pool_check_contenders(pool.handle, contenders, ffi.from_buffer("int32_t[]", rcs))
        # and the pool still works for the next caller
        after = lib.pg_pool_check_barriers(pool.handle, 20, 4, 50, 3)
    finally:
        pool.close()
    return seen, sorted(rcs.tolist()), after


@pytest.mark.parametrize("threads, contenders", [(1, 2), (2, 2), (2, 4), (3, 3)])
def test_callers_entering_together_get_one_turn_and_the_rest_busy(threads, contenders):
    for _ in range(5):
        seen, rcs, after = finishes(contest, threads, contenders)
        assert rcs == sorted([lib.PG_OK] + [lib.PG_EBUSY] * (contenders - 1))
        assert seen == contenders - 1      # every refusal came while the winner's task ran
        assert after == 0


def test_contest_arguments_are_checked():
    pool = ThreadPool(2)
    try:
        rcs = ffi.new("int32_t[]", 2)
        assert lib.pg_pool_check_contenders(pool.handle, 1, rcs) == lib.PG_EBADARG
        assert lib.pg_pool_check_contenders(pool.handle, 2, ffi.NULL) == lib.PG_EBADARG
    finally:
        pool.close()


class Holder:
    """Another thread holding a pool as its own call would, until released."""

    def __init__(self, pool_handle):
        self.flags = np.zeros(2, dtype=np.int32)            # release, holding
        ptr = ffi.from_buffer("int32_t[]", self.flags)
        self.rc = []
        self.thread = threading.Thread(target=lambda: self.rc.append(lib.pg_pool_test_hold(pool_handle, ptr, ptr + 1)),
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.flags[1] and self.thread.is_alive():
            self.thread.join(0.001)
        assert self.flags[1] == 1, f"the holder did not hold the pool: {self.rc}"
        return self

    def __exit__(self, *exc):
        self.flags[0] = 1
        self.thread.join(HANG_S)
        assert self.rc == [lib.PG_OK]


def tiny_model(**kwargs) -> Model:
    config = tiny_config(n_embd=64, n_head=4, n_head_kv=2)
    tensors, _ = encode(random_weights(config, seed=3), by_name("F16"), config)
    return Model.from_tensors(config, tensors, n_ctx=32, n_batch=8, **kwargs)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_model_refuses_a_second_thread_and_is_untouched(threads):
    with tiny_model(n_threads=threads, n_seq=2) as model:
        prompt = Batch.of([5, 17, 250, 3], 0, 0, "all")
        expected = model.decode(prompt).copy()
        with Holder(model._pool.handle):
            with pytest.raises(KernelError, match="in use by another thread"):
                model.decode(prompt)
            with pytest.raises(KernelError, match="in use by another thread"):
                model.kv_copy(0, 1, 4)
            with pytest.raises(KernelError, match="in use by another thread"):
                model.kv_shift(0, 4, 1, 2)
            with pytest.raises(KernelError, match="in use by another thread"):
                model.kv_read(0, 4)
            with pytest.raises(KernelError, match="in use by another thread"):
                model.kv_write(1, bytes(model.kv_state_bytes(4)), 4)
        assert np.array_equal(model.decode(prompt), expected)       # nothing was left half done
