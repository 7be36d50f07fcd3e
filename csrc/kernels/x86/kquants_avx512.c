/* K-quant (Q2_K..Q6_K) x Q8_K gemm for AVX-512 F/BW/VL/VNNI.
 *
 * W (nrows, n) @ A (ntok, n)^T -> y; the AVX2 file's tiles (8 rows x 1 token, 4 x 2, 2 x 4) on zmm:
 * 64 values per step. vpdpbusd multiplies the unsigned unpacked quants (0..63) by the signed
 * activations and sums each 4 into an int32 lane (|sum| <= 4*63*127 < 2^15), then vpdpwssd
 * applies the group scale: it reads that lane as the int16 pair (sum, sign) and the scale lane
 * as (scale, 0), so it adds sum*scale exactly, fused with the accumulation. Per super-block the
 * int32 lanes are reduced and one FMA per (row, token) lane runs the reference's float chain,
 * so results are the reference's bits. */
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include "quants/kquant_unpack.h"
#include "kernels/kquant_driver.h"
#include "kernels/x86/kquant_x86.h"
#include "kernels/x86/x86.h"

/* Lane l of chunk ch (values 64ch + 4l .. +3) belongs to group 4ch + l/4. */
KQ_INLINE __m512i chunk_group_index(int ch) {
    return _mm512_add_epi32(_mm512_set1_epi32(4 * ch),
                            _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
}

/* One (R rows x T tokens) tile over the chunk's super-blocks; R*T <= 8. */
KQ_INLINE void kq_tile(const kq_chunk *c, int r0, int t0, const int R, const int T) {
    float f[8];
    kq_load_lanes(c, r0, t0, R, T, f);
    __m256 acc = _mm256_loadu_ps(f);
    for (int s = 0; s < c->ns; s++) {
        const pg_ksb *u[8];
        const block_q8_K *a[KQ_TILE_TOKENS];
        for (int r = 0; r < R; r++) u[r] = &c->panel[(r0 + r) * KQ_KC + s];
        for (int t = 0; t < T; t++) a[t] = (const block_q8_K *)(c->a + (size_t)(t0 + t) * c->a_stride) + s;
        /* each row's 16 group scales as int32 lanes (scale, 0) for vpdpwssd */
        __m512i scales[8];
        for (int r = 0; r < R; r++)
            scales[r] = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)u[r]->sc));
        __m512i isum[8];
        for (int p = 0; p < 8; p++) isum[p] = _mm512_setzero_si512();
        for (int ch = 0; ch < QK_K / 64; ch++) {
            const __m512i gi = chunk_group_index(ch);
            __m512i av[KQ_TILE_TOKENS];
            for (int t = 0; t < T; t++) av[t] = _mm512_loadu_si512((const void *)(a[t]->qs + 64 * ch));
            for (int r = 0; r < R; r++) {
                const __m512i wq = _mm512_loadu_si512((const void *)(u[r]->q + 64 * ch));
                const __m512i sc = _mm512_permutexvar_epi32(gi, scales[r]);
                for (int t = 0; t < T; t++) {
                    const __m512i dot4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, av[t]);
                    isum[r * T + t] = _mm512_dpwssd_epi32(isum[r * T + t], dot4, sc);
                }
            }
        }
        __m256i isum8[8];
        for (int p = 0; p < 8; p++)
            isum8[p] = _mm256_add_epi32(_mm512_castsi512_si256(isum[p]), _mm512_extracti64x4_epi64(isum[p], 1));
        acc = kq_tile_superblock_end(c, u, a, R, T, isum8, acc);
    }
    _mm256_storeu_ps(f, acc);
    kq_store_lanes(c, r0, t0, R, T, f);
}

static void kq_tile_8x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 8, 1); }
static void kq_tile_4x2(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 4, 2); }
static void kq_tile_2x4(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 2, 4); }
static void kq_tile_1x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 1, 1); }

/* ---- one token: Q4_K and Q6_K straight from the GGUF blocks, 8 rows per pass ----
 * W (nrows, n) @ a (n,) -> y. 64 values per vpdpbusd; the activation block is loaded once per
 * super-block and shared by the 8 rows; the same int32 per super-block and float chain as the
 * reference, hence the same bits. */

KQ_INLINE __m512i join256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
KQ_INLINE __m256i sum_halves(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }
KQ_INLINE __m512i lanes_of(int lo, int hi) {   /* 8 lanes lo, then 8 lanes hi */
    return join256(_mm256_set1_epi32(lo), _mm256_set1_epi32(hi));
}

/* Q4_K: a zmm of 64 qs bytes (chunks c, c+1) gives, as low nibbles, sub-blocks 2c and 2c+2,
 * as high nibbles 2c+1 and 2c+3; the activations are regrouped to match once per block. */
KQ_INLINE void q4_K_rows_direct(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *a, float *y, const int R) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i idx_lo01 = lanes_of(0, 2), idx_hi01 = lanes_of(1, 3), idx_lo23 = lanes_of(4, 6), idx_hi23 = lanes_of(5, 7);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const int8_t *aq = a[s].qs;
#define A32(k) _mm256_loadu_si256((const __m256i *)(aq + 32 * (k)))
        const __m512i a_lo01 = join256(A32(0), A32(2)), a_hi01 = join256(A32(1), A32(3));
        const __m512i a_lo23 = join256(A32(4), A32(6)), a_hi23 = join256(A32(5), A32(7));
#undef A32
        const __m128i b32 = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a[s].bsums),
                                           _mm_loadu_si128((const __m128i *)(a[s].bsums + 8)));
        __m256i isum[8], msum[8];
        float dw[8] = {0}, dmw[8] = {0};
        for (int p = 0; p < 8; p++) isum[p] = msum[p] = _mm256_setzero_si256();
        for (int r = 0; r < R; r++) {
            const block_q4_K *b = (const block_q4_K *)(w + (size_t)r * w_stride) + s;
            uint32_t scw[2], mw[2];
            pg_k4_scales_words(b->scales, scw, mw);
            /* the 8 scales as int32 lanes (scale, 0) for vpdpwssd */
            const __m512i sc32 = _mm512_cvtepu8_epi32(_mm_setr_epi32((int)scw[0], (int)scw[1], 0, 0));
            const __m128i m8 = _mm_setr_epi32((int)mw[0], (int)mw[1], 0, 0);
            const __m512i q01 = _mm512_loadu_si512((const void *)b->qs), q23 = _mm512_loadu_si512((const void *)(b->qs + 64));
            const __m512i z = _mm512_setzero_si512();
            __m512i acc_r = z;
            acc_r = _mm512_dpwssd_epi32(acc_r, _mm512_dpbusd_epi32(z, _mm512_and_si512(q01, m4), a_lo01), _mm512_permutexvar_epi32(idx_lo01, sc32));
            acc_r = _mm512_dpwssd_epi32(acc_r, _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q01, 4), m4), a_hi01), _mm512_permutexvar_epi32(idx_hi01, sc32));
            acc_r = _mm512_dpwssd_epi32(acc_r, _mm512_dpbusd_epi32(z, _mm512_and_si512(q23, m4), a_lo23), _mm512_permutexvar_epi32(idx_lo23, sc32));
            acc_r = _mm512_dpwssd_epi32(acc_r, _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q23, 4), m4), a_hi23), _mm512_permutexvar_epi32(idx_hi23, sc32));
            isum[r] = sum_halves(acc_r);
            msum[r] = _mm256_zextsi128_si256(_mm_madd_epi16(_mm_cvtepu8_epi16(m8), b32));
            dw[r] = _cvtsh_ss(b->d);
            dmw[r] = _cvtsh_ss(b->dmin);
        }
        const __m256i I = reduce8_epi32(isum);
        const __m256i M = _mm256_sub_epi32(_mm256_setzero_si256(), reduce8_epi32(msum));
        acc = chain_step(acc, 1, _mm256_loadu_ps(dw), _mm256_loadu_ps(dmw), a[s].d, I, M);
    }
    float f[8];
    _mm256_storeu_ps(f, acc);
    for (int r = 0; r < R; r++) y[r] = f[r];
}

/* Q6_K: per half of 128 values, the 64 ql bytes' low nibbles are values 0..63 and their high
 * nibbles 64..127, each completed by two bits of the 32 qh bytes. */
KQ_INLINE void q6_K_rows_direct(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *a, float *y, const int R) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x03);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        __m512i av[4];
        for (int ch = 0; ch < 4; ch++) av[ch] = _mm512_loadu_si512((const void *)(a[s].qs + 64 * ch));
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)a[s].bsums);
        __m256i isum[8], msum[8];
        float dw[8] = {0};
        for (int p = 0; p < 8; p++) isum[p] = msum[p] = _mm256_setzero_si256();
        for (int r = 0; r < R; r++) {
            const block_q6_K *b = (const block_q6_K *)(w + (size_t)r * w_stride) + s;
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
            const __m512i sc32 = _mm512_cvtepu16_epi32(sc16);   /* lanes (scale, 0) */
            const __m512i z = _mm512_setzero_si512();
            __m512i acc_r = z;
            for (int h = 0; h < 2; h++) {
                const __m512i ql = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                const __m512i qh_lo = join256(qh, _mm256_srli_epi16(qh, 2));
                const __m512i qh_hi = join256(_mm256_srli_epi16(qh, 4), _mm256_srli_epi16(qh, 6));
                const __m512i q_lo = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(qh_lo, m3), 4));
                const __m512i q_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                     _mm512_slli_epi16(_mm512_and_si512(qh_hi, m3), 4));
                acc_r = _mm512_dpwssd_epi32(acc_r, _mm512_dpbusd_epi32(z, q_lo, av[2 * h]),
                                            _mm512_permutexvar_epi32(chunk_group_index(2 * h), sc32));
                acc_r = _mm512_dpwssd_epi32(acc_r, _mm512_dpbusd_epi32(z, q_hi, av[2 * h + 1]),
                                            _mm512_permutexvar_epi32(chunk_group_index(2 * h + 1), sc32));
            }
            isum[r] = sum_halves(acc_r);
            msum[r] = _mm256_madd_epi16(sc16, bsums);
            dw[r] = _cvtsh_ss(b->d);
        }
        const __m256i I = reduce8_epi32(isum);
        const __m256i M = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(reduce8_epi32(msum), 5));
        acc = chain_step(acc, 0, _mm256_loadu_ps(dw), _mm256_setzero_ps(), a[s].d, I, M);
    }
    float f[8];
    _mm256_storeu_ps(f, acc);
    for (int r = 0; r < R; r++) y[r] = f[r];
}

KQ_DEFINE_DECODE(q4_K)
KQ_DEFINE_DECODE(q6_K)

/* One token, Q5_K: AVX2's direct kernel (kquants_avx2.c) reads the GGUF blocks without the unpack
 * buffer (2-3x the panel path on AVX2, measured; AVX-512 not measurable here); same bits. */
#define KQ_DEFINE_GEMM_AVX2_DECODE(t, T_UPPER)                                                   \
    void pg_gemm_##t##_avx2(int64_t n, const void *w, size_t w_stride, int nrows, const void *a, \
                            size_t a_stride, int ntok, float *y, size_t ldy);                    \
    KQ_DEFINE_PANEL_UNPACK(t)                                                                    \
    void pg_gemm_##t##_avx512(int64_t n, const void *w, size_t w_stride, int nrows,              \
                              const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {  \
        if (ntok == 1) {                                                                         \
            pg_gemm_##t##_avx2(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);                \
            return;                                                                              \
        }                                                                                        \
        kq_gemm(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy, kq_unpack_panel_##t,           \
                PG_##T_UPPER##_TWO_TERMS);                                                       \
    }

KQ_DEFINE_GEMM(q2_K, Q2_K, avx512)
KQ_DEFINE_GEMM(q3_K, Q3_K, avx512)
KQ_DEFINE_GEMM_WITH_DECODE(q4_K, Q4_K, avx512)
KQ_DEFINE_GEMM_AVX2_DECODE(q5_K, Q5_K)
KQ_DEFINE_GEMM_WITH_DECODE(q6_K, Q6_K, avx512)

#endif
