/* AVX2 + FMA + F16C gemm of Q4_0 Q4_1 Q8_0 over the repacked 8-row layout (r8_gemm.h), and the
 * AMX driver with the tile product computed in C (r8_amx.h with PG_AMX 0: any AVX2 CPU, so the
 * tests check everything but the tile instructions everywhere). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include "kernels/x86/avx2.h"
#include "kernels/x86/r8_gemm.h"
#define PG_AMX 0
#include "kernels/x86/r8_amx.h"
#endif
