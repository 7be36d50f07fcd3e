/* AVX2 + F16C GEGLU, g = gelu(g) * u, 8 values per step: llama.cpp's table lookup (kernels/ref.c)
 * with vcvtps2ph for its rounding to binary16, so the only float operation, the product with u,
 * is the reference's and so are the bits. The ragged tail goes through the same code, masked,
 * as SwiGLU's does. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>
#include "kernels/ref.h"
#include "kernels/x86/x86.h"
#include "kernels/x86/gelu_lookup.h"

/* 8 gates -> gelu(x) * u: the table entry of x's binary16 bits (nearest even, as the reference's
 * pg_float_to_half; a NaN keeps more of its payload here, but every NaN index holds a NaN), then
 * the clamps: x >= 10 gives x * u, x <= -10 gives +0 */
static inline __m256 geglu8(const float *gelu, __m256 x, __m256 u) {
    uint16_t h[8];
    _mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    const __m256 t = _mm256_set_m128(pg_gelu_lookup4(gelu, h + 4), pg_gelu_lookup4(gelu, h));
    const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(10.0f), _CMP_GE_OQ);
    const __m256 low = _mm256_cmp_ps(x, _mm256_set1_ps(-10.0f), _CMP_LE_OQ);
    return _mm256_andnot_ps(low, _mm256_blendv_ps(_mm256_mul_ps(t, u), _mm256_mul_ps(x, u), big));
}

/* g, u (n,) -> g = gelu(g) * u, 8 values per step, the tail masked (its dead lanes look up 0) */
void pg_geglu_avx2(float *g, const float *u, int64_t n) {
    const float *gelu = pg_gelu_table();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, geglu8(gelu, _mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), lane);
        const __m256 out = geglu8(gelu, _mm256_maskload_ps(g + i, mask), _mm256_maskload_ps(u + i, mask));
        _mm256_maskstore_ps(g + i, mask, out);
    }
}
#endif
