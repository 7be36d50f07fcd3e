/* The x86 gemm of the 32-value formats straight from the GGUF rows, written once for the AVX2
 * and AVX-512 translation units (legacy_avx2.c, legacy_avx512.c; the shared pieces and the
 * strategy in legacy_common.h). One token (decode) reads the GGUF blocks directly and prefetches
 * the next 8 rows: the 8 rows' dots folded into one int32 vector (int16 hadds for the 4/5-bit
 * formats, whose products are small enough; Q5_0/Q5_1: two rows per vector, see q5_rows_direct;
 * Q4_0/Q5: the activation row's scales and offset sums decoded once per call). 2-4 tokens
 * (Q4_0/Q4_1/Q8_0) transpose each block in registers and run the tokens over it in pairs
 * (quant_rows_tokens); more (and Q5) unpack 8-row panels once per chunk and run the tokens over
 * them (panel_all_tokens). */
#ifndef PYGGUF_X86_LEGACY_GGUF_H
#define PYGGUF_X86_LEGACY_GGUF_H

#include "kernels/x86/legacy_common.h"

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

#define DIRECT_MAX 4     /* most tokens served straight from the blocks (quant_rows_tokens) */

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

/* ---- the exported kernels: pg_gemm_<t>_<isa>, W (nrows, n) @ A (ntok, n)^T -> y ------------ */

/* the several-token path in a function of its own: inlined beside the decode loop, its
 * register pressure cost the decode loop spills (measured: 49152x576 decode 10% slower) */
#define PG_DEFINE_QUANT_GEMM(t, kind)                                                    \
    static __attribute__((noinline)) void PG_CAT3(quant_one_, t, _)(int64_t n, const void *w, size_t w_stride, \
                                                                     int nrows, const void *a, float *y) {      \
        quant_gemm_one(kind, n, w, w_stride, nrows, a, y);                               \
    }                                                                                    \
    static __attribute__((noinline)) void PG_CAT3(quant_tokens_, t, _)(PG_GEMM_ARGS) { \
        quant_gemm_tokens(kind, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);       \
    }                                                                                    \
    void PG_GEMM_NAME(t, PG_ISA_SUFFIX)(PG_GEMM_ARGS) {                                \
        if (ntok == 1) PG_CAT3(quant_one_, t, _)(n, w, w_stride, nrows, a, y);          \
        else PG_CAT3(quant_tokens_, t, _)(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy); \
    }

PG_DEFINE_QUANT_GEMM(q4_0, KIND_Q4_0)
PG_DEFINE_QUANT_GEMM(q4_1, KIND_Q4_1)
PG_DEFINE_QUANT_GEMM(q5_0, KIND_Q5_0)
PG_DEFINE_QUANT_GEMM(q5_1, KIND_Q5_1)
PG_DEFINE_QUANT_GEMM(q8_0, KIND_Q8_0)

#endif
