/* The repacked 8-row layout of Q4_0 / Q4_1 / Q8_0, read by the x86 gemm_r8 kernels, described
 * here once. Rows go in groups of 8 (the last group padded with copies of its first row); per
 * block of 32 values, the 8 rows' fp16 d (then, for Q4_1, their 8 fp16 m), then the quant bytes
 * as dwords interleaved across the rows: dword j of row r at byte 32*j + 4*r after the scales.
 * A Q4 row's dword j holds its GGUF qs bytes 4j..4j+3 (values 4j.. in the low nibbles, 16+4j..
 * in the high ones); a Q8_0 row's dword j holds values 4j..4j+3. One broadcast activation dword
 * thus meets 8 rows, and a group block takes the bytes of 8 GGUF blocks. The model repacks the
 * matrices whose ISA has a gemm_r8 kernel at load (model/weights.c). */
#ifndef PYGGUF_KERNELS_REPACK_H
#define PYGGUF_KERNELS_REPACK_H

#include <stdint.h>
#include <stddef.h>

/* Bytes pg_repack_r8 writes for nrows rows of n values; 0 if the type has no repacked layout
 * or n is not a multiple of 32. */
size_t pg_repack_r8_bytes(int type, int64_t n, int nrows);

/* W (nrows rows of n values, GGUF blocks, w_stride bytes apart) -> out (pg_repack_r8_bytes) */
int pg_repack_r8(int type, int64_t n, const void *w, size_t w_stride, int nrows, void *out, size_t out_bytes);

/* A GGUF block's bytes, the fp16 halves leading it (d, or d and m) and its quant bytes; 0 where
 * the type has no repacked layout */
size_t pg_r8_block_bytes(int type, int *halves, size_t *qbytes);

#endif
