/* The x86 gemm kernels of the 32-value formats and the float formats, written once for the
 * AVX2 and AVX-512 translation units. The including file selects the instruction set with
 * `#pragma GCC target` and defines:
 *   PG_ISA_SUFFIX          avx2 | avx512 (names the exported pg_gemm_<t>_<isa>)
 *   PG_TILE_TOKENS         tokens per register tile of the float formats (4 rows per tile)
 *   pg_dot_u8s8(u, s)      __m256i: 8 int32 lanes, lane k = sum of u[4k+i] * s[4k+i] over i<4,
 *                          u unsigned bytes, s signed bytes, computed exactly (no saturation
 *                          for the operand ranges used here: |u| <= 128, |s| <= 127).
 *
 * Quant formats: 8 weight rows per pass, one float lane per row. Per block, the 8 rows' exact
 * integer dots are folded into one int32 vector (int16 hadds for the 4/5-bit formats, whose
 * products are small enough), converted once and FMA'd with [dw_r * da] (then [m_r * s] for
 * formats with a min). One token (decode) reads the GGUF blocks directly and prefetches the
 * next 8 rows (Q5_0/Q5_1: two rows per vector, see q5_rows_direct; Q4_0/Q5: the activation
 * row's scales and offset sums decoded once per call). Several tokens work on the 8 rows
 * transposed by dword, so one activation dword spread over the lanes meets 8 rows (no folding
 * at all): 2-4 tokens (Q4_0/Q4_1/Q8_0) transpose each block in registers and run the tokens
 * over it in pairs (quant_rows_tokens); more (and Q5) unpack 8-row panels once per chunk and
 * run the tokens over them, 2 panels x 2 tokens or 1 x 4 at a time, each output its own
 * accumulator chain (panel_all_tokens). Float formats: a register tile of 4 rows x
 * PG_TILE_TOKENS tokens, one 8-lane FMA accumulator per output. Either way every output sees
 * the same float operations in the same order wherever it sits (the pg_gemm_fn contract). */
#ifndef PYGGUF_LEGACY_X86_H
#define PYGGUF_LEGACY_X86_H

#include <immintrin.h>
#include <string.h>
#include "quants/traits.h"
#include "kernels/x86/x86.h"

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

/* 16 bytes of nibbles -> 32 bytes 0..15 in value order (low nibbles = values 0..15): the
 * 16 bytes in both halves, the upper half shifted right by 4 (a 32-bit shift moves each byte's
 * high nibble down; what comes in from the next byte is masked off) */
PG_INLINE __m256i q4_values(const uint8_t *qs) {
    const __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                            _mm256_set1_epi8(0x0F));
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

#define QROWS 8   /* weight rows per pass: one int32 / float lane each */
#define QKC 32    /* blocks per unpacked panel chunk: 8 rows x 32 blocks x 32 B = 8 KiB of quants */

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

/* weight block -> 32 bytes: unsigned quants 0..31 (Q4/Q5) or raw signed bytes (Q8_0) */
PG_INLINE __m256i weight_values(int kind, const uint8_t *b) {
    switch (kind) {
    case KIND_Q4_0: return q4_values(((const block_q4_0 *)b)->qs);
    case KIND_Q4_1: return q4_values(((const block_q4_1 *)b)->qs);
    case KIND_Q5_0: return _mm256_or_si256(q4_values(((const block_q5_0 *)b)->qs), q5_high_bits(((const block_q5_0 *)b)->qh));
    case KIND_Q5_1: return _mm256_or_si256(q4_values(((const block_q5_1 *)b)->qs), q5_high_bits(((const block_q5_1 *)b)->qh));
    default:        return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)b)->qs);
    }
}

/* 16 bytes at offset `off` of 8 blocks -> P[j], lane r = dword j of block r's 16 bytes: rows r
 * and r+4 share one vector (a load and an insert), then a 4x4 transpose of dwords in each
 * 128-bit half (8 in-lane unpacks, no lane crossing) */
PG_INLINE void transpose_rows16(const uint8_t *const wb[QROWS], size_t off, __m256i P[4]) {
    __m256i V[4];
    for (int r = 0; r < 4; r++)
        V[r] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(wb[r] + off))),
                                       _mm_loadu_si128((const __m128i *)(wb[r + 4] + off)), 1);
    const __m256i t0 = _mm256_unpacklo_epi32(V[0], V[1]), t1 = _mm256_unpackhi_epi32(V[0], V[1]);   /* rows 0 1 */
    const __m256i t2 = _mm256_unpacklo_epi32(V[2], V[3]), t3 = _mm256_unpackhi_epi32(V[2], V[3]);   /* rows 2 3 */
    P[0] = _mm256_unpacklo_epi64(t0, t2);
    P[1] = _mm256_unpackhi_epi64(t0, t2);
    P[2] = _mm256_unpacklo_epi64(t1, t3);
    P[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* [d m] dwords of 8 blocks in lane order (d, then m in Q4_1/Q5_1; in the other formats 2
 * bytes that M's caller ignores) -> D = [d0..d7], M = [m0..m7] as floats */
PG_INLINE void scales_from_heads(__m256i heads, __m256 *D, __m256 *M) {
    /* per 128-bit half [d m d m d m d m] -> [d d d d m m m m], then the d quads together */
    __m256i v = _mm256_shuffle_epi8(heads, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                                            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    v = _mm256_permute4x64_epi64(v, _MM_SHUFFLE(3, 1, 2, 0));
    *D = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
    *M = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
}

/* 8 blocks' leading 4 bytes -> D, M, the heads gathered with scalar loads (decode: measured
 * faster there than transpose_rows16, whose other three dwords would go unused) */
PG_INLINE void block_scales8(const uint8_t *const wb[QROWS], __m256 *D, __m256 *M) {
    uint32_t u[QROWS];
    for (int r = 0; r < QROWS; r++) memcpy(&u[r], wb[r], 4);
    scales_from_heads(_mm256_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3], (int)u[4], (int)u[5], (int)u[6], (int)u[7]), D, M);
}

/* [a | a'], [b | b'] (4 int32 each half) -> [a + a' | b + b'] */
PG_INLINE __m256i fold_halves(__m256i a, __m256i b) {
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/* 8 rows of unsigned quants (0..31) . one activation block -> int32 lanes [r0..r7], exact:
 * a vpmaddubsw pair is at most 2*31*128 and two hadd levels (8 products) at most 31744, so the
 * int16 steps cannot saturate or wrap before vpmaddwd widens them */
PG_INLINE __m256i dots8_unsigned(const __m256i wv[QROWS], __m256i av) {
    __m256i p[QROWS];
    for (int r = 0; r < QROWS; r++) p[r] = _mm256_maddubs_epi16(wv[r], av);
    const __m256i h0 = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
    const __m256i h1 = _mm256_hadd_epi16(_mm256_hadd_epi16(p[4], p[5]), _mm256_hadd_epi16(p[6], p[7]));
    const __m256i ones = _mm256_set1_epi16(1);
    return fold_halves(_mm256_madd_epi16(h0, ones), _mm256_madd_epi16(h1, ones));   /* [r0 r1 r2 r3 | r4..r7] */
}

/* Q8_0: 8 rows of signed bytes (|w| in wabs, w in wsgn) . one activation block, exact int32
 * lanes [r0..r7]; w*a = |w| * (a*sign w) (pairs up to 2*128*127: widened at once) */
PG_INLINE __m256i dots8_signed(const __m256i wabs[QROWS], const __m256i wsgn[QROWS], __m256i av) {
    __m256i p[QROWS];
    for (int r = 0; r < QROWS; r++) p[r] = pg_dot_u8s8(wabs[r], _mm256_sign_epi8(av, wsgn[r]));
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    return fold_halves(h0, h1);
}

/* one activation block, decoded once for 8 rows */
typedef struct { __m256i v; __m256 d, s; __m256i offset_sum; } act_block;

PG_INLINE act_block load_act(int kind, const uint8_t *ab) {
    act_block x;
    pg_half h;
    memcpy(&h, ab, 2);
    x.d = _mm256_set1_ps(_cvtsh_ss(h));
    x.s = _mm256_setzero_ps();
    x.offset_sum = _mm256_setzero_si256();
    if (kind_has_min(kind)) {   /* Q8_1: d, s = d * sum(q), then the quants */
        memcpy(&h, ab + 2, 2);
        x.s = _mm256_set1_ps(_cvtsh_ss(h));
        x.v = _mm256_loadu_si256((const __m256i *)(ab + 4));
    } else {
        x.v = _mm256_loadu_si256((const __m256i *)(ab + 2));
    }
    if (kind_offset(kind)) {    /* off * sum(q) in every lane: sum (q_w - off) * a = sum q_w*a - off * sum a */
        __m256i s = pg_dot_u8s8(_mm256_set1_epi8(1), x.v);
        s = _mm256_hadd_epi32(s, s);
        s = _mm256_hadd_epi32(s, s);
        s = _mm256_add_epi32(s, _mm256_permute2x128_si256(s, s, 0x01));
        x.offset_sum = _mm256_slli_epi32(s, kind_offset(kind) == 8 ? 3 : 4);
    }
    return x;
}

/* The float step of one block for 8 outputs, the same for every path and tile:
 * acc += (float)dot * (dw * da), then (formats with a min) acc += m * s. */
PG_INLINE __m256 block_step(int kind, __m256 acc, __m256i dot, __m256 D, __m256 M, const act_block *x) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dot, x->offset_sum)), _mm256_mul_ps(D, x->d), acc);
    if (kind_has_min(kind)) acc = _mm256_fmadd_ps(M, x->s, acc);
    return acc;
}

PG_INLINE size_t act_block_bytes(int kind) { return kind_has_min(kind) ? sizeof(block_q8_1) : sizeof(block_q8_0); }

/* lanes r < R of v -> y[r] */
PG_INLINE void store_lanes(__m256 v, int R, float *y) {
    if (R == QROWS) { _mm256_storeu_ps(y, v); return; }
    float f[QROWS];
    _mm256_storeu_ps(f, v);
    for (int r = 0; r < R; r++) y[r] = f[r];
}
PG_INLINE __m256 load_lanes(int R, const float *y) {
    if (R == QROWS) return _mm256_loadu_ps(y);
    float f[QROWS] = {0};
    for (int r = 0; r < R; r++) f[r] = y[r];
    return _mm256_loadu_ps(f);
}

/* Ask for the next 8-row group while this one is read. Rows back to back (the usual case): its
 * bytes in order, 8 blocks' worth per block step, so the next group arrives as this one ends
 * (measured: 49152x576 decode 1.6-2.4x faster than leaving it to the hardware prefetcher, which
 * loses track of 8 interleaved short rows). Strided rows: the same block of each next row. */
PG_INLINE void prefetch_next_rows(const uint8_t *const wb[QROWS], int64_t ib, const uint8_t *row0,
                                  int contiguous, size_t group_block_bytes, size_t w_stride) {
    if (contiguous) {
        const char *next = (const char *)row0 + QROWS * w_stride + (size_t)ib * group_block_bytes;
        for (size_t k = 0; k < group_block_bytes; k += 64) _mm_prefetch(next + k, _MM_HINT_T0);
    } else {
        for (int r = 0; r < QROWS; r++) _mm_prefetch((const char *)wb[r] + QROWS * w_stride, _MM_HINT_T0);
    }
}

/* one activation row's block scales and offset sums, decoded once per decode call instead of
 * once per 8-row group (the same values load_act gives) */
#define ACT_DECODED_MAX 512
typedef struct { float d[ACT_DECODED_MAX], s[ACT_DECODED_MAX]; int32_t off[ACT_DECODED_MAX]; } act_decoded;

PG_INLINE void decode_act_row(int kind, const uint8_t *a, int64_t nb, act_decoded *out) {
    for (int64_t ib = 0; ib < nb; ib++) {
        const act_block x = load_act(kind, a + (size_t)ib * act_block_bytes(kind));
        out->d[ib] = _mm256_cvtss_f32(x.d);
        out->s[ib] = _mm256_cvtss_f32(x.s);
        out->off[ib] = _mm256_cvtsi256_si32(x.offset_sum);
    }
}

PG_INLINE act_block act_from_decoded(int kind, const act_decoded *p, int64_t ib) {
    act_block x;   /* the parts a format does not use stay constant zeros, as from load_act */
    x.d = _mm256_broadcast_ss(&p->d[ib]);
    x.s = kind_has_min(kind) ? _mm256_broadcast_ss(&p->s[ib]) : _mm256_setzero_ps();
    x.offset_sum = kind_offset(kind) ? _mm256_set1_epi32(p->off[ib]) : _mm256_setzero_si256();
    x.v = _mm256_setzero_si256();   /* unused: the pair kernel loads the quants itself */
    return x;
}

/* Q5 decode, two rows per vector: row x's 16 quant bytes in the low 128-bit half, row y's in
 * the high half, so one AND gives both rows' values 0..15 and a shift + AND their values 16..31
 * (no per-row broadcast and variable shift). The rows' qh dwords come from `heads` (each half
 * holds the first 8 bytes of two rows' blocks, x's and y's at qword q), which a lane-local
 * vpshufb spreads, one bit per byte, to the matching 5th bits. Returns int16 lanes [x: 8 | y: 8],
 * each the sum of 4 products (<= 4*31*128 = 15872: no saturation). */
PG_INLINE __m256i q5_pair_products(int kind, __m256i heads, int q, const uint8_t *x, const uint8_t *y,
                                   __m256i a_lo, __m256i a_hi) {
    const int qh = 8 * q + (kind == KIND_Q5_0 ? (int)offsetof(block_q5_0, qh) : (int)offsetof(block_q5_1, qh));
    const size_t qs_off = kind == KIND_Q5_0 ? offsetof(block_q5_0, qs) : offsetof(block_q5_1, qs);
    const __m256i qs = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x + qs_off))),
                                               _mm_loadu_si128((const __m128i *)(y + qs_off)), 1);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i sixteen = _mm256_set1_epi8(0x10), low = _mm256_set1_epi8(0x0F);
    /* values 0..15 take qh bytes 0, 1; values 16..31 bytes 2, 3 (each half its own row's qh) */
    const __m256i pick_lo = _mm256_setr_epi8(qh, qh, qh, qh, qh, qh, qh, qh, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1,
                                             qh, qh, qh, qh, qh, qh, qh, qh, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1, qh + 1);
    const __m256i pick_hi = _mm256_add_epi8(pick_lo, _mm256_set1_epi8(2));
    __m256i h_lo = _mm256_and_si256(_mm256_shuffle_epi8(heads, pick_lo), bit);
    __m256i h_hi = _mm256_and_si256(_mm256_shuffle_epi8(heads, pick_hi), bit);
    h_lo = _mm256_and_si256(_mm256_cmpeq_epi8(h_lo, bit), sixteen);
    h_hi = _mm256_and_si256(_mm256_cmpeq_epi8(h_hi, bit), sixteen);
    const __m256i lo = _mm256_or_si256(_mm256_and_si256(qs, low), h_lo);
    const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 4), low), h_hi);
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, a_lo), _mm256_maddubs_epi16(hi, a_hi));
}

/* the first 8 bytes of 8 blocks (d, [m,] qh, ...; wb in lane order) as h0 = [l0 l1 | l4 l5],
 * h1 = [l2 l3 | l6 l7], one qword each, and from them D (and M for Q5_1) in lane order */
PG_INLINE void q5_heads(int kind, const uint8_t *const wb[QROWS], __m256i *h0, __m256i *h1, __m256 *D, __m256 *M) {
    int64_t u[QROWS];
    for (int l = 0; l < QROWS; l++) memcpy(&u[l], wb[l], 8);
    *h0 = _mm256_setr_epi64x(u[0], u[1], u[4], u[5]);
    *h1 = _mm256_setr_epi64x(u[2], u[3], u[6], u[7]);
    /* per half: d of the two rows of h0 to bytes 0..3, of h1 to bytes 4..7; m (Q5_1) to 8..15 */
    const __m256i take0 = _mm256_setr_epi8(0, 1, 8, 9, -1, -1, -1, -1, 2, 3, 10, 11, -1, -1, -1, -1,
                                           0, 1, 8, 9, -1, -1, -1, -1, 2, 3, 10, 11, -1, -1, -1, -1);
    const __m256i take1 = _mm256_setr_epi8(-1, -1, -1, -1, 0, 1, 8, 9, -1, -1, -1, -1, 2, 3, 10, 11,
                                           -1, -1, -1, -1, 0, 1, 8, 9, -1, -1, -1, -1, 2, 3, 10, 11);
    __m256i dm = _mm256_or_si256(_mm256_shuffle_epi8(*h0, take0), _mm256_shuffle_epi8(*h1, take1));
    dm = _mm256_permute4x64_epi64(dm, _MM_SHUFFLE(3, 1, 2, 0));   /* [d l0..l3, d l4..l7 | m ..., m ...] */
    *D = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
    *M = kind_has_min(kind) ? _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1)) : _mm256_setzero_ps();
}

/* Q5_0 / Q5_1 rows [R <= 8] . one activation row (decode), rows paired as above. The lanes come
 * out as rows [0 2 4 6 1 3 5 7] (one hadd level fewer than dots8_unsigned), so the scales are
 * gathered in that order and the finished sums put back in row order once at the end. */
PG_INLINE void q5_rows_direct(int kind, int R, int64_t nb, const uint8_t *w, size_t w_stride,
                              const uint8_t *a, const act_decoded *pre, float *y) {
    const size_t wbytes = kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const size_t aqs = kind_has_min(kind) ? 4 : 2;
    static const int lane_row[QROWS] = {0, 2, 4, 6, 1, 3, 5, 7};
    const uint8_t *row[QROWS];   /* in lane order */
    for (int l = 0; l < QROWS; l++) row[l] = w + (size_t)(lane_row[l] < R ? lane_row[l] : 0) * w_stride;
    const uint8_t *row0 = w;
    const int contiguous = w_stride == (size_t)nb * wbytes;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const uint8_t *ab = a + ib * abytes;
        const act_block x = pre ? act_from_decoded(kind, pre, ib) : load_act(kind, ab);
        const __m256i a_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ab + aqs)));
        const __m256i a_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ab + aqs + 16)));
        const uint8_t *wb[QROWS];
        for (int l = 0; l < QROWS; l++) wb[l] = row[l] + ib * wbytes;
        prefetch_next_rows(wb, ib, row0, contiguous, QROWS * wbytes, w_stride);
        __m256i h0, h1;
        __m256 D, M;
        q5_heads(kind, wb, &h0, &h1, &D, &M);
        /* pair p = rows (2p, 2p+1) = lanes (p, p + 4) */
        const __m256i p0 = q5_pair_products(kind, h0, 0, wb[0], wb[4], a_lo, a_hi);
        const __m256i p1 = q5_pair_products(kind, h0, 1, wb[1], wb[5], a_lo, a_hi);
        const __m256i p2 = q5_pair_products(kind, h1, 0, wb[2], wb[6], a_lo, a_hi);
        const __m256i p3 = q5_pair_products(kind, h1, 1, wb[3], wb[7], a_lo, a_hi);
        /* [r0 r0 r2 r2 | r1 r1 r3 r3], [r4 r4 r6 r6 | r5 r5 r7 r7] (hadd: 8 products <= 31744) */
        const __m256i s01 = _mm256_madd_epi16(_mm256_hadd_epi16(p0, p1), ones);
        const __m256i s23 = _mm256_madd_epi16(_mm256_hadd_epi16(p2, p3), ones);
        acc = block_step(kind, acc, _mm256_hadd_epi32(s01, s23), D, M, &x);
    }
    /* lane l holds row lane_row[l]: row r is in lane [0 4 1 5 2 6 3 7][r] */
    acc = _mm256_permutevar8x32_ps(acc, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    store_lanes(acc, R, y);
}

/* W rows [R <= 8] . one activation row -> y[0..R), straight from the GGUF blocks (decode).
 * Missing rows repeat row 0: lanes never mix, so the padding cannot change a real output. */
PG_INLINE void quant_rows_direct(int kind, int R, int64_t nb, const uint8_t *w, size_t w_stride,
                                 const uint8_t *a, const act_decoded *pre, float *y) {
    const size_t wbytes = kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const uint8_t *row[QROWS];
    for (int r = 0; r < QROWS; r++) row[r] = w + (size_t)(r < R ? r : 0) * w_stride;
    const int contiguous = w_stride == (size_t)nb * wbytes;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        act_block x;
        if (pre) {
            x = act_from_decoded(kind, pre, ib);
            x.v = _mm256_loadu_si256((const __m256i *)(a + ib * abytes + (kind_has_min(kind) ? 4 : 2)));
        } else {
            x = load_act(kind, a + ib * abytes);
        }
        const uint8_t *wb[QROWS];
        for (int r = 0; r < QROWS; r++) wb[r] = row[r] + ib * wbytes;
        prefetch_next_rows(wb, ib, row[0], contiguous, QROWS * wbytes, w_stride);
        __m256 D, M;
        block_scales8(wb, &D, &M);
        __m256i wv[QROWS], dot;
        for (int r = 0; r < QROWS; r++) wv[r] = weight_values(kind, wb[r]);
        if (kind == KIND_Q8_0) {
            __m256i wabs[QROWS];
            for (int r = 0; r < QROWS; r++) wabs[r] = _mm256_sign_epi8(wv[r], wv[r]);
            dot = dots8_signed(wabs, wv, x.v);
        } else {
            dot = dots8_unsigned(wv, x.v);
        }
        acc = block_step(kind, acc, dot, D, M, &x);
    }
    store_lanes(acc, R, y);
}

/* 8 rows x QKC blocks unpacked once for every token (prefill), interleaved: q[c][k] holds
 * bytes 4k..4k+3 of the 8 rows (dword r = row r), so one broadcast activation dword meets 8
 * rows and the products land in per-row lanes with no horizontal folding */
typedef struct {
    __m256i q[QKC][8];      /* quants 0..31, or |w| for Q8_0 */
    __m256i sgn[QKC][8];    /* Q8_0 only: w itself, whose signs go onto the activation */
    __m256 d[QKC], m[QKC];  /* per block, the 8 rows' scales and mins as floats */
} quant_panel;

/* rows r[0..7] of 8 dwords -> k[j] = dword j of every row (an 8x8 transpose of 32-bit words) */
PG_INLINE void transpose8x8_epi32(const __m256i r[8], __m256i k[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);       /* words 0 1 | 4 5 of rows 2i, 2i+1 */
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);   /* words 2 3 | 6 7 */
    }
    for (int h = 0; h < 2; h++) {   /* rows 4h..4h+3 */
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);        /* word 0 | 4 */
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);        /* word 1 | 5 */
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);    /* word 2 | 6 */
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);    /* word 3 | 7 */
    }
    for (int j = 0; j < 4; j++) {
        k[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        k[j + 4] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

/* Blocks [b0, b0+nc) of 8 rows -> p, while the next row group (`next`, NULL: none) is asked
 * for: rows back to back (`sweep`), its bytes in order, 8 blocks' worth per block, as
 * prefetch_next_rows does (all of it by the end of this group's last chunk); otherwise each
 * next row's same block. The hardware prefetcher alone loses track of 8 short interleaved
 * rows (measured when 2 tokens took this path: 49152x576 Q4_1 1.6x faster with it). */
PG_INLINE void unpack_panel(int kind, int R, const uint8_t *w, size_t w_stride, int64_t b0, int nc,
                            quant_panel *p, const uint8_t *next, int sweep) {
    const size_t wbytes = kind_block_bytes(kind);
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < nc; c++) {
        const uint8_t *wb[QROWS];
        for (int r = 0; r < QROWS; r++) wb[r] = w + (size_t)(r < R ? r : 0) * w_stride + (size_t)(b0 + c) * wbytes;
        if (next && sweep) {
            const char *at = (const char *)next + (size_t)(b0 + c) * QROWS * wbytes;
            for (size_t k = 0; k < QROWS * wbytes; k += 64) _mm_prefetch(at + k, _MM_HINT_T0);
        } else if (next) {
            for (int r = 0; r < QROWS; r++) _mm_prefetch((const char *)next + (size_t)r * w_stride + (size_t)(b0 + c) * wbytes, _MM_HINT_T0);
        }
        __m256i P[4];
        if (kind == KIND_Q4_0 || kind == KIND_Q4_1 || kind == KIND_Q8_0) {
            /* the quants come transposed by dword straight from the blocks' 16-byte pieces */
            transpose_rows16(wb, 0, P);
            scales_from_heads(P[0], &p->d[c], &p->m[c]);
        } else {
            block_scales8(wb, &p->d[c], &p->m[c]);
        }
        if (kind == KIND_Q4_0 || kind == KIND_Q4_1) {
            /* dword j of qs: values 4j..4j+3 in the low nibbles, 16+4j.. in the high ones */
            transpose_rows16(wb, kind == KIND_Q4_0 ? offsetof(block_q4_0, qs) : offsetof(block_q4_1, qs), P);
            for (int j = 0; j < 4; j++) {
                p->q[c][j] = _mm256_and_si256(P[j], low);
                p->q[c][j + 4] = _mm256_and_si256(_mm256_srli_epi16(P[j], 4), low);
            }
        } else if (kind == KIND_Q8_0) {
            for (int h = 0; h < 2; h++) {
                transpose_rows16(wb, offsetof(block_q8_0, qs) + 16 * (size_t)h, P);
                for (int j = 0; j < 4; j++) {
                    p->sgn[c][4 * h + j] = P[j];
                    p->q[c][4 * h + j] = _mm256_sign_epi8(P[j], P[j]);
                }
            }
        } else {
            __m256i v[QROWS];
            for (int r = 0; r < QROWS; r++) v[r] = weight_values(kind, wb[r]);
            transpose8x8_epi32(v, p->q[c]);
        }
    }
}

/* dword k of an activation block's quants, in every lane */
PG_INLINE __m256i act_dword(const uint8_t *qs, int k) {
    int32_t v;
    memcpy(&v, qs + 4 * k, 4);
    return _mm256_set1_epi32(v);
}

/* 8 interleaved rows . one activation block -> exact int32 lanes [r0..r7]. Q4 (0..15): 8
 * vpmaddubsw results summed in int16 (16 products of 15*128 <= 30720 per lane); Q5 (0..31): in
 * two halves of 8 products; Q8_0: the sign trick, widened per product pair */
PG_INLINE __m256i panel_dots(int kind, const __m256i q[8], const __m256i sgn[8], const uint8_t *qs) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (kind == KIND_Q8_0) {
        __m256i s = pg_dot_u8s8(q[0], _mm256_sign_epi8(act_dword(qs, 0), sgn[0]));
        for (int k = 1; k < 8; k++) s = _mm256_add_epi32(s, pg_dot_u8s8(q[k], _mm256_sign_epi8(act_dword(qs, k), sgn[k])));
        return s;
    }
    __m256i lo = _mm256_maddubs_epi16(q[0], act_dword(qs, 0));
    for (int k = 1; k < 4; k++) lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(q[k], act_dword(qs, k)));
    __m256i hi = _mm256_maddubs_epi16(q[4], act_dword(qs, 4));
    for (int k = 5; k < 8; k++) hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(q[k], act_dword(qs, k)));
    if (kind == KIND_Q4_0 || kind == KIND_Q4_1) return _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones);
    return _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
}

/* one activation block's scale, d * sum(q) (Q8_1) and offset sum, as load_act decodes them */
typedef struct { float d, s; int32_t off; } act_scales;

#define ACT_TABLE 2048   /* activation blocks whose scales are decoded ahead (24 KiB) */

/* T activation rows' scales, token t's block ib -> out[t*nb + ib] */
PG_INLINE void decode_act_scales(int kind, const uint8_t *a, size_t a_stride, int T, int64_t nb, act_scales *out) {
    for (int t = 0; t < T; t++)
        for (int64_t ib = 0; ib < nb; ib++) {
            const act_block x = load_act(kind, a + (size_t)t * a_stride + (size_t)ib * act_block_bytes(kind));
            act_scales *o = &out[(size_t)t * (size_t)nb + (size_t)ib];
            o->d = _mm256_cvtss_f32(x.d);
            o->s = _mm256_cvtss_f32(x.s);
            o->off = _mm256_cvtsi256_si32(x.offset_sum);
        }
}

#define PANEL_TOKENS 4   /* tokens run together over a panel chunk, one accumulator chain each */
#define DIRECT_MAX 4     /* most tokens served straight from the blocks (quant_rows_tokens) */
#define PG_UNROLL _Pragma("GCC unroll 8")
/* v stays as computed here: GCC may not reassociate a running integer sum across this point
 * (it would hoist all 8T products and rebuild the sums as trees, which spills registers) */
#define PG_KEEP(v) __asm__("" : "+x"(v))

/* dword j (0..3) of a 16-byte half in every lane: one in-lane shuffle, 2 per cycle on Zen 3,
 * where a 32-bit broadcast from memory ran at 1 per cycle (measured; 8 per block and token) */
PG_INLINE __m256i dword_in_all_lanes(__m256i half, int j) {
    switch (j) {
    case 0:  return _mm256_shuffle_epi32(half, 0x00);
    case 1:  return _mm256_shuffle_epi32(half, 0x55);
    case 2:  return _mm256_shuffle_epi32(half, 0xAA);
    default: return _mm256_shuffle_epi32(half, 0xFF);
    }
}

/* panel_dots for G panels (8 rows each) x T tokens at once, G*T <= PANEL_TOKENS: dots[g*T + t]
 * = block c of panel g . token t's quants at qs[t], the same exact int32 lanes as panel_dots.
 * Each weight dword vector is loaded once for the T tokens and each activation dword spread
 * once for the G panels (with G = 2 that shuffle, a third of the integer work, is halved);
 * every (panel, token) keeps one running sum, so the sums and accumulators fit the 16 vector
 * registers. Q4's 16 products per int16 lane stay <= 16*15*128 = 30720 (one int16 sum per
 * block); Q5's halves of 8 <= 31744 (widened per half). */
PG_INLINE void panel_dots_tokens(int kind, const quant_panel *const P[2], int c, const int G,
                                 const uint8_t *const qs[PANEL_TOKENS], const int T, __m256i dots[PANEL_TOKENS]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s16[PANEL_TOKENS];
    PG_UNROLL for (int i = 0; i < G * T; i++) dots[i] = s16[i] = _mm256_setzero_si256();
    PG_UNROLL for (int h = 0; h < 2; h++) {
        __m256i half[PANEL_TOKENS];
        PG_UNROLL for (int t = 0; t < T; t++) half[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(qs[t] + 16 * h)));
        PG_UNROLL for (int j = 0; j < 4; j++) {
            const int k = 4 * h + j;
            PG_UNROLL for (int t = 0; t < T; t++) {
                const __m256i x = dword_in_all_lanes(half[t], j);
                PG_UNROLL for (int g = 0; g < G; g++) {
                    const int i = g * T + t;
                    if (kind == KIND_Q8_0) {
                        dots[i] = _mm256_add_epi32(dots[i], pg_dot_u8s8(P[g]->q[c][k], _mm256_sign_epi8(x, P[g]->sgn[c][k])));
                        PG_KEEP(dots[i]);
                    } else {
                        s16[i] = _mm256_add_epi16(s16[i], _mm256_maddubs_epi16(P[g]->q[c][k], x));
                        PG_KEEP(s16[i]);
                    }
                }
            }
        }
        if (kind == KIND_Q5_0 || kind == KIND_Q5_1) {
            PG_UNROLL for (int i = 0; i < G * T; i++) {
                dots[i] = _mm256_add_epi32(dots[i], _mm256_madd_epi16(s16[i], ones));
                s16[i] = _mm256_setzero_si256();
            }
        }
    }
    if (kind == KIND_Q4_0 || kind == KIND_Q4_1)
        PG_UNROLL for (int i = 0; i < G * T; i++) dots[i] = _mm256_madd_epi16(s16[i], ones);
}

/* one token's block: acc advanced by block_step with the rows' scales D, M, the activation side
 * from pre (decoded ahead) when given, else from the block ab itself */
PG_INLINE __m256 token_step(int kind, __m256 acc, __m256i dot, __m256 D, __m256 M, const uint8_t *ab,
                            const act_scales *pre) {
    act_block x;
    if (pre) {
        x.d = _mm256_broadcast_ss(&pre->d);
        x.s = kind_has_min(kind) ? _mm256_broadcast_ss(&pre->s) : _mm256_setzero_ps();
        x.offset_sum = kind_offset(kind) ? _mm256_set1_epi32(pre->off) : _mm256_setzero_si256();
    } else {
        x = load_act(kind, ab);
    }
    return block_step(kind, acc, dot, D, M, &x);
}

/* G panels x T tokens (rows a + t*a_stride, scales pre[t*pre_stride + c] if pre) over a chunk:
 * acc[g*T + t] (the 8 outputs of panel g, token t so far) advanced by nc blocks. One output's
 * chain is 1-2 dependent FMAs per block, too short a block for out-of-order execution to reach
 * the next one's, so the G*T chains run interleaved block by block (as named variables: left
 * in an array, GCC keeps them in memory); each still sees block_step in block order, as alone. */
PG_INLINE void panel_tokens(int kind, const quant_panel *const P[2], const int G, int nc, const uint8_t *a, size_t a_stride,
                            const act_scales *pre, size_t pre_stride, const int T, __m256 acc[PANEL_TOKENS]) {
    const size_t abytes = act_block_bytes(kind), aqs = kind_has_min(kind) ? 4 : 2;
    const int GT = G * T;
    __m256 acc0 = acc[0], acc1 = GT > 1 ? acc[1] : acc[0], acc2 = GT > 2 ? acc[2] : acc[0], acc3 = GT > 3 ? acc[3] : acc[0];
    for (int c = 0; c < nc; c++) {
        const uint8_t *ab[PANEL_TOKENS], *qs[PANEL_TOKENS];
        const act_scales *pt[PANEL_TOKENS];
        PG_UNROLL for (int t = 0; t < T; t++) {
            ab[t] = a + (size_t)t * a_stride + (size_t)c * abytes;
            qs[t] = ab[t] + aqs;
            pt[t] = pre ? pre + (size_t)t * pre_stride + c : NULL;
        }
        __m256i dots[PANEL_TOKENS];
        panel_dots_tokens(kind, P, c, G, qs, T, dots);
        /* output i = (panel i / T, token i % T) */
        acc0 = token_step(kind, acc0, dots[0], P[0]->d[c], P[0]->m[c], ab[0], pt[0]);
        if (GT > 1) acc1 = token_step(kind, acc1, dots[1], P[1 / T]->d[c], P[1 / T]->m[c], ab[1 % T], pt[1 % T]);
        if (GT > 2) acc2 = token_step(kind, acc2, dots[2], P[2 / T]->d[c], P[2 / T]->m[c], ab[2 % T], pt[2 % T]);
        if (GT > 3) acc3 = token_step(kind, acc3, dots[3], P[3 / T]->d[c], P[3 / T]->m[c], ab[3 % T], pt[3 % T]);
    }
    acc[0] = acc0;
    if (GT > 1) acc[1] = acc1;
    if (GT > 2) acc[2] = acc2;
    if (GT > 3) acc[3] = acc3;
}

/* G panels x T tokens of outputs (panel g's rows [0, R[g])) over one chunk: from zero (first
 * chunk) or from the running sums parked in y (y[t*ldy + 8g + r]), back into y */
PG_INLINE void panel_group(int kind, const quant_panel *const P[2], const int G, const int R[2], int nc,
                           const uint8_t *a, size_t a_stride, const act_scales *pre, size_t pre_stride,
                           const int T, int first, float *y, size_t ldy) {
    __m256 acc[PANEL_TOKENS];
    PG_UNROLL for (int i = 0; i < G * T; i++) {
        float *yi = y + (size_t)(i % T) * ldy + QROWS * (i / T);
        acc[i] = first ? _mm256_setzero_ps() : load_lanes(R[i / T], yi);
    }
    panel_tokens(kind, P, G, nc, a, a_stride, pre, pre_stride, T, acc);
    PG_UNROLL for (int i = 0; i < G * T; i++) store_lanes(acc[i], R[i / T], y + (size_t)(i % T) * ldy + QROWS * (i / T));
}

/* every token over G panels' chunk: 2 panels x 2 tokens or 1 panel x 4 tokens at a time (Q8_0's
 * signs and magnitudes need more registers: 1 x 4 always), the rest together */
PG_INLINE void panel_all_tokens(int kind, const quant_panel *const P[2], int G, const int R[2], int nc,
                                const uint8_t *a, size_t a_stride, const act_scales *pre, size_t pre_stride,
                                int ntok, int first, float *y, size_t ldy) {
    if (G == 2) {
        int t0 = 0;
        for (; t0 + 2 <= ntok; t0 += 2)
            panel_group(kind, P, 2, R, nc, a + (size_t)t0 * a_stride, a_stride, pre ? pre + (size_t)t0 * pre_stride : NULL,
                        pre_stride, 2, first, y + (size_t)t0 * ldy, ldy);
        if (t0 < ntok)
            panel_group(kind, P, 2, R, nc, a + (size_t)t0 * a_stride, a_stride, pre ? pre + (size_t)t0 * pre_stride : NULL,
                        pre_stride, 1, first, y + (size_t)t0 * ldy, ldy);
        return;
    }
    for (int t0 = 0; t0 < ntok; t0 += PANEL_TOKENS) {
        const uint8_t *at = a + (size_t)t0 * a_stride;
        const act_scales *pt = pre ? pre + (size_t)t0 * pre_stride : NULL;
        float *yt = y + (size_t)t0 * ldy;
        switch (ntok - t0 < PANEL_TOKENS ? ntok - t0 : PANEL_TOKENS) {
        case 1:  panel_group(kind, P, 1, R, nc, at, a_stride, pt, pre_stride, 1, first, yt, ldy); break;
        case 2:  panel_group(kind, P, 1, R, nc, at, a_stride, pt, pre_stride, 2, first, yt, ldy); break;
        case 3:  panel_group(kind, P, 1, R, nc, at, a_stride, pt, pre_stride, 3, first, yt, ldy); break;
        default: panel_group(kind, P, 1, R, nc, at, a_stride, pt, pre_stride, PANEL_TOKENS, first, yt, ldy); break;
        }
    }
}

/* Q4_0/Q4_1 dots of one block of 8 transposed rows (P, from transpose_rows16) with two tokens'
 * quants q0, q1 (q1 NULL: one token), exact int32 lanes [r0..r7] as panel_dots: 16 products
 * per int16 lane <= 30720. Each nibble vector is split once for both tokens. */
PG_INLINE void q4_pair_dots(const __m256i P[4], const uint8_t *q0, const uint8_t *q1, __m256i *dot0, __m256i *dot1) {
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i half0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q0 + 16 * h)));
        const __m256i half1 = q1 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q1 + 16 * h))) : half0;
        for (int j = 0; j < 4; j++) {
            const __m256i wv = _mm256_and_si256(h ? _mm256_srli_epi16(P[j], 4) : P[j], low);
            s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(wv, dword_in_all_lanes(half0, j)));
            PG_KEEP(s0);
            if (q1) {
                s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(wv, dword_in_all_lanes(half1, j)));
                PG_KEEP(s1);
            }
        }
    }
    *dot0 = _mm256_madd_epi16(s0, ones);
    if (q1) *dot1 = _mm256_madd_epi16(s1, ones);
}

/* Q8_0 dots of one block of 8 rows (wb) with two tokens' quants q0, q1 (q1 NULL: one token):
 * each 16-byte half of the rows transposed once (transpose_rows16) for both; the sign trick
 * as in dots8_signed */
PG_INLINE void q8_pair_dots(const uint8_t *const wb[QROWS], const uint8_t *q0, const uint8_t *q1, __m256i *dot0, __m256i *dot1) {
    __m256i d0 = _mm256_setzero_si256(), d1 = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i P[4];
        transpose_rows16(wb, offsetof(block_q8_0, qs) + 16 * (size_t)h, P);
        const __m256i half0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q0 + 16 * h)));
        const __m256i half1 = q1 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q1 + 16 * h))) : half0;
        for (int j = 0; j < 4; j++) {
            const __m256i wabs = _mm256_sign_epi8(P[j], P[j]);
            d0 = _mm256_add_epi32(d0, pg_dot_u8s8(wabs, _mm256_sign_epi8(dword_in_all_lanes(half0, j), P[j])));
            PG_KEEP(d0);
            if (q1) {
                d1 = _mm256_add_epi32(d1, pg_dot_u8s8(wabs, _mm256_sign_epi8(dword_in_all_lanes(half1, j), P[j])));
                PG_KEEP(d1);
            }
        }
    }
    *dot0 = d0;
    if (q1) *dot1 = d1;
}

/* W rows [R <= 8] . T (2..4) activation rows -> y[t*ldy + r], straight from the GGUF blocks
 * (Q4_0, Q4_1, Q8_0): each block of the 8 rows transposed by dword in registers
 * (transpose_rows16) and met by the tokens two at a time, no panel stored: for a few tokens the
 * panel's stores and reloads, bunched apart from the arithmetic, cost more than they save
 * (measured, 1536x576 from DRAM: 2 tokens 1.4x -> 1.1x the one-token time, 4: 2.1x -> 1.9x).
 * The accumulators are named variables: in an array GCC keeps them in memory (10% slower).
 * Activation scales from pre (T rows of nb, decoded ahead) or the blocks. Missing rows repeat
 * row 0 (lanes never mix); the next 8 rows are asked for as in decode. Same integer dots and
 * block_step sequence as quant_rows_direct, so the same bits. */
PG_INLINE void quant_rows_tokens(int kind, int R, int64_t nb, const uint8_t *w, size_t w_stride,
                                 const uint8_t *a, size_t a_stride, const act_scales *pre, const int T,
                                 float *y, size_t ldy) {
    const size_t wbytes = kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const size_t aqs = kind_has_min(kind) ? 4 : 2;
    const uint8_t *row[QROWS];
    for (int r = 0; r < QROWS; r++) row[r] = w + (size_t)(r < R ? r : 0) * w_stride;
    const int contiguous = w_stride == (size_t)nb * wbytes;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t ib = 0; ib < nb; ib++) {
        const uint8_t *wb[QROWS];
        for (int r = 0; r < QROWS; r++) wb[r] = row[r] + ib * wbytes;
        prefetch_next_rows(wb, ib, row[0], contiguous, QROWS * wbytes, w_stride);
        const uint8_t *ab[DIRECT_MAX];
        const act_scales *pt[DIRECT_MAX];
        PG_UNROLL for (int t = 0; t < DIRECT_MAX; t++) {
            ab[t] = a + (size_t)(t < T ? t : 0) * a_stride + ib * abytes;
            pt[t] = pre ? pre + (size_t)(t < T ? t : 0) * (size_t)nb + ib : NULL;
        }
        __m256i P[4], dot[DIRECT_MAX];
        PG_UNROLL for (int t = 0; t < DIRECT_MAX; t++) dot[t] = _mm256_setzero_si256();
        __m256 D, M;
        transpose_rows16(wb, 0, P);
        scales_from_heads(P[0], &D, &M);
        if (kind == KIND_Q8_0) {
            q8_pair_dots(wb, ab[0] + aqs, ab[1] + aqs, &dot[0], &dot[1]);
            if (T > 2) q8_pair_dots(wb, ab[2] + aqs, T > 3 ? ab[3] + aqs : NULL, &dot[2], &dot[3]);
        } else {
            transpose_rows16(wb, kind == KIND_Q4_0 ? offsetof(block_q4_0, qs) : offsetof(block_q4_1, qs), P);
            q4_pair_dots(P, ab[0] + aqs, ab[1] + aqs, &dot[0], &dot[1]);
            if (T > 2) q4_pair_dots(P, ab[2] + aqs, T > 3 ? ab[3] + aqs : NULL, &dot[2], &dot[3]);
        }
        acc0 = token_step(kind, acc0, dot[0], D, M, ab[0], pt[0]);
        acc1 = token_step(kind, acc1, dot[1], D, M, ab[1], pt[1]);
        if (T > 2) acc2 = token_step(kind, acc2, dot[2], D, M, ab[2], pt[2]);
        if (T > 3) acc3 = token_step(kind, acc3, dot[3], D, M, ab[3], pt[3]);
    }
    store_lanes(acc0, R, y);
    store_lanes(acc1, R, y + ldy);
    if (T > 2) store_lanes(acc2, R, y + 2 * ldy);
    if (T > 3) store_lanes(acc3, R, y + 3 * ldy);
}

/* quant_rows_tokens over every 8-row group, T tokens */
PG_INLINE void quant_gemm_direct_tokens(int kind, int64_t nb, const uint8_t *W, size_t w_stride, int nrows,
                                        const uint8_t *A, size_t a_stride, const act_scales *pre, const int T,
                                        float *y, size_t ldy) {
    for (int r = 0; r < nrows; r += QROWS)
        quant_rows_tokens(kind, nrows - r < QROWS ? nrows - r : QROWS, nb, W + (size_t)r * w_stride, w_stride,
                          A, a_stride, pre, T, y + r, ldy);
}

/* W (nrows, n) @ a (n,) -> y (nrows,): 8 rows per pass straight from the GGUF blocks (decode) */
PG_INLINE void quant_gemm_one(int kind, int64_t n, const void *w, size_t w_stride, int nrows, const void *a, float *y) {
    const int64_t nb = n / 32;
    const uint8_t *W = w, *A = a;
    int r = 0;
    if (kind == KIND_Q5_0 || kind == KIND_Q5_1) {
        act_decoded pre_buf, *pre = nb <= ACT_DECODED_MAX && nrows > QROWS ? &pre_buf : NULL;
        if (pre) decode_act_row(kind, A, nb, pre);
        for (; r + QROWS <= nrows; r += QROWS) q5_rows_direct(kind, QROWS, nb, W + (size_t)r * w_stride, w_stride, A, pre, y + r);
        if (r < nrows) q5_rows_direct(kind, nrows - r, nb, W + (size_t)r * w_stride, w_stride, A, pre, y + r);
        return;
    }
    /* Q4_0's offset sums are worth decoding once (the other formats' activation side is a load) */
    act_decoded pre_buf, *pre = kind == KIND_Q4_0 && nb <= ACT_DECODED_MAX && nrows > QROWS ? &pre_buf : NULL;
    if (pre) decode_act_row(kind, A, nb, pre);
    for (; r + QROWS <= nrows; r += QROWS) quant_rows_direct(kind, QROWS, nb, W + (size_t)r * w_stride, w_stride, A, pre, y + r);
    if (r < nrows) quant_rows_direct(kind, nrows - r, nb, W + (size_t)r * w_stride, w_stride, A, pre, y + r);
}

/* W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r], ntok >= 2: up to DIRECT_MAX tokens of Q4_0/Q4_1/
 * Q8_0 straight from the blocks; otherwise 8-row panels unpacked QKC blocks at a time and the
 * tokens run over them, the running sums parked in y between chunks (chunks in order for every
 * output). Every output gets quant_gemm_one's block_step sequence, so y does not depend on
 * nrows, ntok or where the output sits. */
PG_INLINE void quant_gemm_tokens(int kind, int64_t n, const void *w, size_t w_stride, int nrows,
                                 const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    const int64_t nb = n / 32;
    const uint8_t *W = w, *A = a;
    act_scales table[ACT_TABLE];
    /* a few tokens: straight from the blocks */
    if ((kind == KIND_Q4_0 || kind == KIND_Q4_1 || kind == KIND_Q8_0) && ntok <= DIRECT_MAX) {
        const act_scales *pre = ntok * nb <= ACT_TABLE ? table : NULL;
        if (pre) decode_act_scales(kind, A, a_stride, ntok, nb, table);
        switch (ntok) {
        case 2:  quant_gemm_direct_tokens(kind, nb, W, w_stride, nrows, A, a_stride, pre, 2, y, ldy); break;
        case 3:  quant_gemm_direct_tokens(kind, nb, W, w_stride, nrows, A, a_stride, pre, 3, y, ldy); break;
        default: quant_gemm_direct_tokens(kind, nb, W, w_stride, nrows, A, a_stride, pre, 4, y, ldy); break;
        }
        return;
    }
    _Alignas(32) quant_panel panels[2];
    const quant_panel *const P[2] = {&panels[0], &panels[1]};
    const size_t abytes = act_block_bytes(kind);
    const int contiguous = w_stride == (size_t)nb * kind_block_bytes(kind);
    const int pair_rows = kind != KIND_Q8_0;   /* two 8-row panels at a time (see panel_all_tokens) */
    /* Tokens in groups whose activation scales fit the table, decoded once for every row group
     * (rows too long for PANEL_TOKENS of them: decoded in the block loop). Row groups outermost,
     * so each group's rows stream in order while the next group's are asked for. */
    const int use_table = nb * PANEL_TOKENS <= ACT_TABLE;
    const int group = use_table && ACT_TABLE / nb < ntok ? (int)(ACT_TABLE / nb) : ntok;
    for (int t0 = 0; t0 < ntok; t0 += group) {
        const int T = ntok - t0 < group ? ntok - t0 : group;
        const uint8_t *at = A + (size_t)t0 * a_stride;
        if (use_table) decode_act_scales(kind, at, a_stride, T, nb, table);
        for (int r0 = 0; r0 < nrows;) {
            const int G = pair_rows && r0 + QROWS < nrows ? 2 : 1;
            int R[2];
            for (int g = 0; g < 2; g++) {
                const int left = nrows - r0 - QROWS * g;
                R[g] = left < 0 ? 0 : left < QROWS ? left : QROWS;
            }
            for (int64_t b0 = 0; b0 < nb; b0 += QKC) {
                const int nc = nb - b0 < QKC ? (int)(nb - b0) : QKC;
                for (int g = 0; g < G; g++) {
                    const int rg = r0 + QROWS * g, rn = rg + QROWS * G;   /* this panel's rows, the ones after it in the next pass */
                    unpack_panel(kind, R[g], W + (size_t)rg * w_stride, w_stride, b0, nc, &panels[g],
                                 rn + QROWS <= nrows ? W + (size_t)rn * w_stride : NULL, contiguous);
                }
                /* two copies of the token loop, so neither tests for the table per block
                 * (measured: 1536x2304, 8-128 tokens, 5-8% faster than one copy) */
                if (use_table)
                    panel_all_tokens(kind, P, G, R, nc, at + (size_t)b0 * abytes, a_stride, table + b0, (size_t)nb, T,
                                     b0 == 0, y + (size_t)t0 * ldy + r0, ldy);
                else
                    panel_all_tokens(kind, P, G, R, nc, at + (size_t)b0 * abytes, a_stride, NULL, 0, T,
                                     b0 == 0, y + (size_t)t0 * ldy + r0, ldy);
            }
            r0 += QROWS * G;
        }
    }
}

/* ---- the repacked layout (csrc/repack.c; the model's matrices at load, model/weights.c) ---
 * Q4_0 / Q4_1 / Q8_0 rows in groups of 8, per block: the 8 rows' fp16 d (then the 8 m of
 * Q4_1), then the quant bytes as dwords interleaved across the rows (dword j, row r at
 * 32*j + 4*r): for Q4 dword j of a row holds values 4j..4j+3 in its low nibbles and
 * 16+4j..16+4j+3 in its high nibbles; for Q8_0 values 4j..4j+3. Same bytes as 8 GGUF blocks. */

#define R8_PREFETCH 2048   /* measured: 1.1-1.5x on DRAM/L3-sized matrices over the hardware prefetcher alone */

PG_INLINE size_t r8_scale_bytes(int kind) { return kind_has_min(kind) ? 32 : 16; }

/* a repacked block's 8 rows' scales: D = their d, M = their m (formats with a min; else 0) */
PG_INLINE void r8_scales(int kind, const uint8_t *blk, __m256 *D, __m256 *M) {
    *D = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
    *M = kind_has_min(kind) ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16))) : _mm256_setzero_ps();
}

/* one repacked 8-row block -> 8 interleaved value vectors (as in quant_panel) and D, M */
PG_INLINE void r8_block(int kind, const uint8_t *blk, __m256i q[8], __m256i *wsgn, __m256 *D, __m256 *M) {
    r8_scales(kind, blk, D, M);
    const uint8_t *qs = blk + r8_scale_bytes(kind);
    if (kind == KIND_Q8_0) {
        for (int k = 0; k < 8; k++) {
            wsgn[k] = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
            q[k] = _mm256_sign_epi8(wsgn[k], wsgn[k]);
        }
        return;
    }
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        q[j] = _mm256_and_si256(v, low);
        q[j + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    }
}

/* G repacked 8-row groups x T tokens, all nb blocks, accumulators in registers: acc[g*T + t]
 * (8 outputs: group g's rows, token t). Each weight column is unpacked once for the T tokens and
 * each activation dword broadcast once for the G groups; the dots are panel_dots' exact int32
 * lanes and every output sees block_step in block order, so y equals the other paths' bits. */
PG_INLINE void r8_tile(int kind, const uint8_t *const grp[2], const int G, int64_t nb, const uint8_t *a,
                       size_t a_stride, const act_scales *pre, size_t pre_stride, const int T, size_t ahead,
                       __m256 acc[8]) {
    const size_t gblock = QROWS * kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const size_t aqs = kind_has_min(kind) ? 4 : 2, sb = r8_scale_bytes(kind);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t ib = 0; ib < nb; ib++) {
        if (ahead)
            for (int g = 0; g < G; g++)
                for (size_t k = 0; k < gblock; k += 64) _mm_prefetch((const char *)grp[g] + ib * gblock + ahead + k, _MM_HINT_T0);
        __m256i s[8];
        PG_UNROLL for (int i = 0; i < G * T; i++) s[i] = _mm256_setzero_si256();
        const uint8_t *qs[2];
        PG_UNROLL for (int g = 0; g < G; g++) qs[g] = grp[g] + ib * gblock + sb;
        PG_UNROLL for (int h = 0; h < 2; h++) {
            PG_UNROLL for (int j = 0; j < 4; j++) {
                __m256i w[2], sg[2];
                PG_UNROLL for (int g = 0; g < G; g++) {
                    if (kind == KIND_Q8_0) {
                        sg[g] = _mm256_loadu_si256((const __m256i *)(qs[g] + 32 * (4 * h + j)));
                        w[g] = _mm256_sign_epi8(sg[g], sg[g]);
                    } else {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs[g] + 32 * j));
                        w[g] = _mm256_and_si256(h ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
                    }
                }
                PG_UNROLL for (int t = 0; t < T; t++) {
                    /* a broadcast from memory costs no ALU slot, where the in-register shuffle
                     * of the panel paths does (measured here: 1.1-1.3x) */
                    const __m256i x = act_dword(a + (size_t)t * a_stride + ib * abytes + aqs + 16 * h, j);
                    PG_UNROLL for (int g = 0; g < G; g++) {
                        const int i = g * T + t;
                        if (kind == KIND_Q8_0) s[i] = _mm256_add_epi32(s[i], pg_dot_u8s8(w[g], _mm256_sign_epi8(x, sg[g])));
                        else s[i] = _mm256_add_epi16(s[i], _mm256_maddubs_epi16(w[g], x));
                        PG_KEEP(s[i]);
                    }
                }
            }
        }
        PG_UNROLL for (int g = 0; g < G; g++) {
            __m256 D, M;
            r8_scales(kind, grp[g] + ib * gblock, &D, &M);
            PG_UNROLL for (int t = 0; t < T; t++) {
                const int i = g * T + t;
                const __m256i dot = kind == KIND_Q8_0 ? s[i] : _mm256_madd_epi16(s[i], ones);
                acc[i] = token_step(kind, acc[i], dot, D, M, NULL, pre + (size_t)t * pre_stride + ib);
            }
        }
    }
}

/* rows of the repacked groups from r0 on: grp[g] = group r0/8 + g (g < G, else the first
 * again), R[g] = how many of its 8 rows are real */
PG_INLINE void r8_groups(int kind, const void *packed, int64_t nb, int nrows, int r0, int G,
                         const uint8_t *grp[2], int R[2]) {
    const size_t gbytes = (size_t)nb * QROWS * kind_block_bytes(kind);
    for (int g = 0; g < 2; g++) {
        grp[g] = (const uint8_t *)packed + (size_t)(r0 / QROWS + (g < G ? g : 0)) * gbytes;
        const int left = nrows - r0 - QROWS * g;
        R[g] = left < 0 ? 0 : left < QROWS ? left : QROWS;
    }
}

/* one token (decode): per group and block, the 8 value vectors decoded and panel_dots */
PG_INLINE void r8_one_token(int kind, int64_t nb, const void *packed, int nrows, const uint8_t *a, float *y) {
    const size_t gblock = QROWS * kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const size_t aqs = kind_has_min(kind) ? 4 : 2;
    for (int r0 = 0; r0 < nrows; r0 += QROWS) {
        const uint8_t *grp[2];
        int R[2];
        r8_groups(kind, packed, nb, nrows, r0, 1, grp, R);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t ib = 0; ib < nb; ib++) {
            const uint8_t *ab = a + ib * abytes;
            const act_block x = load_act(kind, ab);
            __m256i q[8], sg[8];
            __m256 D, M;
            for (size_t k = 0; k < gblock; k += 64)   /* one stream: ask R8_PREFETCH bytes ahead */
                _mm_prefetch((const char *)grp[0] + ib * gblock + R8_PREFETCH + k, _MM_HINT_T0);
            r8_block(kind, grp[0] + ib * gblock, q, sg, &D, &M);
            acc = block_step(kind, acc, panel_dots(kind, q, sg, ab + aqs), D, M, &x);
        }
        store_lanes(acc, R[0], y + r0);
    }
}

/* a few tokens: r8_tile over 2 groups (16 rows) x up to 4 tokens at a time, the tokens' scales
 * decoded once per call */
PG_INLINE void r8_few_tokens(int kind, int64_t nb, const void *packed, int nrows, const uint8_t *a, size_t a_stride,
                             int ntok, float *y, size_t ldy) {
    const size_t gblock = QROWS * kind_block_bytes(kind);
    act_scales table[ACT_TABLE];
    const int chunk = (int)(ACT_TABLE / nb) < ntok ? (int)(ACT_TABLE / nb) : ntok;
    for (int t0 = 0; t0 < ntok; t0 += chunk) {
        const int TT = ntok - t0 < chunk ? ntok - t0 : chunk;
        const uint8_t *at = a + (size_t)t0 * a_stride;
        decode_act_scales(kind, at, a_stride, TT, nb, table);
        for (int r0 = 0; r0 < nrows;) {
            const int G = r0 + QROWS < nrows ? 2 : 1;
            const uint8_t *grp[2];
            int R[2];
            r8_groups(kind, packed, nb, nrows, r0, G, grp, R);
            for (int t = 0; t < TT; t += 4) {
                const int T = TT - t < 4 ? TT - t : 4;
                __m256 acc[8];
                for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
                const uint8_t *att = at + (size_t)t * a_stride;
                const act_scales *pt = table + (size_t)t * nb;
                /* constant G and T, so each tile's loops unroll into registers; the first
                 * pass asks for the next groups' blocks, which the hardware prefetcher does not
                 * see coming from these short runs */
                const size_t ahead = t == 0 ? (size_t)G * nb * gblock : 0;
#define R8_TILE(GG, TTT) r8_tile(kind, grp, GG, nb, att, a_stride, pt, (size_t)nb, TTT, ahead, acc)
                if (G == 2) {
                    switch (T) { case 1: R8_TILE(2, 1); break; case 2: R8_TILE(2, 2); break; case 3: R8_TILE(2, 3); break; default: R8_TILE(2, 4); }
                } else {
                    switch (T) { case 1: R8_TILE(1, 1); break; case 2: R8_TILE(1, 2); break; case 3: R8_TILE(1, 3); break; default: R8_TILE(1, 4); }
                }
#undef R8_TILE
                for (int g = 0; g < G; g++)
                    for (int u = 0; u < T; u++) store_lanes(acc[g * T + u], R[g], y + (size_t)(t0 + t + u) * ldy + r0 + QROWS * g);
            }
            r0 += QROWS * G;
        }
    }
}

/* many tokens: 2-group panels decoded once per QKC-block chunk and every token run over them,
 * as the GGUF path does after its (costlier) unpack */
PG_INLINE void r8_many_tokens(int kind, int64_t nb, const void *packed, int nrows, const uint8_t *a, size_t a_stride,
                              int ntok, float *y, size_t ldy) {
    const size_t gblock = QROWS * kind_block_bytes(kind), abytes = act_block_bytes(kind);
    _Alignas(32) quant_panel panels[2];
    const quant_panel *const P[2] = {&panels[0], &panels[1]};
    for (int r0 = 0; r0 < nrows;) {
        const int G = r0 + QROWS < nrows ? 2 : 1;
        const uint8_t *grp[2];
        int R[2];
        r8_groups(kind, packed, nb, nrows, r0, G, grp, R);
        for (int64_t b0 = 0; b0 < nb; b0 += QKC) {
            const int nc = nb - b0 < QKC ? (int)(nb - b0) : QKC;
            for (int g = 0; g < G; g++)
                for (int c = 0; c < nc; c++)
                    r8_block(kind, grp[g] + (size_t)(b0 + c) * gblock, panels[g].q[c], panels[g].sgn[c], &panels[g].d[c], &panels[g].m[c]);
            panel_all_tokens(kind, P, G, R, nc, a + (size_t)b0 * abytes, a_stride, NULL, 0, ntok, b0 == 0, y + r0, ldy);
        }
        r0 += QROWS * G;
    }
}

/* Up to this many tokens, r8_tile (weights unpacked in registers per 4 tokens) beats decoding
 * panels once for all tokens (measured, 1536x576 Q4_1, over the GGUF-layout panels: 4 tokens
 * 2.0x, 8 1.3-1.4x, 64 0.8x) */
#ifndef R8_FEW_TOKENS
#define R8_FEW_TOKENS 16
#endif

#define PG_R8_PARAMS int64_t n, const void *packed, int nrows, const void *a, size_t a_stride, \
                     int ntok, float *y, size_t ldy
#define PG_R8_NAME(t, isa) PG_CAT3(pg_gemm_##t, _r8_, isa)
/* repacked W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r]. Every path gives each output the
 * GGUF-layout kernel's integer dots and block_step sequence, so the same bits. Each path is a
 * function of its own (as in PG_DEFINE_QUANT_GEMM: inlined together they spill registers). */
#define PG_DEFINE_GEMM_R8(t, kind)                                                                    \
    static __attribute__((noinline)) void PG_CAT3(r8_one_, t, _)(int64_t nb, const void *packed, int nrows, \
                                                                  const void *a, float *y) {                \
        r8_one_token(kind, nb, packed, nrows, a, y);                                                  \
    }                                                                                                 \
    static __attribute__((noinline)) void PG_CAT3(r8_few_, t, _)(PG_R8_PARAMS) {                       \
        r8_few_tokens(kind, n / 32, packed, nrows, a, a_stride, ntok, y, ldy);                        \
    }                                                                                                 \
    static __attribute__((noinline)) void PG_CAT3(r8_many_, t, _)(PG_R8_PARAMS) {                      \
        r8_many_tokens(kind, n / 32, packed, nrows, a, a_stride, ntok, y, ldy);                       \
    }                                                                                                 \
    void PG_R8_NAME(t, PG_ISA_SUFFIX)(PG_R8_PARAMS);                                                  \
    void PG_R8_NAME(t, PG_ISA_SUFFIX)(PG_R8_PARAMS) {                                                 \
        if (ntok == 1) PG_CAT3(r8_one_, t, _)(n / 32, packed, nrows, a, y);                           \
        else if (ntok <= R8_FEW_TOKENS) PG_CAT3(r8_few_, t, _)(n, packed, nrows, a, a_stride, ntok, y, ldy); \
        else PG_CAT3(r8_many_, t, _)(n, packed, nrows, a, a_stride, ntok, y, ldy);                   \
    }
PG_DEFINE_GEMM_R8(q4_0, KIND_Q4_0)
PG_DEFINE_GEMM_R8(q4_1, KIND_Q4_1)
PG_DEFINE_GEMM_R8(q8_0, KIND_Q8_0)

#include "kernels/x86/r8_amx.h"

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

/* the several-token path in a function of its own: inlined beside the decode loop, its
 * register pressure cost the decode loop spills (measured: 49152x576 decode 10% slower) */
#define PG_DEFINE_QUANT_GEMM(t, kind)                                                    \
    static __attribute__((noinline)) void PG_CAT3(quant_one_, t, _)(int64_t n, const void *w, size_t w_stride, \
                                                                     int nrows, const void *a, float *y) {      \
        quant_gemm_one(kind, n, w, w_stride, nrows, a, y);                               \
    }                                                                                    \
    static __attribute__((noinline)) void PG_CAT3(quant_tokens_, t, _)(PG_GEMM_PARAMS) { \
        quant_gemm_tokens(kind, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);       \
    }                                                                                    \
    void PG_GEMM_NAME(t, PG_ISA_SUFFIX)(PG_GEMM_PARAMS);                                 \
    void PG_GEMM_NAME(t, PG_ISA_SUFFIX)(PG_GEMM_PARAMS) {                                \
        if (ntok == 1) PG_CAT3(quant_one_, t, _)(n, w, w_stride, nrows, a, y);          \
        else PG_CAT3(quant_tokens_, t, _)(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy); \
    }

PG_DEFINE_QUANT_GEMM(q4_0, KIND_Q4_0)
PG_DEFINE_QUANT_GEMM(q4_1, KIND_Q4_1)
PG_DEFINE_QUANT_GEMM(q5_0, KIND_Q5_0)
PG_DEFINE_QUANT_GEMM(q5_1, KIND_Q5_1)
PG_DEFINE_QUANT_GEMM(q8_0, KIND_Q8_0)
PG_DEFINE_GEMM(f32, float, KIND_F32)
PG_DEFINE_GEMM(f16, float, KIND_F16)
PG_DEFINE_GEMM(bf16, float, KIND_BF16)

#endif
