/* Python-facing kernel API (cdef'd by cffi: plain declarations only).
 * Every entry point checks its arguments and returns 0 on success or a negative PG_E* code. */

/* error codes */
enum { PG_OK = 0, PG_EBADTYPE = -1, PG_EBADSIZE = -2, PG_ENOKERNEL = -3, PG_EBADISA = -4, PG_ENOMEM = -5, PG_EBADARG = -6 };

/* type table: returns PG_EBADTYPE for an unknown id, PG_ENOKERNEL if a reference function is missing */
int pg_type_info(int type, int64_t *blck_size, size_t *type_size, int *act_type);
const char *pg_type_name(int type);

/* reference quantizer / dequantizer / dot (n a multiple of the block size) */
int pg_quantize(int type, const float *x, void *y, int64_t n);
int pg_dequantize(int type, const void *x, float *y, int64_t n);
/* the run-time activation quantizer of an activation format (see traits.h: quantize_act) */
int pg_quantize_activation(int type, const float *x, void *y, int64_t n);
int pg_vec_dot(int type, int64_t n, float *s, const void *w, const void *a);

/* instruction sets: 0 scalar, 1 avx2, 2 avx512, 3 neon */
int pg_isa_supported(int isa);
int pg_isa_active(void);
int pg_isa_set(int isa);
const char *pg_isa_name(int isa);
/* 1 where the avx512 ISA may use AMX-INT8 tiles for batches (the CPU has them, Linux grants
 * them, and PYGGUF_AMX is not 0); asked once per process */
int pg_amx_available(void);

/* One ISA's gemm, single-threaded: y[t*ldy + r] = dot(W row r, A row t), A already in the
 * type's activation format (see pg_type_info). For tests and benchmarks of each variant. */
int pg_gemm(int isa, int type, int64_t n, const void *w, size_t w_stride, int nrows,
            const void *a, size_t a_stride, int ntok, float *y, size_t ldy);

/* Persistent thread pool owned by C; the calling thread is worker 0. */
typedef struct pg_pool pg_pool;
pg_pool *pg_pool_new(int n_threads);
void pg_pool_free(pg_pool *pool);
int pg_pool_size(pg_pool *pool);

/* Y (ntok, nrows) = X (ntok, n) @ W (nrows, n)^T on the pool, with the active ISA.
 * X is float32, row-major; it is quantized once into `scratch` (pg_matmul_scratch_bytes).
 * Rows are split over threads, so any thread count gives bit-identical Y. */
size_t pg_matmul_scratch_bytes(int wtype, int64_t n, int64_t ntok);
int pg_matmul(pg_pool *pool, int wtype, const void *w, size_t w_stride, int64_t nrows, int64_t n,
              const float *x, int64_t ntok, float *y, void *scratch, size_t scratch_bytes);
