/* Run-time choice of instruction set, and the kernel table for the chosen one. */
#ifndef PYGGUF_DISPATCH_H
#define PYGGUF_DISPATCH_H

#include "quants/traits.h"

enum pg_isa { PG_ISA_SCALAR = 0, PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2, PG_ISA_NEON = 3, PG_ISA_COUNT = 4 };

/* The gemm of a type for one ISA, falling back to the next ISA this CPU also runs
 * (avx512 -> avx2 -> reference). Never NULL for a type whose reference dot exists. */
pg_gemm_fn pg_gemm_for(int isa, int type);

/* The gemm reading the repacked 8-row layout (repack.c, api/repack.h) of a type for one ISA,
 * or NULL where that ISA has none (x86 only: Q4_0, Q4_1, Q8_0). Same contract as pg_gemm_fn,
 * with W given as its repacked groups from the first row on. */
typedef void (*pg_gemm_r8_fn)(int64_t n, const void *packed, int nrows, const void *a, size_t a_stride,
                              int ntok, float *y, size_t ldy);
pg_gemm_r8_fn pg_gemm_r8_for(int isa, int type);

/* The AMX tile gemm of the repacked layout (isa/r8_amx.h) under the avx512 ISA, for the types and
 * batches of ntok tokens where it beats pg_gemm_r8_for's kernel in the model's chunked calls
 * (Q8_0 from 8 tokens); NULL otherwise, or where the CPU lacks AMX-INT8 or the OS does not grant
 * it (pg_amx_available). */
pg_gemm_r8_fn pg_gemm_r8_amx_for(int isa, int type, int ntok);

/* The ISA in use: detected once, overridable with PYGGUF_ISA or pg_isa_set(). */
int pg_isa_current(void);

#endif
