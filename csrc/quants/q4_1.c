/* Q4_1: 32 values per block, x = d * q + m, q in 0..15. Dot with Q8_1 activations. */
#include "quants/legacy.h"

/* m = block min, d = (max - min) / 15; q = trunc((x - m)/d + 0.5) capped at 15. */
void pg_quantize_ref_q4_1(const float *x, void *vy, int64_t n) {
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min, max;
        pg_min_max(x, QK4_1, &min, &max);
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_float_to_half(d);
        y[i].m = pg_float_to_half(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int lo = (int8_t)((x[j] - min) * id + 0.5f), hi = (int8_t)((x[j + QK4_1 / 2] - min) * id + 0.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            y[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void pg_dequantize_q4_1(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = pg_half_to_float(x[i].d), m = pg_half_to_float(x[i].m);
        for (int j = 0; j < QK4_1; j++) {
            volatile float dq = d * (float)pg_q4_value(x[i].qs, j); /* no fused multiply-add: gguf-py rounds twice */
            y[j] = dq + m;
        }
    }
}

/* sum(w*a) = dw*da*sum(q*qa) + m*da*sum(qa) = dw*da*sumi + m*s. */
void pg_vec_dot_ref_q4_1(int64_t n, float *s, const void *vw, const void *va) {
    const block_q4_1 *w = vw;
    const block_q8_1 *a = va;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1; j++) sumi += pg_q4_value(w[i].qs, j) * a[i].qs[j];
        sumf += (pg_half_to_float(w[i].d) * pg_half_to_float(a[i].d)) * (float)sumi
              + pg_half_to_float(w[i].m) * pg_half_to_float(a[i].s);
    }
    *s = sumf;
}
