/* K-quant (Q2_K..Q6_K) x Q8_K gemm for AVX2 + FMA (no VNNI): vpmaddubsw + vpmaddwd.
 *
 * W (nrows, n) @ A (ntok, n)^T -> y; register tiles of 8 rows x 1 token or 4 rows x 2 tokens
 * over unpacked super-blocks (kquant_gemm_driver.h), each activation load shared by the tile's
 * rows and each weight load by its tokens. The unpacked quants are unsigned (0..63), so they are
 * maddubs' unsigned operand and a pair sum (<= 2*63*127) never saturates. Per super-block the
 * int32 lanes of the 8 (row, token) pairs are reduced together into one vector and one FMA per
 * lane advances the float chain, which is the reference's bit for bit. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include "quants/kquant_unpack.h"

#define KQ_INLINE static inline __attribute__((always_inline))

/* Lane k of the result = sum of the 8 int32 lanes of v[k]. */
KQ_INLINE __m256i reduce8_epi32(const __m256i v[8]) {
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    /* each 128-bit half now holds partial sums of v0..v3 (or v4..v7): add the halves */
    __m256i lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
    __m256i hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
    return _mm256_add_epi32(lo, hi);
}

#include "isa/kquant_gemm_driver.h"

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

/* Q4_K/Q5_K: each 6-bit sub-block scale/min serves two groups of 16 */
KQ_INLINE void unpack_k4_scales(const uint8_t *packed, pg_ksb *u) {
    uint8_t sc[8], m[8];
    pg_k4_unpack_scales(packed, sc, m);
    __m128i s8 = _mm_loadl_epi64((const __m128i *)sc), m8 = _mm_loadl_epi64((const __m128i *)m);
    __m256i s16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s8, s8));
    __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
    store_group_scales(u, s16, _mm256_sub_epi16(_mm256_setzero_si256(), m16));
}

static inline void kq_unpack_q4_K(const block_q4_K *b, pg_ksb *u) {
    for (int c = 0; c < 4; c++) {
        __m256i v = load32(b->qs + 32 * c);
        store32(u->q + 64 * c, bits8(v, 0, 0xF));
        store32(u->q + 64 * c + 32, bits8(v, 4, 0xF));
    }
    unpack_k4_scales(b->scales, u);
    u->d = pg_half_to_float(b->d);
    u->dm = pg_half_to_float(b->dmin);
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
    u->d = pg_half_to_float(b->d);
    u->dm = pg_half_to_float(b->dmin);
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
    u->d = u->dm = pg_half_to_float(b->d);
}

static inline void kq_unpack_q2_K(const block_q2_K *b, pg_ksb *u) {
    for (int h = 0; h < 2; h++) {
        __m256i v = load32(b->qs + 32 * h);
        for (int s = 0; s < 4; s++) store32(u->q + 128 * h + 32 * s, bits8(v, 2 * s, 3));
    }
    __m256i s16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    store_group_scales(u, _mm256_and_si256(s16, _mm256_set1_epi16(0xF)),
                       _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_srli_epi16(s16, 4)));
    u->d = pg_half_to_float(b->d);
    u->dm = pg_half_to_float(b->dmin);
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
    int8_t sc8[16];
    pg_q3k_unpack_scales(b->scales, sc8);
    __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc8));
    store_group_scales(u, sc, _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 2)));
    u->d = u->dm = pg_half_to_float(b->d);
}

/* 16 int16: groups 2c (low 128 bits) and 2c+1 (high) of a row's scales, each repeated 8 times,
 * to line up with maddubs' pair sums of a 32-value chunk. */
KQ_INLINE __m256i chunk_scales(const pg_ksb *u, int c) {
    int32_t pair;
    memcpy(&pair, &u->sc[2 * c], 4);
    const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                            2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    return _mm256_shuffle_epi8(_mm256_set1_epi32(pair), spread);
}

/* One (R rows x T tokens) tile over the chunk's super-blocks; R*T <= 8. */
KQ_INLINE void kq_tile(const kq_chunk *c, int r0, int t0, const int R, const int T) {
    float f[8];
    kq_load_lanes(c, r0, t0, R, T, f);
    __m256 acc = _mm256_loadu_ps(f);
    for (int s = 0; s < c->ns; s++) {
        const pg_ksb *u[8];
        const block_q8_K *a[2];
        for (int r = 0; r < R; r++) u[r] = &c->panel[(r0 + r) * KQ_KC + s];
        for (int t = 0; t < T; t++) a[t] = (const block_q8_K *)(c->a + (size_t)(t0 + t) * c->a_stride) + s;
        __m256i isum[8], msum[8];
        for (int p = 0; p < 8; p++) isum[p] = msum[p] = _mm256_setzero_si256();
        for (int ch = 0; ch < QK_K / 32; ch++) {
            __m256i av[2];
            for (int t = 0; t < T; t++) av[t] = _mm256_loadu_si256((const __m256i *)(a[t]->qs + 32 * ch));
            for (int r = 0; r < R; r++) {
                const __m256i wq = _mm256_loadu_si256((const __m256i *)(u[r]->q + 32 * ch));
                const __m256i sc = chunk_scales(u[r], ch);
                for (int t = 0; t < T; t++)
                    isum[r * T + t] = _mm256_add_epi32(isum[r * T + t],
                                                       _mm256_madd_epi16(_mm256_maddubs_epi16(wq, av[t]), sc));
            }
        }
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
            acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dmw), vda), _mm256_cvtepi32_ps(M), acc);
        } else {
            acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dw), vda),
                                  _mm256_cvtepi32_ps(_mm256_add_epi32(I, M)), acc);
        }
    }
    _mm256_storeu_ps(f, acc);
    kq_store_lanes(c, r0, t0, R, T, f);
}

static void kq_tile_8x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 8, 1); }
static void kq_tile_4x2(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 4, 2); }
static void kq_tile_1x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 1, 1); }

KQ_DEFINE_GEMM(q2_K, Q2_K, avx2)
KQ_DEFINE_GEMM(q3_K, Q3_K, avx2)
KQ_DEFINE_GEMM(q4_K, Q4_K, avx2)
KQ_DEFINE_GEMM(q5_K, Q5_K, avx2)
KQ_DEFINE_GEMM(q6_K, Q6_K, avx2)

#endif
