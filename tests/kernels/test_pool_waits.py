"""The thread pool's waits (spin, then sleep on a futex): over many tasks, each with many barriers,
random delays on either side of the spin budgets make threads take both the spinning and the
sleeping paths in every order, and no thread passes a barrier early, no task returns before its
workers are done, and no wake-up is lost (a lost one hangs, caught here by a generous deadline).
More threads than cores and pools made and freed in quick succession included."""
import random
import threading

import pytest

from pygguf._native import lib
from pygguf.model.kernels import ThreadPool

HANG_S = 120   # far beyond any run of these checks: reaching it means a thread never woke


def finishes(fn, *args):
    """fn(*args) in a thread; its result, or a failure if it never returns (a lost wake-up)."""
    result = []
    worker = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    worker.start()
    worker.join(HANG_S)
    assert not worker.is_alive(), f"{fn.__name__}{args} hung: a thread waits for a wake-up that never came"
    return result[0]


def check_barriers(threads, tasks, stages, max_sleep_us, seed):
    pool = ThreadPool(threads)
    try:
        return lib.pg_pool_check_barriers(pool.handle, tasks, stages, max_sleep_us, seed)
    finally:
        pool.close()


@pytest.mark.parametrize("threads", [2, 3, 8])   # 8: more threads than this machine's cores
def test_barriers_hold_under_random_delays(threads):
    assert finishes(check_barriers, threads, 200, 12, 400, threads) == 0


def test_short_delays_stay_mostly_in_the_spin():
    # delays below the barrier spin budget: the path an idle machine takes
    assert finishes(check_barriers, 2, 300, 20, 20, 7) == 0


def test_tasks_without_barriers():
    # only the waits for a task's start (workers) and end (the caller)
    assert finishes(check_barriers, 4, 2000, 0, 300, 11) == 0


def test_pools_made_and_freed_in_quick_succession():
    def churn():
        rng = random.Random(5)
        for i in range(300):
            pool = ThreadPool(rng.randint(1, 8))
            try:
                # some pools are freed before their workers first run, some after a task
                if i % 3:
                    assert lib.pg_pool_check_barriers(pool.handle, 1, rng.randint(0, 3), 100, i) == 0
            finally:
                pool.close()
        return True
    assert finishes(churn)


def test_pools_side_by_side():
    # two callers, each with its own pool of 3: six threads on two cores, sleeping on each other
    results = []
    callers = [threading.Thread(target=lambda s=s: results.append(check_barriers(3, 150, 8, 300, s)), daemon=True)
               for s in (1, 2)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(HANG_S)
    assert not any(c.is_alive() for c in callers), "a pool hung"
    assert results == [0, 0]


def test_bad_arguments_are_refused():
    pool = ThreadPool(2)
    try:
        assert lib.pg_pool_check_barriers(pool.handle, 0, 1, 0, 1) == lib.PG_EBADARG
        assert lib.pg_pool_check_barriers(pool.handle, 1, -1, 0, 1) == lib.PG_EBADARG
        assert lib.pg_pool_check_barriers(pool.handle, 1, 1, -1, 1) == lib.PG_EBADARG
    finally:
        pool.close()
