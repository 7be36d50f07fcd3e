/* The dispatch table (kernels/dispatch.h): one row per ISA, written out below with only the
 * kernels that ISA has, then completed once from the rows along its fallback chain. */
#include <pthread.h>
#include <string.h>
#include "kernels/dispatch.h"
#include "kernels/ref.h"
#if defined(__x86_64__)
#include "kernels/x86/x86.h"
#endif
#if defined(__aarch64__)
#include "kernels/arm/arm.h"
#endif

/* a CPU that runs an ISA runs every ISA after it in its chain (AVX-512 detection requires AVX2) */
static const int FALLBACK[PG_ISA_COUNT] = {
    [PG_ISA_SCALAR] = -1, [PG_ISA_AVX2] = PG_ISA_SCALAR, [PG_ISA_AVX512] = PG_ISA_AVX2, [PG_ISA_NEON] = PG_ISA_SCALAR};

#define K(fn) {fn, #fn}
#define GEMM(t, isa) .gemm = K(pg_gemm_##t##_##isa)
#define R8(t, isa) .gemm_r8 = K(pg_gemm_##t##_r8_##isa)
#define ACT(fn) .quantize_act = K(fn)

/* The references: every type's activation quantizer is its reference one, but for llama.cpp's
 * run-time rounding of Q8_0/Q8_1 (kernels/ref.h) */
static const pg_isa_kernels SCALAR = {
    .type = {
        [PG_F32] = {GEMM(f32, ref), ACT(pg_quantize_ref_f32)},
        [PG_F16] = {GEMM(f16, ref), ACT(pg_quantize_ref_f16)},
        [PG_BF16] = {GEMM(bf16, ref), ACT(pg_quantize_ref_bf16)},
        [PG_Q4_0] = {GEMM(q4_0, ref), ACT(pg_quantize_ref_q4_0)},
        [PG_Q4_1] = {GEMM(q4_1, ref), ACT(pg_quantize_ref_q4_1)},
        [PG_Q5_0] = {GEMM(q5_0, ref), ACT(pg_quantize_ref_q5_0)},
        [PG_Q5_1] = {GEMM(q5_1, ref), ACT(pg_quantize_ref_q5_1)},
        [PG_Q8_0] = {GEMM(q8_0, ref), ACT(pg_quantize_act_q8_0)},
        [PG_Q8_1] = {ACT(pg_quantize_act_q8_1)},
        [PG_Q2_K] = {GEMM(q2_K, ref), ACT(pg_quantize_ref_q2_K)},
        [PG_Q3_K] = {GEMM(q3_K, ref), ACT(pg_quantize_ref_q3_K)},
        [PG_Q4_K] = {GEMM(q4_K, ref), ACT(pg_quantize_ref_q4_K)},
        [PG_Q5_K] = {GEMM(q5_K, ref), ACT(pg_quantize_ref_q5_K)},
        [PG_Q6_K] = {GEMM(q6_K, ref), ACT(pg_quantize_ref_q6_K)},
        [PG_Q8_K] = {ACT(pg_quantize_ref_q8_K)},
    },
    .rmsnorm = K(pg_rmsnorm_ref),
    .swiglu = K(pg_swiglu_ref),
    .geglu = K(pg_geglu_ref),
    .f16_row = K(pg_f16_row_ref),
    .attention = &pg_attention_kernels_ref,
};

#if defined(__x86_64__)
/* AVX2 + FMA + F16C: a gemm for every type, the repacked layouts the model repacks (Q4_0, Q4_1,
 * Q8_0 in 8-row groups, Q4_K and Q5_K sliced; kernels/repack.h), and the forward pass's other
 * kernels */
static const pg_isa_kernels AVX2 = {
    .type = {
        [PG_F32] = {GEMM(f32, avx2)},
        [PG_F16] = {GEMM(f16, avx2)},
        [PG_BF16] = {GEMM(bf16, avx2)},
        [PG_Q4_0] = {GEMM(q4_0, avx2), R8(q4_0, avx2)},
        [PG_Q4_1] = {GEMM(q4_1, avx2), R8(q4_1, avx2)},
        [PG_Q5_0] = {GEMM(q5_0, avx2)},
        [PG_Q5_1] = {GEMM(q5_1, avx2)},
        [PG_Q8_0] = {GEMM(q8_0, avx2), R8(q8_0, avx2), ACT(pg_quantize_act_q8_0_avx2)},
        [PG_Q8_1] = {ACT(pg_quantize_act_q8_1_avx2)},
        [PG_Q2_K] = {GEMM(q2_K, avx2)},
        [PG_Q3_K] = {GEMM(q3_K, avx2)},
        [PG_Q4_K] = {GEMM(q4_K, avx2), R8(q4_K, avx2)},
        [PG_Q5_K] = {GEMM(q5_K, avx2), R8(q5_K, avx2)},
        [PG_Q6_K] = {GEMM(q6_K, avx2)},
        [PG_Q8_K] = {ACT(pg_quantize_act_q8_K_avx2)},
    },
    .rmsnorm = K(pg_rmsnorm_avx2),
    .swiglu = K(pg_swiglu_avx2),
    .geglu = K(pg_geglu_avx2),
    .f16_row = K(pg_f16_row_avx2),
    .attention = &pg_attention_kernels_avx2,
};

/* The model gives Q8_0 batches of at least this many tokens to the AMX tiles, and no Q4 batch.
 * Measured single-threaded on a lent Sapphire Rapids class Xeon, GMAC/s of AMX vs the AVX-512
 * r8 kernel, rows per call in brackets (the model calls in chunks), the whole matrix elsewhere:
 *   Q8_0 49152x576 (the LM head), 8 tokens: 104 vs 66 (64 rows), 80 vs 60 (16 rows);
 *        1536x576, 4 tokens: 36 vs 34; 2 tokens: 20 vs 39.
 *   Q4_1 1536x576, 34 tokens: 64 vs 73 (16 rows), 81 vs 75 (64), 90 vs 75 (whole);
 *        192 tokens: 61 vs 77 (16 rows), 99 vs 78 (whole); 8 tokens: 36 vs 45 (16 rows).
 * A Q4 block must be unpacked before its tile loads it, and each call decodes its tokens'
 * activation scales and loads a tile configuration per 16 tokens, which a 16-row chunk does not
 * repay (prefill chunks are 16 rows). The tests run the Q4 tile kernels too (testing/). */
#define AMX(t, min_tokens) .gemm_r8_amx = K(pg_gemm_##t##_r8_amx), .amx_min_tokens = (min_tokens)

/* AVX-512 F/BW/VL/VNNI: the gemms and the repacked gemms (the same bits as AVX2's) and GEGLU
 * (16 lanes, the reference's bits); the rest is AVX2's */
static const pg_isa_kernels AVX512 = {
    .type = {
        [PG_F32] = {GEMM(f32, avx512)},
        [PG_F16] = {GEMM(f16, avx512)},
        [PG_BF16] = {GEMM(bf16, avx512)},
        [PG_Q4_0] = {GEMM(q4_0, avx512), R8(q4_0, avx512)},
        [PG_Q4_1] = {GEMM(q4_1, avx512), R8(q4_1, avx512)},
        [PG_Q5_0] = {GEMM(q5_0, avx512)},
        [PG_Q5_1] = {GEMM(q5_1, avx512)},
        [PG_Q8_0] = {GEMM(q8_0, avx512), R8(q8_0, avx512), AMX(q8_0, 8)},
        [PG_Q2_K] = {GEMM(q2_K, avx512)},
        [PG_Q3_K] = {GEMM(q3_K, avx512)},
        [PG_Q4_K] = {GEMM(q4_K, avx512)},
        [PG_Q5_K] = {GEMM(q5_K, avx512)},
        [PG_Q6_K] = {GEMM(q6_K, avx512)},
    },
    .geglu = K(pg_geglu_avx512),
};
#else
static const pg_isa_kernels AVX2, AVX512;   /* not built: everything falls back to scalar */
#endif

#if defined(__aarch64__)
/* NEON with the dot-product extension: the gemms, GEGLU, attention over a quantized cache */
static const pg_isa_kernels NEON = {
    .type = {
        [PG_F32] = {GEMM(f32, neon)},
        [PG_F16] = {GEMM(f16, neon)},
        [PG_BF16] = {GEMM(bf16, neon)},
        [PG_Q4_0] = {GEMM(q4_0, neon)},
        [PG_Q4_1] = {GEMM(q4_1, neon)},
        [PG_Q5_0] = {GEMM(q5_0, neon)},
        [PG_Q5_1] = {GEMM(q5_1, neon)},
        [PG_Q8_0] = {GEMM(q8_0, neon)},
        [PG_Q2_K] = {GEMM(q2_K, neon)},
        [PG_Q3_K] = {GEMM(q3_K, neon)},
        [PG_Q4_K] = {GEMM(q4_K, neon)},
        [PG_Q5_K] = {GEMM(q5_K, neon)},
        [PG_Q6_K] = {GEMM(q6_K, neon)},
    },
    .geglu = K(pg_geglu_neon),
    .attention = &pg_attention_kernels_neon,
};
#else
static const pg_isa_kernels NEON;   /* not built: everything falls back to scalar */
#endif

static const pg_isa_kernels *const WRITTEN[PG_ISA_COUNT] = {
    [PG_ISA_SCALAR] = &SCALAR, [PG_ISA_AVX2] = &AVX2, [PG_ISA_AVX512] = &AVX512, [PG_ISA_NEON] = &NEON};

static pg_isa_kernels resolved[PG_ISA_COUNT];
static pthread_once_t resolved_once = PTHREAD_ONCE_INIT;

#define FILL(slot) \
    if (!dst->slot.run) dst->slot = src->slot

/* the empty entries of dst taken from src */
static void fill_from(pg_isa_kernels *dst, const pg_isa_kernels *src) {
    for (int t = 0; t < PG_TYPE_COUNT; t++) {
        FILL(type[t].gemm);
        FILL(type[t].gemm_r8);
        FILL(type[t].quantize_act);
        if (!dst->type[t].gemm_r8_amx.run) {
            dst->type[t].gemm_r8_amx = src->type[t].gemm_r8_amx;
            dst->type[t].amx_min_tokens = src->type[t].amx_min_tokens;
        }
    }
    FILL(rmsnorm);
    FILL(swiglu);
    FILL(geglu);
    FILL(f16_row);
    if (!dst->attention) dst->attention = src->attention;
}

static void resolve(void) {
    pg_ref_init();
    for (int isa = 0; isa < PG_ISA_COUNT; isa++) {
        resolved[isa] = *WRITTEN[isa];
        for (int next = FALLBACK[isa]; next >= 0; next = FALLBACK[next]) fill_from(&resolved[isa], WRITTEN[next]);
    }
}

const pg_isa_kernels *pg_kernels(int isa) {
    if (isa < 0 || isa >= PG_ISA_COUNT) return NULL;
    pthread_once(&resolved_once, resolve);
    return &resolved[isa];
}

const pg_attention_kernels *pg_attention_for(int isa, int head_dim) {
    pthread_once(&resolved_once, resolve);
    for (; isa >= 0 && isa < PG_ISA_COUNT; isa = FALLBACK[isa]) {
        const pg_attention_kernels *k = WRITTEN[isa]->attention;
        if (k && head_dim % k->head_dim_multiple == 0) return k;
    }
    return &pg_attention_kernels_ref;
}
