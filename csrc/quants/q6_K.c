/* Q6_K: 16 groups of 16 values, x = d * sc * (q - 32), q = 4 low bits | 2 high bits << 4,
 * sc an int8. Reference quantizer (llama.cpp's quantize_row_q6_K_ref without an imatrix),
 * dequantizer (gguf-py's numpy order) and the reference dot against Q8_K. */
#include <math.h>
#include "quants/kquant_unpack.h"

#define GROUP_MAX_EPS 1e-15f

static inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Weighted error of levels l = clamp(round(iscale * x)) under w = x^2: sums of w*x*l and w*l*l. */
static void qx_sums(int n, int nmax, const float *x, float iscale, float *sumlx, float *suml2) {
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(pg_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

static void qx_levels(int n, int nmax, const float *x, float iscale, int8_t *L) {
    for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clamp_int(pg_nearest_int(iscale * x[i]), -nmax, nmax - 1));
}

/* Symmetric levels in -nmax..nmax-1 for one group, the scale picked among 19 grids around
 * nmax/max by x^2-weighted error (llama.cpp's make_qx_quants, rmse_type 1); L biased by +nmax. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx, suml2;
    qx_sums(n, nmax, x, iscale, &sumlx, &suml2);
    qx_levels(n, nmax, x, iscale, L);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        qx_sums(n, nmax, x, iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_levels(n, nmax, x, iscale, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quantize_block_q6_K(const float *x, block_q6_K *y) {
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ib++) {
        const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
        scales[ib] = scale;
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = pg_float_to_half(1 / iscale);
    for (int ib = 0; ib < 16; ib++) {
        int l = pg_nearest_int(iscale * scales[ib]);
        y->scales[ib] = (int8_t)(l < 127 ? l : 127);
    }
    for (int j = 0; j < 16; j++) {
        float d = pg_half_to_float(y->d) * y->scales[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++) {
            int l = clamp_int(pg_nearest_int(x[16 * j + i] / d), -32, 31);
            L[16 * j + i] = (int8_t)(l + 32);
        }
    }
    uint8_t *ql = y->ql, *qh = y->qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
            qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
}

void pg_quantize_ref_q6_K(const float *x, void *vy, int64_t n) {
    block_q6_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q6_K(x + i * QK_K, &y[i]);
}

/* gguf-py: (d * sc) * (q - 32), float32 */
void pg_dequantize_q6_K(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    pg_ksb u;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        pg_unpack_q6_K(&x[i], &u);
        for (int k = 0; k < 16; k++) {
            const float dl = u.d * (float)u.sc[k];
            for (int l = 16 * k; l < 16 * k + 16; l++) y[l] = dl * (float)((int)u.q[l] - 32);
        }
    }
}

PG_KQUANT_VEC_DOT_REF(q6_K, PG_Q6_K_TWO_TERMS)
