/* Waiting (workers between tasks, threads at a barrier, the caller for the workers' end of a
 * task): spin a short, bounded time, then sleep on the word being waited on. A decode step's
 * barriers are microseconds apart on an idle machine, so the spin covers them and the idle fast
 * path makes no system call; when another process competes for the cores, a sibling can be
 * descheduled for a whole time slice (milliseconds), and a thread spinning on it would hold a
 * core the sibling or the other process could use, so after the spin it sleeps.
 *
 * The spin is bounded in time, not in iterations: the cost of a pause differs about tenfold
 * between x86 cores (Zen 3 ~27 ns, Skylake-X ~140 ns), while what the bound trades is wall
 * time, spinning against the cost of a sleep and wake (on a 2-vCPU Zen 3 VM, a futex wake is
 * ~6 us in the waker and ~15 us until the sleeper runs). Spinning as long as a sleep and
 * wake cost, then sleeping, never costs more than twice what the better of the two would have
 * (the ski-rental bound): SPIN_NS is about one, a small fraction of a time slice.
 *
 * Sleeping and waking (wait_word): the waiter counts itself in `sleepers`, then checks the word
 * and sleeps only while it still holds the value it saw (FUTEX_WAIT compares and sleeps
 * atomically in the kernel, or the condvar fallback checks under the mutex it waits with). The
 * waker changes the word first and then reads `sleepers`, making the wake call only when it is
 * non-zero, so the idle fast path (no sleeper) costs no system call. No wake-up is lost: the
 * four accesses are sequentially consistent, so of "waker changes the word, then reads
 * sleepers" and "waiter counts itself, then reads the word", one pair sees the other's write:
 * either the waker sees the sleeper and wakes it (a FUTEX_WAKE after the word changed wakes
 * every thread queued on it, and a thread not yet queued compares the changed word and does
 * not sleep), or the waiter sees the changed word and does not sleep at all. A stale count (a
 * woken thread that has not yet uncounted itself) only costs a needless wake call. 32-bit words
 * never wrap back to the value a sleeper saw: that would take 2^32 tasks or barriers, and none
 * can complete without the sleeper.
 *
 * Chunks (pg_pool_next_chunks): each thread's run of the current stage is one 64-bit word, a
 * stage tag and the run's [front, back), changed only by compare-and-swap: the owner advances
 * front, others pull back in, so no chunk is handed out twice. Each barrier bumps the stage; a
 * run's word is set up by whichever thread touches it first in the stage (until then it carries
 * an older tag, and every thread computes the same starting run from n and the owner). */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/threadpool.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define USE_FUTEX 1
#else
#define USE_FUTEX 0
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* Every wait spins this long before it sleeps: about one sleep and wake here (see the top).
 * Between tasks too, though the Python between two decode steps may outlast it: on a busy
 * machine a worker spinning there can hold the very core the caller's Python waits for, while
 * waking the workers costs a decode step of ~4 ms only some 20 us. Measured beside one or two
 * CPU-bound processes, -t 2 decoded faster with 20 us than with 50 us (bench/busy.py). */
#define SPIN_NS 20000
#define SPINS_PER_CLOCK 32     /* pauses between clock reads (~1 us): a short wait reads no clock */

/* A word threads wait on until it changes, and how many of them sleep on it (see the top) */
typedef struct {
    _Alignas(64) atomic_uint value;
    atomic_int sleepers;
} wait_word;

_Static_assert(sizeof(atomic_uint) == 4, "a futex word is 32 bits");

struct pg_pool {
    int n_threads;
    pthread_t *threads;
    pg_task_fn fn;
    void *arg;
    wait_word generation;                  /* bumped to start a task */
    wait_word n_done;                      /* workers (not the caller) finished with the task */
    _Alignas(64) atomic_int barrier_count;
    wait_word barrier_generation;          /* bumped by the last thread into a barrier */
    _Alignas(64) atomic_uint stage;        /* bumped by every barrier and task: tags the chunk runs */
    struct chunk_run { _Alignas(64) _Atomic uint64_t word; } *runs;   /* (n_threads,) see pg_pool_next_chunks */
    atomic_int stopping;
    atomic_int held;                       /* a caller holds the pool (pg_pool_hold): others are refused */
    /* running alone when the other threads keep losing their cores (see pg_pool_set_adaptive);
     * these are the caller's, except slept_ns, which every thread adds to */
    int adaptive, solo, solo_left, bad_streak;
    _Alignas(64) atomic_llong slept_ns;    /* this task's sleeps at barriers and at its end */
#if !USE_FUTEX
    pthread_mutex_t mutex;                 /* the sleepers' fallback: one condvar for every word */
    pthread_cond_t wake;
#endif
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

/* ---- waiting ------------------------------------------------------------------------------ */

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins while w holds `seen`, for about budget_ns at most: whether it changed */
static int spin_while_equal(wait_word *w, unsigned seen, int64_t budget_ns) {
    int64_t deadline = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&w->value, memory_order_acquire) != seen) return 1;
        cpu_relax();
        if (i % SPINS_PER_CLOCK) continue;
        const int64_t t = now_ns();
        if (!deadline) deadline = t + budget_ns;
        else if (t >= deadline) return 0;
    }
}

#if USE_FUTEX
static void sleep_while_equal(pg_pool *pool, wait_word *w, unsigned seen) {
    (void)pool;
    atomic_fetch_add(&w->sleepers, 1);
    /* the kernel sleeps only while the word is still `seen`; a signal or a wake meant for an
     * older value returns early, hence the loop */
    while (atomic_load(&w->value) == seen)
        syscall(SYS_futex, &w->value, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    atomic_fetch_sub(&w->sleepers, 1);
}

static void wake_sleepers(pg_pool *pool, wait_word *w) {
    (void)pool;
    if (atomic_load(&w->sleepers) > 0) syscall(SYS_futex, &w->value, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
static void sleep_while_equal(pg_pool *pool, wait_word *w, unsigned seen) {
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&w->sleepers, 1);
    while (atomic_load(&w->value) == seen) pthread_cond_wait(&pool->wake, &pool->mutex);
    atomic_fetch_sub(&w->sleepers, 1);
    pthread_mutex_unlock(&pool->mutex);
}

/* a sleeper holds the mutex from its count to its wait, so taking it here cannot fall between
 * a sleeper's check of the word and its wait */
static void wake_sleepers(pg_pool *pool, wait_word *w) {
    if (atomic_load(&w->sleepers) == 0) return;
    pthread_mutex_lock(&pool->mutex);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
}
#endif

/* Returns once w no longer holds `seen` */
static void wait_while_equal(pg_pool *pool, wait_word *w, unsigned seen, int64_t spin_ns) {
    if (!spin_while_equal(w, seen, spin_ns)) sleep_while_equal(pool, w, seen);
}

/* wait_while_equal inside a task: a sleep there (a sibling off its core) is added to slept_ns */
static void task_wait(pg_pool *pool, wait_word *w, unsigned seen) {
    if (spin_while_equal(w, seen, SPIN_NS)) return;
    const int64_t t0 = now_ns();
    sleep_while_equal(pool, w, seen);
    atomic_fetch_add_explicit(&pool->slept_ns, now_ns() - t0, memory_order_relaxed);
}

/* Changes w (sequentially consistent: see the top) and wakes whoever sleeps on it */
static void bump_and_wake(pg_pool *pool, wait_word *w) {
    atomic_fetch_add(&w->value, 1);
    wake_sleepers(pool, w);
}

/* ---- the pool ----------------------------------------------------------------------------- */

static void *worker_main(void *p) {
    worker_arg *wa = p;
    pg_pool *pool = wa->pool;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;   /* the generation at creation: a task posted before this thread ran is not missed */
    for (;;) {
        wait_while_equal(pool, &pool->generation, seen, SPIN_NS);
        if (atomic_load(&pool->stopping)) return NULL;
        seen = atomic_load_explicit(&pool->generation.value, memory_order_acquire);
        pool->fn(pool->arg, ith, pool->n_threads);
        /* only the last one wakes the caller: it waits for the count to reach n_threads - 1 */
        if (atomic_fetch_add(&pool->n_done.value, 1) == (unsigned)pool->n_threads - 2)
            wake_sleepers(pool, &pool->n_done);
    }
}

pg_pool *pg_pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > 512) return NULL;
    pg_pool *pool = aligned_alloc(64, (sizeof *pool + 63) / 64 * 64);
    if (!pool) return NULL;
    memset(pool, 0, sizeof *pool);
    pool->n_threads = n_threads;
#if !USE_FUTEX
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
#endif
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
    atomic_store(&pool->stopping, 1);   /* before the bump, so a worker woken by it sees it */
    bump_and_wake(pool, &pool->generation);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
#if !USE_FUTEX
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
#endif
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

/* Whether an adaptive pool runs its next task alone: for SOLO_TASKS tasks after two in a row in
 * which its threads slept at barriers more than a quarter of the time, which on an idle machine
 * they rarely do (the spin covers a barrier's gap) and beside a CPU-bound process they do: its 3
 * threads share 2 cores, a descheduled sibling holds every barrier for a time slice, and -t 2
 * decoded at half the speed of -t 1 (bench/busy.py; with the rule at half the time and three in
 * a row it never triggered and -t 2 stayed at 93 tok/s against 150). Then one task with every
 * thread probes whether the cores came back. Alone, the caller takes every chunk (the stages'
 * splits and results do not depend on the thread count) and barriers only end a stage. */
#define SOLO_TASKS 64

static int run_alone(pg_pool *pool) {
    if (!pool->adaptive || pool->solo_left == 0) return 0;
    pool->solo_left--;
    return 1;
}

static void judge_task(pg_pool *pool, int64_t elapsed_ns) {
    const int64_t slept = atomic_load_explicit(&pool->slept_ns, memory_order_relaxed);
    pool->bad_streak = 4 * slept > elapsed_ns * pool->n_threads ? pool->bad_streak + 1 : 0;
    if (pool->bad_streak >= 2) {
        pool->solo_left = SOLO_TASKS;
        pool->bad_streak = 0;
    }
}

void pg_pool_set_adaptive(pg_pool *pool, int on) {
    if (pool) pool->adaptive = on;
}

void pg_pool_run_alone_next(pg_pool *pool, int tasks) {
    if (pool && pool->adaptive && tasks >= 0) pool->solo_left = tasks;
}

/* acquire / release: the next holder sees what the last one left in the caller's fields
 * (solo_left, bad_streak, fn, arg) */
int pg_pool_hold(pg_pool *pool) {
    return atomic_exchange_explicit(&pool->held, 1, memory_order_acquire) ? PG_EBUSY : PG_OK;
}

void pg_pool_release(pg_pool *pool) {
    atomic_store_explicit(&pool->held, 0, memory_order_release);
}

int pg_pool_run(pg_pool *pool, pg_task_fn fn, void *arg) {
    if (pg_pool_hold(pool) != PG_OK) return PG_EBUSY;
    pg_pool_run_held(pool, fn, arg);
    pg_pool_release(pool);
    return PG_OK;
}

void pg_pool_run_held(pg_pool *pool, pg_task_fn fn, void *arg) {
    /* a task's words all carry older tags than its stages, however long ago they were used */
    const unsigned before = atomic_fetch_add_explicit(&pool->stage, 1, memory_order_relaxed);
    for (int i = 0; i < pool->n_threads; i++)
        atomic_store_explicit(&pool->runs[i].word, run_word(before & TAG_MASK, 0, 0), memory_order_relaxed);
    if (pool->n_threads == 1) { fn(arg, 0, 1); return; }
    if (run_alone(pool)) {
        pool->solo = 1;
        fn(arg, 0, 1);
        pool->solo = 0;
        return;
    }
    const int64_t t0 = pool->adaptive ? now_ns() : 0;
    atomic_store_explicit(&pool->slept_ns, 0, memory_order_relaxed);
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->n_done.value, 0);
    bump_and_wake(pool, &pool->generation);   /* publishes fn, arg and the reset count */
    fn(arg, 0, pool->n_threads);
    /* the workers' last chunks may be on a core another process took: sleep on them, not spin */
    const unsigned all = (unsigned)pool->n_threads - 1;
    for (unsigned done; (done = atomic_load(&pool->n_done.value)) != all;)
        task_wait(pool, &pool->n_done, done);
    if (pool->adaptive) judge_task(pool, now_ns() - t0);
}

void pg_pool_barrier(pg_pool *pool) {
    if (pool->n_threads == 1 || pool->solo) { next_stage(pool); return; }
    const unsigned gen = atomic_load_explicit(&pool->barrier_generation.value, memory_order_acquire);
    if (atomic_fetch_add_explicit(&pool->barrier_count, 1, memory_order_acq_rel) == pool->n_threads - 1) {
        next_stage(pool);   /* every thread is here, done with the stage's chunks */
        atomic_store_explicit(&pool->barrier_count, 0, memory_order_relaxed);
        bump_and_wake(pool, &pool->barrier_generation);
    } else {
        task_wait(pool, &pool->barrier_generation, gen);
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
            pg_split(n, 1, owner, pool->solo ? 1 : pool->n_threads, &front, &back);   /* first use in this stage */
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
    for (int k = 1; k < (pool->solo ? 1 : pool->n_threads); k++)
        if (take_chunks(pool, (ith + k) % pool->n_threads, tag, n, 1, c0, c1)) return 1;
    return 0;
}
