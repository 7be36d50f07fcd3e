/* Q5_1: 32 values per block, x = d * q + m, q in 0..31 (4 bits in qs, the 5th in qh).
 * Dot with Q8_1 activations. */
#include "quants/legacy.h"

/* m = block min, d = (max - min) / 31, q = trunc((x - m)/d + 0.5): no cap, as in ggml. */
void pg_quantize_ref_q5_1(const float *x, void *vy, int64_t n) {
    block_q5_1 *y = vy;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min, max;
        pg_min_max(x, QK5_1, &min, &max);
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_float_to_half(d);
        y[i].m = pg_float_to_half(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const uint8_t lo = (uint8_t)((x[j] - min) * id + 0.5f);
            const uint8_t hi = (uint8_t)((x[j + QK5_1 / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((lo & 0x0F) | (hi & 0x0F) << 4);
            qh |= (uint32_t)((lo >> 4) & 1) << j;
            qh |= (uint32_t)((hi >> 4) & 1) << (j + QK5_1 / 2);
        }
        for (int b = 0; b < 4; b++) y[i].qh[b] = (uint8_t)(qh >> (8 * b));
    }
}

void pg_dequantize_q5_1(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = pg_half_to_float(x[i].d), m = pg_half_to_float(x[i].m);
        const uint32_t qh = pg_q5_qh(x[i].qh);
        for (int j = 0; j < QK5_1; j++) {
            volatile float dq = d * (float)pg_q5_value(x[i].qs, qh, j); /* two roundings, as gguf-py */
            y[j] = dq + m;
        }
    }
}

void pg_vec_dot_ref_q5_1(int64_t n, float *s, const void *vw, const void *va) {
    const block_q5_1 *w = vw;
    const block_q8_1 *a = va;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const uint32_t qh = pg_q5_qh(w[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1; j++) sumi += pg_q5_value(w[i].qs, qh, j) * a[i].qs[j];
        sumf += (pg_half_to_float(w[i].d) * pg_half_to_float(a[i].d)) * (float)sumi
              + pg_half_to_float(w[i].m) * pg_half_to_float(a[i].s);
    }
    *s = sumf;
}
