/* Q8_1: 32 values per block, x = d * q, plus s = d * sum(q). The activation format of Q4_1 and
 * Q5_1: s lets the weight's offset m enter each block's dot product as one product m * s. */
#include "quants/legacy.h"

/* As Q8_0, then s = fp16(sum(q) * d) with the float d before its fp16 rounding (as ggml). */
void pg_quantize_ref_q8_1(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float d = pg_absmax(x, QK8_1) / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_float_to_half(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = pg_float_to_half((float)sum * d);
    }
}

/* llama.cpp's run-time Q8_1 quantizer (see pg_quantize_act_q8_0): half to even, id = 127/amax. */
void pg_quantize_act_q8_1(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float amax = pg_absmax(x, QK8_1);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = pg_float_to_half(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)pg_nearest_int(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = pg_float_to_half((float)sum * d);
    }
}

void pg_dequantize_q8_1(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; i++, y += QK8_1) {
        const float d = pg_half_to_float(x[i].d);
        for (int j = 0; j < QK8_1; j++) y[j] = d * (float)x[i].qs[j];
    }
}

/* Q8_1 . Q8_1 (not used by any weight type's matmul; kept so the table is complete). */
void pg_vec_dot_ref_q8_1(int64_t n, float *s, const void *vw, const void *va) {
    const block_q8_1 *w = vw, *a = va;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_1; j++) sumi += w[i].qs[j] * a[i].qs[j];
        sumf += (float)sumi * (pg_half_to_float(w[i].d) * pg_half_to_float(a[i].d));
    }
    *s = sumf;
}
