/* AVX2 + FMA + F16C gemm kernels of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (integer dots against Q8_0/Q8_1
 * activations) and of F32 F16 BF16. The kernels themselves are in legacy_x86.h; this file
 * supplies AVX2's u8 x s8 dot (no VNNI here: vpmaddubsw to int16 pairs, then vpmaddwd to int32)
 * and the float formats' tile of 4 rows x 4 tokens. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>

/* |u| <= 128 and |s| <= 127 keep each int16 pair sum within 2*128*127 = 32512: no saturation */
static inline __attribute__((always_inline)) __m256i pg_dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

#define PG_ISA_SUFFIX avx2
#define PG_AMX 0   /* r8_amx.h's kernel with the tile product in C, for the tests */
#define PG_TILE_TOKENS 4
#include "kernels/x86/legacy_x86.h"

#endif
