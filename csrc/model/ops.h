/* The small per-token kernels of the llama forward pass. Each depends only on its own inputs
 * (never on the thread split or the batch), so the forward stays bit-reproducible. */
#ifndef PYGGUF_MODEL_OPS_H
#define PYGGUF_MODEL_OPS_H

#include <stdint.h>
#include <stddef.h>
#include "quants/traits.h"

/* Builds the F16 -> F32 table the attention reads the cache through; call before any kernel here
 * (pg_model_new does). Safe to call from several threads, any number of times. */
void pg_ops_init(void);

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

/* x (n,) -> out (n,) = x / rms(x) * w, the sum of squares in double as llama.cpp does */
void pg_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* pg_rmsnorm for an instruction set (pg_isa): AVX2 machines get isa/norm_avx2.c, same floats */
typedef void (*pg_rmsnorm_fn)(float *out, const float *x, const float *w, int64_t n, float eps);
pg_rmsnorm_fn pg_rmsnorm_for(int isa);

/* RoPE angles for one position: cs (n_rot/2 pairs of cos, sin) with llama.cpp's linear/YaRN rules.
 * `pos` may be negative (a context shift rotates keys back by -discard); with_mscale 0 gives a
 * pure rotation (YaRN's magnitude factor already sits in the cached keys). */
typedef struct {
    int n_rot;
    float base, freq_scale;
    int yarn;
    float ext_factor, attn_factor, corr_low, corr_high;
    const float *freq_factors;     /* (n_rot/2,) divisors of each pair's angle (Llama 3.1's rope_freqs), or NULL */
} pg_rope_params;
void pg_rope_angles(float *cs, double pos, const pg_rope_params *rp, int with_mscale);

/* v (n_heads, head_dim): rotate the adjacent pairs (2i, 2i+1), i < n_rot/2, of every head */
void pg_rope_rotate(float *v, int n_heads, int head_dim, int n_rot, const float *cs);

/* v (n,) holding n/2 pairs (2i, 2i+1), each rotated by its (cos, sin) pair in cs (n,) */
void pg_rope_pairs(float *v, const float *cs, int n);

/* x (n,) -> out (n,) binary16 (pg_float_to_half), and the same for an instruction set (pg_isa):
 * AVX2 machines convert with F16C (isa/f16_avx2.c), same bits */
void pg_f16_row(pg_half *out, const float *x, int64_t n);
typedef void (*pg_f16_row_fn)(pg_half *out, const float *x, int64_t n);
pg_f16_row_fn pg_f16_row_for(int isa);

/* g, u (n,) -> g = silu(g) * u, with libm's expf (the reference) */
void pg_swiglu(float *g, const float *u, int64_t n);

/* pg_swiglu for an instruction set (pg_isa): AVX2 machines get a vector exp (isa/swiglu_avx2.c) */
typedef void (*pg_swiglu_fn)(float *g, const float *u, int64_t n);
pg_swiglu_fn pg_swiglu_for(int isa);

/* The activation quantizer of format `type` for an instruction set: the table's quantize_act, or
 * on AVX2 machines its twin in isa/act_quant_avx2.c, which writes the same bytes. NULL where the
 * table has none. */
pg_quantize_fn pg_act_quantizer_for(int isa, int type);

/* a, b (n,) -> dot in float, eight fixed partial sums (same order every call) */
float pg_dot_f32(const float *a, const float *b, int n);

/* The two inner loops of attention over the F16 cache of one KV head, shared by its n_rep query
 * heads (each cached row is read once for all of them):
 *   scores:     s (n_rep, n_kv): s[h * n_kv + j] = dot(q (n_rep, head_dim) row h, K row j) * scale
 *   accumulate: out (n_rep, head_dim): out row h = sum over j = 0, 1, .. n_kv-1 of p[h * n_kv + j] * V row j
 * for K, V (n_kv, head_dim) F16. `row` is head_dim floats of scratch. Every ISA's version uses one
 * fixed order of operations per value, so a score depends only on q_h and K row j, and an output
 * value only on its column of p and V: never on n_kv or where a position falls in a block. */
typedef struct {
    void (*scores)(float *s, const float *q, int n_rep, const pg_half *k, int n_kv, int head_dim, float scale,
                   float *row);
    /* s (n,) -> exp(s - max(s)) in place, with libm's expf values; returns 1 / sum of the new
     * s[j] taken in double in order j = 0, 1, ... (that sum's value, however it is computed) */
    float (*softmax)(float *s, int n);
    void (*accumulate)(float *out, const float *p, int n_rep, const pg_half *v, int n_kv, int head_dim, float *row);
} pg_attention_kernels;

/* The kernels for an instruction set (pg_isa), falling back to the portable ones. */
const pg_attention_kernels *pg_attention_kernels_for(int isa, int head_dim);

/* Causal attention of one token's n_rep query heads against the cache of their KV head.
 * q (n_rep, head_dim) at position pos; kc, vc (n_ctx, head_dim) F16 holding positions 0..pos;
 * out (n_rep, head_dim). scratch: n_rep * (pos + 1) + head_dim floats. Softmax and the V sum
 * are in F32. */
void pg_attention_group(const pg_attention_kernels *kern, float *out, const float *q, int n_rep, int head_dim,
                        int pos, const pg_half *kc, const pg_half *vc, float scale, float *scratch);

#endif
