/* K-quant (Q2_K..Q6_K) x Q8_K gemm for AVX2 + FMA (no VNNI): vpmaddubsw + vpmaddwd.
 *
 * W (nrows, n) @ A (ntok, n)^T -> y; register tiles of 8 rows x 1 token, 4 x 2 or 2 x 4
 * over unpacked super-blocks (kquant_gemm_driver.h), each activation load shared by the tile's
 * rows and each weight load by its tokens. The unpacked quants are unsigned (0..63), so they are
 * maddubs' unsigned operand and a pair sum (<= 2*63*127) never saturates. Per super-block the
 * int32 lanes of the 8 (row, token) pairs are reduced together into one vector and one FMA per
 * lane advances the float chain, which is the reference's bit for bit. One token (decode) of
 * Q4_K, Q5_K, Q6_K takes direct kernels that read the GGUF blocks without the unpack buffer,
 * 8 rows per pass, each pass prefetching the next one's blocks. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>
#include "quants/kquant_unpack.h"

#include "kernels/kquant_driver.h"
#include "kernels/x86/kquant_x86.h"
#include "kernels/x86/x86.h"

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
        const block_q8_K *a[KQ_TILE_TOKENS];
        for (int r = 0; r < R; r++) u[r] = &c->panel[(r0 + r) * KQ_KC + s];
        for (int t = 0; t < T; t++) a[t] = (const block_q8_K *)(c->a + (size_t)(t0 + t) * c->a_stride) + s;
        __m256i isum[8];
        for (int p = 0; p < 8; p++) isum[p] = _mm256_setzero_si256();
        for (int ch = 0; ch < QK_K / 32; ch++) {
            __m256i av[KQ_TILE_TOKENS];
            for (int t = 0; t < T; t++) av[t] = _mm256_loadu_si256((const __m256i *)(a[t]->qs + 32 * ch));
            for (int r = 0; r < R; r++) {
                const __m256i wq = _mm256_loadu_si256((const __m256i *)(u[r]->q + 32 * ch));
                const __m256i sc = chunk_scales(u[r], ch);
                for (int t = 0; t < T; t++)
                    isum[r * T + t] = _mm256_add_epi32(isum[r * T + t],
                                                       _mm256_madd_epi16(_mm256_maddubs_epi16(wq, av[t]), sc));
            }
        }
        acc = kq_tile_superblock_end(c, u, a, R, T, isum, acc);
    }
    _mm256_storeu_ps(f, acc);
    kq_store_lanes(c, r0, t0, R, T, f);
}

static void kq_tile_8x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 8, 1); }
static void kq_tile_4x2(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 4, 2); }
static void kq_tile_2x4(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 2, 4); }
static void kq_tile_1x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 1, 1); }


/* ---- decode (one token): Q4_K, Q5_K and Q6_K straight from the GGUF blocks, no unpack buffer ----
 * W (nrows, n) @ a (n,) -> y; 8 rows per pass share every activation load. Same int32 per
 * super-block and same float chain as the reference, hence the same bits as the panel path. */

/* 16 int16 = [s[j] x 8 | s[j+1] x 8] from a vector holding 16 int16 scales (j even) */
KQ_INLINE __m256i scale_pair(__m256i s16, int j) {
    const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                            2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    return _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(j / 2)), spread);
}

/* pairwise sums of a Q8_K block's 16 group sums: the 8 sub-block (32-value) sums */
KQ_INLINE __m128i bsums_per_32(const block_q8_K *a) {
    return _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a->bsums), _mm_loadu_si128((const __m128i *)(a->bsums + 8)));
}

/* ask for the cache lines of one block (a hint: it never faults) */
KQ_INLINE void kq_prefetch_block(const char *p, size_t bsize) {
    for (size_t off = 0; off < bsize; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

/* bits (qh >> b) & 1 of every byte moved to 0x10 (b = 0..7): one 16-bit shift at most, then a mask */
KQ_INLINE __m256i q5_high_bit(__m256i qh, const int b) {
    const __m256i m10 = _mm256_set1_epi8(0x10);
    if (b < 4) return _mm256_and_si256(_mm256_slli_epi16(qh, 4 - b), m10);
    if (b == 4) return _mm256_and_si256(qh, m10);
    return _mm256_and_si256(_mm256_srli_epi16(qh, b - 4), m10);
}

/* The 12 packed bytes of Q4_K/Q5_K scales -> 16 bytes [sc0..sc7 | m0..m7], the same decoding as
 * pg_k4_scales_words (its words are bytes 0-3 s, 4-7 m, 8-11 w2): low 6 bits of bytes 0-7 for
 * sub-blocks 0-3; nibbles of bytes 8-11 below the top 2 bits of bytes 0-7 for sub-blocks 4-7.
 * Reads 16 bytes from `packed` (the block goes on past its 12 scale bytes). */
KQ_INLINE __m128i k4_scales_mins_simd(const uint8_t *packed) {
    const __m128i x = _mm_loadu_si128((const __m128i *)packed);
    /* low bits: [s0-3 | w2 | s4-7 | w2], the last word's high nibbles shifted down */
    const __m128i lows = _mm_shuffle_epi8(x, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i low_bits = _mm_and_si128(_mm_srlv_epi32(lows, _mm_setr_epi32(0, 0, 0, 4)),
                                           _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    /* top 2 bits of bytes 0-3 (scales) and 4-7 (mins) become bits 4-5 of sub-blocks 4-7 */
    const __m128i tops = _mm_shuffle_epi8(x, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i top_bits = _mm_srli_epi16(_mm_and_si128(tops, _mm_set1_epi8((char)0xC0)), 2);
    return _mm_or_si128(low_bits, top_bits);
}

/* One Q4_K/Q5_K super-block of one row against a. Returns I (8 int32 lanes to be summed) and
 * sets *msum to lanes summing to M = -sum_j min_j * bsum32_j. b32_hi = [0 | the 8 sub-block
 * sums] (int16): the row's scales and mins, widened in one go to [scales | mins], meet it in
 * one madd whose low half is zero. */
KQ_INLINE __m256i k4_block_ints(const block_q4_K *b, const uint8_t *qs, const uint8_t *qh_bytes,
                                const block_q8_K *a, __m256i b32_hi, __m256i *msum, const int five_bits) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i sm16 = _mm256_cvtepu8_epi16(k4_scales_mins_simd(b->scales)); /* [8 scales | 8 mins] */
    *msum = _mm256_madd_epi16(sm16, b32_hi);
    const __m256i sc = _mm256_permute4x64_epi64(sm16, 0x44); /* [8 scales | 8 scales] */
    const __m256i qh = five_bits ? _mm256_loadu_si256((const __m256i *)qh_bytes) : _mm256_setzero_si256();
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (five_bits) {
            lo = _mm256_or_si256(lo, q5_high_bit(qh, 2 * c));
            hi = _mm256_or_si256(hi, q5_high_bit(qh, 2 * c + 1));
        }
        const __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * c)));
        const __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * c + 32)));
        /* sub-block j's scale in all 16 lanes: one in-lane shuffle */
        const __m256i s0 = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * c))));
        const __m256i s1 = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1))));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, s0));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, s1));
    }
    return acc;
}

/* Q4_K and Q5_K share d, dmin and the 6-bit scales at the same offsets; Q5_K adds qh. */
KQ_INLINE void k4_rows_direct(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *a, float *y,
                              const int R, const int five_bits, const char *next) {
    const size_t bsize = five_bits ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t qs_at = five_bits ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const size_t qh_at = offsetof(block_q5_K, qh);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        __m256i isum[8], msum[8];
        float dw[8] = {0}, dmw[8] = {0};
        const __m256i b32_hi = _mm256_inserti128_si256(_mm256_setzero_si256(), bsums_per_32(&a[s]), 1);
        for (int p = 0; p < 8; p++) isum[p] = msum[p] = _mm256_setzero_si256();
        for (int r = 0; r < R; r++) {
            const char *blk = w + (size_t)r * w_stride + (size_t)s * bsize;
            const block_q4_K *b = (const block_q4_K *)blk;
            if (next) kq_prefetch_block(next + (size_t)r * w_stride + (size_t)s * bsize, bsize);
            isum[r] = k4_block_ints(b, (const uint8_t *)blk + qs_at, (const uint8_t *)blk + qh_at, &a[s], b32_hi,
                                    &msum[r], five_bits);
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

KQ_INLINE void q4_K_rows_direct(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *a, float *y, const int R,
                                const char *next) {
    k4_rows_direct(nsb, w, w_stride, a, y, R, 0, next);
}
KQ_INLINE void q5_K_rows_direct(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *a, float *y, const int R,
                                const char *next) {
    k4_rows_direct(nsb, w, w_stride, a, y, R, 1, next);
}

/* Q6_K scales regrouped once per row-super-block: int16 lanes [s0 s2 .. s14 | s1 s3 .. s15], so
 * chunk j (groups 2j, 2j+1) takes its scale vector with one in-lane shuffle (q6_chunk_scale). */
KQ_INLINE __m256i q6_scales_even_odd(const int8_t *scales) {
    const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)scales), even_odd));
}
/* 16 int16 = [s[2j] x 8 | s[2j+1] x 8] from q6_scales_even_odd's vector */
KQ_INLINE __m256i q6_chunk_scale(__m256i eo, int j) {
    return _mm256_shuffle_epi8(eo, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
}

/* One Q6_K super-block of one row against a: I + M (M = -32 * sum sc*bsum folded in, as the
 * one-term reference does), 8 int32 lanes to be summed. bsums_eo = the block's group sums in
 * q6_scales_even_odd's order. Each 6-bit quant is ql's nibble | qh's 2 bits masked into 0x30. */
KQ_INLINE __m256i q6_K_block_ints(const block_q6_K *b, const block_q8_K *a, __m256i bsums_eo) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i eo = q6_scales_even_odd(b->scales);
    __m256i acc = _mm256_slli_epi32(_mm256_madd_epi16(eo, bsums_eo), 5);
    acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        for (int k = 0; k < 4; k++) {
            const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(a->qs + 128 * h + 32 * k)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, q6_chunk_scale(eo, 4 * h + k)));
        }
    }
    return acc;
}

/* Q6_K: one reduction per super-block for the 8 rows (I + M together, exact int32). */
KQ_INLINE void q6_K_rows_direct(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *a, float *y, const int R,
                                const char *next) {
    const __m256i bsums_lane_eo = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                                   0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        __m256i isum[8];
        float dw[8] = {0};
        /* [b0 b2 b4 b6 | b1 b3 b5 b7] per lane, then the 64-bit quarters (0, 2, 1, 3) */
        const __m256i bl = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)a[s].bsums), bsums_lane_eo);
        const __m256i bsums_eo = _mm256_permute4x64_epi64(bl, 0xD8);
        for (int p = 0; p < 8; p++) isum[p] = _mm256_setzero_si256();
        for (int r = 0; r < R; r++) {
            const block_q6_K *b = (const block_q6_K *)(w + (size_t)r * w_stride) + s;
            if (next) kq_prefetch_block(next + (size_t)r * w_stride + (size_t)s * sizeof(block_q6_K), sizeof(block_q6_K));
            isum[r] = q6_K_block_ints(b, &a[s], bsums_eo);
            dw[r] = _cvtsh_ss(b->d);
        }
        acc = chain_step(acc, 0, _mm256_loadu_ps(dw), _mm256_setzero_ps(), a[s].d, reduce8_epi32(isum),
                         _mm256_setzero_si256());
    }
    float f[8];
    _mm256_storeu_ps(f, acc);
    for (int r = 0; r < R; r++) y[r] = f[r];
}

/* One token: 8 rows per pass, the remainder one by one. Rows are short next to the hardware
 * prefetcher's warm-up (16 super-blocks of 4096 columns), so each pass asks for the block of
 * the next pass's row that it is about to need one pass later: the streams never start cold. */
#define KQ_DEFINE_DECODE_PREFETCHING(t)                                                             \
    static void kq_decode_##t(int64_t n, const void *w, size_t w_stride, int nrows, const void *a, float *y) { \
        const int64_t nsb = n / QK_K;                                                               \
        const char *wc = (const char *)w;                                                           \
        int r = 0;                                                                                  \
        for (; r + 8 <= nrows; r += 8) {                                                            \
            const char *next = r + 16 <= nrows ? wc + (size_t)(r + 8) * w_stride : NULL;           \
            t##_rows_direct(nsb, wc + (size_t)r * w_stride, w_stride, a, y + r, 8, next);           \
        }                                                                                           \
        for (; r < nrows; r++) t##_rows_direct(nsb, wc + (size_t)r * w_stride, w_stride, a, y + r, 1, NULL); \
    }

KQ_DEFINE_DECODE_PREFETCHING(q4_K)
KQ_DEFINE_DECODE_PREFETCHING(q5_K)
KQ_DEFINE_DECODE_PREFETCHING(q6_K)

KQ_DEFINE_GEMM(q2_K, Q2_K, avx2)
KQ_DEFINE_GEMM(q3_K, Q3_K, avx2)
KQ_DEFINE_GEMM_WITH_DECODE(q4_K, Q4_K, avx2)
KQ_DEFINE_GEMM_WITH_DECODE(q5_K, Q5_K, avx2)
KQ_DEFINE_GEMM_WITH_DECODE(q6_K, Q6_K, avx2)


/* ---- Q4_K and Q5_K in the sliced layout (kernels/repack.h) ---- */

/* out[v] dword j = in[j] dword v: the 8 x 8 dword transpose between natural and slice order
 * (natural vector j = the 32 values of sub-block j; slice v = dword v of each) */
KQ_INLINE void transpose8_epi32(__m256i v[8]) {
    __m256i t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_epi32(v[k], v[k + 1]);
        t[k + 1] = _mm256_unpackhi_epi32(v[k], v[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_unpacklo_epi64(t[k], t[k + 2]);
        u[k + 1] = _mm256_unpackhi_epi64(t[k], t[k + 2]);
        u[k + 2] = _mm256_unpacklo_epi64(t[k + 1], t[k + 3]);
        u[k + 3] = _mm256_unpackhi_epi64(t[k + 1], t[k + 3]);
    }
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x20);
        v[k + 4] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x31);
    }
}

/* nsb Q8_K blocks -> the same with their quants in slice order (d and bsums as they are) */
static void q8_K_to_slices(const block_q8_K *a, int64_t nsb, block_q8_K *out) {
    for (int64_t s = 0; s < nsb; s++) {
        __m256i v[8];
        for (int j = 0; j < 8; j++) v[j] = _mm256_loadu_si256((const __m256i *)(a[s].qs + 32 * j));
        transpose8_epi32(v);
        for (int j = 0; j < 8; j++) _mm256_storeu_si256((__m256i *)(out[s].qs + 32 * j), v[j]);
        out[s].d = a[s].d;
        memcpy(out[s].bsums, a[s].bsums, sizeof a[s].bsums);
    }
}

/* 8 pairs of fp16 (low half, high half) -> their low halves and their high halves as floats:
 * one conversion for 8 rows' d and dmin instead of two per row (F16C is exact, as _cvtsh_ss) */
KQ_INLINE void halves_to_floats(const uint32_t pairs[8], __m256 *lo, __m256 *hi) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)pairs);
    const __m256i lows = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), highs = _mm256_srli_epi32(v, 16);
    /* per 128-bit lane [lows 0-3 | highs 0-3], [lows 4-7 | highs 4-7]: quarters (0, 2, 1, 3) */
    const __m256i both = _mm256_permute4x64_epi64(_mm256_packus_epi32(lows, highs), 0xD8);
    *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(both));
    *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(both, 1));
}

/* R rows (<= 8) x T tokens (<= 4) of sliced Q4_K/Q5_K rows against T activations in slice order
 * (as + t*nsb) -> y[t*ldy + r]. Each row's super-block is split into its 8 slices once for the T
 * tokens; per token, the slices' maddubs pair sums add up in int16 (byte p of every slice lies
 * in sub-block p/4: no overflow, 8 x 2 x 15 x 128 < 2^15 for 4 bits, 4 slices at a time for 5)
 * and one madd with [s0 s0 s1 s1 .. s7 s7] applies the scales: per 256 values and token 8
 * maddubs, 8 int16 adds and 1-2 madds, where the GGUF order needs 8 madds and 8 scale shuffles
 * more. The int32 lanes of the R rows are reduced together per token and advance its float
 * chain as the reference's (pg_ksb_accumulate), from 0 or (go_on) from y, where the super-blocks
 * before these left it. next: the rows to prefetch (the next pass's). */
KQ_INLINE void k4_sliced_rows(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *as, float *y, size_t ldy,
                              const int R, const int T, const int five_bits, int go_on, const char *next) {
    const size_t bsize = five_bits ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t qs_at = five_bits ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[KQ_TILE_TOKENS];
    for (int t = 0; t < T; t++) {
        float f[8] = {0};
        for (int r = 0; go_on && r < R; r++) f[r] = y[(size_t)t * ldy + r];
        acc[t] = _mm256_loadu_ps(f);
    }
    for (int64_t s = 0; s < nsb; s++) {
        __m256i isum[KQ_TILE_TOKENS][8], msum[KQ_TILE_TOKENS][8], b32_hi[KQ_TILE_TOKENS];
        uint32_t d_dmin[8] = {0};   /* each row's fp16 d and dmin, converted 8 rows at once */
        for (int t = 0; t < T; t++) {
            b32_hi[t] = _mm256_inserti128_si256(_mm256_setzero_si256(), bsums_per_32(&as[t * nsb + s]), 1);
            for (int p = 0; p < 8; p++) isum[t][p] = msum[t][p] = _mm256_setzero_si256();
        }
        for (int r = 0; r < R; r++) {
            const char *blk = w + (size_t)r * w_stride + (size_t)s * bsize;
            const block_q4_K *b = (const block_q4_K *)blk;
            if (next) kq_prefetch_block(next + (size_t)r * w_stride + (size_t)s * bsize, bsize);
            const __m128i sm = k4_scales_mins_simd(b->scales); /* [8 scales | 8 mins] bytes */
            const __m256i sm16 = _mm256_cvtepu8_epi16(sm);
            const __m256i sc_lanes = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sm, sm));
            const __m256i qh = five_bits ? load32(blk + offsetof(block_q5_K, qh)) : _mm256_setzero_si256();
            __m256i slice[8];
            for (int u = 0; u < 4; u++) {
                const __m256i q = load32(blk + qs_at + 32 * u);
                slice[2 * u] = _mm256_and_si256(q, m4);
                slice[2 * u + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (five_bits) {
                    slice[2 * u] = _mm256_or_si256(slice[2 * u], q5_high_bit(qh, 2 * u));
                    slice[2 * u + 1] = _mm256_or_si256(slice[2 * u + 1], q5_high_bit(qh, 2 * u + 1));
                }
            }
            for (int t = 0; t < T; t++) {
                const int8_t *aq = as[t * nsb + s].qs;
                __m256i sum16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
                for (int v = 0; v < 8; v++) {
                    const int k = five_bits ? v / 4 : 0;
                    sum16[k] = _mm256_add_epi16(sum16[k], _mm256_maddubs_epi16(slice[v], load32(aq + 32 * v)));
                }
                isum[t][r] = _mm256_madd_epi16(sum16[0], sc_lanes);
                if (five_bits) isum[t][r] = _mm256_add_epi32(isum[t][r], _mm256_madd_epi16(sum16[1], sc_lanes));
                msum[t][r] = _mm256_madd_epi16(sm16, b32_hi[t]);
            }
            memcpy(&d_dmin[r], blk, 4);
        }
        __m256 dw, dmw;
        halves_to_floats(d_dmin, &dw, &dmw);
        for (int t = 0; t < T; t++) {
            const __m256i M = _mm256_sub_epi32(_mm256_setzero_si256(), reduce8_epi32(msum[t]));
            acc[t] = chain_step(acc[t], 1, dw, dmw, as[t * nsb + s].d, reduce8_epi32(isum[t]), M);
        }
    }
    for (int t = 0; t < T; t++) {
        float f[8];
        _mm256_storeu_ps(f, acc[t]);
        for (int r = 0; r < R; r++) y[(size_t)t * ldy + r] = f[r];
    }
}

/* Super-blocks per run of a row that the one-token kernel reads before it goes to the next row */
#define KQ_RUN_BLOCKS 8

/* One token (decode) over short rows: as k4_sliced_rows with T = 1, but reading row after row,
 * a run of up to KQ_RUN_BLOCKS super-blocks of each, instead of the R rows side by side (the
 * int32 lanes of a run wait in isum/msum until its rows are done): a pass over rows of 2048
 * values is then one forward stream of 9 KiB. Measured from memory, one thread, GB/s row after
 * row vs side by side: Q4_K 2048x2048 16 vs 14, 5632x2048 16.5 vs 14; but 4096x4096 14 vs 18 and
 * 4096x11008 12.5 vs 20 (whatever the prefetch hint, T0 or T1; the kernel itself runs at 21-22
 * from the caches either way), so longer rows keep the side-by-side order (k4_sliced_pass). */
KQ_INLINE void k4_sliced_decode_rows(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *as, float *y,
                                     const int R, const int five_bits, int go_on, const char *next) {
    const size_t bsize = five_bits ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t qs_at = five_bits ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float f[8] = {0};
    for (int r = 0; go_on && r < R; r++) f[r] = y[r];
    __m256 acc = _mm256_loadu_ps(f);
    for (int64_t s0 = 0; s0 < nsb; s0 += KQ_RUN_BLOCKS) {
        const int ns = nsb - s0 < KQ_RUN_BLOCKS ? (int)(nsb - s0) : KQ_RUN_BLOCKS;
        __m256i isum[KQ_RUN_BLOCKS][8], msum[KQ_RUN_BLOCKS][8], b32_hi[KQ_RUN_BLOCKS];
        uint32_t d_dmin[KQ_RUN_BLOCKS][8];
        for (int s = 0; s < ns; s++) {
            b32_hi[s] = _mm256_inserti128_si256(_mm256_setzero_si256(), bsums_per_32(&as[s0 + s]), 1);
            for (int r = R; r < 8; r++) isum[s][r] = msum[s][r] = _mm256_setzero_si256(), d_dmin[s][r] = 0;
        }
        for (int r = 0; r < R; r++)
            for (int s = 0; s < ns; s++) {
                const char *blk = w + (size_t)r * w_stride + (size_t)(s0 + s) * bsize;
                if (next) kq_prefetch_block(next + (size_t)r * w_stride + (size_t)(s0 + s) * bsize, bsize);
                const __m128i sm = k4_scales_mins_simd(((const block_q4_K *)blk)->scales);
                const __m256i sc_lanes = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sm, sm));
                const __m256i qh = five_bits ? load32(blk + offsetof(block_q5_K, qh)) : _mm256_setzero_si256();
                const int8_t *aq = as[s0 + s].qs;
                __m256i sum16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
                for (int u = 0; u < 4; u++) {
                    const __m256i q = load32(blk + qs_at + 32 * u);
                    __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    if (five_bits) {
                        lo = _mm256_or_si256(lo, q5_high_bit(qh, 2 * u));
                        hi = _mm256_or_si256(hi, q5_high_bit(qh, 2 * u + 1));
                    }
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load32(aq + 64 * u)),
                                                       _mm256_maddubs_epi16(hi, load32(aq + 64 * u + 32)));
                    const int k = five_bits ? u / 2 : 0;
                    sum16[k] = _mm256_add_epi16(sum16[k], p);
                }
                isum[s][r] = _mm256_madd_epi16(sum16[0], sc_lanes);
                if (five_bits) isum[s][r] = _mm256_add_epi32(isum[s][r], _mm256_madd_epi16(sum16[1], sc_lanes));
                msum[s][r] = _mm256_madd_epi16(_mm256_cvtepu8_epi16(sm), b32_hi[s]);
                memcpy(&d_dmin[s][r], blk, 4);
            }
        for (int s = 0; s < ns; s++) {
            __m256 dw, dmw;
            halves_to_floats(d_dmin[s], &dw, &dmw);
            const __m256i M = _mm256_sub_epi32(_mm256_setzero_si256(), reduce8_epi32(msum[s]));
            acc = chain_step(acc, 1, dw, dmw, as[s0 + s].d, reduce8_epi32(isum[s]), M);
        }
    }
    _mm256_storeu_ps(f, acc);
    for (int r = 0; r < R; r++) y[r] = f[r];
}

/* k4_sliced_rows with R and T as constants (each its own unrolled code) */
KQ_INLINE void k4_sliced_pass(int64_t nsb, const char *w, size_t w_stride, const block_q8_K *as, float *y,
                              size_t ldy, const int R, int T, const int five_bits, int go_on, const char *next) {
    switch (T) {
    case 1:
        if (nsb <= KQ_RUN_BLOCKS) k4_sliced_decode_rows(nsb, w, w_stride, as, y, R, five_bits, go_on, next);
        else k4_sliced_rows(nsb, w, w_stride, as, y, ldy, R, 1, five_bits, go_on, next);
        break;
    case 2: k4_sliced_rows(nsb, w, w_stride, as, y, ldy, R, 2, five_bits, go_on, next); break;
    case 3: k4_sliced_rows(nsb, w, w_stride, as, y, ldy, R, 3, five_bits, go_on, next); break;
    default: k4_sliced_rows(nsb, w, w_stride, as, y, ldy, R, 4, five_bits, go_on, next); break;
    }
}

/* Weight bytes of the rows a group of KQ_TILE_TOKENS tokens goes over before the next group
 * does: kept in the 512 KiB L2 (with the group's activations) for the groups after the first. */
#define KQ_SLICED_ROW_BLOCK_BYTES (192 * 1024)

/* Super-blocks of activation in slice order, on the stack (37 KiB): one token's up to 32768
 * values, four tokens' 8192 at a time */
#define KQ_SLICED_ACT_BLOCKS 128

/* W (nrows, sliced) @ A (ntok, n)^T -> y: per block of rows, per group of up to 4 tokens, per
 * piece of the row that the group's reordered activation fits in (one piece for a token up to
 * 32768 values), 8 rows a pass, each pass prefetching the next one's blocks (the rows are short
 * next to the hardware prefetcher's warm-up), the remainder one by one. The activation is
 * reordered once per (row block, group, piece): ~3% of the work. */
static void k4_sliced_gemm(int64_t n, const char *w, int nrows, const char *a, size_t a_stride, int ntok, float *y,
                           size_t ldy, const int five_bits) {
    const int64_t nsb = n / QK_K;
    const size_t bsize = five_bits ? sizeof(block_q5_K) : sizeof(block_q4_K), w_stride = (size_t)nsb * bsize;
    block_q8_K as[KQ_SLICED_ACT_BLOCKS];
    int block_rows = ntok == 1 ? nrows : (int)(KQ_SLICED_ROW_BLOCK_BYTES / w_stride) / 8 * 8;
    if (block_rows < 8) block_rows = 8;
    for (int r0 = 0; r0 < nrows; r0 += block_rows) {
        const int r1 = nrows - r0 < block_rows ? nrows : r0 + block_rows;
        for (int t0 = 0; t0 < ntok; t0 += KQ_TILE_TOKENS) {
            const int T = ntok - t0 < KQ_TILE_TOKENS ? ntok - t0 : KQ_TILE_TOKENS;
            const int64_t piece = KQ_SLICED_ACT_BLOCKS / T;
            float *yt = y + (size_t)t0 * ldy;
            for (int64_t s0 = 0; s0 < nsb; s0 += piece) {
                const int64_t ns = nsb - s0 < piece ? nsb - s0 : piece;
                for (int t = 0; t < T; t++)
                    q8_K_to_slices((const block_q8_K *)(a + (size_t)(t0 + t) * a_stride) + s0, ns, as + t * ns);
                const char *ws = w + (size_t)s0 * bsize;
                int r = r0;
                for (; r + 8 <= r1; r += 8) {
                    const char *next = t0 == 0 && r + 16 <= nrows ? ws + (size_t)(r + 8) * w_stride : NULL;
                    k4_sliced_pass(ns, ws + (size_t)r * w_stride, w_stride, as, yt + r, ldy, 8, T, five_bits, s0 > 0,
                                   next);
                }
                for (; r < r1; r++)
                    k4_sliced_pass(ns, ws + (size_t)r * w_stride, w_stride, as, yt + r, ldy, 1, T, five_bits, s0 > 0,
                                   NULL);
            }
        }
    }
}

/* A sliced Q4_K/Q5_K super-block unpacked into pg_ksb in natural order (the panel tiles' input):
 * the nibbles (and fifth bits) of the 8 slices, transposed back */
KQ_INLINE void unpack_k4_sliced(const block_q4_K *b, const uint8_t *qs, const uint8_t *qh_bytes, pg_ksb *u,
                                const int five_bits) {
    const __m256i qh = five_bits ? load32(qh_bytes) : _mm256_setzero_si256();
    __m256i v[8];
    for (int k = 0; k < 4; k++) {
        const __m256i q = load32(qs + 32 * k);
        v[2 * k] = bits8(q, 0, 0xF);
        v[2 * k + 1] = bits8(q, 4, 0xF);
        if (five_bits) {
            v[2 * k] = _mm256_or_si256(v[2 * k], q5_high_bit(qh, 2 * k));
            v[2 * k + 1] = _mm256_or_si256(v[2 * k + 1], q5_high_bit(qh, 2 * k + 1));
        }
    }
    transpose8_epi32(v);
    for (int j = 0; j < 8; j++) store32(u->q + 32 * j, v[j]);
    unpack_k4_scales(b->scales, u);
    u->d = half_to_float(b->d);
    u->dm = half_to_float(b->dmin);
}

typedef block_q4_K block_q4_K_sliced;
typedef block_q5_K block_q5_K_sliced;
static inline void kq_unpack_q4_K_sliced(const block_q4_K *b, pg_ksb *u) { unpack_k4_sliced(b, b->qs, NULL, u, 0); }
static inline void kq_unpack_q5_K_sliced(const block_q5_K *b, pg_ksb *u) {
    unpack_k4_sliced((const block_q4_K *)b, b->qs, b->qh, u, 1);
}
KQ_DEFINE_PANEL_UNPACK(q4_K_sliced)
KQ_DEFINE_PANEL_UNPACK(q5_K_sliced)

/* From this many tokens on, the unpacked panels (natural order, the GGUF layout's tiles) beat the
 * sliced passes, whose int32 lanes leave the registers per (row, token): measured 4096x4096, one
 * thread, GMAC/s sliced vs panels: 2 tokens 42 vs 28, 8 tokens 50 vs 46, 64 tokens 50 vs 55. */
#define KQ_SLICED_MAX_TOKENS 15

/* One token to KQ_SLICED_MAX_TOKENS: the sliced passes; more, the panels */
#define KQ_DEFINE_SLICED_GEMM(t, T_UPPER, five_bits)                                                \
    void pg_gemm_##t##_r8_avx2(int64_t n, const void *packed, int nrows, const void *a, size_t a_stride, \
                               int ntok, float *y, size_t ldy) {                                    \
        if (ntok <= KQ_SLICED_MAX_TOKENS) {                                                         \
            k4_sliced_gemm(n, packed, nrows, a, a_stride, ntok, y, ldy, five_bits);                 \
            return;                                                                                 \
        }                                                                                           \
        kq_gemm(n, packed, (size_t)(n / QK_K) * sizeof(block_##t), nrows, a, a_stride, ntok, y, ldy, \
                kq_unpack_panel_##t##_sliced, PG_##T_UPPER##_TWO_TERMS);                            \
    }

KQ_DEFINE_SLICED_GEMM(q4_K, Q4_K, 0)
KQ_DEFINE_SLICED_GEMM(q5_K, Q5_K, 1)

#endif
