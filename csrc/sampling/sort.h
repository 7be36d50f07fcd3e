/* Internal to the sampling C files: the stable descending sort every "sorted candidates" step uses. */
#ifndef PG_SAMPLING_SORT_H
#define PG_SAMPLING_SORT_H

/* Bytes of scratch pg_sort_desc needs for n values. */
size_t pg_sort_scratch_bytes(int64_t n);

/* order[0..n) = the positions of vals[0..n) by value, largest first, equal values (-0 and +0
 * included) in position order: numpy's argsort(-vals, kind="stable"). vals must hold no NaN;
 * scratch must be 4-byte aligned and hold pg_sort_scratch_bytes(n). */
void pg_sort_desc(const float *vals, int64_t n, int32_t *order, void *scratch);

#endif
