/* Internal to the sampling C files: the stable descending sort every "sorted candidates" step uses. */
#ifndef PG_SAMPLING_SORT_H
#define PG_SAMPLING_SORT_H

/* Bytes of scratch pg_sort_desc needs for n values. */
size_t pg_sort_scratch_bytes(int64_t n);

/* order[0..n) = the positions of vals[0..n) by value, largest first, equal values (-0 and +0
 * included) in position order: numpy's argsort(-vals, kind="stable"). vals must hold no NaN;
 * scratch must be 4-byte aligned and hold pg_sort_scratch_bytes(n). */
void pg_sort_desc(const float *vals, int64_t n, int32_t *order, void *scratch);

/* Where key sits in a[0..n) (sorted ascending), or -1: the overlay lookups of chain.c and the
 * skip list of the top-k scan. */
static inline int64_t pg_sorted_find_i32(const int32_t *a, int64_t n, int64_t key) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && a[lo] == key ? lo : -1;
}

#endif
