/* NEON GEGLU, g = gelu(g) * u, 4 values per step: llama.cpp's table lookup (kernels/ref.c), with
 * vcvt to binary16 (nearest even under the default FPCR, as GGML_CPU_FP32_TO_FP16 on NEON) and
 * scalar loads of the entries (NEON has no gather), so the only float operation, the product with
 * u, is the reference's and so are the bits. The tail goes through the same code from a
 * zero-padded copy. */
#if defined(__aarch64__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <arm_neon.h>
#include "kernels/ref.h"
#include "kernels/arm/arm.h"

/* 4 gates -> gelu(x) * u: the table entry of x's binary16 bits, then x >= 10 gives x * u and
 * x <= -10 gives +0 */
static inline float32x4_t geglu4(const float *gelu, float32x4_t x, float32x4_t u) {
    uint16_t h[4];
    vst1_u16(h, vreinterpret_u16_f16(vcvt_f16_f32(x)));
    const float32x4_t t = {gelu[h[0]], gelu[h[1]], gelu[h[2]], gelu[h[3]]};
    const uint32x4_t big = vcgeq_f32(x, vdupq_n_f32(10.0f));
    const uint32x4_t low = vcleq_f32(x, vdupq_n_f32(-10.0f));
    const float32x4_t y = vbslq_f32(big, vmulq_f32(x, u), vmulq_f32(t, u));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), low));
}

/* g, u (n,) -> g = gelu(g) * u, 4 values per step */
void pg_geglu_neon(float *g, const float *u, int64_t n) {
    const float *gelu = pg_gelu_table();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(g + i, geglu4(gelu, vld1q_f32(g + i), vld1q_f32(u + i)));
    if (i < n) {
        float gt[4] = {0}, ut[4] = {0};
        memcpy(gt, g + i, sizeof(float) * (size_t)(n - i));
        memcpy(ut, u + i, sizeof(float) * (size_t)(n - i));
        vst1q_f32(gt, geglu4(gelu, vld1q_f32(gt), vld1q_f32(ut)));
        memcpy(g + i, gt, sizeof(float) * (size_t)(n - i));
    }
}
#endif
