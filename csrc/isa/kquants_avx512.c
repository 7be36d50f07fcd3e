/* K-quant (Q2_K..Q6_K) x Q8_K gemm for AVX-512 F/BW/VL/VNNI.
 *
 * W (nrows, n) @ A (ntok, n)^T -> y; the AVX2 file's tiles (8 rows x 1 token, 4 x 2) on zmm:
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
#include "isa/kquant_gemm_driver.h"
#include "isa/kquant_x86.h"

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
        const block_q8_K *a[2];
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
            __m512i av[2];
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
        __m256i isum8[8], msum[8];
        for (int p = 0; p < 8; p++)
            isum8[p] = _mm256_add_epi32(_mm512_castsi512_si256(isum[p]), _mm512_extracti64x4_epi64(isum[p], 1));
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
        __m256i I = reduce8_epi32(isum8), M = reduce8_epi32(msum);
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

/* One token (Q4_K, Q5_K, Q6_K): AVX2's direct kernels (kquants_avx2.c) read the GGUF blocks without the unpack
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
KQ_DEFINE_GEMM_AVX2_DECODE(q4_K, Q4_K)
KQ_DEFINE_GEMM_AVX2_DECODE(q5_K, Q5_K)
KQ_DEFINE_GEMM_AVX2_DECODE(q6_K, Q6_K)

#endif
