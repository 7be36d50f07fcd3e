/* NEON (ARMv8.2 dotprod) gemm of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 from the GGUF rows:
 * W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r], A in Q8_0/Q8_1.
 *
 * Strategy, as the x86 kernels: a register tile of 4 weight rows x 4 tokens, so each
 * activation block is loaded once per 4 rows and each weight block once per 4 tokens. A block
 * is unpacked to signed bytes (Q4/Q5 offsets removed in the byte domain: every value fits in
 * int8) and dotted exactly with two vdotq_s32; the 4 rows' sums are folded into one vector,
 * converted and FMA'd into the token's accumulator with [dw_r * da]. Leftover rows and tokens
 * use the same function with a 1-row or 1-token tile, so every output sees the same float
 * operations in the same order. */
#if defined(__aarch64__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <arm_neon.h>
#include "kernels/arm/arm.h"
#include "quants/legacy.h"

#define PG_INLINE static inline __attribute__((always_inline))
#define TILE_ROWS 4
#define TILE_TOKENS 4

typedef struct { int8x16_t lo, hi; } bytes32;   /* values 0..15 and 16..31 of a block */

PG_INLINE pg_half half_at(const uint8_t *p) { pg_half h; memcpy(&h, p, 2); return h; }

/* up to 4 fp16 values -> floats with one vector conversion (missing ones 0) */
PG_INLINE void halves_to_floats(int count, const pg_half *h, float out[4]) {
    uint16_t tmp[4] = {0, 0, 0, 0};
    for (int i = 0; i < count; i++) tmp[i] = h[i];
    vst1q_f32(out, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(tmp))));
}

/* the 5th bits of a Q5 block (bit j of qh -> byte j) as 0x10 or 0 */
PG_INLINE void q5_high_bits(const uint8_t *qh, uint8x16_t *lo, uint8x16_t *hi) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    const uint8x16_t qhv = vreinterpretq_u8_u32(vdupq_n_u32(bits));
    static const uint8_t LO_IDX[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint8_t HI_IDX[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t BIT[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bit = vld1q_u8(BIT), sixteen = vdupq_n_u8(0x10);
    *lo = vandq_u8(vtstq_u8(vqtbl1q_u8(qhv, vld1q_u8(LO_IDX)), bit), sixteen);
    *hi = vandq_u8(vtstq_u8(vqtbl1q_u8(qhv, vld1q_u8(HI_IDX)), bit), sixteen);
}

/* a weight block -> 32 signed bytes, the value q (Q4_1/Q5_1) or q - offset (Q4_0/Q5_0) */
PG_INLINE bytes32 weight_values(int kind, const uint8_t *b) {
    bytes32 v;
    if (kind == KIND_Q8_0) {
        const int8_t *qs = ((const block_q8_0 *)b)->qs;
        v.lo = vld1q_s8(qs);
        v.hi = vld1q_s8(qs + 16);
        return v;
    }
    const uint8_t *qs = kind == KIND_Q4_0 ? ((const block_q4_0 *)b)->qs
                      : kind == KIND_Q4_1 ? ((const block_q4_1 *)b)->qs
                      : kind == KIND_Q5_0 ? ((const block_q5_0 *)b)->qs : ((const block_q5_1 *)b)->qs;
    const uint8x16_t q = vld1q_u8(qs);
    uint8x16_t lo = vandq_u8(q, vdupq_n_u8(0x0F)), hi = vshrq_n_u8(q, 4);
    if (kind == KIND_Q5_0 || kind == KIND_Q5_1) {
        uint8x16_t hlo, hhi;
        q5_high_bits(kind == KIND_Q5_0 ? ((const block_q5_0 *)b)->qh : ((const block_q5_1 *)b)->qh, &hlo, &hhi);
        lo = vorrq_u8(lo, hlo);
        hi = vorrq_u8(hi, hhi);
    }
    const uint8_t off = kind == KIND_Q4_0 ? 8 : kind == KIND_Q5_0 ? 16 : 0;
    v.lo = vreinterpretq_s8_u8(vsubq_u8(lo, vdupq_n_u8(off)));
    v.hi = vreinterpretq_s8_u8(vsubq_u8(hi, vdupq_n_u8(off)));
    return v;
}

/* W rows [R <= 4] x A rows [T] over nb blocks; y[t*ldy + r]. Per token one float accumulator
 * holds the 4 rows (lane r), fed per block by one FMA of the rows' exact integer dots (folded
 * with pairwise adds: integer, so the grouping cannot change any output) with [dw_r * da_t]. */
PG_INLINE void quant_tile(int kind, int R, int T, int64_t nb, const uint8_t *w, size_t w_stride,
                          const uint8_t *a, size_t a_stride, float *y, size_t ldy) {
    const size_t wbytes = kind_block_bytes(kind);
    const int q81 = kind_has_min(kind);
    const size_t abytes = q81 ? sizeof(block_q8_1) : sizeof(block_q8_0), aqs = q81 ? 4 : 2;
    float32x4_t acc[TILE_TOKENS], min_acc[TILE_TOKENS];   /* lane r; min_acc: sum m_r * s_t */
    for (int t = 0; t < T; t++) { acc[t] = vdupq_n_f32(0.0f); min_acc[t] = vdupq_n_f32(0.0f); }

    for (int64_t ib = 0; ib < nb; ib++) {
        const uint8_t *wb[TILE_ROWS], *ab[TILE_TOKENS];
        pg_half dh[TILE_ROWS], mh[TILE_ROWS], ah[TILE_TOKENS], sh[TILE_TOKENS];
        for (int r = 0; r < R; r++) {
            wb[r] = w + r * w_stride + ib * wbytes;
            dh[r] = half_at(wb[r]);
            mh[r] = q81 ? half_at(wb[r] + 2) : 0;
        }
        int8x16_t alo[TILE_TOKENS], ahi[TILE_TOKENS];
        for (int t = 0; t < T; t++) {
            ab[t] = a + t * a_stride + ib * abytes;
            ah[t] = half_at(ab[t]);
            sh[t] = q81 ? half_at(ab[t] + 2) : 0;
            alo[t] = vld1q_s8((const int8_t *)(ab[t] + aqs));
            ahi[t] = vld1q_s8((const int8_t *)(ab[t] + aqs + 16));
        }
        float dw[4], da[4];
        halves_to_floats(R, dh, dw);
        halves_to_floats(T, ah, da);
        const float32x4_t dwv = vld1q_f32(dw);
        bytes32 wv[TILE_ROWS];
        for (int r = 0; r < R; r++) wv[r] = weight_values(kind, wb[r]);
        for (int t = 0; t < T; t++) {
            int32x4_t isum[4];
            for (int r = 0; r < 4; r++)
                isum[r] = r < R ? vdotq_s32(vdotq_s32(vdupq_n_s32(0), wv[r].lo, alo[t]), wv[r].hi, ahi[t])
                                : vdupq_n_s32(0);
            const int32x4_t rows = vpaddq_s32(vpaddq_s32(isum[0], isum[1]), vpaddq_s32(isum[2], isum[3]));
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(rows), vmulq_n_f32(dwv, da[t]));
        }
        if (q81) {
            float mw[4], sa[4];
            halves_to_floats(R, mh, mw);
            halves_to_floats(T, sh, sa);
            for (int t = 0; t < T; t++) min_acc[t] = vfmaq_n_f32(min_acc[t], vld1q_f32(mw), sa[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        float sums[4], mins[4];
        vst1q_f32(sums, acc[t]);
        vst1q_f32(mins, min_acc[t]);
        for (int r = 0; r < R; r++) y[t * ldy + r] = sums[r] + mins[r];
    }
}

PG_INLINE void quant_gemm(int kind, int64_t n, const void *w, size_t w_stride, int nrows,
                          const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    const int64_t nb = n / 32;
    const uint8_t *W = w, *A = a;
    for (int r = 0; r < nrows;) {
        const int rows = nrows - r >= TILE_ROWS ? TILE_ROWS : 1;
        int t = 0;
        for (; t + TILE_TOKENS <= ntok; t += TILE_TOKENS) {
            if (rows == TILE_ROWS) quant_tile(kind, TILE_ROWS, TILE_TOKENS, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else                   quant_tile(kind, 1, TILE_TOKENS, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        for (; t < ntok; t++) {
            if (rows == TILE_ROWS) quant_tile(kind, TILE_ROWS, 1, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
            else                   quant_tile(kind, 1, 1, nb, W + r * w_stride, w_stride, A + t * a_stride, a_stride, y + t * ldy + r, ldy);
        }
        r += rows;
    }
}

/* pg_gemm_<t>_neon */
#define DEFINE_GEMM(t, kind)                                                    \
    void pg_gemm_##t##_neon(PG_GEMM_ARGS) {                                    \
        quant_gemm(kind, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);  \
    }

DEFINE_GEMM(q4_0, KIND_Q4_0)
DEFINE_GEMM(q4_1, KIND_Q4_1)
DEFINE_GEMM(q5_0, KIND_Q5_0)
DEFINE_GEMM(q5_1, KIND_Q5_1)
DEFINE_GEMM(q8_0, KIND_Q8_0)

#endif
