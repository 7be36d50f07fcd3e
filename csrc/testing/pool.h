/* A check of the thread pool's work sharing (tests/kernels/test_pool_chunks.py; cdef'd by cffi,
 * see testing/kernels.h for why it shares the product's extension). */
#ifndef PYGGUF_TESTING_POOL_H
#define PYGGUF_TESTING_POOL_H

/* Runs `stages` stages of n chunks each on every thread of the pool, a barrier after each, the
 * threads taking chunks with pg_pool_next_chunks. Thread `slow` (none if out of range) sleeps
 * slow_us microseconds after each piece it takes, so the others must take its chunks.
 * taken (stages, n): how many times each chunk was handed out (all 1 when sharing is right);
 * *stolen: how many chunks a thread took outside its own run. PG_EBADSIZE if a piece fell
 * outside [0, n) or was empty, PG_EBADARG for bad arguments. */
int pg_pool_check_chunks(pg_pool *pool, int64_t n, int stages, int slow, int slow_us, int32_t *taken,
                         int64_t *stolen);

/* Runs `tasks` tasks one after another, each `stages` barriers long, with random delays (up to
 * max_sleep_us, sometimes sleeping: on both sides of the pool's spin budgets) before each
 * barrier, at the end of each task and between tasks. Returns how many tasks went wrong: a
 * thread passed a barrier before every thread reached it, or pg_pool_run returned before every
 * thread was done (0 when the pool is right; a lost wake-up hangs instead). PG_EBADARG for
 * bad arguments. */
int pg_pool_check_barriers(pg_pool *pool, int tasks, int stages, int max_sleep_us, uint32_t seed);

/* The next `tasks` tasks of an adaptive pool (a model's) run on the caller alone, as when its
 * threads keep losing their cores to another process: what that mode computes can be tested on
 * an idle machine. */
void pg_pool_test_run_alone(pg_pool *pool, int tasks);

/* `contenders` threads (2..64) start together and each calls pg_pool_run: the one the pool lets in
 * holds its task until every other one was refused (or 10 s passed). rcs (contenders,): each
 * one's status, one PG_OK and the rest PG_EBUSY when the pool is right. Returns how many
 * refusals the holder saw before it let go (contenders - 1 when right), PG_EBADARG or PG_ENOMEM. */
int pg_pool_check_contenders(pg_pool *pool, int contenders, int32_t *rcs);

/* Holds the pool as another thread's call would, from when it sets *holding to 1 until *release
 * is non-zero (polled every 100 us, 10 s at most): a model on this pool meanwhile refuses its
 * calls. PG_EBUSY if the pool was held already. Call it from a thread of its own. */
int pg_pool_test_hold(pg_pool *pool, const int32_t *release, int32_t *holding);

#endif
