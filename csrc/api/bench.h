/* Benchmark helpers (bench/kernels.py); cdef'd by cffi: plain declarations only. */

struct pg_pool;   /* the thread pool of api/kernels.h (this header may come first) */

/* Streaming read of `bytes` bytes of buf, split over the pool's threads (each reads a
 * contiguous share once). Returns a checksum of what was read so the loads cannot be elided. */
uint64_t pg_bench_read(struct pg_pool *pool, const void *buf, size_t bytes);

/* 1 if the gemm used for (isa, type) is a SIMD kernel, 0 if it falls back to the reference. */
int pg_bench_gemm_is_simd(int isa, int type);

/* pg_matmul repeated `reps` times in one call, so a benchmark of small matrices measures the
 * kernel, the thread hand-off and the activation quantization, not Python's per-call cost
 * (the forward pass calls C once per token). Returns pg_matmul's status. */
int pg_bench_matmul(struct pg_pool *pool, int wtype, const void *w, size_t w_stride, int64_t nrows, int64_t n,
                    const float *x, float *y, void *scratch, size_t scratch_bytes, int reps);
