/* The AVX2 primitives the x86 kernel families are written over (legacy_common.h, float_gemm.h),
 * for a translation unit under `#pragma GCC target("avx2,fma,f16c")`: the one place AVX2 differs
 * from AVX-512 in those kernels. */
#ifndef PYGGUF_X86_AVX2_H
#define PYGGUF_X86_AVX2_H

#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>

/* u8 x s8 dot, 4 products per int32 lane: no VNNI here, so vpmaddubsw to int16 pairs, then
 * vpmaddwd to int32. |u| <= 128 and |s| <= 127 keep each int16 pair sum within 2*128*127 = 32512:
 * no saturation */
static inline __attribute__((always_inline)) __m256i pg_dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

#define PG_ISA_SUFFIX avx2   /* names the exported pg_gemm_<t>_avx2 */
#define PG_TILE_TOKENS 4     /* tokens per register tile of the float formats (4 rows per tile) */

#endif
