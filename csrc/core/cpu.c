/* Instruction-set detection (cpuid + XGETBV on x86-64, HWCAP on aarch64), Linux's leave to use
 * AMX tiles, and the ISA the kernels run (PYGGUF_ISA or the best supported). Which kernel each
 * ISA runs is the dispatch table's business (kernels/dispatch.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/cpu.h"

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

static const char *const ISA_NAMES[PG_ISA_COUNT] = {
    [PG_ISA_SCALAR] = "scalar", [PG_ISA_AVX2] = "avx2", [PG_ISA_AVX512] = "avx512", [PG_ISA_NEON] = "neon"};

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

static int current_isa = -1;   /* racing first calls store the same value */

int pg_isa_active(void) {
    if (current_isa < 0) current_isa = best_isa();
    return current_isa;
}

int pg_isa_set(int isa) {
    if (isa < 0 || isa >= PG_ISA_COUNT || !pg_isa_supported(isa)) return PG_EBADISA;
    current_isa = isa;
    return PG_OK;
}
