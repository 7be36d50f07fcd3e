/* Optional repacked weight layout of Q4_0 / Q4_1 / Q8_0 for the x86 gemm (cdef'd by cffi: plain
 * declarations only). Rows go in groups of 8 (the last group padded with copies of its first
 * row); per block, the 8 rows' fp16 scales, then their quant bytes interleaved dword by dword,
 * so one broadcast activation dword meets 8 rows. Same size per row as the GGUF layout. The
 * model loader repacks these types on x86 (model/weights.c); other ISAs read the GGUF rows. */

/* Bytes pg_repack_r8 writes for nrows rows of n values; 0 if the type has no repacked layout
 * or n is not a multiple of 32. */
size_t pg_repack_r8_bytes(int type, int64_t n, int nrows);

/* W (nrows rows of n values, GGUF blocks, w_stride bytes apart) -> out (pg_repack_r8_bytes). */
int pg_repack_r8(int type, int64_t n, const void *w, size_t w_stride, int nrows, void *out, size_t out_bytes);

/* y[t*ldy + r] = dot(W row r, A row t) from the repacked W, with isa's kernel (avx2 or avx512;
 * PG_ENOKERNEL elsewhere). Equal bit for bit to pg_gemm of the GGUF rows on the same ISA. */
int pg_gemm_r8(int isa, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
               const void *a, size_t a_stride, int ntok, float *y, size_t ldy);

/* The AMX tile kernel of the repacked layout (x86: Sapphire Rapids and later), any ntok >= 1:
 * real tiles (emulate 0; PG_EBADISA without pg_amx_available) or the same kernel with the tile
 * product computed in C (emulate 1, any AVX2 CPU). Equal bit for bit to pg_gemm_r8. */
int pg_gemm_r8_amx(int emulate, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
                   const void *a, size_t a_stride, int ntok, float *y, size_t ldy);
