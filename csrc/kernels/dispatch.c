/* Instruction-set detection (cpuid + XGETBV on x86-64, HWCAP on aarch64) and the table of
 * gemm kernels per (ISA, type). ISA files export pg_gemm_<type>_<isa>; one not written yet is
 * a weak NULL and the table falls back to a lower ISA, then to the reference. */
#include <stdlib.h>
#include <string.h>
#include "kernels/dispatch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
static int detect_x86(int isa) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0;                     /* OS saves XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1;
    if (isa == PG_ISA_AVX2) return avx2 && fma && f16c;
    int avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int vnni = (c >> 11) & 1;
    int os_zmm = (xcr0 & 0xe6) == 0xe6;                    /* opmask, ZMM_Hi256, Hi16_ZMM */
    return isa == PG_ISA_AVX512 && avx2 && fma && f16c && avx512f && avx512bw && avx512vl && vnni && os_zmm;
}
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

int pg_isa_supported(int isa) {
    if (isa == PG_ISA_SCALAR) return 1;
#if defined(__x86_64__) || defined(__i386__)
    /* cpuid once per ISA: in a virtual machine each one traps to the hypervisor (measured: a
     * per-matmul check made a decode step 1.6x slower). Racing first calls store the same value. */
    static int detected[PG_ISA_COUNT] = {-1, -1, -1, -1};
    if (isa == PG_ISA_AVX2 || isa == PG_ISA_AVX512) {
        if (detected[isa] < 0) detected[isa] = detect_x86(isa);
        return detected[isa];
    }
#endif
#if defined(__aarch64__)
    if (isa == PG_ISA_NEON) {
#if defined(__linux__)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
        return 1;
#endif
    }
#endif
    return 0;
}

#if defined(__x86_64__) && defined(__linux__)
#include <unistd.h>
#include <sys/syscall.h>
#define ARCH_REQ_XCOMP_PERM 0x1023   /* Linux: ask for an extended state component */
#define XFEATURE_XTILEDATA 18
/* AMX-TILE and AMX-INT8 in cpuid, the tile state in XCR0, and Linux's leave to use it (a
 * process must ask before its first tile instruction, else that one faults) */
static int detect_amx(void) {
    unsigned a, b, c, d;
    if (!pg_isa_supported(PG_ISA_AVX512) || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
    if (!amx_tile || !amx_int8 || (read_xcr0() & 0x60000) != 0x60000) return 0;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#endif

int pg_amx_available(void) {
#if defined(__x86_64__) && defined(__linux__)
    static int available = -1;   /* racing first calls store the same value */
    if (available < 0) {
        const char *env = getenv("PYGGUF_AMX");
        available = env && strcmp(env, "0") == 0 ? 0 : detect_amx();
    }
    return available;
#else
    return 0;
#endif
}

static const char *ISA_NAMES[PG_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};

const char *pg_isa_name(int isa) {
    return (isa >= 0 && isa < PG_ISA_COUNT) ? ISA_NAMES[isa] : "unknown";
}

static int best_isa(void) {
    const char *forced = getenv("PYGGUF_ISA");
    if (forced && *forced) {
        for (int i = 0; i < PG_ISA_COUNT; i++)
            if (strcmp(forced, ISA_NAMES[i]) == 0 && pg_isa_supported(i)) return i;
        /* an unknown or unsupported name falls through to detection; Python reports it */
    }
    if (pg_isa_supported(PG_ISA_AVX512)) return PG_ISA_AVX512;
    if (pg_isa_supported(PG_ISA_AVX2)) return PG_ISA_AVX2;
    if (pg_isa_supported(PG_ISA_NEON)) return PG_ISA_NEON;
    return PG_ISA_SCALAR;
}

static int current_isa = -1;

int pg_isa_current(void) {
    if (current_isa < 0) current_isa = best_isa();
    return current_isa;
}
int pg_isa_active(void) { return pg_isa_current(); }

int pg_isa_set(int isa) {
    if (isa < 0 || isa >= PG_ISA_COUNT || !pg_isa_supported(isa)) return -4;
    current_isa = isa;
    return 0;
}

/* ---- the gemm table ---------------------------------------------------------------------- */

#define GEMM_ARGS int64_t n, const void *w, size_t w_stride, int nrows, \
                  const void *a, size_t a_stride, int ntok, float *y, size_t ldy

/* Reference gemm: one vec_dot per (row, token), so it meets the tiling contract trivially. */
static void gemm_by_vec_dot(pg_vec_dot_fn dot, GEMM_ARGS) {
    for (int t = 0; t < ntok; t++)
        for (int r = 0; r < nrows; r++)
            dot(n, &y[(size_t)t * ldy + r], (const char *)w + (size_t)r * w_stride,
                (const char *)a + (size_t)t * a_stride);
}

#define WEAK __attribute__((weak))
#define DECLARE_GEMMS(t)                                                        \
    extern void pg_vec_dot_ref_##t(int64_t, float *, const void *, const void *) WEAK; \
    static void pg_gemm_##t##_ref(GEMM_ARGS) {                                   \
        gemm_by_vec_dot(pg_vec_dot_ref_##t, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy); \
    }                                                                            \
    extern void pg_gemm_##t##_avx2(GEMM_ARGS) WEAK;                              \
    extern void pg_gemm_##t##_avx512(GEMM_ARGS) WEAK;                            \
    extern void pg_gemm_##t##_neon(GEMM_ARGS) WEAK;

DECLARE_GEMMS(f32) DECLARE_GEMMS(f16) DECLARE_GEMMS(bf16)
DECLARE_GEMMS(q4_0) DECLARE_GEMMS(q4_1) DECLARE_GEMMS(q5_0) DECLARE_GEMMS(q5_1) DECLARE_GEMMS(q8_0)
DECLARE_GEMMS(q2_K) DECLARE_GEMMS(q3_K) DECLARE_GEMMS(q4_K) DECLARE_GEMMS(q5_K) DECLARE_GEMMS(q6_K)

typedef struct { pg_gemm_fn by_isa[PG_ISA_COUNT]; } gemm_row;

#define GEMMS(id, t) [id] = {{ [PG_ISA_SCALAR] = pg_gemm_##t##_ref, [PG_ISA_AVX2] = pg_gemm_##t##_avx2, \
                               [PG_ISA_AVX512] = pg_gemm_##t##_avx512, [PG_ISA_NEON] = pg_gemm_##t##_neon }}

static const gemm_row GEMM_TABLE[PG_TYPE_COUNT] = {
    GEMMS(PG_F32, f32), GEMMS(PG_F16, f16), GEMMS(PG_BF16, bf16),
    GEMMS(PG_Q4_0, q4_0), GEMMS(PG_Q4_1, q4_1), GEMMS(PG_Q5_0, q5_0), GEMMS(PG_Q5_1, q5_1),
    GEMMS(PG_Q8_0, q8_0),
    GEMMS(PG_Q2_K, q2_K), GEMMS(PG_Q3_K, q3_K), GEMMS(PG_Q4_K, q4_K), GEMMS(PG_Q5_K, q5_K),
    GEMMS(PG_Q6_K, q6_K),
};

pg_gemm_fn pg_gemm_for(int isa, int type) {
    if (type < 0 || type >= PG_TYPE_COUNT || isa < 0 || isa >= PG_ISA_COUNT) return NULL;
    const pg_type_traits *t = pg_traits(type);
    if (!t || !t->vec_dot_ref) return NULL;
    const gemm_row *row = &GEMM_TABLE[type];
    if (row->by_isa[isa]) return row->by_isa[isa];
    if (isa == PG_ISA_AVX512 && row->by_isa[PG_ISA_AVX2]) return row->by_isa[PG_ISA_AVX2];
    return row->by_isa[PG_ISA_SCALAR];
}
