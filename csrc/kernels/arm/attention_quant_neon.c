/* NEON (ARMv8.2 dotprod) attention loops over a q8_0 or q4_0 KV cache (kernels/kernels.h): equal
 * bit for bit to the reference loops (kernels/attention_quant_ref.c), because their integer block
 * dots are exact in any order and every float operation is the reference's, in its order. An F16
 * cache and the softmax use the reference loops.
 *
 * Scores: q is quantized to Q8_0 once per call (the forward's activation quantizer) and each K
 * block meets it in two vdotq_s32 (q4_0's nibbles made signed bytes first); four positions are
 * reduced together into one vector of exact block sums, then scaled by d_k * d_q and added block
 * after block (multiply, then add: no FMA, as the reference). V: each block widened to floats in
 * registers and summed with vfmaq (fmaf's rounding) by p * d_v, every head of the group sharing
 * every widened block. */
#if defined(__aarch64__)
/* GCC 12 needs the full arch string here ("+dotprod" alone does not enable vdotq_s32) */
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <arm_neon.h>
#include "kernels/arm/arm.h"
#include "kernels/ref.h"
#include "quants/legacy.h"

#define INLINE static inline __attribute__((always_inline))
#define POSITIONS 4   /* K rows scored per pass: one int32x4 of block sums */
#define MAX_HEADS 3   /* query heads sharing each widened V block: 3 x 8 accumulators + 8 values */

typedef struct { int8x16_t lo, hi; } bytes32;   /* values 0..15 and 16..31 of a block */

static size_t block_bytes(int kv) { return kv == PG_KV_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0); }

INLINE pg_half half_at(const char *p) { pg_half h; memcpy(&h, p, 2); return h; }

INLINE float half_to_float(pg_half h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

/* the 32 values of a block as signed bytes: q8_0's as stored, q4_0's nibbles - 8 (low nibbles
 * hold values 0..15, high nibbles 16..31) */
INLINE bytes32 block_bytes32(int kv, const char *block) {
    const int8_t *qs = (const int8_t *)(block + 2);
    if (kv == PG_KV_Q8_0) return (bytes32){vld1q_s8(qs), vld1q_s8(qs + 16)};
    const uint8x16_t raw = vld1q_u8((const uint8_t *)qs);
    const int8x16_t eight = vdupq_n_s8(8);
    return (bytes32){vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))), eight),
                     vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), eight)};
}

/* ---- scores ---------------------------------------------------------------------------------- */

/* d of block `offset` of the POSITIONS rows, as floats */
INLINE float32x4_t row_scales(const char *const rows[POSITIONS], size_t offset) {
    uint16_t d[POSITIONS];
    for (int p = 0; p < POSITIONS; p++) d[p] = half_at(rows[p] + offset);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d)));
}

/* lane p = the exact integer dot of K block p with the query block q */
INLINE int32x4_t block_sums(int kv, const char *const rows[POSITIONS], size_t offset, bytes32 q) {
    int32x4_t m[POSITIONS];
    for (int p = 0; p < POSITIONS; p++) {
        const bytes32 k = block_bytes32(kv, rows[p] + offset);
        m[p] = vdotq_s32(vdotq_s32(vdupq_n_s32(0), k.lo, q.lo), k.hi, q.hi);
    }
    return vpaddq_s32(vpaddq_s32(m[0], m[1]), vpaddq_s32(m[2], m[3]));
}

/* s (n_rep, n_kv): POSITIONS positions per step (past n_kv the last row repeats and is dropped);
 * for each block, in order, every head adds (float)(block sums) * (d_k * d_q) to its scores */
INLINE void scores_quant(int kv, float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                         float scale, float *work) {
    const int nb = head_dim / QK8_0;
    const size_t kb = block_bytes(kv), k_row = (size_t)nb * kb;
    block_q8_0 *qq = (block_q8_0 *)work;
    for (int h = 0; h < n_rep; h++) pg_quantize_act_q8_0(q + (size_t)h * head_dim, qq + (size_t)h * nb, head_dim);
    float32x4_t acc[n_rep];
    for (int j0 = 0; j0 < n_kv; j0 += POSITIONS) {
        const char *rows[POSITIONS];
        for (int p = 0; p < POSITIONS; p++)
            rows[p] = (const char *)k + (size_t)(j0 + p < n_kv ? j0 + p : n_kv - 1) * k_row;
        for (int h = 0; h < n_rep; h++) acc[h] = vdupq_n_f32(0.0f);
        for (int b = 0; b < nb; b++) {
            const size_t off = (size_t)b * kb;
            const float32x4_t dk = row_scales(rows, off);
            for (int h = 0; h < n_rep; h++) {
                const block_q8_0 *qb = qq + (size_t)h * nb + b;
                const bytes32 qv = {vld1q_s8(qb->qs), vld1q_s8(qb->qs + 16)};
                const float32x4_t d = vmulq_f32(dk, vdupq_n_f32(half_to_float(qb->d)));
                acc[h] = vaddq_f32(acc[h], vmulq_f32(vcvtq_f32_s32(block_sums(kv, rows, off, qv)), d));
            }
        }
        for (int h = 0; h < n_rep; h++) {
            float sums[POSITIONS];
            vst1q_f32(sums, vmulq_f32(acc[h], vdupq_n_f32(scale)));
            float *sh = s + (size_t)h * n_kv + j0;
            for (int p = 0; p < POSITIONS && j0 + p < n_kv; p++) sh[p] = sums[p];
        }
    }
}

void pg_attention_scores_q8_0_neon(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work) {
    scores_quant(PG_KV_Q8_0, s, q, n_rep, k, n_kv, head_dim, scale, work);
}

void pg_attention_scores_q4_0_neon(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work) {
    scores_quant(PG_KV_Q4_0, s, q, n_rep, k, n_kv, head_dim, scale, work);
}

/* ---- accumulation ---------------------------------------------------------------------------- */

/* the 32 values of a V block as 8 vectors of floats (exact: small integers) */
INLINE void v_floats(int kv, const char *block, float32x4_t v[8]) {
    const bytes32 b = block_bytes32(kv, block);
    const int16x8_t w[4] = {vmovl_s8(vget_low_s8(b.lo)), vmovl_s8(vget_high_s8(b.lo)),
                            vmovl_s8(vget_low_s8(b.hi)), vmovl_s8(vget_high_s8(b.hi))};
    for (int c = 0; c < 4; c++) {
        v[2 * c] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w[c])));
        v[2 * c + 1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w[c])));
    }
}

/* out (H, 32) of H <= MAX_HEADS heads (row stride head_dim), the columns of one block: v points
 * at that block of row 0, rows v_row bytes apart. One FMA chain per value over the positions in
 * order. */
INLINE void accumulate_block(int kv, float *out, const float *p, int H, const char *v, size_t v_row, int n_kv,
                             int head_dim) {
    float32x4_t acc[MAX_HEADS][8];
    for (int h = 0; h < H; h++)
        for (int c = 0; c < 8; c++) acc[h][c] = vdupq_n_f32(0.0f);
    for (int j = 0; j < n_kv; j++) {
        const char *vj = v + (size_t)j * v_row;
        const float dv = half_to_float(half_at(vj));
        float32x4_t val[8];
        v_floats(kv, vj, val);
        for (int h = 0; h < H; h++) {
            const float pd = p[(size_t)h * n_kv + j] * dv;
            for (int c = 0; c < 8; c++) acc[h][c] = vfmaq_n_f32(acc[h][c], val[c], pd);
        }
    }
    for (int h = 0; h < H; h++)
        for (int c = 0; c < 8; c++) vst1q_f32(out + (size_t)h * head_dim + 4 * c, acc[h][c]);
}

/* out (n_rep, head_dim): heads in groups of MAX_HEADS, block column by block column */
INLINE void accumulate_quant(int kv, float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim) {
    const int nb = head_dim / QK8_0;
    const size_t vb = block_bytes(kv), v_row = (size_t)nb * vb;
    for (int h0 = 0; h0 < n_rep; h0 += MAX_HEADS) {
        const float *ph = p + (size_t)h0 * n_kv;
        for (int b = 0; b < nb; b++) {
            float *o = out + (size_t)h0 * head_dim + (size_t)b * QK8_0;
            const char *vc = (const char *)v + (size_t)b * vb;
            switch (n_rep - h0 < MAX_HEADS ? n_rep - h0 : MAX_HEADS) {
            case 1: accumulate_block(kv, o, ph, 1, vc, v_row, n_kv, head_dim); break;
            case 2: accumulate_block(kv, o, ph, 2, vc, v_row, n_kv, head_dim); break;
            default: accumulate_block(kv, o, ph, 3, vc, v_row, n_kv, head_dim); break;
            }
        }
    }
}

void pg_attention_accumulate_q8_0_neon(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work) {
    (void)work;
    accumulate_quant(PG_KV_Q8_0, out, p, n_rep, v, n_kv, head_dim);
}

void pg_attention_accumulate_q4_0_neon(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work) {
    (void)work;
    accumulate_quant(PG_KV_Q4_0, out, p, n_rep, v, n_kv, head_dim);
}

/* the quantized caches' loops here, F16's and the softmax the reference's */
const pg_attention_kernels pg_attention_kernels_neon = {
    "pg_attention_kernels_neon", 32,
    .scores = {[PG_KV_F16] = pg_attention_scores_f16_ref, [PG_KV_Q8_0] = pg_attention_scores_q8_0_neon,
               [PG_KV_Q4_0] = pg_attention_scores_q4_0_neon},
    .softmax = pg_attention_softmax_ref,
    .accumulate = {[PG_KV_F16] = pg_attention_accumulate_f16_ref, [PG_KV_Q8_0] = pg_attention_accumulate_q8_0_neon,
                   [PG_KV_Q4_0] = pg_attention_accumulate_q4_0_neon},
};

#endif
