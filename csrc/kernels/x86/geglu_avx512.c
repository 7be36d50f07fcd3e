/* AVX-512 F GEGLU, g = gelu(g) * u, 16 values per step: AVX2's kernel (geglu_avx2.c) in 16 lanes,
 * the clamps as mask moves and the tail as masked loads and stores; the reference's bits. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c,avx512f")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>
#include "kernels/ref.h"
#include "kernels/x86/x86.h"
#include "kernels/x86/gelu_lookup.h"

/* 16 gates -> gelu(x) * u: the table entry of x's binary16 bits, then x >= 10 gives x * u and
 * x <= -10 gives +0 */
static inline __m512 geglu16(const float *gelu, __m512 x, __m512 u) {
    uint16_t h[16];
    _mm256_storeu_si256((__m256i *)h, _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    __m512 t = _mm512_castps128_ps512(pg_gelu_lookup4(gelu, h));
    t = _mm512_insertf32x4(t, pg_gelu_lookup4(gelu, h + 4), 1);
    t = _mm512_insertf32x4(t, pg_gelu_lookup4(gelu, h + 8), 2);
    t = _mm512_insertf32x4(t, pg_gelu_lookup4(gelu, h + 12), 3);
    const __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(10.0f), _CMP_GE_OQ);
    const __mmask16 low = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-10.0f), _CMP_LE_OQ);
    const __m512 y = _mm512_mask_mul_ps(_mm512_mul_ps(t, u), big, x, u);
    return _mm512_mask_mov_ps(y, low, _mm512_setzero_ps());
}

/* g, u (n,) -> g = gelu(g) * u, 16 values per step, the tail masked (its dead lanes look up 0) */
void pg_geglu_avx512(float *g, const float *u, int64_t n) {
    const float *gelu = pg_gelu_table();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(g + i, geglu16(gelu, _mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
    if (i < n) {
        const __mmask16 mask = (__mmask16)((1u << (n - i)) - 1);
        const __m512 out = geglu16(gelu, _mm512_maskz_loadu_ps(mask, g + i), _mm512_maskz_loadu_ps(mask, u + i));
        _mm512_mask_storeu_ps(g + i, mask, out);
    }
}
#endif
