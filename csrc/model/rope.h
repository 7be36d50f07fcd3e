/* RoPE, llama.cpp's rotary position embedding with its linear and YaRN scaling rules: the angles
 * of a position, and the rotation of a head's pairs by them: adjacent pairs (2i, 2i+1) (llama's
 * "normal" RoPE) or pairs (i, i + n_rot/2) (NEOX: Qwen, Gemma, Phi-3). */
#ifndef PYGGUF_MODEL_ROPE_H
#define PYGGUF_MODEL_ROPE_H

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

/* v (n_heads, head_dim): rotate the pairs, i < n_rot/2, of every head: (2i, 2i+1), or with
 * neox (i, i + n_rot/2) */
void pg_rope_rotate(float *v, int n_heads, int head_dim, int n_rot, const float *cs, int neox);

/* a head v (n_rot rotated values first) whose pairs (i, i + n_rot/2) are rotated by cs pair i */
void pg_rope_neox(float *v, const float *cs, int n_rot);

/* v (n,) holding n/2 pairs (2i, 2i+1), each rotated by its (cos, sin) pair in cs (n,) */
void pg_rope_pairs(float *v, const float *cs, int n);

#endif
