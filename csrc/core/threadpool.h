/* A persistent pool of worker threads owned by C. pg_pool_run() runs one task on every
 * thread (the caller is worker 0) and returns when all are done; inside a task,
 * pg_pool_barrier() lets fused multi-stage kernels synchronise without returning to Python. */
#ifndef PYGGUF_THREADPOOL_H
#define PYGGUF_THREADPOOL_H

#include <stdint.h>
#include <stddef.h>
#include "api/pool.h"
#include "api/status.h"

typedef void (*pg_task_fn)(void *arg, int ith, int nth);

int pg_pool_size(pg_pool *pool);   /* its threads, the caller included */

/* A pool serves one caller at a time. Two callers' tasks would share the workers, the task
 * words and the barriers, and livelock or mix their stages, so a second caller is refused: the
 * pool is held (one atomic flag) from pg_pool_hold to pg_pool_release, and pg_pool_hold returns
 * PG_EBUSY while another thread holds it. pg_pool_run holds it around one task (PG_OK, or
 * PG_EBUSY with nothing run); a caller whose own state must not be touched by a refused second
 * caller (a model: its scratch and KV cache) holds it around the whole call and runs its tasks
 * with pg_pool_run_held. */
int pg_pool_hold(pg_pool *pool);
void pg_pool_release(pg_pool *pool);
int pg_pool_run(pg_pool *pool, pg_task_fn fn, void *arg);
void pg_pool_run_held(pg_pool *pool, pg_task_fn fn, void *arg);

/* An adaptive pool runs tasks on the caller alone for a while when its threads keep sleeping at
 * barriers on siblings that lost their cores (another process competes for them); its tasks must
 * then give the same results with nth = 1 (the model's forward does). Off by default. */
void pg_pool_set_adaptive(pg_pool *pool, int on);
/* as if contention had been seen: an adaptive pool's next `tasks` tasks run alone (tests) */
void pg_pool_run_alone_next(pg_pool *pool, int tasks);
void pg_pool_barrier(pg_pool *pool);

/* Inside a task, a stage's work as chunks 0..n-1 (every thread passing the same n, at most
 * PG_POOL_MAX_CHUNKS): the next chunks [*c0, *c1) for thread ith, or 0 once all are taken. Each
 * thread owns an even run of the chunks (pg_split) and takes it front to back, three quarters
 * of what is left at a time, so its weight rows stream from memory in long pieces; a thread
 * done with its own run takes the others' chunks one at a time from the back, so a thread that
 * runs slower (a busy or slower core) hands over what it has not started instead of holding
 * everyone at the next barrier. Each barrier starts a new stage. */
#define PG_POOL_MAX_CHUNKS ((1 << 22) - 1)
int pg_pool_next_chunks(pg_pool *pool, int ith, int64_t n, int64_t *c0, int64_t *c1);

/* [*start, *end) of n items for thread ith of nth, in whole multiples of `align` items. */
static inline void pg_split(int64_t n, int64_t align, int ith, int nth, int64_t *start, int64_t *end) {
    int64_t units = (n + align - 1) / align;
    int64_t per = units / nth, extra = units % nth;
    int64_t u0 = ith * per + (ith < extra ? ith : extra);
    int64_t u1 = u0 + per + (ith < extra ? 1 : 0);
    *start = u0 * align < n ? u0 * align : n;
    *end = u1 * align < n ? u1 * align : n;
}

#endif
