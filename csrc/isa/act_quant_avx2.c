/* AVX2 activation quantizers, bit-identical to the run-time ones of quants/q8_0.c, q8_1.c and
 * the reference of q8_K.c (the formats' activation quantizers: forward.c quantizes every matmul
 * input with them). A block's scale comes from a vector max, its quants from the same float
 * multiply and the same round-by-adding-1.5*2^23 trick as pg_nearest_int, 8 at a time; the int8
 * is the low byte of that int, as the scalar cast. A block holding a NaN goes to the scalar code,
 * whose fold over the values treats NaN in an order-dependent way. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <immintrin.h>
#include "quants/traits.h"

void pg_quantize_act_q8_0(const float *x, void *y, int64_t n);
void pg_quantize_act_q8_1(const float *x, void *y, int64_t n);
void pg_quantize_ref_q8_K(const float *x, void *y, int64_t n);

static inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

static inline int hsum8_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1)));
}

/* pg_nearest_int of each lane of v * scale: (bits of (v * scale + 1.5*2^23) & 0x7fffff) - 2^22 */
static inline __m256i nearest_int8(__m256 v, __m256 scale) {
    const __m256 t = _mm256_add_ps(_mm256_mul_ps(v, scale), _mm256_set1_ps(12582912.0f));
    return _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), _mm256_set1_epi32(0x007fffff)),
                            _mm256_set1_epi32(0x00400000));
}

/* the int8 casts of 4 x 8 ints (their low bytes), stored in order at qs[0..32) */
static inline void store_low_bytes(int8_t *qs, __m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i lo = _mm256_set1_epi32(0xff);
    const __m256i p01 = _mm256_packus_epi32(_mm256_and_si256(i0, lo), _mm256_and_si256(i1, lo));
    const __m256i p23 = _mm256_packus_epi32(_mm256_and_si256(i2, lo), _mm256_and_si256(i3, lo));
    const __m256i b = _mm256_packus_epi16(p01, p23);      /* per 128-bit lane: i0 i1 i2 i3 quarters */
    _mm256_storeu_si256((__m256i *)qs, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* the int8 value of an int's low byte, as int32 */
static inline __m256i as_int8(__m256i i) { return _mm256_srai_epi32(_mm256_slli_epi32(i, 24), 24); }

/* One 32-value block of Q8_0 or Q8_1: quants into qs; returns 0 (block left to the scalar code)
 * when it holds a NaN, else 1 with *amax and the sum of the quants. */
static inline int quantize_block32(const float *x, int8_t *qs, float *amax_out, int *sum_out) {
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 nan = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v0, v0, _CMP_UNORD_Q), _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q)),
                                    _mm256_or_ps(_mm256_cmp_ps(v2, v2, _CMP_UNORD_Q), _mm256_cmp_ps(v3, v3, _CMP_UNORD_Q)));
    if (_mm256_movemask_ps(nan)) return 0;
    const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(abs8(v0), abs8(v1)), _mm256_max_ps(abs8(v2), abs8(v3))));
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    const __m256i i0 = nearest_int8(v0, id), i1 = nearest_int8(v1, id);
    const __m256i i2 = nearest_int8(v2, id), i3 = nearest_int8(v3, id);
    store_low_bytes(qs, i0, i1, i2, i3);
    *amax_out = amax;
    *sum_out = hsum8_epi32(_mm256_add_epi32(_mm256_add_epi32(as_int8(i0), as_int8(i1)),
                                            _mm256_add_epi32(as_int8(i2), as_int8(i3))));
    return 1;
}

void pg_quantize_act_q8_0_avx2(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax;
        int sum;
        if (!quantize_block32(x, y[i].qs, &amax, &sum)) {
            pg_quantize_act_q8_0(x, &y[i], QK8_0);
            continue;
        }
        y[i].d = pg_float_to_half(amax / 127.0f);
    }
}

void pg_quantize_act_q8_1_avx2(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax;
        int sum;
        if (!quantize_block32(x, y[i].qs, &amax, &sum)) {
            pg_quantize_act_q8_1(x, &y[i], QK8_1);
            continue;
        }
        const float d = amax / 127.0f;
        y[i].d = pg_float_to_half(d);
        y[i].s = pg_float_to_half((float)sum * d);
    }
}

/* One 256-value Q8_K block: scale from the signed value of largest magnitude (the first one on a
 * tie), quants clamped to 127 above, the sums of each 16 */
static void quantize_block_q8_K(const float *x, block_q8_K *y) {
    __m256 amax8 = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    for (int j = 0; j < QK_K; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        amax8 = _mm256_max_ps(amax8, abs8(v));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) {
        pg_quantize_ref_q8_K(x, y, QK_K);
        return;
    }
    const float amax = hmax8(amax8);
    if (amax == 0.0f) {
        memset(y, 0, sizeof *y);
        return;
    }
    int first = 0;
    for (int j = 0; j < QK_K; j += 8) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs8(_mm256_loadu_ps(x + j)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
        if (hit) {
            first = j + __builtin_ctz((unsigned)hit);
            break;
        }
    }
    const float iscale = -127.f / x[first];
    const __m256 vscale = _mm256_set1_ps(iscale);
    for (int j = 0; j < QK_K; j += 32) {
        __m256i i[4];
        for (int k = 0; k < 4; k++)
            i[k] = _mm256_min_epi32(nearest_int8(_mm256_loadu_ps(x + j + 8 * k), vscale), _mm256_set1_epi32(127));
        store_low_bytes(y->qs + j, i[0], i[1], i[2], i[3]);
        y->bsums[j / 16] = (int16_t)hsum8_epi32(_mm256_add_epi32(as_int8(i[0]), as_int8(i[1])));
        y->bsums[j / 16 + 1] = (int16_t)hsum8_epi32(_mm256_add_epi32(as_int8(i[2]), as_int8(i[3])));
    }
    y->d = 1 / iscale;
}

void pg_quantize_act_q8_K_avx2(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q8_K(x + i * QK_K, &y[i]);
}

#endif
