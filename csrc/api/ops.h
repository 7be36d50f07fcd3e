/* The forward pass's small kernels, exposed for tests (cdef'd by cffi: plain declarations only). */

/* g = silu(g) * u over n values with the kernel an instruction set (pg_isa) uses in the forward
 * pass; PG_ENOKERNEL when this machine or build cannot run it. */
int pg_swiglu_isa(int isa, float *g, const float *u, int64_t n);
