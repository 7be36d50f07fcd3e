/* F32, F16 and BF16: the float formats. F16 weights take F16 activations and BF16 weights
 * BF16 activations (as llama.cpp does), so each dot product multiplies two rounded values
 * and accumulates in double in the reference. */
#include "quants/traits.h"

void pg_quantize_ref_f32(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
void pg_dequantize_f32(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
void pg_vec_dot_ref_f32(int64_t n, float *s, const void *w, const void *a) {
    const float *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)y[i];
    *s = (float)sum;
}

void pg_quantize_ref_f16(const float *x, void *y, int64_t n) {
    pg_half *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = pg_float_to_half(x[i]);
}
void pg_dequantize_f16(const void *x, float *y, int64_t n) {
    const pg_half *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = pg_half_to_float(h[i]);
}
void pg_vec_dot_ref_f16(int64_t n, float *s, const void *w, const void *a) {
    const pg_half *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)pg_half_to_float(x[i]) * (double)pg_half_to_float(y[i]);
    *s = (float)sum;
}

void pg_quantize_ref_bf16(const float *x, void *y, int64_t n) {
    pg_bf16 *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = pg_float_to_bf16(x[i]);
}
void pg_dequantize_bf16(const void *x, float *y, int64_t n) {
    const pg_bf16 *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = pg_bf16_to_float(h[i]);
}
void pg_vec_dot_ref_bf16(int64_t n, float *s, const void *w, const void *a) {
    const pg_bf16 *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)pg_bf16_to_float(x[i]) * (double)pg_bf16_to_float(y[i]);
    *s = (float)sum;
}
