/* AVX-512 (F/BW/VL/VNNI) gemm of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 from the GGUF rows: legacy_gguf.h over
 * AVX-512's primitives (avx512.h), the AVX2 kernels' bits. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#include "kernels/x86/avx512.h"
#include "kernels/x86/legacy_gguf.h"
#endif
