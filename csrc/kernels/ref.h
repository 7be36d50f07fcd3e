/* The portable kernels: the scalar row of the dispatch table, which every ISA falls back to and
 * every SIMD kernel is tested against (kernels/ref.c; the formats' own in quants/). */
#ifndef PYGGUF_KERNELS_REF_H
#define PYGGUF_KERNELS_REF_H

#include "kernels/kernels.h"

/* gemm: one reference vec_dot per (row, token) */
#define PG_DECLARE_GEMM_REF(t) void pg_gemm_##t##_ref(PG_GEMM_ARGS);
PG_DECLARE_GEMM_REF(f32) PG_DECLARE_GEMM_REF(f16) PG_DECLARE_GEMM_REF(bf16)
PG_DECLARE_GEMM_REF(q4_0) PG_DECLARE_GEMM_REF(q4_1) PG_DECLARE_GEMM_REF(q5_0) PG_DECLARE_GEMM_REF(q5_1)
PG_DECLARE_GEMM_REF(q8_0)
PG_DECLARE_GEMM_REF(q2_K) PG_DECLARE_GEMM_REF(q3_K) PG_DECLARE_GEMM_REF(q4_K) PG_DECLARE_GEMM_REF(q5_K)
PG_DECLARE_GEMM_REF(q6_K)
#undef PG_DECLARE_GEMM_REF

/* Activation quantizers: llama.cpp's run-time rounding where it differs from its reference
 * (Q8_0/Q8_1: id = 127/amax, round half to even, as its SIMD quantizers; quants/q8_0.c, q8_1.c);
 * every other format's activations take its reference quantizer (pg_quantize_ref_<t>). */
void pg_quantize_act_q8_0(const float *x, void *y, int64_t n);
void pg_quantize_act_q8_1(const float *x, void *y, int64_t n);
#define PG_DECLARE_QUANTIZE_REF(t) void pg_quantize_ref_##t(const float *x, void *y, int64_t n);
PG_DECLARE_QUANTIZE_REF(f32) PG_DECLARE_QUANTIZE_REF(f16) PG_DECLARE_QUANTIZE_REF(bf16)
PG_DECLARE_QUANTIZE_REF(q4_0) PG_DECLARE_QUANTIZE_REF(q4_1) PG_DECLARE_QUANTIZE_REF(q5_0)
PG_DECLARE_QUANTIZE_REF(q5_1) PG_DECLARE_QUANTIZE_REF(q8_0) PG_DECLARE_QUANTIZE_REF(q8_1)
PG_DECLARE_QUANTIZE_REF(q2_K) PG_DECLARE_QUANTIZE_REF(q3_K) PG_DECLARE_QUANTIZE_REF(q4_K)
PG_DECLARE_QUANTIZE_REF(q5_K) PG_DECLARE_QUANTIZE_REF(q6_K) PG_DECLARE_QUANTIZE_REF(q8_K)
#undef PG_DECLARE_QUANTIZE_REF

void pg_rmsnorm_ref(float *out, const float *x, const float *w, int64_t n, float eps);
void pg_swiglu_ref(float *g, const float *u, int64_t n);     /* libm's expf */
void pg_geglu_ref(float *g, const float *u, int64_t n);      /* llama.cpp's binary16 GELU table */
void pg_f16_row_ref(pg_half *out, const float *x, int64_t n);
extern const pg_attention_kernels pg_attention_kernels_ref;

/* the reference attention loops over an F16 cache and its softmax (kernels/ref.c): what an ISA
 * without loops of its own for F16 puts in its pg_attention_kernels */
void pg_attention_scores_f16_ref(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                 float scale, float *row);
void pg_attention_accumulate_f16_ref(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                     float *row);
float pg_attention_softmax_ref(float *s, int n);

/* the reference attention loops over a q8_0 / q4_0 cache (kernels/attention_quant_ref.c) */
void pg_attention_scores_q8_0_ref(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                  float scale, float *work);
void pg_attention_scores_q4_0_ref(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                  float scale, float *work);
void pg_attention_accumulate_q8_0_ref(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                      float *work);
void pg_attention_accumulate_q4_0_ref(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                      float *work);

/* llama.cpp's GELU of every binary16 value (the index), widened to float: what every ISA's GEGLU
 * looks up (kernels/ref.c says how it is built). Built on the first call, once, whichever threads
 * call; 65536 floats. */
const float *pg_gelu_table(void);

/* Builds the F16 -> F32 table the reference attention reads the cache through (pg_kernels does,
 * before it hands out any kernel). Safe to call from several threads, any number of times. */
void pg_ref_init(void);

#endif
