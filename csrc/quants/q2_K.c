/* Q2_K: 16 groups of 16 values, x = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3.
 * Reference quantizer (llama.cpp's quantize_row_q2_K_ref without an imatrix), dequantizer
 * (gguf-py's numpy order) and the reference dot against Q8_K. */
#include <math.h>
#include "quants/kquant_unpack.h"
#include "quants/kquant_make.h"

/* Pack 256 two-bit levels: byte l of each 32-byte half holds values l, l+32, l+64, l+96. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static void quantize_block_q2_K(const float *x, block_q2_K *y) {
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
        scales[j] = pg_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                        -0.5f, 0.1f, 15, 1);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)pg_nearest_int(iscale * scales[j]);
        y->d = pg_float_to_half(max_scale / 15.f);
    } else {
        for (int j = 0; j < 16; j++) y->scales[j] = 0;
        y->d = pg_float_to_half(0.f);
    }
    if (max_min > 0) {
        float iscale = 15.f / max_min;
        for (int j = 0; j < 16; j++) y->scales[j] |= (uint8_t)(pg_nearest_int(iscale * mins[j]) << 4);
        y->dmin = pg_float_to_half(max_min / 15.f);
    } else {
        y->dmin = pg_float_to_half(0.f);
    }
    /* requantize every value against the rounded scales actually stored */
    for (int j = 0; j < 16; j++) {
        const float d = pg_half_to_float(y->d) * (y->scales[j] & 0xF);
        if (!d) continue;
        const float dm = pg_half_to_float(y->dmin) * (y->scales[j] >> 4);
        for (int i = 0; i < 16; i++) {
            int l = pg_nearest_int((x[16 * j + i] + dm) / d);
            L[16 * j + i] = (uint8_t)(l < 0 ? 0 : l > 3 ? 3 : l);
        }
    }
    pack_2bit(L, y->qs);
}

void pg_quantize_ref_q2_K(const float *x, void *vy, int64_t n) {
    block_q2_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q2_K(x + i * QK_K, &y[i]);
}

void pg_dequantize_q2_K(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    pg_ksb u;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        pg_unpack_q2_K(&x[i], &u);
        for (int k = 0; k < 16; k++) {
            const float dl = u.d * (float)u.sc[k], ml = u.dm * (float)(-u.mn[k]);
            for (int l = 16 * k; l < 16 * k + 16; l++) y[l] = dl * (float)u.q[l] - ml;
        }
    }
}

PG_KQUANT_VEC_DOT_REF(q2_K, PG_Q2_K_TWO_TERMS)
