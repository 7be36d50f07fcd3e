/* Q4_0: 32 values per block, x = d * (q - 8), q in 0..15. Dot with Q8_0 activations. */
#include "quants/legacy.h"

/* d = (signed max) / -8 so the extreme value lands exactly on q = 0; the rest round half up
 * by truncating x/d + 8.5 (as ggml's quantize_row_q4_0_ref). */
void pg_quantize_ref_q4_0(const float *x, void *vy, int64_t n) {
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const float d = pg_signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_float_to_half(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[j + QK4_0 / 2] * id + 8.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            y[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void pg_dequantize_q4_0(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = pg_half_to_float(x[i].d);
        for (int j = 0; j < QK4_0; j++) y[j] = d * (float)(pg_q4_value(x[i].qs, j) - 8);
    }
}

/* Integer dot per block, then sumf += sumi * dw * da (ggml's generic order). */
void pg_vec_dot_ref_q4_0(int64_t n, float *s, const void *vw, const void *va) {
    const block_q4_0 *w = vw;
    const block_q8_0 *a = va;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0; j++) sumi += (pg_q4_value(w[i].qs, j) - 8) * a[i].qs[j];
        sumf += (float)sumi * pg_half_to_float(w[i].d) * pg_half_to_float(a[i].d);
    }
    *s = sumf;
}
