/* vals (n,) -> order (n,): positions by value, largest first, ties in position order. Short
 * arrays get an insertion sort; long ones (a whole vocabulary) a stable LSD radix sort on the
 * float bits mapped to descending unsigned keys: three passes of 11 bits, each one histogram
 * and one scatter, instead of the n log n branchy compares of a comparison sort. */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "sampling/sort.h"

enum { INSERTION_MAX = 64, DIGIT_BITS = 11, N_BUCKETS = 1 << DIGIT_BITS, N_PASSES = 3 };

/* Unsigned key whose ascending order is the floats' descending order. */
static uint32_t descending_key(float v) {
    v += 0.0f;                              /* -0 becomes +0: the two compare equal, so share a key */
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~ascending;
}

size_t pg_sort_scratch_bytes(int64_t n) {
    return n <= INSERTION_MAX ? 0 : (size_t)n * (2 * sizeof(uint32_t) + sizeof(int32_t));
}

static void insertion_sort(const float *vals, int64_t n, int32_t *order) {
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i;
        while (j > 0 && vals[order[j - 1]] < vals[i]) {   /* strict: equal values keep their order */
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (int32_t)i;
    }
}

static void radix_sort(const float *vals, int64_t n, int32_t *order, void *scratch) {
    uint32_t *keys = scratch, *keys_next = keys + n;
    int32_t *pos = order, *pos_next = (int32_t *)(keys_next + n);
    uint32_t count[N_PASSES][N_BUCKETS];
    memset(count, 0, sizeof count);
    for (int64_t i = 0; i < n; i++) {
        const uint32_t key = descending_key(vals[i]);
        keys[i] = key;
        pos[i] = (int32_t)i;
        for (int p = 0; p < N_PASSES; p++) count[p][(key >> (p * DIGIT_BITS)) & (N_BUCKETS - 1)]++;
    }
    for (int p = 0; p < N_PASSES; p++) {
        const int shift = p * DIGIT_BITS;
        uint32_t *bucket = count[p];
        if (bucket[(keys[0] >> shift) & (N_BUCKETS - 1)] == (uint32_t)n) continue;   /* one bucket: nothing moves */
        uint32_t start = 0;
        for (int b = 0; b < N_BUCKETS; b++) {
            const uint32_t c = bucket[b];
            bucket[b] = start;
            start += c;
        }
        for (int64_t i = 0; i < n; i++) {   /* in input order, so equal digits keep their order */
            const uint32_t dst = bucket[(keys[i] >> shift) & (N_BUCKETS - 1)]++;
            keys_next[dst] = keys[i];
            pos_next[dst] = pos[i];
        }
        uint32_t *k = keys; keys = keys_next; keys_next = k;
        int32_t *q = pos; pos = pos_next; pos_next = q;
    }
    if (pos != order) memcpy(order, pos, (size_t)n * sizeof *order);
}

void pg_sort_desc(const float *vals, int64_t n, int32_t *order, void *scratch) {
    if (n <= INSERTION_MAX)
        insertion_sort(vals, n, order);
    else
        radix_sort(vals, n, order, scratch);
}
