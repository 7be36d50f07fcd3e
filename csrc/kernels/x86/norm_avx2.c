/* AVX2 RMSNorm giving pg_rmsnorm_ref's floats (kernels/ref.c): the squares are the same float products,
 * summed in double in 16 lanes instead of one chain; pg_sum_bracket shows when that sum's
 * rounding cannot change the float mean, and the rare row where it could is summed term by
 * term as the reference. The scaling is the same two float products per value. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include <immintrin.h>
#include "kernels/x86/x86.h"

static inline __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* sum of (double)(x[i] * x[i]) over n values, in lanes (its rounding differs from a chain's) */
static double sum_squares_lanes(const float *x, int64_t n) {
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 2; k++) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * k), sq = _mm256_mul_ps(v, v);
            acc[2 * k] = _mm256_add_pd(acc[2 * k], _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
            acc[2 * k + 1] = _mm256_add_pd(acc[2 * k + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
        }
    for (; i < n; i += 8) {      /* masked lanes load 0, whose square adds nothing */
        const __m256 v = _mm256_maskload_ps(x + i, tail_mask(n - i)), sq = _mm256_mul_ps(v, v);
        acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    const __m256d s4 = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/* x (n,) -> out (n,) = (x * scale) * w, scale = 1 / sqrt(mean of squares + eps) */
void pg_rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps) {
    double lo, hi;
    pg_sum_bracket(sum_squares_lanes(x, n), n, &lo, &hi);
    float mean = (float)(lo / (double)n);
    if (mean != (float)(hi / (double)n)) {      /* near a rounding boundary of the mean, or NaN */
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
        mean = (float)(sum / (double)n);
    }
    const float scale = 1.0f / sqrtf(mean + eps);
    const __m256 vscale = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vscale), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = (x[i] * scale) * w[i];
}
#endif
