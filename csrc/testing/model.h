/* Test entry points of the model (cdef'd by cffi; see testing/kernels.h for why they share the
 * product's extension). */
#ifndef PYGGUF_TESTING_MODEL_H
#define PYGGUF_TESTING_MODEL_H

/* Copies positions [pos0, pos0 + n) of one sequence and layer of the KV cache as float32 into k
 * and v, each (n_head_kv, n, head_dim), dequantized from the cache's types. */
int pg_model_kv_read(pg_model *m, int32_t seq, int32_t layer, int32_t pos0, int32_t n, float *k, float *v);

/* The Hadamard blocks the model rotates q and k (*rot_k) and v and the attention output (*rot_v)
 * by, 0 where it does not (model/hadamard.h). Cached rows are stored rotated: what
 * pg_model_kv_read returns is H times the key or value. */
int pg_model_rotation(const pg_model *m, int32_t *rot_k, int32_t *rot_v);

/* One weight matrix as the model holds it: W (nrows, n), rows back to back (kept by the caller),
 * repacked once as the model repacks it at load for the active ISA (repack 1: where the ISA has
 * a repacked kernel) or left as GGUF rows (repack 0). */
typedef struct pg_matrix pg_matrix;
int pg_matrix_new(int type, const void *w, int64_t nrows, int64_t n, int repack, pg_matrix **out);
void pg_matrix_free(pg_matrix *m);

/* The forward pass's matrix stage on one matrix: for tests of one matrix at any thread count, and
 * for the benchmark, which repeats it `reps` times in one call so that Python's per-call cost is
 * not counted (the forward calls C once per token). x (ntok, n) floats, y (ntok, nrows). Each
 * rep: every thread quantizes x with the active ISA's quantizer into its own buffer (as the
 * forward does a normed input), then the threads take W's rows in the forward's chunks and
 * multiply them with the model's pg_weight_gemm (repacked rows, with the AMX choice, where the
 * matrix has them). A barrier ends each rep. */
int pg_matrix_stage(pg_pool *pool, const pg_matrix *m, const float *x, int ntok, float *y, int reps);

/* The same stage over `count` matrices of one type and shape in turn, each rep (each matrix its
 * own barrier, as the forward's stages): copies of one matrix that together outgrow the last-level
 * cache make the benchmark read the weights from memory, as a model bigger than the cache does. */
int pg_matrix_set_stage(pg_pool *pool, const pg_matrix *const *ms, int count, const float *x, int ntok, float *y,
                        int reps);

#endif
