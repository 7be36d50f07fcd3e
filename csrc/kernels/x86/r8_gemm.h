/* The x86 gemm of Q4_0 / Q4_1 / Q8_0 over the repacked 8-row layout (kernels/repack.h), written
 * once for the AVX2 and AVX-512 translation units (r8_avx2.c, r8_avx512.c), over the pieces the
 * GGUF-row kernels use (legacy_common.h): each output gets their integer dots and block_step
 * sequence, so the same bits. A repacked block loads whole: no gathering and transposing of 8
 * rows per block. */
#ifndef PYGGUF_X86_R8_GEMM_H
#define PYGGUF_X86_R8_GEMM_H

#include "kernels/x86/legacy_common.h"

#define R8_PREFETCH 2048   /* measured: 1.1-1.5x on DRAM/L3-sized matrices over the hardware prefetcher alone */

PG_INLINE size_t r8_scale_bytes(int kind) { return kind_has_min(kind) ? 32 : 16; }

/* a repacked block's 8 rows' scales: D = their d, M = their m (formats with a min; else 0) */
PG_INLINE void r8_scales(int kind, const uint8_t *blk, __m256 *D, __m256 *M) {
    *D = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
    *M = kind_has_min(kind) ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16))) : _mm256_setzero_ps();
}

/* one repacked 8-row block -> 8 interleaved value vectors (as in quant_panel) and D, M */
PG_INLINE void r8_block(int kind, const uint8_t *blk, __m256i q[8], __m256i *wsgn, __m256 *D, __m256 *M) {
    r8_scales(kind, blk, D, M);
    const uint8_t *qs = blk + r8_scale_bytes(kind);
    if (kind == KIND_Q8_0) {
        for (int k = 0; k < 8; k++) {
            wsgn[k] = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
            q[k] = _mm256_sign_epi8(wsgn[k], wsgn[k]);
        }
        return;
    }
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        q[j] = _mm256_and_si256(v, low);
        q[j + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    }
}

/* G repacked 8-row groups x T tokens, all nb blocks, accumulators in registers: acc[g*T + t]
 * (8 outputs: group g's rows, token t). Each weight column is unpacked once for the T tokens and
 * each activation dword broadcast once for the G groups; the dots are panel_dots' exact int32
 * lanes and every output sees block_step in block order, so y equals the other paths' bits. */
PG_INLINE void r8_tile(int kind, const uint8_t *const grp[2], const int G, int64_t nb, const uint8_t *a,
                       size_t a_stride, const act_scales *pre, size_t pre_stride, const int T, size_t ahead,
                       __m256 acc[8]) {
    const size_t gblock = QROWS * kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const size_t aqs = kind_has_min(kind) ? 4 : 2, sb = r8_scale_bytes(kind);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t ib = 0; ib < nb; ib++) {
        if (ahead)
            for (int g = 0; g < G; g++)
                for (size_t k = 0; k < gblock; k += 64) _mm_prefetch((const char *)grp[g] + ib * gblock + ahead + k, _MM_HINT_T0);
        __m256i s[8];
        PG_UNROLL for (int i = 0; i < G * T; i++) s[i] = _mm256_setzero_si256();
        const uint8_t *qs[2];
        PG_UNROLL for (int g = 0; g < G; g++) qs[g] = grp[g] + ib * gblock + sb;
        PG_UNROLL for (int h = 0; h < 2; h++) {
            PG_UNROLL for (int j = 0; j < 4; j++) {
                __m256i w[2], sg[2];
                PG_UNROLL for (int g = 0; g < G; g++) {
                    if (kind == KIND_Q8_0) {
                        sg[g] = _mm256_loadu_si256((const __m256i *)(qs[g] + 32 * (4 * h + j)));
                        w[g] = _mm256_sign_epi8(sg[g], sg[g]);
                    } else {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs[g] + 32 * j));
                        w[g] = _mm256_and_si256(h ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
                    }
                }
                PG_UNROLL for (int t = 0; t < T; t++) {
                    /* a broadcast from memory costs no ALU slot, where the in-register shuffle
                     * of the panel paths does (measured here: 1.1-1.3x) */
                    const __m256i x = act_dword(a + (size_t)t * a_stride + ib * abytes + aqs + 16 * h, j);
                    PG_UNROLL for (int g = 0; g < G; g++) {
                        const int i = g * T + t;
                        if (kind == KIND_Q8_0) s[i] = _mm256_add_epi32(s[i], pg_dot_u8s8(w[g], _mm256_sign_epi8(x, sg[g])));
                        else s[i] = _mm256_add_epi16(s[i], _mm256_maddubs_epi16(w[g], x));
                        PG_KEEP(s[i]);
                    }
                }
            }
        }
        PG_UNROLL for (int g = 0; g < G; g++) {
            __m256 D, M;
            r8_scales(kind, grp[g] + ib * gblock, &D, &M);
            PG_UNROLL for (int t = 0; t < T; t++) {
                const int i = g * T + t;
                const __m256i dot = kind == KIND_Q8_0 ? s[i] : _mm256_madd_epi16(s[i], ones);
                acc[i] = token_step(kind, acc[i], dot, D, M, NULL, pre + (size_t)t * pre_stride + ib);
            }
        }
    }
}

/* rows of the repacked groups from r0 on: grp[g] = group r0/8 + g (g < G, else the first
 * again), R[g] = how many of its 8 rows are real */
PG_INLINE void r8_groups(int kind, const void *packed, int64_t nb, int nrows, int r0, int G,
                         const uint8_t *grp[2], int R[2]) {
    const size_t gbytes = (size_t)nb * QROWS * kind_block_bytes(kind);
    for (int g = 0; g < 2; g++) {
        grp[g] = (const uint8_t *)packed + (size_t)(r0 / QROWS + (g < G ? g : 0)) * gbytes;
        const int left = nrows - r0 - QROWS * g;
        R[g] = left < 0 ? 0 : left < QROWS ? left : QROWS;
    }
}

/* one token (decode): per group and block, the 8 value vectors decoded and panel_dots */
PG_INLINE void r8_one_token(int kind, int64_t nb, const void *packed, int nrows, const uint8_t *a, float *y) {
    const size_t gblock = QROWS * kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const size_t aqs = kind_has_min(kind) ? 4 : 2;
    for (int r0 = 0; r0 < nrows; r0 += QROWS) {
        const uint8_t *grp[2];
        int R[2];
        r8_groups(kind, packed, nb, nrows, r0, 1, grp, R);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t ib = 0; ib < nb; ib++) {
            const uint8_t *ab = a + ib * abytes;
            const act_block x = load_act(kind, ab);
            __m256i q[8], sg[8];
            __m256 D, M;
            for (size_t k = 0; k < gblock; k += 64)   /* one stream: ask R8_PREFETCH bytes ahead */
                _mm_prefetch((const char *)grp[0] + ib * gblock + R8_PREFETCH + k, _MM_HINT_T0);
            r8_block(kind, grp[0] + ib * gblock, q, sg, &D, &M);
            acc = block_step(kind, acc, panel_dots(kind, q, sg, ab + aqs), D, M, &x);
        }
        store_lanes(acc, R[0], y + r0);
    }
}

/* a few tokens: r8_tile over 2 groups (16 rows) x up to 4 tokens at a time, the tokens' scales
 * decoded once per call */
PG_INLINE void r8_few_tokens(int kind, int64_t nb, const void *packed, int nrows, const uint8_t *a, size_t a_stride,
                             int ntok, float *y, size_t ldy) {
    const size_t gblock = QROWS * kind_block_bytes(kind);
    act_scales table[ACT_TABLE];
    const int chunk = (int)(ACT_TABLE / nb) < ntok ? (int)(ACT_TABLE / nb) : ntok;
    for (int t0 = 0; t0 < ntok; t0 += chunk) {
        const int TT = ntok - t0 < chunk ? ntok - t0 : chunk;
        const uint8_t *at = a + (size_t)t0 * a_stride;
        decode_act_scales(kind, at, a_stride, TT, nb, table);
        for (int r0 = 0; r0 < nrows;) {
            const int G = r0 + QROWS < nrows ? 2 : 1;
            const uint8_t *grp[2];
            int R[2];
            r8_groups(kind, packed, nb, nrows, r0, G, grp, R);
            for (int t = 0; t < TT; t += 4) {
                const int T = TT - t < 4 ? TT - t : 4;
                __m256 acc[8];
                for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
                const uint8_t *att = at + (size_t)t * a_stride;
                const act_scales *pt = table + (size_t)t * nb;
                /* constant G and T, so each tile's loops unroll into registers; the first
                 * pass asks for the next groups' blocks, which the hardware prefetcher does not
                 * see coming from these short runs */
                const size_t ahead = t == 0 ? (size_t)G * nb * gblock : 0;
#define R8_TILE(GG, TTT) r8_tile(kind, grp, GG, nb, att, a_stride, pt, (size_t)nb, TTT, ahead, acc)
                if (G == 2) {
                    switch (T) { case 1: R8_TILE(2, 1); break; case 2: R8_TILE(2, 2); break; case 3: R8_TILE(2, 3); break; default: R8_TILE(2, 4); }
                } else {
                    switch (T) { case 1: R8_TILE(1, 1); break; case 2: R8_TILE(1, 2); break; case 3: R8_TILE(1, 3); break; default: R8_TILE(1, 4); }
                }
#undef R8_TILE
                for (int g = 0; g < G; g++)
                    for (int u = 0; u < T; u++) store_lanes(acc[g * T + u], R[g], y + (size_t)(t0 + t + u) * ldy + r0 + QROWS * g);
            }
            r0 += QROWS * G;
        }
    }
}

/* many tokens: 2-group panels decoded once per QKC-block chunk and every token run over them,
 * as the GGUF path does after its (costlier) unpack */
PG_INLINE void r8_many_tokens(int kind, int64_t nb, const void *packed, int nrows, const uint8_t *a, size_t a_stride,
                              int ntok, float *y, size_t ldy) {
    const size_t gblock = QROWS * kind_block_bytes(kind), abytes = act_block_bytes(kind);
    _Alignas(32) quant_panel panels[2];
    const quant_panel *const P[2] = {&panels[0], &panels[1]};
    for (int r0 = 0; r0 < nrows;) {
        const int G = r0 + QROWS < nrows ? 2 : 1;
        const uint8_t *grp[2];
        int R[2];
        r8_groups(kind, packed, nb, nrows, r0, G, grp, R);
        for (int64_t b0 = 0; b0 < nb; b0 += QKC) {
            const int nc = nb - b0 < QKC ? (int)(nb - b0) : QKC;
            for (int g = 0; g < G; g++)
                for (int c = 0; c < nc; c++)
                    r8_block(kind, grp[g] + (size_t)(b0 + c) * gblock, panels[g].q[c], panels[g].sgn[c], &panels[g].d[c], &panels[g].m[c]);
            panel_all_tokens(kind, P, G, R, nc, a + (size_t)b0 * abytes, a_stride, NULL, 0, ntok, b0 == 0, y + r0, ldy);
        }
        r0 += QROWS * G;
    }
}

/* Up to this many tokens, r8_tile (weights unpacked in registers per 4 tokens) beats decoding
 * panels once for all tokens (measured, 1536x576 Q4_1, over the GGUF-layout panels: 4 tokens
 * 2.0x, 8 1.3-1.4x, 64 0.8x) */
#ifndef R8_FEW_TOKENS
#define R8_FEW_TOKENS 16
#endif

#define PG_R8_NAME(t, isa) PG_CAT3(pg_gemm_##t, _r8_, isa)
/* repacked W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r]. Every path gives each output the
 * GGUF-layout kernel's integer dots and block_step sequence, so the same bits. Each path is a
 * function of its own (as in PG_DEFINE_QUANT_GEMM: inlined together they spill registers). */
#define PG_DEFINE_GEMM_R8(t, kind)                                                                    \
    static __attribute__((noinline)) void PG_CAT3(r8_one_, t, _)(int64_t nb, const void *packed, int nrows, \
                                                                  const void *a, float *y) {                \
        r8_one_token(kind, nb, packed, nrows, a, y);                                                  \
    }                                                                                                 \
    static __attribute__((noinline)) void PG_CAT3(r8_few_, t, _)(PG_GEMM_R8_ARGS) {                       \
        r8_few_tokens(kind, n / 32, packed, nrows, a, a_stride, ntok, y, ldy);                        \
    }                                                                                                 \
    static __attribute__((noinline)) void PG_CAT3(r8_many_, t, _)(PG_GEMM_R8_ARGS) {                      \
        r8_many_tokens(kind, n / 32, packed, nrows, a, a_stride, ntok, y, ldy);                       \
    }                                                                                                 \
    void PG_R8_NAME(t, PG_ISA_SUFFIX)(PG_GEMM_R8_ARGS) {                                                 \
        if (ntok == 1) PG_CAT3(r8_one_, t, _)(n / 32, packed, nrows, a, y);                           \
        else if (ntok <= R8_FEW_TOKENS) PG_CAT3(r8_few_, t, _)(n, packed, nrows, a, a_stride, ntok, y, ldy); \
        else PG_CAT3(r8_many_, t, _)(n, packed, nrows, a, a_stride, ntok, y, ldy);                   \
    }
PG_DEFINE_GEMM_R8(q4_0, KIND_Q4_0)
PG_DEFINE_GEMM_R8(q4_1, KIND_Q4_1)
PG_DEFINE_GEMM_R8(q8_0, KIND_Q8_0)

#endif
