/* Q5_0: 32 values per block, x = d * (q - 16), q in 0..31 (4 bits in qs, the 5th in qh).
 * Dot with Q8_0 activations. */
#include "quants/legacy.h"

/* As Q4_0 with d = (signed max) / -16 and the 5th bit of each value packed into qh. */
void pg_quantize_ref_q5_0(const float *x, void *vy, int64_t n) {
    block_q5_0 *y = vy;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const float d = pg_signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_float_to_half(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo = (int8_t)(x[j] * id + 16.5f), hi = (int8_t)(x[j + QK5_0 / 2] * id + 16.5f);
            lo = lo < 31 ? lo : 31;
            hi = hi < 31 ? hi : 31;
            y[i].qs[j] = (uint8_t)((lo & 0x0F) | (hi & 0x0F) << 4);
            qh |= (uint32_t)((lo >> 4) & 1) << j;
            qh |= (uint32_t)((hi >> 4) & 1) << (j + QK5_0 / 2);
        }
        for (int b = 0; b < 4; b++) y[i].qh[b] = (uint8_t)(qh >> (8 * b));
    }
}

void pg_dequantize_q5_0(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = pg_half_to_float(x[i].d);
        const uint32_t qh = pg_q5_qh(x[i].qh);
        for (int j = 0; j < QK5_0; j++) y[j] = d * (float)(pg_q5_value(x[i].qs, qh, j) - 16);
    }
}

void pg_vec_dot_ref_q5_0(int64_t n, float *s, const void *vw, const void *va) {
    const block_q5_0 *w = vw;
    const block_q8_0 *a = va;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const uint32_t qh = pg_q5_qh(w[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0; j++) sumi += (pg_q5_value(w[i].qs, qh, j) - 16) * a[i].qs[j];
        sumf += (pg_half_to_float(w[i].d) * pg_half_to_float(a[i].d)) * (float)sumi;
    }
    *s = sumf;
}
