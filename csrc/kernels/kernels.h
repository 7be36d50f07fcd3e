/* The kernel function types: what every ISA's kernels implement and the dispatch table
 * (kernels/dispatch.h) holds. Kernels depend on this and on quants/ only, never on the model.
 *
 * Contract of every kernel here: an output value depends only on its own inputs (a gemm's
 * y[t*ldy + r] only on W row r and A row t; a norm's value only on its row; a GLU's only on its
 * gate and up), never on how many rows, tokens or values a call holds or where the value sits in
 * a tile, so the forward pass gives the same bits at any thread count and batch size. */
#ifndef PYGGUF_KERNELS_H
#define PYGGUF_KERNELS_H

#include <stdint.h>
#include <stddef.h>
#include "quants/traits.h"

/* W (nrows, n) @ A (ntok, n)^T -> y: y[t*ldy + r] = dot(W row r, A row t). W rows are w_stride
 * bytes apart; A rows, already in the type's activation format (pg_type_traits.act_type), are
 * a_stride bytes apart. */
#define PG_GEMM_ARGS int64_t n, const void *w, size_t w_stride, int nrows, \
                     const void *a, size_t a_stride, int ntok, float *y, size_t ldy
typedef void (*pg_gemm_fn)(PG_GEMM_ARGS);

/* The same product with W in its type's repacked layout (kernels/repack.h: 8-row groups, or
 * sliced Q4_K/Q5_K rows), given from its first group (row) on: equal bit for bit to the
 * pg_gemm_fn of the GGUF rows on the same ISA. */
#define PG_GEMM_R8_ARGS int64_t n, const void *packed, int nrows, \
                        const void *a, size_t a_stride, int ntok, float *y, size_t ldy
typedef void (*pg_gemm_r8_fn)(PG_GEMM_R8_ARGS);

/* x (n,) -> out (n,) = x / rms(x) * w: the mean of squares taken in double, as llama.cpp */
typedef void (*pg_rmsnorm_fn)(float *out, const float *x, const float *w, int64_t n, float eps);

/* g, u (n,) -> g = silu(g) * u */
typedef void (*pg_swiglu_fn)(float *g, const float *u, int64_t n);

/* g, u (n,) -> g = gelu(g) * u with llama.cpp's binary16 GELU table and its +-10 clamps
 * (kernels/ref.c) */
typedef void (*pg_geglu_fn)(float *g, const float *u, int64_t n);

/* x (n,) -> out (n,) binary16, rounded to nearest even (pg_float_to_half's bits): keys and values
 * into the KV cache */
typedef void (*pg_f16_row_fn)(pg_half *out, const float *x, int64_t n);

/* The KV cache types (llama.cpp's -ctk/-ctv): F16, and q8_0 and q4_0 rows of whole 32-value
 * blocks (head_dim % 32 == 0), the GGUF formats' blocks (quants/blocks.h). Attention reads each
 * type as it is stored: no dequantized copy of the cache is made. */
enum { PG_KV_F16, PG_KV_Q8_0, PG_KV_Q4_0, PG_KV_TYPES };

/* The index of a ggml type among the cache types, or -1 when the cache cannot hold it */
static inline int pg_kv_index(int type) {
    return type == PG_F16 ? PG_KV_F16 : type == PG_Q8_0 ? PG_KV_Q8_0 : type == PG_Q4_0 ? PG_KV_Q4_0 : -1;
}

/* Floats of work space the attention loops of n_rep heads of head_dim take besides the scores:
 * one converted K or V row (the reference), or the n_rep query rows quantized to Q8_0 (34 bytes
 * per 32 values) for the scores against a quantized K */
static inline size_t pg_attention_work_floats(int n_rep, int head_dim) {
    return (size_t)(n_rep + 1) * (size_t)head_dim;
}

/* The three inner loops of attention over the cache of one KV head, shared by its n_rep query
 * heads (each cached row is read once for all of them):
 *   scores:     s (n_rep, n_kv): s[h * n_kv + j] = dot(q (n_rep, head_dim) row h, K row j) * scale
 *   softmax:    s (n,) -> exp(s - max(s)) in place, with libm's expf values; returns 1 / the sum of
 *               the new s[j] taken in double in order j = 0, 1, ... (that sum's value, however it
 *               is computed)
 *   accumulate: out (n_rep, head_dim): out row h = sum over j = 0, 1, .. n_kv-1 of p[h * n_kv + j] * V row j
 * for K, V (n_kv rows of head_dim values) of the cache type that indexes scores[] / accumulate[].
 * `work` is pg_attention_work_floats of scratch. Every ISA's version uses one fixed order of
 * operations per value, so a score depends only on q_h and K row j, and an output value only on
 * its column of p and V: never on n_kv or where a position falls in a block.
 *
 * The quantized types follow llama.cpp's CPU attention over a quantized cache: q is quantized to
 * Q8_0 (llama.cpp's run-time rounding, the forward's activation quantizer) and each score is a
 * sum over blocks of exact integer block dots times d_k * d_q, taken block after block in float
 * (no FMA), so every ISA gives the reference's bits; the integer dot reads 8- or 4-bit values
 * without widening them to float, which is what makes a quantized K cheaper to score than F16
 * and not only smaller. V is summed in float: out = fma(p * d_v, q_v, out) position by
 * position, again the reference's bits on every ISA. */
typedef void (*pg_attention_scores_fn)(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                       float scale, float *work);
typedef void (*pg_attention_accumulate_fn)(float *out, const float *p, int n_rep, const void *v, int n_kv,
                                           int head_dim, float *work);
typedef struct {
    const char *name;
    int head_dim_multiple;   /* the head sizes these loops take: multiples of this (32 for the
                                quantized types, which the cache guarantees) */
    pg_attention_scores_fn scores[PG_KV_TYPES];
    float (*softmax)(float *s, int n);
    pg_attention_accumulate_fn accumulate[PG_KV_TYPES];
} pg_attention_kernels;

/* Causal attention of one token's n_rep query heads against the cache of their KV head, with any
 * ISA's inner loops. q (n_rep, head_dim) at position pos; kc, vc (n_ctx rows of head_dim values,
 * of the cache types type_k, type_v) holding positions 0..pos; out (n_rep, head_dim). scratch:
 * n_rep * (pos + 1) + pg_attention_work_floats(n_rep, head_dim) floats. Softmax and the V sum are
 * in F32. softcap > 0: each score s becomes softcap * tanh(s / softcap) before the softmax
 * (Gemma 2's attention soft-capping). A sliding window passes kc, vc at its first position and
 * pos relative to it. */
void pg_attention_group(const pg_attention_kernels *kern, float *out, const float *q, int n_rep, int head_dim,
                        int pos, int type_k, const void *kc, int type_v, const void *vc, float scale,
                        float softcap, float *scratch);

/* Reordered double sums whose value is kept. A sum of n nonnegative terms taken in any order is
 * within (n-1)u / (1 - (n-1)u) of the exact sum (u = 2^-53), so a sum taken in lanes brackets
 * the one taken term by term: [*lo, *hi] = lanes * (1 -+ (2n + 8)u), with room for the
 * bracket's own roundings. When a monotone function of the sum rounds lo and hi to the same
 * float, that float is the term-by-term answer; callers redo the sequential sum when they
 * differ: near a float rounding boundary (about once in 10^6 rows) or with a NaN term. */
static inline void pg_sum_bracket(double lanes, int64_t n, double *lo, double *hi) {
    const double e = (double)(2 * n + 8) * 0x1p-53;   /* 1 - e and 1 + e are exact */
    *lo = lanes * (1.0 - e);
    *hi = lanes * (1.0 + e);
}

#endif
