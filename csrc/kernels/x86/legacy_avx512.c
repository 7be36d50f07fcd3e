/* AVX-512 (F/BW/VL/VNNI) gemm kernels of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 and F32 F16 BF16. Same
 * kernels as AVX2 (legacy_x86.h) with the u8 x s8 dot done by one vpdpbusd on 256-bit vectors
 * (a legacy block is 32 bytes: one ymm, as llama.cpp's VNNI path) and, with 32 vector
 * registers, the float formats' tile of 4 rows x 4 tokens. The integer dot is exact either way and every output
 * sees the same float operations in the same order, so results equal the AVX2 kernels' bit
 * for bit (which the tests check where the CPU has both). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>

/* vpdpbusd: 4 u8*s8 products per int32 lane summed without saturation */
static inline __attribute__((always_inline)) __m256i pg_dot_u8s8(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

#define PG_ISA_SUFFIX avx512
#define PG_AMX 1   /* the AMX tile kernels of the repacked layout (isa/r8_amx.h) */
#define PG_TILE_TOKENS 4
#include "kernels/x86/legacy_x86.h"

#endif
