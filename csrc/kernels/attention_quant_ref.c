/* The portable attention loops over a q8_0 or q4_0 KV cache (kernels/kernels.h says what they
 * compute and why in that order): the oracle every ISA's quantized loops must equal bit for bit.
 * Cached rows are read block by block where they lie; nothing is dequantized into a copy. */
#include <math.h>
#include "kernels/ref.h"
#include "quants/legacy.h"

/* ---- scores ---------------------------------------------------------------------------------- */

/* The n_rep query rows as Q8_0 in `work` (n_rep * head_dim / 32 blocks), with the rounding the
 * forward pass gives activations (llama.cpp's run-time quantizer; every ISA's gives its bytes) */
static const block_q8_0 *quantize_queries(const float *q, int n_rep, int head_dim, float *work) {
    block_q8_0 *qq = (block_q8_0 *)work;
    const int nb = head_dim / QK8_0;
    for (int h = 0; h < n_rep; h++) pg_quantize_act_q8_0(q + (size_t)h * head_dim, qq + (size_t)h * nb, head_dim);
    return qq;
}

/* value i of a cached K or V block as an integer: q8_0's int8, q4_0's nibble - 8 */
static int block_value(int kv_type, const void *block, int i) {
    if (kv_type == PG_KV_Q8_0) return ((const block_q8_0 *)block)->qs[i];
    return pg_q4_value(((const block_q4_0 *)block)->qs, i) - 8;
}

/* dot(K row, q row) = sum over blocks b, in order, of (float)(exact integer dot of block b) *
 * (d_k * d_q), added in float without FMA */
static float quant_dot(int kv_type, const char *k_row, size_t k_block, const block_q8_0 *q, int nb) {
    float acc = 0.0f;
    for (int b = 0; b < nb; b++) {
        const void *kb = k_row + (size_t)b * k_block;
        int sumi = 0;
        for (int i = 0; i < QK8_0; i++) sumi += block_value(kv_type, kb, i) * q[b].qs[i];
        const float dk = pg_half_to_float(*(const pg_half *)kb);   /* d leads both block layouts */
        acc += (float)sumi * (dk * pg_half_to_float(q[b].d));
    }
    return acc;
}

static void scores_quant(int kv_type, float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                         float scale, float *work) {
    const int nb = head_dim / QK8_0;
    const size_t k_block = kv_type == PG_KV_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    const block_q8_0 *qq = quantize_queries(q, n_rep, head_dim, work);
    for (int j = 0; j < n_kv; j++) {
        const char *kj = (const char *)k + (size_t)j * nb * k_block;
        for (int h = 0; h < n_rep; h++)
            s[(size_t)h * n_kv + j] = quant_dot(kv_type, kj, k_block, qq + (size_t)h * nb, nb) * scale;
    }
}

void pg_attention_scores_q8_0_ref(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                  float scale, float *work) {
    scores_quant(PG_KV_Q8_0, s, q, n_rep, k, n_kv, head_dim, scale, work);
}

void pg_attention_scores_q4_0_ref(float *s, const float *q, int n_rep, const void *k, int n_kv, int head_dim,
                                  float scale, float *work) {
    scores_quant(PG_KV_Q4_0, s, q, n_rep, k, n_kv, head_dim, scale, work);
}

/* ---- accumulation ---------------------------------------------------------------------------- */

/* out (n_rep, head_dim) = p V, one FMA chain per output value over the positions in order, from
 * zero: out = fmaf(p * d_v, (float)value, out). Folding d_v into p costs one multiply per block
 * and head rather than one per value; SIMD code computes the same products. */
static void accumulate_quant(int kv_type, float *out, const float *p, int n_rep, const void *v, int n_kv,
                             int head_dim) {
    const int nb = head_dim / QK8_0;
    const size_t v_block = kv_type == PG_KV_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    for (size_t i = 0; i < (size_t)n_rep * head_dim; i++) out[i] = 0.0f;
    for (int j = 0; j < n_kv; j++) {
        const char *vj = (const char *)v + (size_t)j * nb * v_block;
        for (int b = 0; b < nb; b++) {
            const void *vb = vj + (size_t)b * v_block;
            const float dv = pg_half_to_float(*(const pg_half *)vb);
            for (int h = 0; h < n_rep; h++) {
                const float pd = p[(size_t)h * n_kv + j] * dv;
                float *o = out + (size_t)h * head_dim + (size_t)b * QK8_0;
                for (int i = 0; i < QK8_0; i++) o[i] = fmaf(pd, (float)block_value(kv_type, vb, i), o[i]);
            }
        }
    }
}

void pg_attention_accumulate_q8_0_ref(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                      float *work) {
    (void)work;
    accumulate_quant(PG_KV_Q8_0, out, p, n_rep, v, n_kv, head_dim);
}

void pg_attention_accumulate_q4_0_ref(float *out, const float *p, int n_rep, const void *v, int n_kv, int head_dim,
                                      float *work) {
    (void)work;
    accumulate_quant(PG_KV_Q4_0, out, p, n_rep, v, n_kv, head_dim);
}
