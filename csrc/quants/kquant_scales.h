/* Bit unpacking shared by the K-quant reference files and every ISA file: nearest_int, the
 * 6-bit scale/min pairs of Q4_K/Q5_K and the 6-bit signed scales of Q3_K. One copy only. */
#ifndef PYGGUF_KQUANT_SCALES_H
#define PYGGUF_KQUANT_SCALES_H

#include <string.h>
#include "quants/traits.h"

/* The quantizers must round exactly as llama.cpp's x86-64 build (no fused multiply-add), so
 * contraction is off for every file that includes this header; SIMD code asks for FMA explicitly. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Round to nearest, ties to even, for |f| <= 2^22: adding 1.5*2^23 puts the integer in the low
 * mantissa bits (llama.cpp's nearest_int; identical results are the point). */
static inline int pg_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Q4_K/Q5_K: 8 sub-blocks, each a 6-bit scale and a 6-bit min, packed into 12 bytes:
 * bytes 0-3 scales 0-3 (low 6 bits), 4-7 mins 0-3, 8-11 the low nibbles of scales 4-7 and
 * mins 4-7 (high nibble), whose top 2 bits sit in the top bits of bytes 0-3 and 4-7. */
static inline void pg_k4_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static inline void pg_k4_unpack_scales(const uint8_t s[K_SCALE_SIZE], uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 8; j++) pg_k4_scale_min(s, j, &sc[j], &m[j]);
}

/* Q3_K: 16 six-bit scales stored with a +32 bias: low nibbles in bytes 0-7 (scales 0-7 low
 * nibble, 8-15 high nibble), the top 2 bits of scale j in byte 8 + j%4 at bit 2*(j/4). */
static inline int pg_q3k_scale(const uint8_t s[12], int j) {
    int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | (high << 4)) - 32;
}

static inline void pg_q3k_unpack_scales(const uint8_t s[12], int8_t sc[16]) {
    for (int j = 0; j < 16; j++) sc[j] = (int8_t)pg_q3k_scale(s, j);
}

#endif
