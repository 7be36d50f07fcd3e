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

/* Q4_K/Q5_K: 8 sub-blocks, each a 6-bit scale and a 6-bit min, packed into 12 bytes:
 * bytes 0-3 scales 0-3 (low 6 bits), 4-7 mins 0-3, 8-11 the low nibbles of scales 4-7 and
 * mins 4-7 (high nibble), whose top 2 bits sit in the top bits of bytes 0-3 and 4-7.
 * Decoded four at a time in little-endian 32-bit words: byte k of sc[0] is scale k, of sc[1]
 * scale 4+k (likewise m). The one decoder of this layout: the reference and every ISA use it. */
static inline void pg_k4_scales_words(const uint8_t s[K_SCALE_SIZE], uint32_t sc[2], uint32_t m[2]) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4);
    memcpy(&w1, s + 4, 4);
    memcpy(&w2, s + 8, 4);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
    sc[0] = w0 & low6;
    m[0] = w1 & low6;
    sc[1] = (w2 & low4) | (((w0 >> 6) & top2) << 4);
    m[1] = ((w2 >> 4) & low4) | (((w1 >> 6) & top2) << 4);
}

static inline void pg_k4_unpack_scales(const uint8_t s[K_SCALE_SIZE], uint8_t sc[8], uint8_t m[8]) {
    uint32_t scw[2], mw[2];
    pg_k4_scales_words(s, scw, mw);
    memcpy(sc, scw, 8);   /* little-endian: byte k of the words is sub-block k */
    memcpy(m, mw, 8);
}

/* Q3_K: 16 six-bit scales stored with a +32 bias: low nibbles in bytes 0-7 (scales 0-7 low
 * nibble, 8-15 high nibble), the top 2 bits of scale j in byte 8 + j%4 at bit 2*(j/4).
 * Decoded in little-endian 32-bit words: byte k of out[i] is scale 4i+k, still biased (0..63).
 * The one decoder of this layout: the reference and every ISA use it. */
static inline void pg_q3k_scales_words(const uint8_t s[12], uint32_t out[4]) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4);
    memcpy(&w1, s + 4, 4);
    memcpy(&w2, s + 8, 4);
    const uint32_t low4 = 0x0f0f0f0fu, low2 = 0x03030303u;
    out[0] = (w0 & low4) | ((w2 & low2) << 4);
    out[1] = (w1 & low4) | (((w2 >> 2) & low2) << 4);
    out[2] = ((w0 >> 4) & low4) | (((w2 >> 4) & low2) << 4);
    out[3] = ((w1 >> 4) & low4) | (((w2 >> 6) & low2) << 4);
}

/* the 16 signed scales, bias removed (-32..31) */
static inline void pg_q3k_unpack_scales(const uint8_t s[12], int8_t sc[16]) {
    uint32_t words[4];
    uint8_t biased[16];
    pg_q3k_scales_words(s, words);
    memcpy(biased, words, 16);
    for (int j = 0; j < 16; j++) sc[j] = (int8_t)(biased[j] - 32);
}

#endif
