/* The x86 gemm kernels of the 32-value formats and the float formats, written once for the
 * AVX2 and AVX-512 translation units. The including file selects the instruction set with
 * `#pragma GCC target` and defines:
 *   PG_ISA_SUFFIX          avx2 | avx512 (names the exported pg_gemm_<t>_<isa>)
 *   PG_TILE_TOKENS         tokens per register tile (rows per tile are always 4)
 *   pg_dot_u8s8(u, s)      __m256i: 8 int32 lanes, lane k = sum of u[4k+i] * s[4k+i] over i<4,
 *                          u unsigned bytes, s signed bytes, computed exactly (no saturation
 *                          for the operand ranges used here: |u| <= 128, |s| <= 127).
 *
 * Strategy of every kernel: a register tile of 4 weight rows x PG_TILE_TOKENS tokens, so each
 * activation block is loaded once for 4 rows and each weight block once for all the tile's
 * tokens. Quant formats: per block, exact integer dots of the 4 rows are folded into one
 * vector (2 lanes per row), converted to float and FMA'd with [dw_r * da] into the token's
 * accumulator. Float formats: one 8-lane FMA accumulator per output. Rows and tokens left over
 * are done by the same function with a 1-row or 1-token tile, so every output sees the same
 * float operations in the same order wherever it sits (the pg_gemm_fn contract). */
#ifndef PYGGUF_LEGACY_X86_H
#define PYGGUF_LEGACY_X86_H

#include <immintrin.h>
#include <string.h>
#include "quants/traits.h"

#define PG_INLINE static inline __attribute__((always_inline))
#define PG_CAT3(a, b, c) a##b##c
#define PG_GEMM_NAME(t, isa) PG_CAT3(pg_gemm_##t, _, isa)
#define MAX_TILE_TOKENS 4

/* ---- shared pieces ------------------------------------------------------------------------ */

PG_INLINE float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* lane i of a 4-float vector, broadcast to 8 lanes (i need not be a compile-time constant) */
PG_INLINE __m256 lane_to_all(__m128 v, int i) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_set1_epi32(i));
}

/* four fp16 values (missing ones 0) -> 4 floats, one vector conversion */
PG_INLINE __m128 halves_to_float(int count, pg_half h0, pg_half h1, pg_half h2, pg_half h3) {
    return _mm_cvtph_ps(_mm_setr_epi16((short)h0, (short)(count > 1 ? h1 : 0),
                                       (short)(count > 2 ? h2 : 0), (short)(count > 3 ? h3 : 0), 0, 0, 0, 0));
}

/* 16 bytes of nibbles -> 32 bytes 0..15 in value order (low nibbles = values 0..15) */
PG_INLINE __m256i q4_values(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

/* the 5th bits of a Q5 block (bit j of qh -> byte j) as 0x10 or 0 */
PG_INLINE __m256i q5_high_bits(const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    const __m256i which_byte = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), which_byte);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* ---- quantized formats -------------------------------------------------------------------- */

enum { KIND_Q4_0, KIND_Q4_1, KIND_Q5_0, KIND_Q5_1, KIND_Q8_0 };

PG_INLINE size_t kind_block_bytes(int kind) {
    switch (kind) {
    case KIND_Q4_0: return sizeof(block_q4_0);
    case KIND_Q4_1: return sizeof(block_q4_1);
    case KIND_Q5_0: return sizeof(block_q5_0);
    case KIND_Q5_1: return sizeof(block_q5_1);
    default:        return sizeof(block_q8_0);
    }
}
PG_INLINE int kind_has_min(int kind) { return kind == KIND_Q4_1 || kind == KIND_Q5_1; }
/* the offset subtracted from unsigned quants: q4_0 and q5_0 are stored as q + 8 / q + 16 */
PG_INLINE int kind_offset(int kind) { return kind == KIND_Q4_0 ? 8 : kind == KIND_Q5_0 ? 16 : 0; }

/* weight block -> 32 bytes: unsigned quants (Q4/Q5) or raw signed bytes (Q8_0) */
PG_INLINE __m256i weight_values(int kind, const uint8_t *b) {
    switch (kind) {
    case KIND_Q4_0: return q4_values(((const block_q4_0 *)b)->qs);
    case KIND_Q4_1: return q4_values(((const block_q4_1 *)b)->qs);
    case KIND_Q5_0: return _mm256_or_si256(q4_values(((const block_q5_0 *)b)->qs), q5_high_bits(((const block_q5_0 *)b)->qh));
    case KIND_Q5_1: return _mm256_or_si256(q4_values(((const block_q5_1 *)b)->qs), q5_high_bits(((const block_q5_1 *)b)->qh));
    default:        return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)b)->qs);
    }
}
PG_INLINE pg_half weight_d(const uint8_t *b) { pg_half h; memcpy(&h, b, 2); return h; }       /* d is first in every block */
PG_INLINE pg_half weight_m(const uint8_t *b) { pg_half h; memcpy(&h, b + 2, 2); return h; }   /* m follows d in Q4_1/Q5_1 */

/* exact int32 lanes of dot(weight block, activation block); offset_sums = off * (lane sums of
 * the activation), computed once per activation block for all rows */
PG_INLINE __m256i block_dot(int kind, __m256i wv, __m256i av, __m256i offset_sums) {
    if (kind == KIND_Q8_0)   /* both signed: move w's sign onto a (w*a = |w| * (a*sign w)) */
        return pg_dot_u8s8(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
    __m256i d = pg_dot_u8s8(wv, av);
    if (kind_offset(kind))   /* sum (q - off) * a = sum q*a - off * sum a */
        d = _mm256_sub_epi32(d, offset_sums);
    return d;
}

/* 4 rows' int32 lane sums -> one vector [r0 r1 r2 r3 | r0 r1 r2 r3] (each half a partial sum
 * of its row). Integer adds are exact, so the grouping cannot change any output. */
PG_INLINE __m256i rows_to_lanes(__m256i m0, __m256i m1, __m256i m2, __m256i m3) {
    return _mm256_hadd_epi32(_mm256_hadd_epi32(m0, m1), _mm256_hadd_epi32(m2, m3));
}

/* W rows [R <= 4] x A rows [T] over nb blocks; y[t*ldy + r]. Per token, one float accumulator
 * holds all 4 rows (lanes r and r+4), fed by one FMA per block with [dw_r * da_t] */
PG_INLINE void quant_tile(int kind, int R, int T, int64_t nb, const uint8_t *w, size_t w_stride,
                          const uint8_t *a, size_t a_stride, float *y, size_t ldy) {
    const size_t wbytes = kind_block_bytes(kind);
    const int q81 = kind_has_min(kind);                     /* activation is Q8_1 (d, s, qs) */
    const size_t abytes = q81 ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t aqs = q81 ? 4 : 2;                         /* offset of qs in the activation block */
    __m256 acc[MAX_TILE_TOKENS];
    __m128 min_acc[MAX_TILE_TOKENS];                        /* lane r: sum of m_r * s_t (Q4_1/Q5_1) */
    for (int t = 0; t < T; t++) { acc[t] = _mm256_setzero_ps(); min_acc[t] = _mm_setzero_ps(); }

    for (int64_t ib = 0; ib < nb; ib++) {
        const uint8_t *wb[4], *ab[MAX_TILE_TOKENS];
        for (int r = 0; r < R; r++) wb[r] = w + r * w_stride + ib * wbytes;
        for (int t = 0; t < T; t++) ab[t] = a + t * a_stride + ib * abytes;
        __m256i av[MAX_TILE_TOKENS], asum[MAX_TILE_TOKENS];
        for (int t = 0; t < T; t++) {
            av[t] = _mm256_loadu_si256((const __m256i *)(ab[t] + aqs));
            /* off is 8 or 16: a shift multiplies the lane sums exactly */
            asum[t] = kind_offset(kind)
                ? _mm256_slli_epi32(pg_dot_u8s8(_mm256_set1_epi8(1), av[t]), kind_offset(kind) == 8 ? 3 : 4)
                : _mm256_setzero_si256();
        }
        const __m128 dw = halves_to_float(R, weight_d(wb[0]), R > 1 ? weight_d(wb[1]) : 0,
                                          R > 2 ? weight_d(wb[2]) : 0, R > 3 ? weight_d(wb[3]) : 0);
        const __m128 da = halves_to_float(T, weight_d(ab[0]), T > 1 ? weight_d(ab[1]) : 0,
                                          T > 2 ? weight_d(ab[2]) : 0, T > 3 ? weight_d(ab[3]) : 0);
        __m256i wv[4];
        for (int r = 0; r < R; r++) wv[r] = weight_values(kind, wb[r]);
        for (int t = 0; t < T; t++) {
            __m256i m[4];
            for (int r = 0; r < 4; r++)
                m[r] = r < R ? block_dot(kind, wv[r], av[t], asum[t]) : _mm256_setzero_si256();
            const __m128 s = _mm_mul_ps(dw, _mm_permutevar_ps(da, _mm_set1_epi32(t)));   /* lane r: dw_r * da_t */
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(rows_to_lanes(m[0], m[1], m[2], m[3])),
                                     _mm256_set_m128(s, s), acc[t]);
        }
        if (q81) {
            const __m128 mw = halves_to_float(R, weight_m(wb[0]), R > 1 ? weight_m(wb[1]) : 0,
                                              R > 2 ? weight_m(wb[2]) : 0, R > 3 ? weight_m(wb[3]) : 0);
            const __m128 sa = halves_to_float(T, weight_m(ab[0]), T > 1 ? weight_m(ab[1]) : 0,
                                              T > 2 ? weight_m(ab[2]) : 0, T > 3 ? weight_m(ab[3]) : 0);
            for (int t = 0; t < T; t++)
                min_acc[t] = _mm_fmadd_ps(mw, _mm_permutevar_ps(sa, _mm_set1_epi32(t)), min_acc[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        float lanes[8], mins[4];
        _mm256_storeu_ps(lanes, acc[t]);
        _mm_storeu_ps(mins, min_acc[t]);
        for (int r = 0; r < R; r++) y[t * ldy + r] = (lanes[r] + lanes[r + 4]) + mins[r];
    }
}

/* rows in quads (then singles), tokens in tiles of PG_TILE_TOKENS (then singles); a quad's
 * weights stay in cache while every token passes over them */
PG_INLINE void quant_gemm(int kind, int64_t n, const void *w, size_t w_stride, int nrows,
                          const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    const int64_t nb = n / 32;
    const uint8_t *W = w, *A = a;
    for (int r = 0; r < nrows;) {
        const int rows = nrows - r >= 4 ? 4 : 1;
        int t = 0;
        for (; t + PG_TILE_TOKENS <= ntok; t += PG_TILE_TOKENS) {
            if (rows == 4) quant_tile(kind, 4, PG_TILE_TOKENS, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else           quant_tile(kind, 1, PG_TILE_TOKENS, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        for (; t < ntok; t++) {
            if (rows == 4) quant_tile(kind, 4, 1, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else           quant_tile(kind, 1, 1, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        r += rows;
    }
}

/* ---- float formats ------------------------------------------------------------------------ */

enum { KIND_F32, KIND_F16, KIND_BF16 };

PG_INLINE size_t float_bytes(int kind) { return kind == KIND_F32 ? 4 : 2; }

/* 8 consecutive values at p -> 8 floats (f16 by F16C, bf16 by a 16-bit shift) */
PG_INLINE __m256 load8(int kind, const uint8_t *p) {
    if (kind == KIND_F32) return _mm256_loadu_ps((const float *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (kind == KIND_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* the last n % 8 values, zero-padded to 8, through the same conversion */
PG_INLINE __m256 load_tail(int kind, const uint8_t *p, int count) {
    uint8_t buf[32] = {0};
    memcpy(buf, p, (size_t)count * float_bytes(kind));
    return load8(kind, buf);
}

PG_INLINE void float_tile(int kind, int R, int T, int64_t n, const uint8_t *w, size_t w_stride,
                          const uint8_t *a, size_t a_stride, float *y, size_t ldy) {
    const size_t eb = float_bytes(kind);
    __m256 acc[4][MAX_TILE_TOKENS];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[4];
        for (int r = 0; r < R; r++) wv[r] = load8(kind, w + r * w_stride + i * eb);
        for (int t = 0; t < T; t++) {
            const __m256 av = load8(kind, a + t * a_stride + i * eb);
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], av, acc[r][t]);
        }
    }
    if (i < n) {
        const int rest = (int)(n - i);
        for (int t = 0; t < T; t++) {
            const __m256 av = load_tail(kind, a + t * a_stride + i * eb, rest);
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm256_fmadd_ps(load_tail(kind, w + r * w_stride + i * eb, rest), av, acc[r][t]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) y[t * ldy + r] = hsum8(acc[r][t]);
}

PG_INLINE void float_gemm(int kind, int64_t n, const void *w, size_t w_stride, int nrows,
                          const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    const uint8_t *W = w, *A = a;
    for (int r = 0; r < nrows;) {
        const int rows = nrows - r >= 4 ? 4 : 1;
        int t = 0;
        for (; t + PG_TILE_TOKENS <= ntok; t += PG_TILE_TOKENS) {
            if (rows == 4) float_tile(kind, 4, PG_TILE_TOKENS, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else           float_tile(kind, 1, PG_TILE_TOKENS, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        for (; t < ntok; t++) {
            if (rows == 4) float_tile(kind, 4, 1, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else           float_tile(kind, 1, 1, n, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        r += rows;
    }
}

/* ---- the exported kernels ----------------------------------------------------------------- */

#define PG_GEMM_PARAMS int64_t n, const void *w, size_t w_stride, int nrows, \
                       const void *a, size_t a_stride, int ntok, float *y, size_t ldy
#define PG_DEFINE_GEMM(t, family, kind)                                                  \
    void PG_GEMM_NAME(t, PG_ISA_SUFFIX)(PG_GEMM_PARAMS);                                 \
    void PG_GEMM_NAME(t, PG_ISA_SUFFIX)(PG_GEMM_PARAMS) {                                \
        family##_gemm(kind, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);          \
    }

PG_DEFINE_GEMM(q4_0, quant, KIND_Q4_0)
PG_DEFINE_GEMM(q4_1, quant, KIND_Q4_1)
PG_DEFINE_GEMM(q5_0, quant, KIND_Q5_0)
PG_DEFINE_GEMM(q5_1, quant, KIND_Q5_1)
PG_DEFINE_GEMM(q8_0, quant, KIND_Q8_0)
PG_DEFINE_GEMM(f32, float, KIND_F32)
PG_DEFINE_GEMM(f16, float, KIND_F16)
PG_DEFINE_GEMM(bf16, float, KIND_BF16)

#endif
