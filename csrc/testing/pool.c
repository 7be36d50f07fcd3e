/* Work sharing under test: every thread takes a stage's chunks through pg_pool_next_chunks and
 * counts each chunk it is handed, so a chunk given twice or never shows in the counts. */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
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
    const int rc = pg_pool_run(pool, take_all, &ct);
    if (rc != PG_OK) return rc;
    *stolen = ct.stolen;
    return ct.bad ? PG_EBADSIZE : PG_OK;
}

/* ---- barriers and task ends under random delays ---------------------------------------------- */

typedef struct {
    pg_pool *pool;
    int stages, max_sleep_us;
    uint32_t seed;
    int32_t *arrived;   /* (stages,) threads that reached each stage's barrier */
    int finished;       /* threads that reached the end of the task function */
    int early;          /* barrier passes seen before every thread arrived */
} barrier_task;

static uint32_t xorshift(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Mostly nothing or a short spin, sometimes a sleep up to max_sleep_us: waits on either side of
 * the pool's spin budgets, so both its spinning and its sleeping paths run */
static void random_delay(uint32_t *rng, int max_sleep_us) {
    const uint32_t r = xorshift(rng);
    if (r % 8 == 0 && max_sleep_us > 0) {
        struct timespec pause = {0, (long)(xorshift(rng) % (uint32_t)max_sleep_us) * 1000};
        nanosleep(&pause, NULL);
    } else if (r % 8 == 1) {
        for (volatile uint32_t i = r % 4096; i; i--) {}
    }
}

static void arrive_at_barriers(void *arg, int ith, int nth) {
    barrier_task *bt = arg;
    uint32_t rng = bt->seed * 2654435761u + (uint32_t)ith + 1;
    for (int s = 0; s < bt->stages; s++) {
        random_delay(&rng, bt->max_sleep_us);
        __atomic_fetch_add(&bt->arrived[s], 1, __ATOMIC_RELAXED);
        pg_pool_barrier(bt->pool);
        if (__atomic_load_n(&bt->arrived[s], __ATOMIC_RELAXED) != nth) __atomic_store_n(&bt->early, 1, __ATOMIC_RELAXED);
    }
    random_delay(&rng, bt->max_sleep_us);   /* the caller must wait for a late worker's end */
    __atomic_fetch_add(&bt->finished, 1, __ATOMIC_RELAXED);
}

int pg_pool_check_barriers(pg_pool *pool, int tasks, int stages, int max_sleep_us, uint32_t seed) {
    if (!pool || tasks < 1 || stages < 0 || stages > 100000 || max_sleep_us < 0 || max_sleep_us > 100000)
        return PG_EBADARG;
    int32_t *arrived = malloc((size_t)(stages > 0 ? stages : 1) * sizeof *arrived);
    if (!arrived) return PG_ENOMEM;
    int failures = 0;
    uint32_t rng = seed | 1;
    for (int t = 0; t < tasks; t++) {
        memset(arrived, 0, (size_t)(stages > 0 ? stages : 1) * sizeof *arrived);
        barrier_task bt = {pool, stages, max_sleep_us, seed + (uint32_t)t, arrived, 0, 0};
        if (pg_pool_run(pool, arrive_at_barriers, &bt) != PG_OK || bt.early ||
            __atomic_load_n(&bt.finished, __ATOMIC_RELAXED) != pg_pool_size(pool))
            failures++;
        random_delay(&rng, max_sleep_us);   /* between tasks too: workers that went to sleep must wake */
    }
    free(arrived);
    return failures;
}

void pg_pool_test_run_alone(pg_pool *pool, int tasks) {
    pg_pool_run_alone_next(pool, tasks);
}

/* ---- one caller at a time ------------------------------------------------------------------ */

#define HOLD_LIMIT_US 10000000   /* a holder waiting for refusals gives up after 10 s (a hang, reported) */

static void pause_us(long us) {
    struct timespec pause = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&pause, NULL);
}

typedef struct {
    pg_pool *pool;
    int contenders;
    int ready;           /* contenders at the start line */
    int refused;         /* contenders that got PG_EBUSY */
    int refused_seen;    /* what the winner's task saw before it let go */
} contest;

typedef struct { contest *c; int32_t *rc; pthread_t thread; } contender;

/* The winner's task: the caller's share holds the pool until every other contender was refused,
 * so none can come late and find it free */
static void hold_until_refused(void *arg, int ith, int nth) {
    (void)nth;
    contest *c = arg;
    if (ith != 0) return;
    for (long waited = 0; waited < HOLD_LIMIT_US; waited += 100) {
        if (__atomic_load_n(&c->refused, __ATOMIC_ACQUIRE) == c->contenders - 1) break;
        pause_us(100);
    }
    c->refused_seen = __atomic_load_n(&c->refused, __ATOMIC_ACQUIRE);
}

static void *contend(void *p) {
    contender *me = p;
    contest *c = me->c;
    __atomic_fetch_add(&c->ready, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE) < c->contenders) sched_yield();
    *me->rc = pg_pool_run(c->pool, hold_until_refused, c);
    if (*me->rc == PG_EBUSY) __atomic_fetch_add(&c->refused, 1, __ATOMIC_ACQ_REL);
    return NULL;
}

int pg_pool_check_contenders(pg_pool *pool, int contenders, int32_t *rcs) {
    if (!pool || !rcs || contenders < 2 || contenders > 64) return PG_EBADARG;
    contest c = {pool, contenders, 0, 0, -1};
    contender *cs = calloc((size_t)contenders, sizeof *cs);
    if (!cs) return PG_ENOMEM;
    int started = 0;
    for (; started < contenders; started++) {
        cs[started] = (contender){&c, &rcs[started], 0};
        if (pthread_create(&cs[started].thread, NULL, contend, &cs[started]) != 0) break;
    }
    if (started < contenders) __atomic_store_n(&c.ready, contenders, __ATOMIC_RELEASE);   /* let them go */
    for (int i = 0; i < started; i++) pthread_join(cs[i].thread, NULL);
    free(cs);
    return started < contenders ? PG_ENOMEM : c.refused_seen;
}

int pg_pool_test_hold(pg_pool *pool, const int32_t *release, int32_t *holding) {
    if (!pool || !release || !holding) return PG_EBADARG;
    if (pg_pool_hold(pool) != PG_OK) return PG_EBUSY;
    __atomic_store_n(holding, 1, __ATOMIC_RELEASE);
    for (long waited = 0; waited < HOLD_LIMIT_US && !__atomic_load_n(release, __ATOMIC_ACQUIRE); waited += 100)
        pause_us(100);
    __atomic_store_n(holding, 0, __ATOMIC_RELEASE);
    pg_pool_release(pool);
    return PG_OK;
}
