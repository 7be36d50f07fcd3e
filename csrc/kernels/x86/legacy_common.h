/* The x86 kernels of the 32-value formats (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0): what the GGUF-row kernels
 * (legacy_gguf.h) and the repacked ones (r8_gemm.h, r8_amx.h) share, written once for the AVX2
 * and AVX-512 translation units. The including file selects the instruction set with
 * `#pragma GCC target` and includes its primitives (avx2.h, avx512.h) first:
 *   pg_dot_u8s8(u, s)      __m256i: 8 int32 lanes, lane k = sum of u[4k+i] * s[4k+i] over i<4,
 *                          u unsigned bytes, s signed bytes, computed exactly (no saturation
 *                          for the operand ranges used here: |u| <= 128, |s| <= 127).
 *
 * 8 weight rows per pass, one float lane per row. Per block, the 8 rows' exact integer dots land
 * in one int32 vector, converted once and FMA'd with [dw_r * da] (then [m_r * s] for formats
 * with a min): block_step, the same for every path and tile, so every output sees the same float
 * operations in the same order wherever it sits (the pg_gemm_fn contract). Several tokens work on
 * 8 rows transposed by dword (a panel), so one activation dword spread over the lanes meets 8
 * rows; the tokens run over a panel 2 panels x 2 tokens or 1 x 4 at a time, each output its own
 * accumulator chain (panel_all_tokens). */
#ifndef PYGGUF_X86_LEGACY_COMMON_H
#define PYGGUF_X86_LEGACY_COMMON_H

#include <immintrin.h>
#include <string.h>
#include "quants/legacy.h"
#include "quants/traits.h"
#include "kernels/x86/x86.h"

#define PG_INLINE static inline __attribute__((always_inline))
#define PG_CAT3(a, b, c) a##b##c
#define PG_GEMM_NAME(t, isa) PG_CAT3(pg_gemm_##t, _, isa)

#define QROWS 8   /* weight rows per pass: one int32 / float lane each */
#define QKC 32    /* blocks per unpacked panel chunk: 8 rows x 32 blocks x 32 B = 8 KiB of quants */

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


/* 8 rows x QKC blocks unpacked once for every token (prefill), interleaved: q[c][k] holds
 * bytes 4k..4k+3 of the 8 rows (dword r = row r), so one broadcast activation dword meets 8
 * rows and the products land in per-row lanes with no horizontal folding */
typedef struct {
    __m256i q[QKC][8];      /* quants 0..31, or |w| for Q8_0 */
    __m256i sgn[QKC][8];    /* Q8_0 only: w itself, whose signs go onto the activation */
    __m256 d[QKC], m[QKC];  /* per block, the 8 rows' scales and mins as floats */
} quant_panel;

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


#endif
