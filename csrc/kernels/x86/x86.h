/* Every x86 kernel the dispatch table names (kernels/dispatch.c), one declaration each; the ISA
 * files include this too, so a definition that strays from its type does not compile. Suffixes:
 * _avx2 (AVX2 + FMA + F16C), _avx512 (AVX-512 F/BW/VL/VNNI), _r8 (the repacked layout), _amx. */
#ifndef PYGGUF_KERNELS_X86_H
#define PYGGUF_KERNELS_X86_H

#include "kernels/kernels.h"

#define PG_DECLARE_X86_GEMMS(isa)                                                                  \
    void pg_gemm_f32_##isa(PG_GEMM_ARGS); void pg_gemm_f16_##isa(PG_GEMM_ARGS);                    \
    void pg_gemm_bf16_##isa(PG_GEMM_ARGS);                                                         \
    void pg_gemm_q4_0_##isa(PG_GEMM_ARGS); void pg_gemm_q4_1_##isa(PG_GEMM_ARGS);                  \
    void pg_gemm_q5_0_##isa(PG_GEMM_ARGS); void pg_gemm_q5_1_##isa(PG_GEMM_ARGS);                  \
    void pg_gemm_q8_0_##isa(PG_GEMM_ARGS);                                                         \
    void pg_gemm_q2_K_##isa(PG_GEMM_ARGS); void pg_gemm_q3_K_##isa(PG_GEMM_ARGS);                  \
    void pg_gemm_q4_K_##isa(PG_GEMM_ARGS); void pg_gemm_q5_K_##isa(PG_GEMM_ARGS);                  \
    void pg_gemm_q6_K_##isa(PG_GEMM_ARGS);                                                         \
    void pg_gemm_q4_0_r8_##isa(PG_GEMM_R8_ARGS); void pg_gemm_q4_1_r8_##isa(PG_GEMM_R8_ARGS);      \
    void pg_gemm_q8_0_r8_##isa(PG_GEMM_R8_ARGS);
PG_DECLARE_X86_GEMMS(avx2)
PG_DECLARE_X86_GEMMS(avx512)
#undef PG_DECLARE_X86_GEMMS

/* Q4_K and Q5_K over their repacked (sliced) layout; AVX-512 takes these too */
void pg_gemm_q4_K_r8_avx2(PG_GEMM_R8_ARGS); void pg_gemm_q5_K_r8_avx2(PG_GEMM_R8_ARGS);

/* The AMX tile gemm of the repacked layout (kernels/x86/r8_amx.h), and the same driver with the
 * tile product computed in C (any AVX2 CPU: the tests check it where there are no tiles) */
void pg_gemm_q4_0_r8_amx(PG_GEMM_R8_ARGS); void pg_gemm_q4_1_r8_amx(PG_GEMM_R8_ARGS);
void pg_gemm_q8_0_r8_amx(PG_GEMM_R8_ARGS);
void pg_gemm_q4_0_r8_amx_emulated(PG_GEMM_R8_ARGS); void pg_gemm_q4_1_r8_amx_emulated(PG_GEMM_R8_ARGS);
void pg_gemm_q8_0_r8_amx_emulated(PG_GEMM_R8_ARGS);

/* activation quantizers, the bytes of the scalar ones (kernels/ref.h) */
void pg_quantize_act_q8_0_avx2(const float *x, void *y, int64_t n);
void pg_quantize_act_q8_1_avx2(const float *x, void *y, int64_t n);
void pg_quantize_act_q8_K_avx2(const float *x, void *y, int64_t n);

/* the forward pass's other kernels: AVX2 + FMA + F16C, the floats of the references except
 * attention's dot products (kernels/x86/attention_avx2.c) */
void pg_rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps);
void pg_swiglu_avx2(float *g, const float *u, int64_t n);
void pg_geglu_avx2(float *g, const float *u, int64_t n);
void pg_f16_row_avx2(pg_half *out, const float *x, int64_t n);
extern const pg_attention_kernels pg_attention_kernels_avx2;

/* GEGLU with AVX-512 F (kernels/x86/geglu_avx512.c): the reference's bits, as AVX2's */
void pg_geglu_avx512(float *g, const float *u, int64_t n);

/* attention over a q8_0 / q4_0 cache (kernels/x86/attention_quant_avx2.c): the reference's bits */
void pg_attention_scores_q8_0_avx2(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work);
void pg_attention_scores_q4_0_avx2(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work);
void pg_attention_accumulate_q8_0_avx2(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work);
void pg_attention_accumulate_q4_0_avx2(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work);

/* For the tests: the AVX2 softmax's exp, and one score and one output value in the order of
 * operations of the AVX2 attention kernels, written out in scalar code */
void pg_expf_row_avx2(float *y, const float *x, int64_t n);
float pg_attention_score_lane_order(const float *q, const pg_half *k, int head_dim, float scale);
void pg_attention_accumulate_lane_order(float *out, const float *p, int n_rep, const pg_half *v, int n_kv,
                                        int head_dim);

#endif
