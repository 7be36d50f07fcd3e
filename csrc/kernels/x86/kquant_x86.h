/* x86 pieces shared by kquants_avx2.c and kquants_avx512.c (both compile it under their own
 * `#pragma GCC target`, which includes AVX2): 32-byte unpackers of every K-quant super-block
 * into pg_ksb (same results as pg_unpack_<t>, checked through the gemms' bit-exactness) and
 * the 8-vector int32 reduction. */
#ifndef PYGGUF_KQUANT_X86_H
#define PYGGUF_KQUANT_X86_H

#include <immintrin.h>
#include "quants/kquant_unpack.h"

#ifndef KQ_INLINE
#define KQ_INLINE static inline __attribute__((always_inline))
#endif

/* Lane k of the result = sum of the 8 int32 lanes of v[k] (exact: integer adds). */
KQ_INLINE __m256i reduce8_epi32(const __m256i v[8]) {
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    /* each 128-bit half now holds partial sums of v0..v3 (or v4..v7): add the halves */
    __m256i lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
    __m256i hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
    return _mm256_add_epi32(lo, hi);
}

/* ---- unpacking, 32 bytes at a time (same results as pg_unpack_<t>, which the tests check
 * through the gemm's bit-exactness) ---- */

KQ_INLINE __m256i load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
KQ_INLINE void store32(void *p, __m256i v) { _mm256_storeu_si256((__m256i *)p, v); }
/* bits [shift, shift+width) of every byte */
KQ_INLINE __m256i bits8(__m256i v, int shift, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8((char)mask));
}

/* 16 int16 from 16 bytes of group scales (signed or not) and their offsets */
KQ_INLINE void store_group_scales(pg_ksb *u, __m256i sc16, __m256i mn16) {
    store32(u->sc, sc16);
    store32(u->mn, mn16);
}

/* Q4_K/Q5_K: the 6-bit scales and mins (pg_k4_scales_words); each serves two groups of 16. */
KQ_INLINE void unpack_k4_scales(const uint8_t *packed, pg_ksb *u) {
    uint32_t sc[2], m[2];
    pg_k4_scales_words(packed, sc, m);
    const __m128i sc8 = _mm_setr_epi32((int)sc[0], (int)sc[1], 0, 0), m8 = _mm_setr_epi32((int)m[0], (int)m[1], 0, 0);
    const __m256i s16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sc8, sc8));
    const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
    store_group_scales(u, s16, _mm256_sub_epi16(_mm256_setzero_si256(), m16));
}

/* fp16 -> fp32 with F16C (exact, as pg_half_to_float) */
KQ_INLINE float half_to_float(pg_half h) { return _cvtsh_ss(h); }

static inline void kq_unpack_q4_K(const block_q4_K *b, pg_ksb *u) {
    for (int c = 0; c < 4; c++) {
        __m256i v = load32(b->qs + 32 * c);
        store32(u->q + 64 * c, bits8(v, 0, 0xF));
        store32(u->q + 64 * c + 32, bits8(v, 4, 0xF));
    }
    unpack_k4_scales(b->scales, u);
    u->d = half_to_float(b->d);
    u->dm = half_to_float(b->dmin);
}

static inline void kq_unpack_q5_K(const block_q5_K *b, pg_ksb *u) {
    const __m256i qh = load32(b->qh);
    for (int c = 0; c < 4; c++) {
        __m256i v = load32(b->qs + 32 * c);
        __m256i h0 = _mm256_slli_epi16(bits8(qh, 2 * c, 1), 4), h1 = _mm256_slli_epi16(bits8(qh, 2 * c + 1, 1), 4);
        store32(u->q + 64 * c, _mm256_or_si256(bits8(v, 0, 0xF), h0));
        store32(u->q + 64 * c + 32, _mm256_or_si256(bits8(v, 4, 0xF), h1));
    }
    unpack_k4_scales(b->scales, u);
    u->d = half_to_float(b->d);
    u->dm = half_to_float(b->dmin);
}

static inline void kq_unpack_q6_K(const block_q6_K *b, pg_ksb *u) {
    for (int h = 0; h < 2; h++) {
        __m256i l0 = load32(b->ql + 64 * h), l1 = load32(b->ql + 64 * h + 32), qh = load32(b->qh + 32 * h);
        uint8_t *q = u->q + 128 * h;
        store32(q, _mm256_or_si256(bits8(l0, 0, 0xF), _mm256_slli_epi16(bits8(qh, 0, 3), 4)));
        store32(q + 32, _mm256_or_si256(bits8(l1, 0, 0xF), _mm256_slli_epi16(bits8(qh, 2, 3), 4)));
        store32(q + 64, _mm256_or_si256(bits8(l0, 4, 0xF), _mm256_slli_epi16(bits8(qh, 4, 3), 4)));
        store32(q + 96, _mm256_or_si256(bits8(l1, 4, 0xF), _mm256_slli_epi16(bits8(qh, 6, 3), 4)));
    }
    __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    store_group_scales(u, sc, _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 5)));
    u->d = u->dm = half_to_float(b->d);
}

static inline void kq_unpack_q2_K(const block_q2_K *b, pg_ksb *u) {
    for (int h = 0; h < 2; h++) {
        __m256i v = load32(b->qs + 32 * h);
        for (int s = 0; s < 4; s++) store32(u->q + 128 * h + 32 * s, bits8(v, 2 * s, 3));
    }
    __m256i s16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    store_group_scales(u, _mm256_and_si256(s16, _mm256_set1_epi16(0xF)),
                       _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_srli_epi16(s16, 4)));
    u->d = half_to_float(b->d);
    u->dm = half_to_float(b->dmin);
}

static inline void kq_unpack_q3_K(const block_q3_K *b, pg_ksb *u) {
    const __m256i hm = load32(b->hmask);
    for (int h = 0; h < 2; h++) {
        __m256i v = load32(b->qs + 32 * h);
        for (int s = 0; s < 4; s++) {
            __m256i high = _mm256_slli_epi16(bits8(hm, 4 * h + s, 1), 2);
            store32(u->q + 128 * h + 32 * s, _mm256_or_si256(bits8(v, 2 * s, 3), high));
        }
    }
    uint32_t words[4];
    pg_q3k_scales_words(b->scales, words);
    const __m128i biased = _mm_setr_epi32((int)words[0], (int)words[1], (int)words[2], (int)words[3]);
    __m256i sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(biased), _mm256_set1_epi16(32));
    store_group_scales(u, sc, _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 2)));
    u->d = u->dm = half_to_float(b->d);
}

/* The float step for 8 (row) lanes, as pg_ksb_accumulate; I, M exact as in pg_ksb_dot_ints. */
KQ_INLINE __m256 chain_step(__m256 acc, int two_terms, __m256 dw, __m256 dmw, float ad, __m256i I, __m256i M) {
    const __m256 vad = _mm256_set1_ps(ad);
    if (two_terms) {
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, vad), _mm256_cvtepi32_ps(I), acc);
        return _mm256_fmadd_ps(_mm256_mul_ps(dmw, vad), _mm256_cvtepi32_ps(M), acc);
    }
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, vad), _mm256_cvtepi32_ps(_mm256_add_epi32(I, M)), acc);
}


/* The end of one super-block of an R x T panel tile (the same in every x86 ISA): the mins (or
 * offsets) through the activation's bsums, then the float chain of the reference,
 * acc += (dw*da) * I (+ (dmw*da) * M), one lane per (row, token). isum: exact int32 dot lanes. */
KQ_INLINE __m256 kq_tile_superblock_end(const kq_chunk *c, const pg_ksb *const *u, const block_q8_K *const *a,
                                        int R, int T, const __m256i isum[8], __m256 acc) {
    __m256i msum[8];
    for (int p = 0; p < 8; p++) msum[p] = _mm256_setzero_si256();
    for (int r = 0; r < R; r++) {
        const __m256i mn = _mm256_loadu_si256((const __m256i *)u[r]->mn);
        for (int t = 0; t < T; t++)
            msum[r * T + t] = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)a[t]->bsums));
    }
    float dw[8] = {0}, dmw[8] = {0}, da[8] = {0};
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            dw[r * T + t] = u[r]->d;
            dmw[r * T + t] = u[r]->dm;
            da[r * T + t] = a[t]->d;
        }
    const __m256 vda = _mm256_loadu_ps(da);
    __m256i I = reduce8_epi32(isum), M = reduce8_epi32(msum);
    if (c->two_terms) {
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dw), vda), _mm256_cvtepi32_ps(I), acc);
        return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dmw), vda), _mm256_cvtepi32_ps(M), acc);
    }
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dw), vda), _mm256_cvtepi32_ps(_mm256_add_epi32(I, M)), acc);
}

#endif
