/* RoPE angles (linear and YaRN scaling, as llama.cpp) and the rotation of a head's pairs: adjacent (2i, 2i+1) or NEOX (i, i + n_rot/2). */
#include <math.h>
#include <stddef.h>
#include "model/rope.h"

/* YaRN's ramp: 1 for dimension pairs below `low` (pure extrapolation), 0 above `high` */
static float yarn_ramp(float low, float high, int i0) {
    const float y = ((float)(i0 / 2) - low) / fmaxf(0.001f, high - low);
    return 1.0f - fminf(1.0f, fmaxf(0.0f, y));
}

/* angles theta_i = pos * base^(-2i/n_rot) / freq_factor_i, advanced by repeated multiplication in
 * float like llama.cpp; linear scaling multiplies by freq_scale; YaRN blends scaled and unscaled */
void pg_rope_angles(float *cs, double pos, const pg_rope_params *rp, int with_mscale) {
    const float theta_scale = powf(rp->base, -2.0f / (float)rp->n_rot);
    float theta_base = (float)pos;
    for (int i0 = 0; i0 < rp->n_rot; i0 += 2) {
        const float theta_extrap = rp->freq_factors ? theta_base / rp->freq_factors[i0 / 2] : theta_base;
        const float theta_interp = rp->freq_scale * theta_extrap;
        float theta = theta_interp, mscale = with_mscale ? rp->attn_factor : 1.0f;
        if (rp->yarn) {
            const float mix = yarn_ramp(rp->corr_low, rp->corr_high, i0) * rp->ext_factor;
            theta = theta_interp * (1.0f - mix) + theta_extrap * mix;
            if (with_mscale) mscale = rp->attn_factor * (1.0f + 0.1f * logf(1.0f / rp->freq_scale));
        }
        cs[i0] = cosf(theta) * mscale;
        cs[i0 + 1] = sinf(theta) * mscale;
        theta_base *= theta_scale;
    }
}

void pg_rope_pairs(float *v, const float *cs, int n) {
    for (int i0 = 0; i0 + 1 < n; i0 += 2) {
        const float c = cs[i0], s = cs[i0 + 1];
        const float x0 = v[i0], x1 = v[i0 + 1];
        v[i0] = x0 * c - x1 * s;
        v[i0 + 1] = x0 * s + x1 * c;
    }
}

void pg_rope_neox(float *v, const float *cs, int n_rot) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x0 * s + x1 * c;
    }
}

/* v (n_heads, head_dim), rotated in place pair by pair */
void pg_rope_rotate(float *v, int n_heads, int head_dim, int n_rot, const float *cs, int neox) {
    for (int h = 0; h < n_heads; h++) {
        if (neox) pg_rope_neox(v + (size_t)h * head_dim, cs, n_rot);
        else pg_rope_pairs(v + (size_t)h * head_dim, cs, n_rot);
    }
}
