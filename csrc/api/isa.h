/* Instruction sets (cdef'd by cffi). This enum is their one definition: Python reads the values,
 * the count and the names (pg_isa_name) from lib, and the dispatch table (kernels/dispatch.c) is
 * indexed by it. */
#ifndef PYGGUF_API_ISA_H
#define PYGGUF_API_ISA_H

enum pg_isa { PG_ISA_SCALAR = 0, PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2, PG_ISA_NEON = 3, PG_ISA_COUNT = 4 };

/* 1 if this CPU and OS run the ISA (cpuid + XGETBV on x86-64, HWCAP on aarch64; asked once) */
int pg_isa_supported(int isa);
/* The ISA the kernels run: the best this machine supports, or PYGGUF_ISA's if it is supported */
int pg_isa_active(void);
/* Makes the kernels run `isa` from now on; PG_EBADISA where this machine cannot */
int pg_isa_set(int isa);
/* "scalar", "avx2", "avx512", "neon"; "unknown" outside the enum */
const char *pg_isa_name(int isa);
/* 1 where the avx512 ISA may use AMX-INT8 tiles for batches (the CPU has them, Linux grants
 * them, and PYGGUF_AMX is not 0); asked once per process */
int pg_amx_available(void);

#endif
