/* The x86 gemm of the float formats (F32, F16, BF16; F16 and BF16 weights take activations of
 * their own type), written once for the AVX2 and AVX-512 translation units (float_avx2.c,
 * float_avx512.c), which define PG_ISA_SUFFIX and PG_TILE_TOKENS (avx2.h, avx512.h).
 * W (nrows, n) @ A (ntok, n)^T -> y: a register tile of 4 rows x PG_TILE_TOKENS tokens, one 8-lane
 * FMA accumulator per output, summed across its lanes at the end, so every output sees the same
 * float operations in the same order wherever it sits (the pg_gemm_fn contract). */
#ifndef PYGGUF_X86_FLOAT_GEMM_H
#define PYGGUF_X86_FLOAT_GEMM_H

#include <immintrin.h>
#include <string.h>
#include "kernels/x86/x86.h"

#define PG_INLINE static inline __attribute__((always_inline))
#define PG_CAT3(a, b, c) a##b##c
#define PG_GEMM_NAME(t, isa) PG_CAT3(pg_gemm_##t, _, isa)
#define MAX_TILE_TOKENS 4

PG_INLINE float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}


enum { KIND_F32, KIND_F16, KIND_BF16 };

PG_INLINE size_t float_bytes(int kind) { return kind == KIND_F32 ? 4 : 2; }

/* 8 consecutive values at p -> 8 floats (f16 by F16C, bf16 by a 16-bit shift) */
PG_INLINE __m256 load8(int kind, const uint8_t *p) {
    if (kind == KIND_F32) return _mm256_loadu_ps((const float *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (kind == KIND_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* the last n % 8 values, zero-padded to 8, through the same conversion */
PG_INLINE __m256 load_tail(int kind, const uint8_t *p, int count) {
    uint8_t buf[32] = {0};
    memcpy(buf, p, (size_t)count * float_bytes(kind));
    return load8(kind, buf);
}

/* W rows [R <= 4] x A rows [T <= the tile] over n values -> y[t*ldy + r], one accumulator per output */
PG_INLINE void float_tile(int kind, int R, int T, int64_t n, const uint8_t *w, size_t w_stride,
                          const uint8_t *a, size_t a_stride, float *y, size_t ldy) {
    const size_t eb = float_bytes(kind);
    __m256 acc[4][MAX_TILE_TOKENS];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[4];
        for (int r = 0; r < R; r++) wv[r] = load8(kind, w + r * w_stride + i * eb);
        for (int t = 0; t < T; t++) {
            const __m256 av = load8(kind, a + t * a_stride + i * eb);
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], av, acc[r][t]);
        }
    }
    if (i < n) {
        const int rest = (int)(n - i);
        for (int t = 0; t < T; t++) {
            const __m256 av = load_tail(kind, a + t * a_stride + i * eb, rest);
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm256_fmadd_ps(load_tail(kind, w + r * w_stride + i * eb, rest), av, acc[r][t]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) y[t * ldy + r] = hsum8(acc[r][t]);
}

/* W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r]: full tiles, then the leftover rows and tokens alone */
PG_INLINE void float_gemm(int kind, int64_t n, const void *w, size_t w_stride, int nrows,
                          const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    const uint8_t *W = w, *A = a;
    for (int r = 0; r < nrows;) {
        const int rows = nrows - r >= 4 ? 4 : 1;
        int t = 0;
        for (; t + PG_TILE_TOKENS <= ntok; t += PG_TILE_TOKENS) {
            if (rows == 4) float_tile(kind, 4, PG_TILE_TOKENS, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else           float_tile(kind, 1, PG_TILE_TOKENS, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        for (; t < ntok; t++) {
            if (rows == 4) float_tile(kind, 4, 1, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else           float_tile(kind, 1, 1, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        r += rows;
    }
}

/* pg_gemm_<t>_<isa> */
#define PG_DEFINE_GEMM(t, kind)                                                          \
    void PG_GEMM_NAME(t, PG_ISA_SUFFIX)(PG_GEMM_ARGS) {                                  \
        float_gemm(kind, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);             \
    }
PG_DEFINE_GEMM(f32, KIND_F32)
PG_DEFINE_GEMM(f16, KIND_F16)
PG_DEFINE_GEMM(bf16, KIND_BF16)

#endif
