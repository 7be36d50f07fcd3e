/* AVX2 activation quantizers, bit-identical to the run-time ones of quants/q8_0.c, q8_1.c and
 * the reference of q8_K.c (the formats' activation quantizers: forward.c quantizes every matmul
 * input with them). A block's scale comes from a vector max (Q8_0/Q8_1: eight blocks' scales in
 * one vector, so their divisions and fp16 conversions run together), its quants from the same
 * float multiply and the same round-by-adding-1.5*2^23 trick as pg_nearest_int, 8 at a time;
 * the int8 is the low byte of that int, as the scalar cast. A block holding a NaN goes to the
 * scalar code, whose fold over the values treats NaN in an order-dependent way. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <immintrin.h>
#include "kernels/ref.h"
#include "kernels/x86/x86.h"

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

/* the 32 quants of one block with scale id into qs; returns their sums in 8 lanes */
static inline __m256i quantize_32(const float *x, __m256 id, int8_t *qs) {
    const __m256i i0 = nearest_int8(_mm256_loadu_ps(x), id), i1 = nearest_int8(_mm256_loadu_ps(x + 8), id);
    const __m256i i2 = nearest_int8(_mm256_loadu_ps(x + 16), id), i3 = nearest_int8(_mm256_loadu_ps(x + 24), id);
    store_low_bytes(qs, i0, i1, i2, i3);
    return _mm256_add_epi32(_mm256_add_epi32(as_int8(i0), as_int8(i1)), _mm256_add_epi32(as_int8(i2), as_int8(i3)));
}

/* the lane-wise |x| maxima of a 32-value block, and an all-ones lane where it holds a NaN */
static inline __m256 block_max8(const float *x, __m256 *nan) {
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    *nan = _mm256_or_ps(*nan, _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v0, v0, _CMP_UNORD_Q), _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q)),
                                           _mm256_or_ps(_mm256_cmp_ps(v2, v2, _CMP_UNORD_Q), _mm256_cmp_ps(v3, v3, _CMP_UNORD_Q))));
    return _mm256_max_ps(_mm256_max_ps(abs8(v0), abs8(v1)), _mm256_max_ps(abs8(v2), abs8(v3)));
}

/* The scale the scalar quantizers take from amax: id = 127 / amax, 0 for amax 0 */
static inline __m256 inverse_scale(__m256 amax) {
    const __m256 zero = _mm256_cmp_ps(amax, _mm256_setzero_ps(), _CMP_EQ_OQ);
    return _mm256_andnot_ps(zero, _mm256_div_ps(_mm256_set1_ps(127.0f), amax));
}

/* lane b = the max of the 8 lanes of m[b] (NaN-free input: max is then order-free) */
static inline __m256 lane_max_of_8(const __m256 m[8]) {
    __m256 x[4];
    for (int p = 0; p < 4; p++)      /* [4 partial maxima of m[p] | 4 of m[p + 4]] */
        x[p] = _mm256_max_ps(_mm256_permute2f128_ps(m[p], m[p + 4], 0x20), _mm256_permute2f128_ps(m[p], m[p + 4], 0x31));
    const __m256 y01 = _mm256_max_ps(_mm256_shuffle_ps(x[0], x[1], 0x44), _mm256_shuffle_ps(x[0], x[1], 0xEE));
    const __m256 y23 = _mm256_max_ps(_mm256_shuffle_ps(x[2], x[3], 0x44), _mm256_shuffle_ps(x[2], x[3], 0xEE));
    return _mm256_max_ps(_mm256_shuffle_ps(y01, y23, 0x88), _mm256_shuffle_ps(y01, y23, 0xDD));
}

/* lane b = the sum of the 8 lanes of s[b], the same moves in integers */
static inline __m256i lane_sum_of_8(const __m256i s[8]) {
#define F(v) _mm256_castsi256_ps(v)
#define I(v) _mm256_castps_si256(v)
    __m256i x[4];
    for (int p = 0; p < 4; p++)
        x[p] = _mm256_add_epi32(_mm256_permute2x128_si256(s[p], s[p + 4], 0x20), _mm256_permute2x128_si256(s[p], s[p + 4], 0x31));
    const __m256i y01 = _mm256_add_epi32(I(_mm256_shuffle_ps(F(x[0]), F(x[1]), 0x44)), I(_mm256_shuffle_ps(F(x[0]), F(x[1]), 0xEE)));
    const __m256i y23 = _mm256_add_epi32(I(_mm256_shuffle_ps(F(x[2]), F(x[3]), 0x44)), I(_mm256_shuffle_ps(F(x[2]), F(x[3]), 0xEE)));
    return _mm256_add_epi32(I(_mm256_shuffle_ps(F(y01), F(y23), 0x88)), I(_mm256_shuffle_ps(F(y01), F(y23), 0xDD)));
#undef F
#undef I
}

/* Eight 32-value blocks of Q8_0 or Q8_1 (block i's quants at qs + i * stride): the scales come
 * from one vector of eight maxima, so the divisions and the fp16 conversions of the block
 * headers run 8 at a time. Returns 0, writing nothing, when one of the blocks holds a NaN. */
static inline int quantize_8_blocks(const float *x, int8_t *qs, size_t stride, __m256 *amax_out, __m256i *sums_out) {
    __m256 m[8], nan = _mm256_setzero_ps();
    for (int b = 0; b < 8; b++) m[b] = block_max8(x + 32 * b, &nan);
    if (_mm256_movemask_ps(nan)) return 0;
    const __m256 amax = lane_max_of_8(m);
    float id[8];
    __m256i sums[8];
    _mm256_storeu_ps(id, inverse_scale(amax));
    for (int b = 0; b < 8; b++) sums[b] = quantize_32(x + 32 * b, _mm256_set1_ps(id[b]), qs + b * stride);
    *amax_out = amax;
    *sums_out = lane_sum_of_8(sums);
    return 1;
}

/* fp16 of 8 floats as pg_float_to_half: F16C gives its bits for all but NaN (f16_avx2.c) */
static inline void to_half8(pg_half out[8], __m256 v) {
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
        float f[8];
        _mm256_storeu_ps(f, v);
        for (int i = 0; i < 8; i++) out[i] = pg_float_to_half(f[i]);
    } else {
        _mm_storeu_si128((__m128i *)out, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
}

/* One block without neighbours to share with: returns 0 (left to the scalar code) on a NaN */
static inline int quantize_1_block(const float *x, int8_t *qs, float *amax_out, int *sum_out) {
    __m256 nan = _mm256_setzero_ps();
    const float amax = hmax8(block_max8(x, &nan));
    if (_mm256_movemask_ps(nan)) return 0;
    *amax_out = amax;
    *sum_out = hsum8_epi32(quantize_32(x, _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f), qs));
    return 1;
}

_Static_assert(QK8_0 == QK8_1, "Q8_0 and Q8_1 blocks hold the same values");

/* x (n,) -> n/32 blocks of Q8_0 (into y0) or Q8_1 (into y1, the other NULL; Q8_1 also keeps
 * s = d * sum of its quants): eight at a time, then one at a time, and from a block holding a
 * NaN on, the scalar quantizer */
static void quantize_act_8bit(const float *x, block_q8_0 *y0, block_q8_1 *y1, int64_t n) {
    const int64_t nb = n / QK8_0;
    const size_t stride = y0 ? sizeof *y0 : sizeof *y1;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256 amax;
        __m256i sums;
        if (!quantize_8_blocks(x + i * QK8_0, y0 ? y0[i].qs : y1[i].qs, stride, &amax, &sums)) break;
        const __m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.0f));
        pg_half dh[8], sh[8];
        to_half8(dh, d);
        if (y0) {
            for (int b = 0; b < 8; b++) y0[i + b].d = dh[b];
            continue;
        }
        to_half8(sh, _mm256_mul_ps(_mm256_cvtepi32_ps(sums), d));
        for (int b = 0; b < 8; b++) y1[i + b].d = dh[b], y1[i + b].s = sh[b];
    }
    for (; i < nb; i++) {               /* the last blocks, and all from one holding a NaN on */
        float amax;
        int sum;
        if (!quantize_1_block(x + i * QK8_0, y0 ? y0[i].qs : y1[i].qs, &amax, &sum)) {
            if (y0) pg_quantize_act_q8_0(x + i * QK8_0, &y0[i], QK8_0);
            else pg_quantize_act_q8_1(x + i * QK8_0, &y1[i], QK8_0);
            continue;
        }
        const float d = amax / 127.0f;
        if (y0) {
            y0[i].d = pg_float_to_half(d);
        } else {
            y1[i].d = pg_float_to_half(d);
            y1[i].s = pg_float_to_half((float)sum * d);
        }
    }
}

/* x (n,) -> n/32 blocks of Q8_0, Q8_1: the bytes of pg_quantize_act_q8_0, pg_quantize_act_q8_1 */
void pg_quantize_act_q8_0_avx2(const float *x, void *y, int64_t n) { quantize_act_8bit(x, y, NULL, n); }
void pg_quantize_act_q8_1_avx2(const float *x, void *y, int64_t n) { quantize_act_8bit(x, NULL, y, n); }

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

/* x (n,) -> n/256 Q8_K blocks */
void pg_quantize_act_q8_K_avx2(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q8_K(x + i * QK_K, &y[i]);
}

#endif
