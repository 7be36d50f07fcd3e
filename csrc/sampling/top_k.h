/* Internal to the sampling C files: the top-k scan behind pg_top_k. */
#ifndef PG_SAMPLING_TOP_K_H
#define PG_SAMPLING_TOP_K_H

/* Positions of the k (>= 1) largest of x[0..n), largest first, equal values in position order;
 * NaNs are skipped and flagged in *saw_nan. Returns how many were written (< k only when fewer
 * than k values are not NaN). */
int64_t pg_top_k_scan(const float *x, int64_t n, int64_t k, int64_t *positions, int *saw_nan);

#endif
