/* Work sharing under test: every thread takes a stage's chunks through pg_pool_next_chunks and
 * counts each chunk it is handed, so a chunk given twice or never shows in the counts. */
#include <stdint.h>
#include <stddef.h>
#include <time.h>
#include "core/threadpool.h"
#include "testing/pool.h"

typedef struct {
    pg_pool *pool;
    int64_t n;
    int stages, slow, slow_us;
    int32_t *taken;
    int64_t stolen;
    int bad;
} check_task;

static void take_all(void *arg, int ith, int nth) {
    check_task *ct = arg;
    int64_t own0, own1;
    pg_split(ct->n, 1, ith, nth, &own0, &own1);
    for (int s = 0; s < ct->stages; s++) {
        for (int64_t c0, c1; pg_pool_next_chunks(ct->pool, ith, ct->n, &c0, &c1);) {
            if (c0 < 0 || c1 > ct->n || c1 <= c0) { __atomic_store_n(&ct->bad, 1, __ATOMIC_RELAXED); break; }
            for (int64_t c = c0; c < c1; c++) {
                __atomic_fetch_add(&ct->taken[(size_t)s * ct->n + c], 1, __ATOMIC_RELAXED);
                if (c < own0 || c >= own1) __atomic_fetch_add(&ct->stolen, 1, __ATOMIC_RELAXED);
            }
            if (ith == ct->slow) {
                struct timespec pause = {0, (long)ct->slow_us * 1000};
                nanosleep(&pause, NULL);
            }
        }
        pg_pool_barrier(ct->pool);
    }
}

int pg_pool_check_chunks(pg_pool *pool, int64_t n, int stages, int slow, int slow_us, int32_t *taken,
                         int64_t *stolen) {
    if (!pool || !taken || !stolen || n < 1 || n > PG_POOL_MAX_CHUNKS || stages < 1 || slow_us < 0 ||
        slow_us > 1000000)
        return PG_EBADARG;
    check_task ct = {pool, n, stages, slow, slow_us, taken, 0, 0};
    pg_pool_run(pool, take_all, &ct);
    *stolen = ct.stolen;
    return ct.bad ? PG_EBADSIZE : PG_OK;
}
