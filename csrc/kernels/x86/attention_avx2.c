/* AVX2 + F16C + FMA inner loops of attention over the F16 KV cache (kernels/kernels.h). Each cached
 * row is converted 8 halves at a time with vcvtph2ps straight into registers and used there by
 * up to three query heads at once. Every score and every output value is computed in one fixed
 * order of operations whatever n_kv is (positions past the end of a block repeat the last row
 * and are dropped), so results depend only on the inputs. The order of a score, which
 * pg_attention_score_lane_order writes out in scalar code for the tests, and of an output value
 * are those of the earlier one-row-per-call kernels, so logits did not move when these replaced
 * them; the softmax's exp gives libm's values (kernels/x86/expf_avx2.h). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include <immintrin.h>
#include "kernels/x86/x86.h"
#include "kernels/x86/lanes_avx2.h"
#include "kernels/x86/expf_avx2.h"

#define INLINE static inline __attribute__((always_inline))

INLINE __m256 load_half8(const pg_half *h) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)); }

/* ---- scores -------------------------------------------------------------------------------- */

/* The dot of q_h with K row j is kept in two 8-lane chains, a0 over dimensions [16i, 16i+8) and
 * a1 over [16i+8, 16i+16) (a last odd block of 8 goes to a0), then a0 + a1 is summed across its
 * lanes as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)) and scaled. Eight positions are reduced
 * together: positions (j, j+4) share one vector after the first step, and two shuffles and a
 * horizontal add finish all eight in order. */

/* [l_i + l_{i+4} of a | same of b], i = 0..3: the first step of the lane sum for two positions */
INLINE __m256 fold_halves(__m256 a, __m256 b) {
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

/* x0..x3 = fold_halves of positions (0,4), (1,5), (2,6), (3,7) -> the 8 finished lane sums */
INLINE __m256 finish_sums(__m256 x0, __m256 x1, __m256 x2, __m256 x3) {
    const __m256 y01 = _mm256_add_ps(_mm256_shuffle_ps(x0, x1, 0x44), _mm256_shuffle_ps(x0, x1, 0xEE));
    const __m256 y23 = _mm256_add_ps(_mm256_shuffle_ps(x2, x3, 0x44), _mm256_shuffle_ps(x2, x3, 0xEE));
    return _mm256_hadd_ps(y01, y23);
}

/* for H heads (H <= 3, a compile-time constant): x[h] = fold_halves(a0 + a1 of row ka, of row kb) */
INLINE void score_pair(__m256 *x, const float *q, int H, const pg_half *ka, const pg_half *kb, int head_dim) {
    __m256 a0[3], a1[3], b0[3], b1[3];
    for (int h = 0; h < H; h++) a0[h] = a1[h] = b0[h] = b1[h] = _mm256_setzero_ps();
    int d = 0;
    for (; d + 16 <= head_dim; d += 16) {
        const __m256 ka0 = load_half8(ka + d), kb0 = load_half8(kb + d);
        for (int h = 0; h < H; h++) {
            const __m256 qh = _mm256_loadu_ps(q + (size_t)h * head_dim + d);
            a0[h] = _mm256_fmadd_ps(qh, ka0, a0[h]);
            b0[h] = _mm256_fmadd_ps(qh, kb0, b0[h]);
        }
        const __m256 ka1 = load_half8(ka + d + 8), kb1 = load_half8(kb + d + 8);
        for (int h = 0; h < H; h++) {
            const __m256 qh = _mm256_loadu_ps(q + (size_t)h * head_dim + d + 8);
            a1[h] = _mm256_fmadd_ps(qh, ka1, a1[h]);
            b1[h] = _mm256_fmadd_ps(qh, kb1, b1[h]);
        }
    }
    if (d < head_dim) {
        const __m256 ka0 = load_half8(ka + d), kb0 = load_half8(kb + d);
        for (int h = 0; h < H; h++) {
            const __m256 qh = _mm256_loadu_ps(q + (size_t)h * head_dim + d);
            a0[h] = _mm256_fmadd_ps(qh, ka0, a0[h]);
            b0[h] = _mm256_fmadd_ps(qh, kb0, b0[h]);
        }
    }
    for (int h = 0; h < H; h++) x[h] = fold_halves(_mm256_add_ps(a0[h], a1[h]), _mm256_add_ps(b0[h], b1[h]));
}

/* s (H, n_kv) at row stride n_kv: the scores of H <= 3 heads, 8 positions per block */
INLINE void scores_heads(float *s, const float *q, int H, const pg_half *k, int n_kv, int head_dim, float scale) {
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int j0 = 0; j0 < n_kv; j0 += 8) {
        __m256 x[4][3];
        for (int p = 0; p < 4; p++) {
            const int ja = j0 + p < n_kv ? j0 + p : n_kv - 1, jb = j0 + p + 4 < n_kv ? j0 + p + 4 : n_kv - 1;
            score_pair(x[p], q, H, k + (size_t)ja * head_dim, k + (size_t)jb * head_dim, head_dim);
        }
        for (int h = 0; h < H; h++) {
            const __m256 sums = _mm256_mul_ps(finish_sums(x[0][h], x[1][h], x[2][h], x[3][h]), vscale);
            float *sh = s + (size_t)h * n_kv + j0;
            store_lanes(sh, sums, n_kv - j0);
        }
    }
}

/* s (n_rep, n_kv): heads in groups of three, each group sharing every converted K row */
static void scores_avx2(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim, float scale,
                        float *work) {
    (void)work;
    for (int h0 = 0; h0 < n_rep; h0 += 3) {
        float *sh = s + (size_t)h0 * n_kv;
        const float *qh = q + (size_t)h0 * head_dim;
        switch (n_rep - h0 < 3 ? n_rep - h0 : 3) {
        case 1: scores_heads(sh, qh, 1, k, n_kv, head_dim, scale); break;
        case 2: scores_heads(sh, qh, 2, k, n_kv, head_dim, scale); break;
        default: scores_heads(sh, qh, 3, k, n_kv, head_dim, scale); break;
        }
    }
}

/* The order scores_avx2 computes a score in, one lane at a time in scalar code (for the tests):
 * s = ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)), l_i = a0_i + a1_i, times scale. */
float pg_attention_score_lane_order(const float *q, const pg_half *k, int head_dim, float scale) {
    float l[8];
    for (int i = 0; i < 8; i++) {
        float a0 = 0.0f, a1 = 0.0f;
        int d = 0;
        for (; d + 16 <= head_dim; d += 16) {
            a0 = fmaf(q[d + i], _cvtsh_ss(k[d + i]), a0);
            a1 = fmaf(q[d + 8 + i], _cvtsh_ss(k[d + 8 + i]), a1);
        }
        if (d < head_dim) a0 = fmaf(q[d + i], _cvtsh_ss(k[d + i]), a0);
        l[i] = a0 + a1;
    }
    return (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))) * scale;
}

/* ---- softmax numerators ------------------------------------------------------------------- */

static inline __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* s (n,) -> exp(s - max s) in place, 8 at a time with libm's values (pg_expf8); returns 1 / sum.
 * The double sum runs in 8 lanes, and pg_sum_bracket keeps the value of the term-by-term sum.
 * The ragged end is masked: its lanes hold -inf, whose exp adds nothing. */
static float softmax_avx2(float *s, int n) {
    const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
    const int n8 = n & ~7;
    const __m256i tail = tail_mask(n - n8);
    __m256 mx = ninf;
    for (int j = 0; j < n8; j += 8) mx = _mm256_max_ps(_mm256_loadu_ps(s + j), mx);
    if (n8 < n) mx = _mm256_max_ps(_mm256_blendv_ps(ninf, _mm256_maskload_ps(s + n8, tail), _mm256_castsi256_ps(tail)), mx);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const __m256 max = _mm256_broadcastss_ps(m4);

    __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
    for (int j = 0; j < n8; j += 8) {
        const __m256 e = pg_expf8(_mm256_sub_ps(_mm256_loadu_ps(s + j), max));
        _mm256_storeu_ps(s + j, e);
        sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    if (n8 < n) {
        const __m256 x = _mm256_blendv_ps(ninf, _mm256_maskload_ps(s + n8, tail), _mm256_castsi256_ps(tail));
        const __m256 e = pg_expf8(_mm256_sub_ps(x, max));
        _mm256_maskstore_ps(s + n8, tail, e);
        sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    const __m256d sum4 = _mm256_add_pd(sum_lo, sum_hi);
    const __m128d sum2 = _mm_add_pd(_mm256_castpd256_pd128(sum4), _mm256_extractf128_pd(sum4, 1));
    double lo, hi;
    pg_sum_bracket(_mm_cvtsd_f64(_mm_add_sd(sum2, _mm_unpackhi_pd(sum2, sum2))), n, &lo, &hi);
    const float inv_lo = (float)(1.0 / lo), inv_hi = (float)(1.0 / hi);
    if (inv_lo == inv_hi) return inv_lo;
    double sum = 0.0;                         /* the rare row near a rounding boundary */
    for (int j = 0; j < n; j++) sum += (double)s[j];
    return (float)(1.0 / sum);
}

/* y (n,) = exp(x) with the kernel's exp, for the tests */
void pg_expf_row_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, pg_expf8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        const __m256i tail = tail_mask((int)(n - i));
        _mm256_maskstore_ps(y + i, tail, pg_expf8(_mm256_maskload_ps(x + i, tail)));
    }
}

/* ---- accumulation -------------------------------------------------------------------------- */

/* out (H, 8D) columns [0, 8D) of H <= 3 heads (row stride head_dim) = sum_j p[h * n_kv + j] *
 * V row j, in H*D registers over all positions: each output value is one FMA chain over j in
 * order from zero, as the reference. */
INLINE void accumulate_tile(float *out, const float *p, int H, const pg_half *v, int n_kv, int head_dim, int D) {
    __m256 acc[3][4];
    for (int h = 0; h < H; h++)
        for (int c = 0; c < D; c++) acc[h][c] = _mm256_setzero_ps();
    for (int j = 0; j < n_kv; j++) {
        const pg_half *vj = v + (size_t)j * head_dim;
        __m256 ph[3];
        for (int h = 0; h < H; h++) ph[h] = _mm256_broadcast_ss(p + (size_t)h * n_kv + j);
        for (int c = 0; c < D; c++) {
            const __m256 vc = load_half8(vj + 8 * c);
            for (int h = 0; h < H; h++) acc[h][c] = _mm256_fmadd_ps(ph[h], vc, acc[h][c]);
        }
    }
    for (int h = 0; h < H; h++)
        for (int c = 0; c < D; c++) _mm256_storeu_ps(out + (size_t)h * head_dim + 8 * c, acc[h][c]);
}

/* H heads, head_dim split in tiles of 32 columns and a last one of 8, 16 or 24 */
INLINE void accumulate_heads(float *out, const float *p, int H, const pg_half *v, int n_kv, int head_dim) {
    for (int c0 = 0; c0 < head_dim; c0 += 32) {
        float *o = out + c0;
        const pg_half *vc = v + c0;
        switch (head_dim - c0 < 32 ? (head_dim - c0) / 8 : 4) {
        case 1: accumulate_tile(o, p, H, vc, n_kv, head_dim, 1); break;
        case 2: accumulate_tile(o, p, H, vc, n_kv, head_dim, 2); break;
        case 3: accumulate_tile(o, p, H, vc, n_kv, head_dim, 3); break;
        default: accumulate_tile(o, p, H, vc, n_kv, head_dim, 4); break;
        }
    }
}

/* out (n_rep, head_dim): heads in groups of three, each group sharing every converted V row */
static void accumulate_avx2(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                            float *work) {
    (void)work;
    for (int h0 = 0; h0 < n_rep; h0 += 3) {
        float *oh = out + (size_t)h0 * head_dim;
        const float *ph = p + (size_t)h0 * n_kv;
        switch (n_rep - h0 < 3 ? n_rep - h0 : 3) {
        case 1: accumulate_heads(oh, ph, 1, v, n_kv, head_dim); break;
        case 2: accumulate_heads(oh, ph, 2, v, n_kv, head_dim); break;
        default: accumulate_heads(oh, ph, 3, v, n_kv, head_dim); break;
        }
    }
}

/* The order accumulate_avx2 computes an output value in, in scalar code (for the tests): one
 * fused multiply-add chain over the positions in order, from zero. */
void pg_attention_accumulate_lane_order(float *out, const float *p, int n_rep, const pg_half *v, int n_kv,
                                        int head_dim) {
    for (int h = 0; h < n_rep; h++)
        for (int d = 0; d < head_dim; d++) {
            float acc = 0.0f;
            for (int j = 0; j < n_kv; j++) acc = fmaf(p[(size_t)h * n_kv + j], _cvtsh_ss(v[(size_t)j * head_dim + d]), acc);
            out[(size_t)h * head_dim + d] = acc;
        }
}

/* head sizes in multiples of 8 (one vector of a cached row); others take the reference loops.
 * The q8_0 and q4_0 loops are in attention_quant_avx2.c. */
const pg_attention_kernels pg_attention_kernels_avx2 = {
    "pg_attention_kernels_avx2", 8,
    .scores = {[PG_KV_F16] = scores_avx2, [PG_KV_Q8_0] = pg_attention_scores_q8_0_avx2,
               [PG_KV_Q4_0] = pg_attention_scores_q4_0_avx2},
    .softmax = softmax_avx2,
    .accumulate = {[PG_KV_F16] = accumulate_avx2, [PG_KV_Q8_0] = pg_attention_accumulate_q8_0_avx2,
                   [PG_KV_Q4_0] = pg_attention_accumulate_q4_0_avx2},
};

#endif
