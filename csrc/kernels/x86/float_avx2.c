/* AVX2 + FMA + F16C gemm of F32 F16 BF16 (float_gemm.h, with AVX2's tile of 4 rows x 4 tokens). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include "kernels/x86/avx2.h"
#include "kernels/x86/float_gemm.h"
#endif
