/* x (n,) -> the positions of its k largest values, in one pass: a value enters the sorted
 * list of k only if it beats the current k-th, which after the first few thousand elements
 * almost none does, so the cost is about one compare per logit (eight at a time, branch-free,
 * which the compiler turns into SSE compares). numpy needs several passes over the 49152
 * logits of a vocabulary for the same answer, and they dominated a sampler step. */
#include <stdint.h>
#include <stddef.h>
#include "api/kernels.h"
#include "api/sampling.h"
#include "sampling/top_k.h"

typedef struct { const float *x; int64_t *positions; int64_t k, filled; float kth; int saw_nan; } top_list;

/* Insert position i if it belongs in the list; equal values keep position order. NaN never does. */
static void offer(top_list *t, int64_t i) {
    const float v = t->x[i];
    if (v != v) {
        t->saw_nan = 1;
        return;
    }
    if (t->filled == t->k && !(v > t->kth)) return;
    int64_t j = t->filled < t->k ? t->filled++ : t->k - 1;
    while (j > 0 && v > t->x[t->positions[j - 1]]) {
        t->positions[j] = t->positions[j - 1];
        j--;
    }
    t->positions[j] = i;
    if (t->filled == t->k) t->kth = t->x[t->positions[t->k - 1]];
}

int64_t pg_top_k_scan(const float *x, int64_t n, int64_t k, int64_t *positions, int *saw_nan) {
    top_list t = {x, positions, k, 0, 0.0f, 0};
    int64_t i = 0;
    for (; i < n && t.filled < k; i++) offer(&t, i);
    for (; i + 8 <= n; i += 8) {
        const float kth = t.kth;
        /* a NaN fails every compare, so it is caught by the != test and reported by offer() */
        int any = (x[i] > kth) | (x[i + 1] > kth) | (x[i + 2] > kth) | (x[i + 3] > kth) |
                  (x[i + 4] > kth) | (x[i + 5] > kth) | (x[i + 6] > kth) | (x[i + 7] > kth) |
                  (x[i] != x[i]) | (x[i + 1] != x[i + 1]) | (x[i + 2] != x[i + 2]) | (x[i + 3] != x[i + 3]) |
                  (x[i + 4] != x[i + 4]) | (x[i + 5] != x[i + 5]) | (x[i + 6] != x[i + 6]) | (x[i + 7] != x[i + 7]);
        if (any)
            for (int64_t j = i; j < i + 8; j++) offer(&t, j);
    }
    for (; i < n; i++) offer(&t, i);
    *saw_nan = t.saw_nan;
    return t.filled;
}

int64_t pg_top_k(const float *x, int64_t n, int64_t k, int64_t *positions) {
    if (n < 0 || k < 0) return PG_EBADARG;
    if (k == 0) return 0;
    int saw_nan;
    return pg_top_k_scan(x, n, k, positions, &saw_nan);
}
