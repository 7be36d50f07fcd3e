/* The repacked layouts, read by the x86 gemm_r8 kernels, described here once.
 *
 * Q4_0 / Q4_1 / Q8_0: the 8-row layout. Rows go in groups of 8 (the last group padded with copies of its first row); per
 * block of 32 values, the 8 rows' fp16 d (then, for Q4_1, their 8 fp16 m), then the quant bytes
 * as dwords interleaved across the rows: dword j of row r at byte 32*j + 4*r after the scales.
 * A Q4 row's dword j holds its GGUF qs bytes 4j..4j+3 (values 4j.. in the low nibbles, 16+4j..
 * in the high ones); a Q8_0 row's dword j holds values 4j..4j+3. One broadcast activation dword
 * thus meets 8 rows, and a group block takes the bytes of 8 GGUF blocks.
 *
 * Q4_K / Q5_K: the sliced layout. Rows stay apart and each super-block keeps its GGUF size and
 * header (d, dmin, the 12 scale bytes); only its quants are reordered, into 8 slices of 32 values
 * that each hold 4 consecutive values of every 32-value sub-block: slice v, byte p = 4j + t holds
 * value 32j + 4v + t (sub-block j). The quants of byte p of every slice thus share one scale, so
 * a kernel adds the slices' maddubs pair sums in int16 (no overflow: 8 x 2 x 15 x 128 < 2^15 for
 * 4 bits, 4 slices at a time for 5 bits) and applies the 8 scales with one madd per super-block
 * instead of one per 32 values; the activation's quants are put in slice order once per call
 * (an 8 x 8 transpose of dwords per super-block). qs byte 32u + p: slice 2u's value in the low
 * nibble, slice 2u+1's in the high one; Q5_K's qh byte p, bit v: the fifth bit of slice v's
 * byte p. A matrix keeps its size, so the model can rewrite its rows where they lie.
 *
 * The model repacks the matrices whose ISA has a gemm_r8 kernel at load (model/weights.c). */
#ifndef PYGGUF_KERNELS_REPACK_H
#define PYGGUF_KERNELS_REPACK_H

#include <stdint.h>
#include <stddef.h>

/* Bytes pg_repack_r8 writes for nrows rows of n values; 0 if the type has no repacked layout
 * or n is not a multiple of its block. */
size_t pg_repack_r8_bytes(int type, int64_t n, int nrows);

/* W (nrows rows of n values, GGUF blocks, w_stride bytes apart) -> out (pg_repack_r8_bytes).
 * For the sliced layout, out may be w itself (w_stride = the row's bytes): it is rewritten in
 * place. */
int pg_repack_r8(int type, int64_t n, const void *w, size_t w_stride, int nrows, void *out, size_t out_bytes);

/* A GGUF block's bytes, the fp16 halves leading it (d, or d and m) and its quant bytes; 0 where
 * the type has no 8-row layout */
size_t pg_r8_block_bytes(int type, int *halves, size_t *qbytes);

/* 1 where the type's repacked layout is the sliced one (Q4_K, Q5_K) */
int pg_repack_is_sliced(int type);

/* Where the sliced layout keeps value i (0..255) of a super-block: slice v = i%32/4, byte
 * p = 4*(i/32) + i%4, at 32v + p */
static inline int pg_sliced_position(int i) { return 32 * (i % 32 / 4) + 4 * (i / 32) + i % 4; }

#endif
