/* The type table: for each tensor type, its block geometry, the activation format its dot
 * product consumes, and its reference functions (ggml's type_traits; which kernel each ISA runs
 * for a type is the dispatch table's, kernels/dispatch.c, as ggml's type_traits_cpu).
 *
 * Naming convention every format file follows (t = f32, f16, bf16, q4_0, ..., q8_K):
 *   pg_quantize_ref_<t>(x, y, n)      floats -> blocks, bit-identical to llama.cpp's reference
 *   pg_dequantize_<t>(x, y, n)        blocks -> floats, bit-identical to gguf-py's dequantizer
 *   pg_vec_dot_ref_<t>(n, s, w, a)    *s = dot(one weight row w, one activation row a)
 */
#ifndef PYGGUF_TRAITS_H
#define PYGGUF_TRAITS_H

#include "quants/blocks.h"

typedef void (*pg_quantize_fn)(const float *x, void *y, int64_t n);
typedef void (*pg_dequantize_fn)(const void *x, float *y, int64_t n);
typedef void (*pg_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);

typedef struct {
    const char *name;
    int64_t blck_size;           /* values per block */
    size_t type_size;            /* bytes per block */
    size_t align;                /* _Alignof the block: its widest field, 2 (fp16) or 4 (float) */
    enum pg_type act_type;       /* activation format the dot product consumes */
    pg_quantize_fn quantize_ref;  /* weights; activations take the dispatch table's quantize_act */
    pg_dequantize_fn dequantize;
    pg_vec_dot_fn vec_dot_ref;
} pg_type_traits;

/* NULL for an unknown or unsupported type id. */
const pg_type_traits *pg_traits(int type);

/* Bytes taken by n values of a type (n must be a multiple of its block size). */
static inline size_t pg_row_bytes(const pg_type_traits *t, int64_t n) {
    return (size_t)(n / t->blck_size) * t->type_size;
}

/* ---- fp16 / bf16 conversion shared by every format ---- */
#include <string.h>
static inline float pg_fp32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t pg_fp32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* binary16 -> binary32, exact for every input including subnormals, inf and nan */
static inline float pg_half_to_float(pg_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return pg_fp32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0) return pg_fp32_from_bits(sign);
        float f = (float)mant * 5.9604644775390625e-8f; /* mant * 2^-24 */
        return sign ? -f : f;
    }
    return pg_fp32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

/* binary32 -> binary16, round to nearest even (what F16C's vcvtps2ph and ggml do) */
static inline pg_half pg_float_to_half(float f) {
    uint32_t x = pg_fp32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (pg_half)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (pg_half)(sign | 0x7c00);          /* rounds to inf */
    if (ax < 0x38800000u) {                                           /* subnormal or zero */
        float a = pg_fp32_from_bits(ax);
        /* adding 0.5 moves the value so the FPU's nearest-even rounding lands on 2^-24 steps */
        uint32_t r = pg_fp32_to_bits(a + 0.5f) - 0x3f000000u;
        return (pg_half)(sign | r);
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    ax += 0xc8000fffu + mant_odd;                                     /* rebias exp, round */
    return (pg_half)(sign | (ax >> 13));
}

/* Round to nearest, ties to even, for |f| <= 2^22: adding 1.5*2^23 puts the integer in the low
 * mantissa bits (llama.cpp's nearest_int; identical results are the point). */
static inline int pg_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float pg_bf16_to_float(pg_bf16 h) { return pg_fp32_from_bits((uint32_t)h << 16); }

/* round to nearest even; NaN stays a quiet NaN (as ggml) */
static inline pg_bf16 pg_float_to_bf16(float f) {
    uint32_t u = pg_fp32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (pg_bf16)((u >> 16) | 64);
    return (pg_bf16)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

#endif
