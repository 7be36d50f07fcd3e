/* The one kernel dispatch table, keyed by ISA x type (llama.cpp's type_traits_cpu with its
 * `_generic` rule). Each ISA's row names the kernels written for it; an entry a row leaves empty
 * is taken from the next ISA along its fallback chain (avx512 -> avx2 -> scalar, neon -> scalar:
 * a CPU that runs an ISA runs its whole chain), so the scalar row, the portable references,
 * serves whatever no SIMD kernel covers. The forward pass, the repacking at load, and the test
 * and benchmark entry points all read it; nothing else chooses a kernel. */
#ifndef PYGGUF_KERNELS_DISPATCH_H
#define PYGGUF_KERNELS_DISPATCH_H

#include "core/cpu.h"
#include "kernels/kernels.h"

/* A kernel and its function's name (what the tests check and the benchmark prints) */
#define PG_KERNEL(fn_type) struct { fn_type run; const char *name; }

/* The kernels of one type on one ISA; .run is NULL where there is none */
typedef struct {
    PG_KERNEL(pg_gemm_fn) gemm;               /* W's GGUF rows @ A^T (types with a dot product) */
    PG_KERNEL(pg_gemm_r8_fn) gemm_r8;         /* the same from the repacked rows (kernels/repack.h) */
    PG_KERNEL(pg_gemm_r8_fn) gemm_r8_amx;     /* AMX tiles over the repacked rows, taken instead of */
    int amx_min_tokens;                       /* gemm_r8 for batches of at least this many tokens */
    PG_KERNEL(pg_quantize_fn) quantize_act;   /* floats -> this type as an activation format */
} pg_type_kernels;

typedef struct {
    pg_type_kernels type[PG_TYPE_COUNT];
    PG_KERNEL(pg_rmsnorm_fn) rmsnorm;
    PG_KERNEL(pg_swiglu_fn) swiglu;
    PG_KERNEL(pg_geglu_fn) geglu;
    PG_KERNEL(pg_f16_row_fn) f16_row;
    const pg_attention_kernels *attention;    /* see pg_attention_for */
} pg_isa_kernels;

/* The row of an ISA with every fallback filled in; NULL outside the enum. */
const pg_isa_kernels *pg_kernels(int isa);

/* The kernel a repacked matrix runs for a batch of ntok tokens: the AMX tiles where the row has
 * them for that many tokens and `amx` says the process may use them (pg_amx_available), else
 * gemm_r8 (NULL: none, the GGUF rows serve). */
static inline pg_gemm_r8_fn pg_r8_kernel(const pg_type_kernels *k, int ntok, int amx) {
    if (amx && k->gemm_r8_amx.run && ntok >= k->amx_min_tokens) return k->gemm_r8_amx.run;
    return k->gemm_r8.run;
}

/* The attention kernels of an ISA for heads of head_dim: the first along its fallback chain whose
 * loops take that size (the scalar ones take any) */
const pg_attention_kernels *pg_attention_for(int isa, int head_dim);

#endif
