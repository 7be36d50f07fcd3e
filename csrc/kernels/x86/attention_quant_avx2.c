/* AVX2 attention loops over a q8_0 or q4_0 KV cache (kernels/kernels.h): equal bit for bit to
 * the reference loops (kernels/attention_quant_ref.c), because their integer block dots are
 * exact in any order and every float operation is the reference's, in its order.
 *
 * Scores: q is quantized to Q8_0 once per call (the forward's activation quantizer) and each
 * K block meets it in llama.cpp's signed-byte dot (vpsignb, vpmaddubsw, vpmaddwd); eight
 * positions are reduced together into one vector of exact block sums, then scaled by d_k * d_q
 * and added block after block. 34 or 18 bytes per 32 values are read instead of F16's 64, and no
 * value is widened to float. V: each block widened to floats in registers and summed with
 * fma(p * d_v, value, out), three heads sharing every widened block; for q8_0 the products
 * p * d_v are vector products computed ahead of their FMAs. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>
#include "kernels/x86/x86.h"
#include "kernels/x86/lanes_avx2.h"

#define INLINE static inline __attribute__((always_inline))

static size_t block_bytes(int kv) { return kv == PG_KV_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0); }

INLINE float block_scale(const char *block) { return _cvtsh_ss(*(const pg_half *)block); }

/* ---- scores ---------------------------------------------------------------------------------- */

/* the 32 values of a K block as signed bytes: q8_0's as stored, q4_0's nibbles - 8 (low nibbles
 * hold values 0..15, high nibbles 16..31) */
INLINE __m256i k_bytes(int kv, const char *block) {
    if (kv == PG_KV_Q8_0) return _mm256_loadu_si256((const __m256i *)(block + 2));
    const __m128i raw = _mm_loadu_si128((const __m128i *)(block + 2));
    const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
    return _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
}

/* 8 int32 partial sums of k . q over 32 bytes: |k| (unsigned) times q with k's sign; a pair of
 * products is at most 2 * 127 * 127, inside vpmaddubsw's int16 */
INLINE __m256i dot_bytes(__m256i k, __m256i q) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(k, k), _mm256_sign_epi8(q, k));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* lane p = the sum of the 8 lanes of m[p]: integer adds, exact in any order */
INLINE __m256i lane_sums(const __m256i m[8]) {
    const __m256i h01 = _mm256_hadd_epi32(m[0], m[1]), h23 = _mm256_hadd_epi32(m[2], m[3]);
    const __m256i h45 = _mm256_hadd_epi32(m[4], m[5]), h67 = _mm256_hadd_epi32(m[6], m[7]);
    const __m256i lo = _mm256_hadd_epi32(h01, h23), hi = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31));
}

/* d of block b of the 8 rows, as floats */
INLINE __m256 row_scales(const char *const rows[8], size_t offset) {
    __m128i d = _mm_setzero_si128();
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[0] + offset), 0);
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[1] + offset), 1);
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[2] + offset), 2);
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[3] + offset), 3);
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[4] + offset), 4);
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[5] + offset), 5);
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[6] + offset), 6);
    d = _mm_insert_epi16(d, *(const pg_half *)(rows[7] + offset), 7);
    return _mm256_cvtph_ps(d);
}

/* s (n_rep, n_kv): 8 positions per step (past n_kv the last row repeats and is dropped); for each
 * block, in order, every head adds (float)(block sums) * (d_k * d_q) to its 8 scores */
INLINE void scores_quant(int kv, float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                         float scale, float *work) {
    const int nb = head_dim / QK8_0;
    const size_t kb = block_bytes(kv), k_row = (size_t)nb * kb;
    block_q8_0 *qq = (block_q8_0 *)work;
    for (int h = 0; h < n_rep; h++) pg_quantize_act_q8_0_avx2(q + (size_t)h * head_dim, qq + (size_t)h * nb, head_dim);
    const __m256 vscale = _mm256_set1_ps(scale);
    __m256 acc[n_rep];
    for (int j0 = 0; j0 < n_kv; j0 += 8) {
        const char *rows[8];
        for (int p = 0; p < 8; p++) rows[p] = (const char *)k + (size_t)(j0 + p < n_kv ? j0 + p : n_kv - 1) * k_row;
        for (int h = 0; h < n_rep; h++) acc[h] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const size_t off = (size_t)b * kb;
            const __m256 dk = row_scales(rows, off);
            for (int h = 0; h < n_rep; h++) {
                const block_q8_0 *qb = qq + (size_t)h * nb + b;
                const __m256i qv = _mm256_loadu_si256((const __m256i *)qb->qs);
                __m256i m[8];
                for (int p = 0; p < 8; p++) m[p] = dot_bytes(k_bytes(kv, rows[p] + off), qv);
                const __m256 d = _mm256_mul_ps(dk, _mm256_set1_ps(_cvtsh_ss(qb->d)));
                acc[h] = _mm256_add_ps(acc[h], _mm256_mul_ps(_mm256_cvtepi32_ps(lane_sums(m)), d));
            }
        }
        for (int h = 0; h < n_rep; h++) {
            const __m256 sums = _mm256_mul_ps(acc[h], vscale);
            float *sh = s + (size_t)h * n_kv + j0;
            store_lanes(sh, sums, n_kv - j0);
        }
    }
}

void pg_attention_scores_q8_0_avx2(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work) {
    scores_quant(PG_KV_Q8_0, s, q, n_rep, k, n_kv, head_dim, scale, work);
}

void pg_attention_scores_q4_0_avx2(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                   float scale, float *work) {
    scores_quant(PG_KV_Q4_0, s, q, n_rep, k, n_kv, head_dim, scale, work);
}

/* ---- accumulation ---------------------------------------------------------------------------- */

/* values 8c..8c+7 of a q8_0 V block as floats (exact: small integers) */
INLINE __m256 q8_0_floats(const char *block, int c) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(block + 2 + 8 * c))));
}

/* the 32 values of a q4_0 V block as 4 vectors of floats (nibbles - 8; low nibbles hold values
 * 0..15), unpacked together */
INLINE void q4_0_floats(const char *block, __m256 v[4]) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)(block + 2)), low4 = _mm_set1_epi8(0x0F);
    const __m128i eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, low4), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), eight);
    v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    v[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    v[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

#define PD_POSITIONS 32   /* q8_0: positions whose p * d_v are computed ahead of their FMAs */

/* acc (H, 32) += p * d_v * V for one position of a q8_0 block: one FMA per value, with
 * pd[h][r] = p[h] * d_v already rounded (the reference's product). The H broadcasts stay in
 * registers and each vector of 8 values is widened just before its H FMAs: 3 heads take 12
 * accumulators + 3 + 1 = the 16 ymm registers, without spills. */
INLINE void accumulate_q8_0_position(__m256 acc[3][4], int H, const char *block, const float pd[3][PD_POSITIONS],
                                     int r) {
    __m256 ph[3];
    for (int h = 0; h < H; h++) ph[h] = _mm256_broadcast_ss(&pd[h][r]);
    for (int c = 0; c < 4; c++) {
        const __m256 val = q8_0_floats(block, c);
        for (int h = 0; h < H; h++) acc[h][c] = _mm256_fmadd_ps(ph[h], val, acc[h][c]);
    }
}

/* d_v of the 8 blocks at v, v + v_row, ... as floats */
INLINE __m256 block_scales8(const char *v, size_t v_row) {
    __m128i d = _mm_setzero_si128();
    d = _mm_insert_epi16(d, *(const pg_half *)v, 0);
    d = _mm_insert_epi16(d, *(const pg_half *)(v + v_row), 1);
    d = _mm_insert_epi16(d, *(const pg_half *)(v + 2 * v_row), 2);
    d = _mm_insert_epi16(d, *(const pg_half *)(v + 3 * v_row), 3);
    d = _mm_insert_epi16(d, *(const pg_half *)(v + 4 * v_row), 4);
    d = _mm_insert_epi16(d, *(const pg_half *)(v + 5 * v_row), 5);
    d = _mm_insert_epi16(d, *(const pg_half *)(v + 6 * v_row), 6);
    d = _mm_insert_epi16(d, *(const pg_half *)(v + 7 * v_row), 7);
    return _mm256_cvtph_ps(d);
}

/* q8_0: out (H, 32) of H <= 3 heads (row stride head_dim), the columns of one block: v points at
 * that block of row 0, rows v_row bytes apart. One FMA chain per value over the positions in
 * order. The products p * d_v of PD_POSITIONS positions are vector products (the d_v gathered
 * eight at a time from their rows) computed before their FMAs, rather than a scalar product and
 * a register broadcast per position and head: 15-20% less time at 4096 positions. */
INLINE void accumulate_q8_0_block(float *out, const float *p, int H, const char *v, size_t v_row, int n_kv,
                                  int head_dim) {
    __m256 acc[3][4];
    for (int h = 0; h < H; h++)
        for (int c = 0; c < 4; c++) acc[h][c] = _mm256_setzero_ps();
    float pd[3][PD_POSITIONS];
    int j = 0;
    for (; j + PD_POSITIONS <= n_kv; j += PD_POSITIONS) {
        const char *vj = v + (size_t)j * v_row;
        for (int r = 0; r < PD_POSITIONS; r += 8) {
            const __m256 dv = block_scales8(vj + (size_t)r * v_row, v_row);
            for (int h = 0; h < H; h++)
                _mm256_storeu_ps(&pd[h][r], _mm256_mul_ps(_mm256_loadu_ps(p + (size_t)h * n_kv + j + r), dv));
        }
        for (int r = 0; r < PD_POSITIONS; r++, vj += v_row) accumulate_q8_0_position(acc, H, vj, pd, r);
    }
    for (; j < n_kv; j++) {   /* the last positions one by one: the same products */
        const char *vj = v + (size_t)j * v_row;
        for (int h = 0; h < H; h++) pd[h][0] = p[(size_t)h * n_kv + j] * block_scale(vj);
        accumulate_q8_0_position(acc, H, vj, pd, 0);
    }
    for (int h = 0; h < H; h++)
        for (int c = 0; c < 4; c++) _mm256_storeu_ps(out + (size_t)h * head_dim + 8 * c, acc[h][c]);
}

/* q4_0: the same sums position by position, each block unpacked once into four vectors (a few
 * registers spill: still faster here than q8_0's way, whose per-vector unpacking costs q4_0 more
 * than its products save) */
INLINE void accumulate_q4_0_block(float *out, const float *p, int H, const char *v, size_t v_row, int n_kv,
                                  int head_dim) {
    __m256 acc[3][4];
    for (int h = 0; h < H; h++)
        for (int c = 0; c < 4; c++) acc[h][c] = _mm256_setzero_ps();
    for (int j = 0; j < n_kv; j++) {
        const char *vj = v + (size_t)j * v_row;
        const float dv = block_scale(vj);
        __m256 val[4];
        q4_0_floats(vj, val);
        for (int h = 0; h < H; h++) {
            const __m256 pd = _mm256_set1_ps(p[(size_t)h * n_kv + j] * dv);
            for (int c = 0; c < 4; c++) acc[h][c] = _mm256_fmadd_ps(pd, val[c], acc[h][c]);
        }
    }
    for (int h = 0; h < H; h++)
        for (int c = 0; c < 4; c++) _mm256_storeu_ps(out + (size_t)h * head_dim + 8 * c, acc[h][c]);
}

INLINE void accumulate_block(int kv, float *out, const float *p, int H, const char *v, size_t v_row, int n_kv,
                             int head_dim) {
    if (kv == PG_KV_Q8_0) accumulate_q8_0_block(out, p, H, v, v_row, n_kv, head_dim);
    else accumulate_q4_0_block(out, p, H, v, v_row, n_kv, head_dim);
}

/* out (n_rep, head_dim): heads in groups of three, block column by block column */
INLINE void accumulate_quant(int kv, float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim) {
    const int nb = head_dim / QK8_0;
    const size_t vb = block_bytes(kv), v_row = (size_t)nb * vb;
    for (int h0 = 0; h0 < n_rep; h0 += 3) {
        const float *ph = p + (size_t)h0 * n_kv;
        for (int b = 0; b < nb; b++) {
            float *o = out + (size_t)h0 * head_dim + (size_t)b * QK8_0;
            const char *vc = (const char *)v + (size_t)b * vb;
            switch (n_rep - h0 < 3 ? n_rep - h0 : 3) {
            case 1: accumulate_block(kv, o, ph, 1, vc, v_row, n_kv, head_dim); break;
            case 2: accumulate_block(kv, o, ph, 2, vc, v_row, n_kv, head_dim); break;
            default: accumulate_block(kv, o, ph, 3, vc, v_row, n_kv, head_dim); break;
            }
        }
    }
}

void pg_attention_accumulate_q8_0_avx2(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work) {
    (void)work;
    accumulate_quant(PG_KV_Q8_0, out, p, n_rep, v, n_kv, head_dim);
}

void pg_attention_accumulate_q4_0_avx2(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                       float *work) {
    (void)work;
    accumulate_quant(PG_KV_Q4_0, out, p, n_rep, v, n_kv, head_dim);
}

#endif
