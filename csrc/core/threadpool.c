/* Workers wait on a generation counter: they spin briefly (a decode step follows the last one
 * within microseconds), then sleep on a condition variable so Python's sampling between
 * tokens gets the core back. The barrier spins with pause and yields if it waits long, so
 * more threads than cores degrades gracefully instead of livelocking.
 *
 * Chunks (pg_pool_next_chunks): each thread's run of the current stage is one 64-bit word, a
 * stage tag and the run's [front, back), changed only by compare-and-swap: the owner advances
 * front, others pull back in, so no chunk is handed out twice. Each barrier bumps the stage; a
 * run's word is set up by whichever thread touches it first in the stage (until then it carries
 * an older tag, and every thread computes the same starting run from n and the owner). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "core/threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_BEFORE_SLEEP (1 << 15)
#define SPIN_BEFORE_YIELD (1 << 12)

struct pg_pool {
    int n_threads;
    pthread_t *threads;
    pg_task_fn fn;
    void *arg;
    _Alignas(64) atomic_uint generation;   /* bumped to start a task */
    _Alignas(64) atomic_int n_done;        /* workers (not the caller) finished with the task */
    _Alignas(64) atomic_int barrier_count;
    _Alignas(64) atomic_uint barrier_generation;
    atomic_uint stage;                     /* bumped by every barrier and task: tags the chunk runs */
    struct chunk_run { _Alignas(64) _Atomic uint64_t word; } *runs;   /* (n_threads,) see pg_pool_next_chunks */
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int stopping;
};

typedef struct { pg_pool *pool; int ith; } worker_arg;

/* a run's word: the stage's tag (its low 20 bits: tags recur only after 2^20 barriers in one
 * task), front and back (22 bits each, so PG_POOL_MAX_CHUNKS = 2^22 - 1) */
#define RUN_BITS 22
#define RUN_MASK ((UINT64_C(1) << RUN_BITS) - 1)
#define TAG_SHIFT (2 * RUN_BITS)
#define TAG_MASK 0xfffffu

static uint64_t run_word(unsigned tag, int64_t front, int64_t back) {
    return (uint64_t)tag << TAG_SHIFT | (uint64_t)front << RUN_BITS | (uint64_t)back;
}

static void spin_wait_change(atomic_uint *word, unsigned seen) {
    for (long i = 0; atomic_load_explicit(word, memory_order_acquire) == seen; i++) {
        if (i < SPIN_BEFORE_YIELD) cpu_relax(); else sched_yield();
    }
}

static void *worker_main(void *p) {
    worker_arg *wa = p;
    pg_pool *pool = wa->pool;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;   /* the generation at creation: a task posted before this thread ran is not missed */
    for (;;) {
        long spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen && spins < SPIN_BEFORE_SLEEP) {
            cpu_relax();
            spins++;
        }
        if (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&pool->mutex);
            while (atomic_load(&pool->generation) == seen && !pool->stopping)
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (pool->stopping) return NULL;
        seen = atomic_load(&pool->generation);
        pool->fn(pool->arg, ith, pool->n_threads);
        atomic_fetch_add_explicit(&pool->n_done, 1, memory_order_release);
    }
}

pg_pool *pg_pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > 512) return NULL;
    pg_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    pool->runs = aligned_alloc(64, (size_t)n_threads * sizeof *pool->runs);
    if (!pool->threads || !pool->runs) { free(pool->threads); free(pool->runs); free(pool); return NULL; }
    memset(pool->runs, 0, (size_t)n_threads * sizeof *pool->runs);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { pool->n_threads = i; pg_pool_free(pool); return NULL; }
        wa->pool = pool;
        wa->ith = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->n_threads = i;
            pg_pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void pg_pool_free(pg_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    pool->stopping = 1;
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool->runs);
    free(pool);
}

int pg_pool_size(pg_pool *pool) { return pool ? pool->n_threads : 0; }

/* A new stage: its chunk runs are set up afresh (by their first use). Called while no thread can
 * be taking chunks: by the last thread to reach a barrier, or before a task starts. */
static void next_stage(pg_pool *pool) {
    atomic_fetch_add_explicit(&pool->stage, 1, memory_order_relaxed);
}

void pg_pool_run(pg_pool *pool, pg_task_fn fn, void *arg) {
    /* a task's words all carry older tags than its stages, however long ago they were used */
    const unsigned before = atomic_fetch_add_explicit(&pool->stage, 1, memory_order_relaxed);
    for (int i = 0; i < pool->n_threads; i++)
        atomic_store_explicit(&pool->runs[i].word, run_word(before & TAG_MASK, 0, 0), memory_order_relaxed);
    if (pool->n_threads == 1) { fn(arg, 0, 1); return; }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->n_done, 0);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    fn(arg, 0, pool->n_threads);
    for (long i = 0; atomic_load_explicit(&pool->n_done, memory_order_acquire) < pool->n_threads - 1; i++) {
        if (i < SPIN_BEFORE_YIELD) cpu_relax(); else sched_yield();
    }
}

void pg_pool_barrier(pg_pool *pool) {
    if (pool->n_threads == 1) { next_stage(pool); return; }
    unsigned gen = atomic_load_explicit(&pool->barrier_generation, memory_order_acquire);
    if (atomic_fetch_add_explicit(&pool->barrier_count, 1, memory_order_acq_rel) == pool->n_threads - 1) {
        next_stage(pool);   /* every thread is here, done with the stage's chunks */
        atomic_store_explicit(&pool->barrier_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&pool->barrier_generation, 1, memory_order_release);
    } else {
        spin_wait_change(&pool->barrier_generation, gen);
    }
}

/* Chunks of `owner`'s run in the stage tagged `tag` into [*c0, *c1): the first three quarters of
 * what is left (the owner's turn: one gemm call per piece, and a piece costs the multi-token
 * kernels a decode of the activations' scales; measured at 8 tokens, 1-5% faster than halves)
 * or the last chunk (another thread's); 0 if the run is empty. */
static int take_chunks(pg_pool *pool, int owner, unsigned tag, int64_t n, int from_back, int64_t *c0, int64_t *c1) {
    _Atomic uint64_t *word = &pool->runs[owner].word;
    uint64_t cur = atomic_load_explicit(word, memory_order_relaxed);
    for (;;) {
        int64_t front, back;
        if (cur >> TAG_SHIFT == tag) {
            front = (int64_t)(cur >> RUN_BITS & RUN_MASK), back = (int64_t)(cur & RUN_MASK);
        } else {
            pg_split(n, 1, owner, pool->n_threads, &front, &back);   /* first use in this stage */
        }
        if (front >= back) return 0;
        const int64_t take = from_back ? 1 : ((back - front) * 3 + 3) / 4;
        const uint64_t next = from_back ? run_word(tag, front, back - 1) : run_word(tag, front + take, back);
        if (atomic_compare_exchange_weak_explicit(word, &cur, next, memory_order_relaxed, memory_order_relaxed)) {
            *c0 = from_back ? back - 1 : front;
            *c1 = *c0 + take;
            return 1;
        }
    }
}

int pg_pool_next_chunks(pg_pool *pool, int ith, int64_t n, int64_t *c0, int64_t *c1) {
    if (n <= 0 || n > PG_POOL_MAX_CHUNKS) return 0;
    const unsigned tag = atomic_load_explicit(&pool->stage, memory_order_relaxed) & TAG_MASK;
    if (take_chunks(pool, ith, tag, n, 0, c0, c1)) return 1;
    for (int k = 1; k < pool->n_threads; k++)
        if (take_chunks(pool, (ith + k) % pool->n_threads, tag, n, 1, c0, c1)) return 1;
    return 0;
}
