/* The binary16 GELU table lookups of the x86 GEGLU kernels (geglu_avx2.c, geglu_avx512.c). The
 * entries are read with scalar loads, four to an SSE register: on Zen 3 that took 0.54 ns a value
 * against 0.65 for vgatherdps, over 2048 x 64 gates (the rounding to binary16, the product with
 * up and the clamps included in both). Include only from a file compiled for AVX or later. */
#ifndef PYGGUF_X86_GELU_LOOKUP_H
#define PYGGUF_X86_GELU_LOOKUP_H

#include <stdint.h>
#include <immintrin.h>

/* gelu (65536 floats, pg_gelu_table), h (4 binary16 bit patterns) -> the 4 entries */
static inline __m128 pg_gelu_lookup4(const float *gelu, const uint16_t *h) {
    return _mm_setr_ps(gelu[h[0]], gelu[h[1]], gelu[h[2]], gelu[h[3]]);
}

#endif
