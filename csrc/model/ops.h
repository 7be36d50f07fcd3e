/* The small per-token kernels of the llama forward pass. Each depends only on its own inputs
 * (never on the thread split or the batch), so the forward stays bit-reproducible. */
#ifndef PYGGUF_MODEL_OPS_H
#define PYGGUF_MODEL_OPS_H

#include <stdint.h>
#include <stddef.h>
#include "quants/blocks.h"

/* Builds the F16 -> F32 table the attention reads the cache through; call before any kernel here
 * (pg_model_new does). Safe to call from several threads, any number of times. */
void pg_ops_init(void);

/* x (n,) -> out (n,) = x / rms(x) * w, the sum of squares in double as llama.cpp does */
void pg_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

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

/* g, u (n,) -> g = silu(g) * u, with libm's expf (the reference) */
void pg_swiglu(float *g, const float *u, int64_t n);

/* pg_swiglu for an instruction set (pg_isa): AVX2 machines get a vector exp (isa/swiglu_avx2.c) */
typedef void (*pg_swiglu_fn)(float *g, const float *u, int64_t n);
pg_swiglu_fn pg_swiglu_for(int isa);

/* a, b (n,) -> dot in float, eight fixed partial sums (same order every call) */
float pg_dot_f32(const float *a, const float *b, int n);

/* The two inner loops of attention over one cached F16 row, shared by the n_rep query heads of a
 * KV head (each row is loaded once for all of them):
 *   scores:     s[h * s_stride] = dot(q (n_rep, head_dim) row h, k) * scale
 *   accumulate: out (n_rep, head_dim) row h += p[h * p_stride] * v
 * `row` is head_dim floats of scratch. Every ISA's version uses one fixed order of operations. */
typedef struct {
    void (*scores)(float *s, size_t s_stride, const float *q, int n_rep, const pg_half *k, int head_dim,
                   float scale, float *row);
    void (*accumulate)(float *out, const float *p, size_t p_stride, int n_rep, const pg_half *v, int head_dim,
                       float *row);
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
