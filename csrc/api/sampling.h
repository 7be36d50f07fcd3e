/* Sampling helpers (cffi cdefs). */

/* Positions of the k largest of x[0..n), largest first, ties in position order (as a stable
 * descending sort); NaNs are never chosen. Returns how many were written (< k when fewer than
 * k values are not NaN), or a negative PG_E* code. */
int64_t pg_top_k(const float *x, int64_t n, int64_t k, int64_t *positions);
