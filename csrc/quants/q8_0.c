/* Q8_0: 32 values per block, x = d * q, q in -127..127. A weight format and the activation
 * format of Q4_0, Q5_0 and Q8_0. */
#include "quants/legacy.h"

/* d = amax / 127, q = roundf(x / d) (half away from zero, as ggml's quantize_row_q8_0_ref). */
void pg_quantize_ref_q8_0(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float d = pg_absmax(x, QK8_0) / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_float_to_half(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* The activation quantizer llama.cpp runs (its AVX2/NEON quantize_row_q8_0): id = 127/amax and
 * round half to even. Perplexity moves by ~0.3% between the two roundings on SmolLM2 Q8_0, so
 * activations follow llama.cpp's run time while weights keep the reference's bytes. */
void pg_quantize_act_q8_0(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float amax = pg_absmax(x, QK8_0);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = pg_float_to_half(amax / 127.0f);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)pg_nearest_int(x[j] * id);
    }
}

void pg_dequantize_q8_0(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = pg_half_to_float(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = d * (float)x[i].qs[j];
    }
}

void pg_vec_dot_ref_q8_0(int64_t n, float *s, const void *vw, const void *va) {
    const block_q8_0 *w = vw, *a = va;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += w[i].qs[j] * a[i].qs[j];
        sumf += (float)sumi * (pg_half_to_float(w[i].d) * pg_half_to_float(a[i].d));
    }
    *s = sumf;
}
