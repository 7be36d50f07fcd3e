/* Test entry points of the model (cdef'd by cffi; see testing/kernels.h for why they share the
 * product's extension). */
#ifndef PYGGUF_TESTING_MODEL_H
#define PYGGUF_TESTING_MODEL_H

/* Copies positions [pos0, pos0 + n) of one sequence and layer of the KV cache as float32 into k
 * and v, each (n_head_kv, n, head_dim). */
int pg_model_kv_read(pg_model *m, int32_t seq, int32_t layer, int32_t pos0, int32_t n, float *k, float *v);

/* The forward pass's matrix stage on one matrix: for tests of one matrix at any thread count, and
 * for the benchmark, which repeats it `reps` times in one call so that Python's per-call cost is
 * not counted (the forward calls C once per token). W (nrows, n) rows back to back, x (ntok, n)
 * floats, y (ntok, nrows). Each rep: every thread quantizes x with the active ISA's quantizer into
 * its own buffer (as the forward does a normed input), then the threads take W's rows in the
 * forward's chunks and multiply them with the model's pg_weight_gemm: over the rows repacked as
 * the model repacks them (repack 1) or over the GGUF rows (repack 0). A barrier ends each rep. */
int pg_matrix_stage(pg_pool *pool, int type, const void *w, int64_t nrows, int64_t n, const float *x, int ntok,
                    float *y, int repack, int reps);

#endif
