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

#include "isa/kquant_gemm_driver.h"
#include "isa/kquant_x86.h"

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
