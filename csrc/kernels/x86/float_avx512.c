/* AVX-512 (F/BW/VL/VNNI) gemm of F32 F16 BF16 (float_gemm.h, with AVX-512's tile of 4 rows x 4
 * tokens: the AVX2 kernels' bits). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#include "kernels/x86/avx512.h"
#include "kernels/x86/float_gemm.h"
#endif
