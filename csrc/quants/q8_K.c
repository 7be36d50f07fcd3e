/* Q8_K: the activation format of every K-quant dot product, x = d * q with a float d and the
 * sums of each 16 quants. Quantizer as llama.cpp's quantize_row_q8_K_ref: the scale comes from
 * the SIGNED value of largest magnitude (iscale = -127/max, so that value maps to -127). */
#include <math.h>
#include "quants/kquant_unpack.h"

static void quantize_block_q8_K(const float *x, block_q8_K *y) {
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (!amax) {
        memset(y, 0, sizeof *y);   /* llama.cpp leaves bsums stale here; zero is their true value */
        return;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; j++) {
        int v = pg_nearest_int(iscale * x[j]);
        y->qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int k = 0; k < QK_K / 16; k++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += y->qs[16 * k + i];
        y->bsums[k] = (int16_t)sum;
    }
    y->d = 1 / iscale;
}

void pg_quantize_ref_q8_K(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q8_K(x + i * QK_K, &y[i]);
}

void pg_dequantize_q8_K(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++) y[i * QK_K + j] = x[i].d * x[i].qs[j];
}

/* Q8_K . Q8_K: exact integer sum per block, one FMA per block. */
void pg_vec_dot_ref_q8_K(int64_t n, float *s, const void *w, const void *a) {
    const block_q8_K *x = w, *y = a;
    float acc = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK_K; j++) isum += x[i].qs[j] * y[i].qs[j];
        acc = fmaf(x[i].d * y[i].d, (float)isum, acc);
    }
    *s = acc;
}
