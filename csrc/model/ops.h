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
} pg_rope_params;
void pg_rope_angles(float *cs, double pos, const pg_rope_params *rp, int with_mscale);

/* v (n_heads, head_dim): rotate the adjacent pairs (2i, 2i+1), i < n_rot/2, of every head */
void pg_rope_rotate(float *v, int n_heads, int head_dim, int n_rot, const float *cs);

/* g, u (n,) -> g = silu(g) * u */
void pg_swiglu(float *g, const float *u, int64_t n);

/* a, b (n,) -> dot in float, eight fixed partial sums (same order every call) */
float pg_dot_f32(const float *a, const float *b, int n);

/* Causal attention of one token's n_rep query heads against the cache of their KV head.
 * q (n_rep, head_dim) at position pos; kc, vc (n_ctx, head_dim) F16 holding positions 0..pos;
 * out (n_rep, head_dim). scratch: n_rep * (pos + 1) + 2 * head_dim floats. Each K and V row is
 * converted once and used by all n_rep heads; softmax and the V sum are in F32. */
void pg_attention_group(float *out, const float *q, int n_rep, int head_dim, int pos,
                        const pg_half *kc, const pg_half *vc, float scale, float *scratch);

#endif
