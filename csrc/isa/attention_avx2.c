/* AVX2 + F16C + FMA inner loops of attention over the F16 KV cache (see model/ops.h): each cached
 * row is converted 8 halves at a time with vcvtph2ps and then used by every query head of its
 * group. Sums run in one fixed order, so results depend only on the inputs. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>
#include "model/ops.h"

/* row (head_dim,) = the F16 row h as floats; head_dim is a multiple of 8 */
static inline void convert_row(float *row, const pg_half *h, int head_dim) {
    for (int d = 0; d < head_dim; d += 8)
        _mm256_storeu_ps(row + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + d))));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

/* s[h * s_stride] = dot(q_h, k) * scale: two accumulators per head, over 16 values per step */
static void scores_avx2(float *s, size_t s_stride, const float *q, int n_rep, const pg_half *k, int head_dim,
                        float scale, float *row) {
    convert_row(row, k, head_dim);
    for (int h = 0; h < n_rep; h++) {
        const float *qh = q + (size_t)h * head_dim;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int d = 0;
        for (; d + 16 <= head_dim; d += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(row + d), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d + 8), _mm256_loadu_ps(row + d + 8), a1);
        }
        if (d < head_dim) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(row + d), a0);
        s[h * s_stride] = hsum(_mm256_add_ps(a0, a1)) * scale;
    }
}

/* out_h += p[h * p_stride] * v, 8 values per FMA */
static void accumulate_avx2(float *out, const float *p, size_t p_stride, int n_rep, const pg_half *v, int head_dim,
                            float *row) {
    convert_row(row, v, head_dim);
    for (int h = 0; h < n_rep; h++) {
        const __m256 ph = _mm256_set1_ps(p[h * p_stride]);
        float *o = out + (size_t)h * head_dim;
        for (int d = 0; d < head_dim; d += 8)
            _mm256_storeu_ps(o + d, _mm256_fmadd_ps(ph, _mm256_loadu_ps(row + d), _mm256_loadu_ps(o + d)));
    }
}

const pg_attention_kernels pg_attention_kernels_avx2 = {scores_avx2, accumulate_avx2};

#endif
