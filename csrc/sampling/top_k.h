/* Internal to the sampling C files: the top-k scan behind pg_top_k. */
#ifndef PG_SAMPLING_TOP_K_H
#define PG_SAMPLING_TOP_K_H

/* Positions of the k (>= 1) largest of x[0..n), largest first, equal values in position order,
 * and their values (values: scratch of k floats); the n_skip positions in skip (sorted ascending)
 * are never chosen, NaNs neither and they set *saw_nan. Returns how many were written (< k only
 * when fewer than k values qualify). */
int64_t pg_top_k_scan(const float *x, int64_t n, int64_t k, int64_t *positions, float *values,
                      const int32_t *skip, int64_t n_skip, int *saw_nan);

#endif
