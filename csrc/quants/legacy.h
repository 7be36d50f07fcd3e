/* Helpers shared by the 32-value ("legacy") formats: the block statistics their reference
 * quantizers start from, and the fifth-bit layout of Q5_0/Q5_1. Every ISA file decodes the
 * same layout, so it is written down once here. */
#ifndef PYGGUF_LEGACY_H
#define PYGGUF_LEGACY_H

#include <math.h>
#include <float.h>
#include "quants/traits.h"

/* The 32-value formats as the gemm kernels name them (one kernel body serves all five). */
enum { KIND_Q4_0, KIND_Q4_1, KIND_Q5_0, KIND_Q5_1, KIND_Q8_0 };

static inline size_t kind_block_bytes(int kind) {
    switch (kind) {
    case KIND_Q4_0: return sizeof(block_q4_0);
    case KIND_Q4_1: return sizeof(block_q4_1);
    case KIND_Q5_0: return sizeof(block_q5_0);
    case KIND_Q5_1: return sizeof(block_q5_1);
    default:        return sizeof(block_q8_0);
    }
}
/* Q4_1 and Q5_1 carry a min (their activations are Q8_1, with the block sum) */
static inline int kind_has_min(int kind) { return kind == KIND_Q4_1 || kind == KIND_Q5_1; }
/* the offset subtracted from unsigned quants: q4_0 and q5_0 are stored as q + 8 / q + 16 */
static inline int kind_offset(int kind) { return kind == KIND_Q4_0 ? 8 : kind == KIND_Q5_0 ? 16 : 0; }

/* The value of largest magnitude, sign kept (the first one wins a tie, as in ggml). */
static inline float pg_signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    }
    return max;
}

static inline float pg_absmax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    return amax;
}

static inline void pg_min_max(const float *x, int n, float *min, float *max) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *min = lo; *max = hi;
}

/* Q5_*: value j (0..31) of a block takes bit j of the little-endian 32-bit qh as its 5th bit;
 * values 0..15 sit in the low nibbles of qs, values 16..31 in the high nibbles. */
static inline uint32_t pg_q5_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}
static inline int pg_q5_value(const uint8_t *qs, uint32_t qh, int j) {
    int nib = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    return nib | (int)((qh >> j) & 1) << 4;
}
static inline int pg_q4_value(const uint8_t *qs, int j) {
    return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

#endif
