/* Q3_K: 16 groups of 16 values, x = d * s * (q - 4), q = 2 low bits | high bit << 2, s a 6-bit
 * signed scale. Reference quantizer (llama.cpp's quantize_row_q3_K_ref without an imatrix),
 * dequantizer (gguf-py's numpy order) and the reference dot against Q8_K. */
#include <math.h>
#include "quants/kquant_unpack.h"

static inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Signed levels L in -nmax..nmax-1 for one group, refined by up to 5 passes of coordinate
 * descent on the x^2-weighted error (llama.cpp's make_q3_quants with do_rmse); returns the
 * scale and leaves L biased by +nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < 1e-15f) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(pg_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = clamp_int(pg_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

static void quantize_block_q3_K(const float *x, block_q3_K *y) {
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        float scale = fabsf(scales[j]);
        if (scale > amax) { amax = scale; max_scale = scales[j]; }
    }
    memset(y->scales, 0, sizeof y->scales);
    if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            int8_t l = (int8_t)pg_nearest_int(iscale * scales[j]);
            l = (int8_t)(clamp_int(l, -32, 31) + 32);
            if (j < 8) y->scales[j] = l & 0xF;
            else y->scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
            l >>= 4;
            y->scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
        }
        y->d = pg_float_to_half(1 / iscale);
    } else {
        y->d = pg_float_to_half(0.f);
    }
    int8_t sc[16];
    pg_q3k_unpack_scales(y->scales, sc);
    for (int j = 0; j < 16; j++) {
        float d = pg_half_to_float(y->d) * sc[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++) {
            int l = clamp_int(pg_nearest_int(x[16 * j + i] / d), -4, 3);
            L[16 * j + i] = (int8_t)(l + 4);
        }
    }
    /* the high bit of value j goes to hmask[j % 32], bit j / 32 */
    memset(y->hmask, 0, sizeof y->hmask);
    for (int j = 0; j < QK_K; j++)
        if (L[j] > 3) {
            y->hmask[j % 32] |= (uint8_t)(1 << (j / 32));
            L[j] -= 4;
        }
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            y->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void pg_quantize_ref_q3_K(const float *x, void *vy, int64_t n) {
    block_q3_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q3_K(x + i * QK_K, &y[i]);
}

/* gguf-py: (d * (sc - 32)) * (q - 4), float32 */
void pg_dequantize_q3_K(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    pg_ksb u;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        pg_unpack_q3_K(&x[i], &u);
        for (int k = 0; k < 16; k++) {
            const float dl = u.d * (float)u.sc[k];
            for (int l = 16 * k; l < 16 * k + 16; l++) y[l] = dl * (float)((int)u.q[l] - 4);
        }
    }
}

PG_KQUANT_VEC_DOT_REF(q3_K, PG_Q3_K_TWO_TERMS)
