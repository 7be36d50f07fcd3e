/* AVX-512 (F/BW/VL/VNNI) gemm of Q4_0 Q4_1 Q8_0 over the repacked 8-row layout (r8_gemm.h, the
 * AVX2 kernels' bits), and the AMX-INT8 tile kernels over it (r8_amx.h with PG_AMX 1; Sapphire
 * Rapids and later, where Linux grants the tiles: pg_amx_available). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")
#include "kernels/x86/avx512.h"
#include "kernels/x86/r8_gemm.h"
#define PG_AMX 1
#include "kernels/x86/r8_amx.h"
#endif
