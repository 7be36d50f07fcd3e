/* Every AArch64 kernel the dispatch table names (kernels/dispatch.c): NEON with the dot-product
 * extension (ARMv8.2 sdot). The ISA files include this too, so a definition that strays from its
 * type does not compile. */
#ifndef PYGGUF_KERNELS_ARM_H
#define PYGGUF_KERNELS_ARM_H

#include "kernels/kernels.h"

void pg_gemm_f32_neon(PG_GEMM_ARGS); void pg_gemm_f16_neon(PG_GEMM_ARGS); void pg_gemm_bf16_neon(PG_GEMM_ARGS);
void pg_gemm_q4_0_neon(PG_GEMM_ARGS); void pg_gemm_q4_1_neon(PG_GEMM_ARGS);
void pg_gemm_q5_0_neon(PG_GEMM_ARGS); void pg_gemm_q5_1_neon(PG_GEMM_ARGS);
void pg_gemm_q8_0_neon(PG_GEMM_ARGS);
void pg_gemm_q2_K_neon(PG_GEMM_ARGS); void pg_gemm_q3_K_neon(PG_GEMM_ARGS); void pg_gemm_q4_K_neon(PG_GEMM_ARGS);
void pg_gemm_q5_K_neon(PG_GEMM_ARGS); void pg_gemm_q6_K_neon(PG_GEMM_ARGS);

/* GEGLU (kernels/arm/geglu_neon.c): the reference's bits */
void pg_geglu_neon(float *g, const float *u, int64_t n);

/* attention over a q8_0 / q4_0 cache (kernels/arm/attention_quant_neon.c): the reference's bits;
 * an F16 cache takes the reference loops */
extern const pg_attention_kernels pg_attention_kernels_neon;
void pg_attention_scores_q8_0_neon(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work);
void pg_attention_scores_q4_0_neon(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work);
void pg_attention_accumulate_q8_0_neon(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work);
void pg_attention_accumulate_q4_0_neon(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work);

#endif
