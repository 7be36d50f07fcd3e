/* x (n,) -> the positions of its k largest values, in one pass: a value enters the sorted
 * list of k only if it beats the current k-th, which after the first few thousand elements
 * almost none does, so the cost is about one compare per logit: sixteen at a time, as SSE
 * compares gathered into one bit mask, and only the elements whose bit is set (a possible
 * entrant, or a NaN) are looked at one by one. numpy needs several passes over the 49152
 * logits of a vocabulary for the same answer, and they dominated a sampler step. */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include "api/status.h"
#include "api/sampling.h"
#include "sampling/sort.h"
#include "sampling/top_k.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum { BLOCK = 16 };

typedef struct {
    const float *x;
    int64_t *positions;      /* the list, best first ... */
    float *values;           /* ... and its values, so inserting never reads x at random */
    int64_t k, filled;
    float kth;
    int saw_nan;
    const int32_t *skip;     /* sorted positions never chosen */
    int64_t n_skip;
} top_list;

static int skipped(const top_list *t, int64_t i) {
    return pg_sorted_find_i32(t->skip, t->n_skip, i) >= 0;
}

/* Insert position i if it belongs in the list; equal values keep position order (i comes after
 * every value >= its own, as it is the latest position). NaN never does. */
static void offer(top_list *t, int64_t i) {
    const float v = t->x[i];
    if (v != v) {
        t->saw_nan = 1;
        return;
    }
    if ((t->filled == t->k && !(v > t->kth)) || (t->n_skip && skipped(t, i))) return;
    int64_t j = t->filled < t->k ? t->filled++ : t->k - 1;   /* the k-th falls off when full */
    for (; j > 0 && t->values[j - 1] < v; j--) {
        t->values[j] = t->values[j - 1];
        t->positions[j] = t->positions[j - 1];
    }
    t->positions[j] = i;
    t->values[j] = v;
    if (t->filled == t->k) t->kth = t->values[t->k - 1];
}

/* bit j set when x[j] (j < BLOCK) is above t or NaN (!(x <= t) covers both) */
#if defined(__SSE2__)
static inline unsigned block_entrants(const float *x, float t) {
    const __m128 vt = _mm_set1_ps(t);
    unsigned mask = 0;
    for (int j = 0; j < BLOCK; j += 4)
        mask |= (unsigned)_mm_movemask_ps(_mm_cmpnle_ps(_mm_loadu_ps(x + j), vt)) << j;
    return mask;
}
#else
static inline unsigned block_entrants(const float *x, float t) {
    unsigned mask = 0;
    for (int j = 0; j < BLOCK; j++) mask |= (unsigned)!(x[j] <= t) << j;
    return mask;
}
#endif

int64_t pg_top_k_scan(const float *x, int64_t n, int64_t k, int64_t *positions, float *values,
                      const int32_t *skip, int64_t n_skip, int *saw_nan) {
    top_list t = {x, positions, values, k, 0, 0.0f, 0, skip, n_skip};
    int64_t i = 0;
    for (; i < n && t.filled < k; i++) offer(&t, i);
    for (; i + BLOCK <= n; i += BLOCK)
        for (unsigned mask = block_entrants(x + i, t.kth); mask; mask &= mask - 1)
            offer(&t, i + __builtin_ctz(mask));   /* in position order; offer() re-checks the k-th */
    for (; i < n; i++) offer(&t, i);
    *saw_nan = t.saw_nan;
    return t.filled;
}

int64_t pg_top_k(const float *x, int64_t n, int64_t k, int64_t *positions) {
    if (n < 0 || k < 0) return PG_EBADARG;
    if (k == 0) return 0;
    float *values = malloc((size_t)k * sizeof *values);
    if (!values) return PG_ENOMEM;
    int saw_nan;
    const int64_t got = pg_top_k_scan(x, n, k, positions, values, NULL, 0, &saw_nan);
    free(values);
    return got;
}
