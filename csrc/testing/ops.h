/* Test entry points of the forward pass's small kernels (cdef'd by cffi; see testing/kernels.h
 * for why they share the product's extension): each ISA's kernel beside the reference. */
#ifndef PYGGUF_TESTING_OPS_H
#define PYGGUF_TESTING_OPS_H

/* g = silu(g) * u over n values with the kernel an instruction set (pg_isa) uses in the forward
 * pass; PG_ENOKERNEL when this machine or build cannot run it. */
int pg_swiglu_isa(int isa, float *g, const float *u, int64_t n);

/* g = gelu(g) * u over n values, llama.cpp's binary16 GELU table and +-10 clamps (kernels/ref.c),
 * with the kernel an instruction set's row of the dispatch table gives; PG_ENOKERNEL as above. */
int pg_geglu_isa(int isa, float *g, const float *u, int64_t n);

/* out (n,) = x / rms(x) * w with the RMSNorm an instruction set runs in the forward pass */
int pg_rmsnorm_isa(int isa, float *out, const float *x, const float *w, int64_t n, float eps);

/* x (n,) -> out (n,) binary16 bits with the conversion an instruction set uses for the KV cache */
int pg_f16_row_isa(int isa, uint16_t *out, const float *x, int64_t n);

/* Causal attention of n_rep query heads over n_kv cached rows with the kernels an instruction
 * set runs in the forward pass: q (n_rep, head_dim); k, v (n_kv rows of head_dim values) of the
 * cache types type_k, type_v (ggml ids: F16 as binary16 bits, Q8_0 or Q4_0 blocks, which need
 * head_dim % 32 == 0), out (n_rep, head_dim); scores (n_rep, n_kv), when not NULL, gets q K^T *
 * scale before the softmax. PG_ENOKERNEL when this machine or build cannot run the ISA,
 * PG_EBADTYPE for a type the cache cannot hold. */
int pg_attention_isa(int isa, float *out, float *scores, const float *q, int n_rep, int head_dim, int n_kv,
                     int type_k, const void *k, int type_v, const void *v, float scale);

/* s (n,) -> exp(s - max s) in place and *inv_sum = 1 / their sum (in double, term by term), with
 * the softmax an instruction set's attention runs */
int pg_attention_softmax_isa(int isa, float *s, int n, float *inv_sum);

/* One score in the AVX2 kernel's order of operations, written out lane by lane in scalar code
 * (the oracle that pins that order); PG_ENOKERNEL off x86 or without AVX2. */
int pg_attention_score_order_avx2(float *s, const float *q, const uint16_t *k, int head_dim, float scale);

/* out (n_rep, head_dim) = p (n_rep, n_kv) V (n_kv, head_dim, binary16 bits) in the AVX2 kernel's
 * order of operations, written out in scalar code (before the division by the softmax sum) */
int pg_attention_accumulate_order_avx2(float *out, const float *p, int n_rep, const uint16_t *v, int n_kv,
                                       int head_dim);

/* x (n,) rotated in place block by block by the forward's orthonormal Walsh-Hadamard matrix of
 * `block` values (model/hadamard.h); PG_EBADARG unless block is a power of two >= 4 and n a multiple */
int pg_hadamard_rotate_checked(float *x, int64_t n, int block);

/* y = exp(x) with the exp of an instruction set's softmax (libm's expf for scalar) */
int pg_attention_expf_isa(int isa, float *y, const float *x, int64_t n);

#endif
