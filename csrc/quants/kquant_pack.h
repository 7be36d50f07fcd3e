/* The part of the Q4_K and Q5_K reference quantizers they share: fit each sub-block of 32 with
 * make_qkx2_quants, store the 6-bit scales/mins and fp16 d/dmin, and requantize every value
 * against the stored (rounded) scales. Plus their common dequantization of an unpacked block. */
#ifndef PYGGUF_KQUANT_PACK_H
#define PYGGUF_KQUANT_PACK_H

#include <math.h>
#include "quants/kquant_unpack.h"
#include "quants/kquant_make.h"

static inline void pg_k4_fit_and_pack(const float *x, int nmax, float rmin, float rdelta, int nstep,
                                      uint8_t L[QK_K], uint8_t packed[K_SCALE_SIZE],
                                      pg_half *d_out, pg_half *dmin_out) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xs[l]);
        scales[j] = pg_make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux,
                                        rmin, rdelta, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)pg_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)pg_nearest_int(inv_min * mins[j]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = pg_float_to_half(max_scale / 63.f);
    *dmin_out = pg_float_to_half(max_min / 63.f);
    uint8_t sc[8], m[8];
    pg_k4_unpack_scales(packed, sc, m);
    for (int j = 0; j < 8; j++) {
        const float d = pg_half_to_float(*d_out) * sc[j];
        if (!d) continue;
        const float dm = pg_half_to_float(*dmin_out) * m[j];
        for (int i = 0; i < 32; i++) {
            int l = pg_nearest_int((x[32 * j + i] + dm) / d);
            L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
}

/* gguf-py: (d * sc) * q - (dmin * m), all float32 */
static inline void pg_k4_dequantize_unpacked(const pg_ksb *u, float *y) {
    for (int k = 0; k < PG_KGROUPS; k += 2) {
        const float dl = u->d * (float)u->sc[k], ml = u->dm * (float)(-u->mn[k]);
        for (int l = 16 * k; l < 16 * k + 32; l++) y[l] = dl * (float)u->q[l] - ml;
    }
}

#endif
