/* AVX2 + FMA SwiGLU, g = silu(g) * u = g / (1 + exp(-g)) * u, 8 values per step (kernels/kernels.h).
 * glibc's scalar expf was ~9% of a batched decode step. exp is range-reduced, x = k ln2 + r with
 * |r| <= ln2/2, and r's exp is a degree-6 polynomial (within 2 ulp of expf over the range used);
 * the ragged tail goes through the same vector code, masked, so every value is computed the same
 * way wherever a thread's share of the row starts or ends. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>
#include "kernels/x86/x86.h"

/* exp(x) for x clamped to [-87.3, 88.3] (the results outside are 0 or inf to silu anyway) */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);        /* ln2 in two parts: k * hi is exact */
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);                              /* Taylor-like minimax terms 1/6! .. 1/2! */
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

static inline __m256 swiglu8(__m256 g, __m256 u) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

/* g, u (n,) -> g = silu(g) * u, 8 values per step, the tail masked */
void pg_swiglu_avx2(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), lane);
        const __m256 out = swiglu8(_mm256_maskload_ps(g + i, mask), _mm256_maskload_ps(u + i, mask));
        _mm256_maskstore_ps(g + i, mask, out);
    }
}
#endif
