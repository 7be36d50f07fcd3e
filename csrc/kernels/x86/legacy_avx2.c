/* AVX2 + FMA + F16C gemm of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 from the GGUF rows (integer dots against
 * Q8_0/Q8_1 activations): legacy_gguf.h over AVX2's primitives (avx2.h). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include "kernels/x86/avx2.h"
#include "kernels/x86/legacy_gguf.h"
#endif
