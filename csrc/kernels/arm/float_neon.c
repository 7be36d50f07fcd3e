/* NEON gemm of F32 F16 BF16 (F16 and BF16 weights take activations of their own type):
 * W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r]. A register tile of 4 rows x 4 tokens, one 4-lane
 * FMA accumulator per output, summed across its lanes at the end, so every output sees the same
 * float operations in the same order wherever it sits. */
#if defined(__aarch64__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <arm_neon.h>
#include "kernels/arm/arm.h"

#define PG_INLINE static inline __attribute__((always_inline))
#define TILE_ROWS 4
#define TILE_TOKENS 4

enum { KIND_F32, KIND_F16, KIND_BF16 };

PG_INLINE size_t float_bytes(int kind) { return kind == KIND_F32 ? 4 : 2; }

PG_INLINE float32x4_t load4(int kind, const uint8_t *p) {
    if (kind == KIND_F32) return vld1q_f32((const float *)p);
    const uint16x4_t h = vld1_u16((const uint16_t *)p);
    if (kind == KIND_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

PG_INLINE float32x4_t load_tail(int kind, const uint8_t *p, int count) {
    uint8_t buf[16] = {0};
    memcpy(buf, p, (size_t)count * float_bytes(kind));
    return load4(kind, buf);
}

/* W rows [R <= 4] x A rows [T <= the tile] over n values -> y[t*ldy + r], one accumulator per output */
PG_INLINE void float_tile(int kind, int R, int T, int64_t n, const uint8_t *w, size_t w_stride,
                          const uint8_t *a, size_t a_stride, float *y, size_t ldy) {
    const size_t eb = float_bytes(kind);
    float32x4_t acc[TILE_ROWS][TILE_TOKENS];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t wv[TILE_ROWS];
        for (int r = 0; r < R; r++) wv[r] = load4(kind, w + r * w_stride + i * eb);
        for (int t = 0; t < T; t++) {
            const float32x4_t av = load4(kind, a + t * a_stride + i * eb);
            for (int r = 0; r < R; r++) acc[r][t] = vfmaq_f32(acc[r][t], wv[r], av);
        }
    }
    if (i < n) {
        const int rest = (int)(n - i);
        for (int t = 0; t < T; t++) {
            const float32x4_t av = load_tail(kind, a + t * a_stride + i * eb, rest);
            for (int r = 0; r < R; r++)
                acc[r][t] = vfmaq_f32(acc[r][t], load_tail(kind, w + r * w_stride + i * eb, rest), av);
        }
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) y[t * ldy + r] = vaddvq_f32(acc[r][t]);
}

/* W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r]: full tiles, then the leftover rows and tokens alone */
PG_INLINE void float_gemm(int kind, int64_t n, const void *w, size_t w_stride, int nrows,
                          const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    const uint8_t *W = w, *A = a;
    for (int r = 0; r < nrows;) {
        const int rows = nrows - r >= TILE_ROWS ? TILE_ROWS : 1;
        int t = 0;
        for (; t + TILE_TOKENS <= ntok; t += TILE_TOKENS) {
            if (rows == TILE_ROWS) float_tile(kind, TILE_ROWS, TILE_TOKENS, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else                   float_tile(kind, 1, TILE_TOKENS, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        for (; t < ntok; t++) {
            if (rows == TILE_ROWS) float_tile(kind, TILE_ROWS, 1, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else                   float_tile(kind, 1, 1, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        r += rows;
    }
}

/* pg_gemm_<t>_neon */
#define DEFINE_GEMM(t, kind)                                                    \
    void pg_gemm_##t##_neon(PG_GEMM_ARGS) {                                    \
        float_gemm(kind, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);  \
    }

DEFINE_GEMM(f32, KIND_F32)
DEFINE_GEMM(f16, KIND_F16)
DEFINE_GEMM(bf16, KIND_BF16)

#endif
