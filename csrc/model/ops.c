/* Per-token kernels of the llama forward: rmsnorm, RoPE, SwiGLU, F16 rows for the cache, and GQA
 * attention over it, in portable C, and the *_for(isa) choosers that hand AVX2 machines the
 * twins in isa/ (the same bits as these, except attention's dot products, which keep the AVX2
 * kernel's own fixed order). */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include "model/ops.h"
#include "quants/traits.h"

/* x (n,) -> out (n,); mean of squares summed in double, then (x * scale) * w in float */
void pg_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

void pg_rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps) __attribute__((weak));

pg_rmsnorm_fn pg_rmsnorm_for(int isa) {
    /* PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2 (dispatch.h): both machines run the AVX2 kernel */
    return (isa == 1 || isa == 2) && pg_rmsnorm_avx2 != NULL ? pg_rmsnorm_avx2 : pg_rmsnorm;
}

/* YaRN's ramp: 1 for dimension pairs below `low` (pure extrapolation), 0 above `high` */
static float yarn_ramp(float low, float high, int i0) {
    const float y = ((float)(i0 / 2) - low) / fmaxf(0.001f, high - low);
    return 1.0f - fminf(1.0f, fmaxf(0.0f, y));
}

/* angles theta_i = pos * base^(-2i/n_rot) / freq_factor_i, advanced by repeated multiplication in
 * float like llama.cpp; linear scaling multiplies by freq_scale; YaRN blends scaled and unscaled */
void pg_rope_angles(float *cs, double pos, const pg_rope_params *rp, int with_mscale) {
    const float theta_scale = powf(rp->base, -2.0f / (float)rp->n_rot);
    float theta_base = (float)pos;
    for (int i0 = 0; i0 < rp->n_rot; i0 += 2) {
        const float theta_extrap = rp->freq_factors ? theta_base / rp->freq_factors[i0 / 2] : theta_base;
        const float theta_interp = rp->freq_scale * theta_extrap;
        float theta = theta_interp, mscale = 1.0f;
        if (rp->yarn) {
            const float mix = yarn_ramp(rp->corr_low, rp->corr_high, i0) * rp->ext_factor;
            theta = theta_interp * (1.0f - mix) + theta_extrap * mix;
            if (with_mscale) mscale = rp->attn_factor * (1.0f + 0.1f * logf(1.0f / rp->freq_scale));
        }
        cs[i0] = cosf(theta) * mscale;
        cs[i0 + 1] = sinf(theta) * mscale;
        theta_base *= theta_scale;
    }
}

void pg_rope_pairs(float *v, const float *cs, int n) {
    for (int i0 = 0; i0 + 1 < n; i0 += 2) {
        const float c = cs[i0], s = cs[i0 + 1];
        const float x0 = v[i0], x1 = v[i0 + 1];
        v[i0] = x0 * c - x1 * s;
        v[i0 + 1] = x0 * s + x1 * c;
    }
}

/* v (n_heads, head_dim), rotated in place pair by pair */
void pg_rope_rotate(float *v, int n_heads, int head_dim, int n_rot, const float *cs) {
    for (int h = 0; h < n_heads; h++) pg_rope_pairs(v + (size_t)h * head_dim, cs, n_rot);
}

void pg_f16_row(pg_half *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = pg_float_to_half(x[i]);
}

void pg_f16_row_avx2(pg_half *out, const float *x, int64_t n) __attribute__((weak));

pg_f16_row_fn pg_f16_row_for(int isa) {
    /* PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2 (dispatch.h): both machines run the AVX2 kernel */
    return (isa == 1 || isa == 2) && pg_f16_row_avx2 != NULL ? pg_f16_row_avx2 : pg_f16_row;
}

/* g (n,) = g / (1 + exp(-g)) * u */
void pg_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void pg_swiglu_avx2(float *g, const float *u, int64_t n) __attribute__((weak));

pg_swiglu_fn pg_swiglu_for(int isa) {
    /* PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2 (dispatch.h): both machines run the AVX2 kernel */
    return (isa == 1 || isa == 2) && pg_swiglu_avx2 != NULL ? pg_swiglu_avx2 : pg_swiglu;
}

void pg_quantize_act_q8_0_avx2(const float *x, void *y, int64_t n) __attribute__((weak));
void pg_quantize_act_q8_1_avx2(const float *x, void *y, int64_t n) __attribute__((weak));
void pg_quantize_act_q8_K_avx2(const float *x, void *y, int64_t n) __attribute__((weak));

pg_quantize_fn pg_act_quantizer_for(int isa, int type) {
    const pg_type_traits *t = pg_traits(type);
    if (!t) return NULL;
    if (isa == 1 || isa == 2) {   /* PG_ISA_AVX2, PG_ISA_AVX512 (dispatch.h) */
        pg_quantize_fn fast = type == PG_Q8_0 ? pg_quantize_act_q8_0_avx2
                            : type == PG_Q8_1 ? pg_quantize_act_q8_1_avx2
                            : type == PG_Q8_K ? pg_quantize_act_q8_K_avx2 : NULL;
        if (fast) return fast;
    }
    return t->quantize_act;
}

/* eight independent partial sums, combined in one fixed order */
float pg_dot_f32(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    for (; i < n; i++) acc[0] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* every binary16 value as binary32: the KV cache is read through this 256 KiB table, which
 * beats the bit manipulation of pg_half_to_float and gives the same values */
static float half_table[1 << 16];
static pthread_once_t half_table_once = PTHREAD_ONCE_INIT;

static void fill_half_table(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) half_table[h] = pg_half_to_float((pg_half)h);
}

void pg_ops_init(void) { pthread_once(&half_table_once, fill_half_table); }

static void half_row_to_float(float *out, const pg_half *h, int n) {
    for (int i = 0; i < n; i++) out[i] = half_table[h[i]];
}

/* portable kernels: each row converted through the table, eight fixed partial sums per dot */
static void scores_ref(float *s, const float *q, int n_rep, const pg_half *k, int n_kv, int head_dim, float scale,
                       float *row) {
    for (int j = 0; j < n_kv; j++) {
        half_row_to_float(row, k + (size_t)j * head_dim, head_dim);
        for (int h = 0; h < n_rep; h++)
            s[(size_t)h * n_kv + j] = pg_dot_f32(q + (size_t)h * head_dim, row, head_dim) * scale;
    }
}

static void accumulate_ref(float *out, const float *p, int n_rep, const pg_half *v, int n_kv, int head_dim,
                           float *row) {
    memset(out, 0, sizeof(float) * (size_t)n_rep * head_dim);
    for (int j = 0; j < n_kv; j++) {
        half_row_to_float(row, v + (size_t)j * head_dim, head_dim);
        for (int h = 0; h < n_rep; h++) {
            const float ph = p[(size_t)h * n_kv + j];
            float *o = out + (size_t)h * head_dim;
            for (int d = 0; d < head_dim; d++) o[d] += ph * row[d];
        }
    }
}

/* s (n,) -> exp(s - max s) in place; returns 1 / their sum, taken in double term by term. With
 * a NaN score every output is NaN, whichever maximum is found. */
static float softmax_ref(float *s, int n) {
    float max = -INFINITY;
    for (int j = 0; j < n; j++) max = s[j] > max ? s[j] : max;
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - max);
        sum += (double)s[j];
    }
    return (float)(1.0 / sum);
}

static const pg_attention_kernels ATTENTION_REF = {scores_ref, softmax_ref, accumulate_ref};

/* the AVX2 + F16C + FMA kernels of isa/attention_avx2.c, NULL where not built */
extern const pg_attention_kernels pg_attention_kernels_avx2 __attribute__((weak));

const pg_attention_kernels *pg_attention_kernels_for(int isa, int head_dim) {
    /* PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2 (dispatch.h): both machines run the AVX2 kernels */
    if ((isa == 1 || isa == 2) && head_dim % 8 == 0 && &pg_attention_kernels_avx2 != NULL)
        return &pg_attention_kernels_avx2;
    return &ATTENTION_REF;
}

/* out (n_rep, head_dim) = softmax(q K^T * scale) V over positions 0..pos, for n_rep query heads
 * sharing one KV head: the kernels score every head against all K rows, each row of scores is
 * exponentiated (max subtracted, sum in double), V is accumulated into all heads in F32, and
 * each head is divided by its sum at the end */
void pg_attention_group(const pg_attention_kernels *kern, float *out, const float *q, int n_rep, int head_dim,
                        int pos, const pg_half *kc, const pg_half *vc, float scale, float *scratch) {
    const int n_kv = pos + 1;
    float *scores = scratch;                            /* (n_rep, n_kv) */
    float *row = scratch + (size_t)n_rep * n_kv;        /* (head_dim,) one converted K or V row */
    float inv_sum[n_rep];

    kern->scores(scores, q, n_rep, kc, n_kv, head_dim, scale, row);
    for (int h = 0; h < n_rep; h++) inv_sum[h] = kern->softmax(scores + (size_t)h * n_kv, n_kv);
    kern->accumulate(out, scores, n_rep, vc, n_kv, head_dim, row);
    for (int h = 0; h < n_rep; h++)
        for (int d = 0; d < head_dim; d++) out[(size_t)h * head_dim + d] *= inv_sum[h];
}
