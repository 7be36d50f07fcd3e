/* Every K-quant super-block, unpacked into one common form that the reference dot product and
 * every ISA's gemm consume:
 *     value i (group k = i/16) = d * sc[k] * q[i] + dm * mn[k],   q[i] unsigned (0..63)
 * so that against a Q8_K block a (values ad * a[i], group sums bsum[k]):
 *     dot = ad * (d * I + dm * M),  I = sum_k sc[k] * sum_{i in k} q[i]*a[i],  M = sum_k mn[k]*bsum[k].
 * I and M are exact int32; the float work is one or two FMAs per super-block:
 *     two-term formats (Q2_K, Q4_K, Q5_K: a min per sub-block, its own fp16 dmin)
 *         acc = fma(d*ad, I, acc); acc = fma(dm*ad, M, acc)
 *     one-term formats (Q3_K, Q6_K: a fixed offset, folded into the integer)
 *         acc = fma(d*ad, I + M, acc)
 * The chain runs super-block by super-block for each (row, token), so every SIMD kernel that
 * computes I and M exactly and keeps this order gives the reference's bits. */
#ifndef PYGGUF_KQUANT_UNPACK_H
#define PYGGUF_KQUANT_UNPACK_H

#include <math.h>
#include "quants/kquant_scales.h"

#define PG_KGROUPS (QK_K / 16)

typedef struct {
    uint8_t q[QK_K];
    int16_t sc[PG_KGROUPS];
    int16_t mn[PG_KGROUPS];
    float d, dm;
} pg_ksb;

/* Q2_K: q = 2 bits; 4-bit scale and 4-bit min per group of 16. */
static inline void pg_unpack_q2_K(const block_q2_K *b, pg_ksb *u) {
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++)
                u->q[128 * h + 32 * s + l] = (b->qs[32 * h + l] >> (2 * s)) & 3;
    for (int k = 0; k < PG_KGROUPS; k++) {
        u->sc[k] = b->scales[k] & 0xF;
        u->mn[k] = -(int16_t)(b->scales[k] >> 4);
    }
    u->d = pg_half_to_float(b->d);
    u->dm = pg_half_to_float(b->dmin);
}

/* Q3_K: q = 2 low bits | high bit << 2 (0..7), value d * s * (q - 4). */
static inline void pg_unpack_q3_K(const block_q3_K *b, pg_ksb *u) {
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) {
                int low = (b->qs[32 * h + l] >> (2 * s)) & 3;
                int high = (b->hmask[l] >> (4 * h + s)) & 1;
                u->q[128 * h + 32 * s + l] = (uint8_t)(low | (high << 2));
            }
    int8_t sc[PG_KGROUPS];
    pg_q3k_unpack_scales(b->scales, sc);
    for (int k = 0; k < PG_KGROUPS; k++) {
        u->sc[k] = sc[k];
        u->mn[k] = (int16_t)(-4 * sc[k]);
    }
    u->d = u->dm = pg_half_to_float(b->d);
}

/* Q4_K/Q5_K: the 12 packed bytes of 6-bit scales and mins, one per sub-block of 32 (two groups
 * of 16 each), and the two super-block factors. */
static inline void pg_unpack_k4_scales(const uint8_t scales[K_SCALE_SIZE], pg_half d, pg_half dmin, pg_ksb *u) {
    uint8_t sc[8], m[8];
    pg_k4_unpack_scales(scales, sc, m);
    for (int k = 0; k < PG_KGROUPS; k++) {
        u->sc[k] = sc[k / 2];
        u->mn[k] = -(int16_t)m[k / 2];
    }
    u->d = pg_half_to_float(d);
    u->dm = pg_half_to_float(dmin);
}

/* Q4_K: q = nibble; 6-bit scale and min per sub-block of 32 (two groups). */
static inline void pg_unpack_q4_K(const block_q4_K *b, pg_ksb *u) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            u->q[64 * c + l] = b->qs[32 * c + l] & 0xF;
            u->q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
    pg_unpack_k4_scales(b->scales, b->d, b->dmin, u);
}

/* Q5_K: as Q4_K with a fifth bit from qh (bit 2c for the low nibbles of chunk c, 2c+1 high). */
static inline void pg_unpack_q5_K(const block_q5_K *b, pg_ksb *u) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int h0 = (b->qh[l] >> (2 * c)) & 1, h1 = (b->qh[l] >> (2 * c + 1)) & 1;
            u->q[64 * c + l] = (uint8_t)((b->qs[32 * c + l] & 0xF) | (h0 << 4));
            u->q[64 * c + 32 + l] = (uint8_t)((b->qs[32 * c + l] >> 4) | (h1 << 4));
        }
    pg_unpack_k4_scales(b->scales, b->d, b->dmin, u);
}

/* Q6_K: q = 4 low bits (ql) | 2 high bits (qh) << 4 (0..63), value d * sc * (q - 32). */
static inline void pg_unpack_q6_K(const block_q6_K *b, pg_ksb *u) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *ql = b->ql + 64 * h;
            uint8_t qh = b->qh[32 * h + l];
            uint8_t *q = u->q + 128 * h;
            q[l] = (uint8_t)((ql[l] & 0xF) | ((qh & 3) << 4));
            q[32 + l] = (uint8_t)((ql[32 + l] & 0xF) | (((qh >> 2) & 3) << 4));
            q[64 + l] = (uint8_t)((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
            q[96 + l] = (uint8_t)((ql[32 + l] >> 4) | (((qh >> 6) & 3) << 4));
        }
    for (int k = 0; k < PG_KGROUPS; k++) {
        u->sc[k] = b->scales[k];
        u->mn[k] = (int16_t)(-32 * b->scales[k]);
    }
    u->d = u->dm = pg_half_to_float(b->d);
}

/* Exact integer parts of one super-block's dot with a Q8_K block. */
static inline void pg_ksb_dot_ints(const pg_ksb *u, const block_q8_K *a, int32_t *I, int32_t *M) {
    int32_t isum = 0, msum = 0;
    for (int k = 0; k < PG_KGROUPS; k++) {
        int32_t g = 0;
        for (int i = 16 * k; i < 16 * k + 16; i++) g += (int32_t)u->q[i] * a->qs[i];
        isum += u->sc[k] * g;
        msum += u->mn[k] * a->bsums[k];
    }
    *I = isum;
    *M = msum;
}

/* The float step of the chain (see the top of this file). */
static inline float pg_ksb_accumulate(float acc, int two_terms, float d, float dm, float ad,
                                      int32_t I, int32_t M) {
    if (two_terms) {
        acc = fmaf(d * ad, (float)I, acc);
        return fmaf(dm * ad, (float)M, acc);
    }
    return fmaf(d * ad, (float)(I + M), acc);
}

/* The reference dot of a whole row: the oracle every gemm must reproduce bit for bit. */
#define PG_KQUANT_VEC_DOT_REF(t, two_terms)                                                   \
    void pg_vec_dot_ref_##t(int64_t n, float *s, const void *w, const void *a) {              \
        const block_##t *x = w;                                                                \
        const block_q8_K *y = a;                                                               \
        float acc = 0.0f;                                                                      \
        pg_ksb u;                                                                              \
        for (int64_t i = 0; i < n / QK_K; i++) {                                               \
            int32_t I, M;                                                                      \
            pg_unpack_##t(&x[i], &u);                                                          \
            pg_ksb_dot_ints(&u, &y[i], &I, &M);                                                \
            acc = pg_ksb_accumulate(acc, two_terms, u.d, u.dm, y[i].d, I, M);                  \
        }                                                                                      \
        *s = acc;                                                                              \
    }

#define PG_Q2_K_TWO_TERMS 1
#define PG_Q3_K_TWO_TERMS 0
#define PG_Q4_K_TWO_TERMS 1
#define PG_Q5_K_TWO_TERMS 1
#define PG_Q6_K_TWO_TERMS 0

#endif
