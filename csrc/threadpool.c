/* Workers wait on a generation counter: they spin briefly (a decode step follows the last one
 * within microseconds), then sleep on a condition variable so Python's sampling between
 * tokens gets the core back. The barrier spins with pause and yields if it waits long, so
 * more threads than cores degrades gracefully instead of livelocking. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "threadpool.h"

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
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int stopping;
};

typedef struct { pg_pool *pool; int ith; } worker_arg;

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
    if (!pool->threads) { free(pool); return NULL; }
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
    free(pool);
}

int pg_pool_size(pg_pool *pool) { return pool ? pool->n_threads : 0; }

void pg_pool_run(pg_pool *pool, pg_task_fn fn, void *arg) {
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
    if (pool->n_threads == 1) return;
    unsigned gen = atomic_load_explicit(&pool->barrier_generation, memory_order_acquire);
    if (atomic_fetch_add_explicit(&pool->barrier_count, 1, memory_order_acq_rel) == pool->n_threads - 1) {
        atomic_store_explicit(&pool->barrier_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&pool->barrier_generation, 1, memory_order_release);
    } else {
        spin_wait_change(&pool->barrier_generation, gen);
    }
}
