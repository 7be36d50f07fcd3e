/* K-quant (Q2_K..Q6_K) x Q8_K gemm for AArch64 NEON with the dot-product extension (sdot).
 *
 * W (nrows, n) @ A (ntok, n)^T -> y; register tiles of 8 rows x 1 token or 4 rows x 2 tokens
 * over unpacked super-blocks (kquant_gemm_driver.h), each activation load shared by the tile's
 * rows and each weight load by its tokens. The unpacked quants (0..63) are valid signed bytes,
 * so sdot takes them directly; each 16-value group's 4-lane sums are scaled in int32 (mla by
 * the group scale), reduced once per super-block, and the float chain is the reference's own
 * pg_ksb_accumulate, so results are the reference's bits. */
#if defined(__aarch64__)
#include "quants/kquant_unpack.h"
#include "kernels/kquant_driver.h"
#include "kernels/arm/arm.h"
/* GCC 12 needs the full arch string here ("+dotprod" alone does not enable vdotq_s32) */
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <arm_neon.h>

#define KQ_INLINE static inline __attribute__((always_inline))

#define kq_unpack_q2_K pg_unpack_q2_K
#define kq_unpack_q3_K pg_unpack_q3_K
#define kq_unpack_q4_K pg_unpack_q4_K
#define kq_unpack_q5_K pg_unpack_q5_K
#define kq_unpack_q6_K pg_unpack_q6_K

/* sum_k mn[k] * bsums[k] over the 16 groups */
KQ_INLINE int32_t group_offsets(const pg_ksb *u, const block_q8_K *a) {
    const int16x8_t m0 = vld1q_s16(u->mn), m1 = vld1q_s16(u->mn + 8);
    const int16x8_t b0 = vld1q_s16(a->bsums), b1 = vld1q_s16(a->bsums + 8);
    int32x4_t acc = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
    acc = vmlal_high_s16(acc, m0, b0);
    acc = vmlal_s16(acc, vget_low_s16(m1), vget_low_s16(b1));
    acc = vmlal_high_s16(acc, m1, b1);
    return vaddvq_s32(acc);
}

/* One (R rows x T tokens) tile over the chunk's super-blocks; R*T <= 8. */
KQ_INLINE void kq_tile(const kq_chunk *c, int r0, int t0, const int R, const int T) {
    float f[8];
    kq_load_lanes(c, r0, t0, R, T, f);
    for (int s = 0; s < c->ns; s++) {
        const pg_ksb *u[8];
        const block_q8_K *a[KQ_TILE_TOKENS];
        for (int r = 0; r < R; r++) u[r] = &c->panel[(r0 + r) * KQ_KC + s];
        for (int t = 0; t < T; t++) a[t] = (const block_q8_K *)(c->a + (size_t)(t0 + t) * c->a_stride) + s;
        int32x4_t isum[8];
        for (int p = 0; p < 8; p++) isum[p] = vdupq_n_s32(0);
        for (int g = 0; g < PG_KGROUPS; g++) {
            int8x16_t av[KQ_TILE_TOKENS];
            for (int t = 0; t < T; t++) av[t] = vld1q_s8(a[t]->qs + 16 * g);
            for (int r = 0; r < R; r++) {
                const int8x16_t wq = vreinterpretq_s8_u8(vld1q_u8(u[r]->q + 16 * g));
                const int32_t sc = u[r]->sc[g];
                for (int t = 0; t < T; t++)
                    isum[r * T + t] = vmlaq_n_s32(isum[r * T + t], vdotq_s32(vdupq_n_s32(0), wq, av[t]), sc);
            }
        }
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++) {
                const int p = r * T + t;
                f[p] = pg_ksb_accumulate(f[p], c->two_terms, u[r]->d, u[r]->dm, a[t]->d,
                                         vaddvq_s32(isum[p]), group_offsets(u[r], a[t]));
            }
    }
    kq_store_lanes(c, r0, t0, R, T, f);
}

static void kq_tile_8x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 8, 1); }
static void kq_tile_4x2(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 4, 2); }
static void kq_tile_2x4(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 2, 4); }
static void kq_tile_1x1(const kq_chunk *c, int r0, int t0) { kq_tile(c, r0, t0, 1, 1); }

KQ_DEFINE_GEMM(q2_K, Q2_K, neon)
KQ_DEFINE_GEMM(q3_K, Q3_K, neon)
KQ_DEFINE_GEMM(q4_K, Q4_K, neon)
KQ_DEFINE_GEMM(q5_K, Q5_K, neon)
KQ_DEFINE_GEMM(q6_K, Q6_K, neon)

#endif
