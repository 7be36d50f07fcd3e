/* The AVX-512 primitives the x86 kernel families are written over (legacy_common.h,
 * float_gemm.h), for a translation unit under `#pragma GCC target` with AVX-512 F/BW/VL/VNNI. The
 * integer dot is exact either way and every output sees the same float operations in the same
 * order, so the kernels built over these give the AVX2 ones' bits (which the tests check where
 * the CPU has both). */
#ifndef PYGGUF_X86_AVX512_H
#define PYGGUF_X86_AVX512_H

#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>

/* u8 x s8 dot, 4 products per int32 lane summed without saturation: one vpdpbusd on 256-bit
 * vectors (a 32-value block is 32 bytes: one ymm, as llama.cpp's VNNI path) */
static inline __attribute__((always_inline)) __m256i pg_dot_u8s8(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

#define PG_ISA_SUFFIX avx512   /* names the exported pg_gemm_<t>_avx512 */
#define PG_TILE_TOKENS 4       /* tokens per register tile of the float formats (4 rows per tile) */

#endif
