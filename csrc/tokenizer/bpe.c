/* Symbol merging for the tokenizers: a pair table (left, right) -> (priority, result) and the
 * merge loop over one word. Python builds the table once per vocabulary (BPE: merge ranks;
 * SentencePiece: every token split into two symbols, ordered by score), so one loop serves both.
 *
 * Order (llama.cpp's): repeatedly merge the adjacent pair with the lowest priority, the leftmost
 * one on ties. A binary heap holds candidate pairs; entries made stale by an earlier merge are
 * recognised on pop because the symbols at their positions have changed. */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>

#include "api/bpe.h"

typedef struct {
    uint64_t key;        /* (left << 32) | right, both as uint32 */
    int32_t priority;    /* EMPTY_SLOT marks a free slot (one cache line holds key and flag) */
    int32_t result;
} pair_slot;

#define EMPTY_SLOT INT32_MIN

struct pg_merge_table {
    pair_slot *slots;
    uint64_t mask;       /* capacity - 1, capacity a power of two */
};

static inline uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static inline uint64_t slot_of(uint64_t key, uint64_t mask) {
    return (key * 0x9E3779B97F4A7C15ull >> 17) & mask;
}

/* (n_pairs) rows -> table; the first row of a repeated pair wins. NULL on bad input or no memory. */
pg_merge_table *pg_merge_table_new(int64_t n_pairs, const int32_t *left, const int32_t *right,
                                   const int32_t *priority, const int32_t *result) {
    if (n_pairs < 0 || n_pairs > (INT64_C(1) << 30) ||
        (n_pairs > 0 && (!left || !right || !priority || !result))) {
        return NULL;
    }
    uint64_t cap = 16;
    while (cap < (uint64_t)n_pairs * 2) cap <<= 1;
    pg_merge_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots) {
        pg_merge_table_free(t);
        return NULL;
    }
    for (uint64_t s = 0; s < cap; s++) t->slots[s].priority = EMPTY_SLOT;
    t->mask = cap - 1;
    for (int64_t i = 0; i < n_pairs; i++) {
        if (priority[i] == EMPTY_SLOT) continue;            /* reserved value: not a priority */
        uint64_t key = pair_key(left[i], right[i]);
        uint64_t s = slot_of(key, t->mask);
        while (t->slots[s].priority != EMPTY_SLOT && t->slots[s].key != key) s = (s + 1) & t->mask;
        if (t->slots[s].priority != EMPTY_SLOT) continue;
        t->slots[s] = (pair_slot){key, priority[i], result[i]};
    }
    return t;
}

void pg_merge_table_free(pg_merge_table *t) {
    if (!t) return;
    free(t->slots);
    free(t);
}

static inline const pair_slot *lookup(const pg_merge_table *t, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return NULL;          /* symbols that can never merge */
    uint64_t key = pair_key(left, right);
    uint64_t s = slot_of(key, t->mask);
    while (t->slots[s].priority != EMPTY_SLOT) {
        if (t->slots[s].key == key) return &t->slots[s];
        s = (s + 1) & t->mask;
    }
    return NULL;
}

typedef struct {
    int32_t priority;
    int32_t left;        /* position of the left symbol */
    int32_t lsym, rsym;  /* the symbols when the entry was made */
} candidate;

static inline int before(const candidate *a, const candidate *b) {
    return a->priority < b->priority || (a->priority == b->priority && a->left < b->left);
}

static void heap_push(candidate *h, int64_t *n, candidate c) {
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!before(&c, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static candidate heap_pop(candidate *h, int64_t *n) {
    candidate top = h[0];
    candidate last = h[--(*n)];
    int64_t i = 0;
    for (;;) {
        int64_t child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && before(&h[child + 1], &h[child])) child++;
        if (!before(&h[child], &last)) break;
        h[i] = h[child];
        i = child;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static void consider(const pg_merge_table *t, candidate *heap, int64_t *n_heap,
                     const int32_t *sym, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const pair_slot *p = lookup(t, sym[left], sym[right]);
    if (p) heap_push(heap, n_heap, (candidate){p->priority, left, sym[left], sym[right]});
}

/* sym (n,) initial symbol ids, one per character -> sym (m,) merged symbols and start (m,) the
 * character index where each begins; returns m, or -1 on bad arguments / no memory. */
int64_t pg_merge_apply(const pg_merge_table *t, int32_t *sym, int32_t *start, int64_t n) {
    if (!t || !sym || !start || n < 0 || n > INT32_MAX / 4) return -1;
    if (n < 2) {
        if (n == 1) start[0] = 0;
        return n;
    }
    int32_t *next = malloc((size_t)n * sizeof *next);
    int32_t *prev = malloc((size_t)n * sizeof *prev);
    candidate *heap = malloc((size_t)(3 * n) * sizeof *heap);   /* n-1 seeds + 2 per merge */
    if (!next || !prev || !heap) {
        free(next); free(prev); free(heap);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
    int64_t n_heap = 0;
    for (int32_t i = 0; i + 1 < n; i++) consider(t, heap, &n_heap, sym, i, i + 1);

    while (n_heap > 0) {
        candidate c = heap_pop(heap, &n_heap);
        int32_t left = c.left, right = next[left];
        if (right < 0 || sym[left] != c.lsym || sym[right] != c.rsym) continue;   /* stale */
        const pair_slot *p = lookup(t, c.lsym, c.rsym);
        sym[left] = p->result;
        sym[right] = -2;                                   /* absorbed */
        next[left] = next[right];
        if (next[left] >= 0) prev[next[left]] = left;
        consider(t, heap, &n_heap, sym, prev[left], left);
        consider(t, heap, &n_heap, sym, left, next[left]);
    }

    int64_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) {
        sym[m] = sym[i];
        start[m] = i;
        m++;
    }
    free(next); free(prev); free(heap);
    return m;
}
