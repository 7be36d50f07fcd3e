/* Per-token kernels of the llama forward: rmsnorm, RoPE, SwiGLU, and GQA attention over the F16
 * cache. Plain portable C: these are a few percent of the work next to the matmuls. */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include "model/ops.h"
#include "quants/traits.h"
#include "threadpool.h"   /* api/kernels.h: pg_isa_supported and the PG_E* codes */
#include "api/ops.h"

/* x (n,) -> out (n,); mean of squares summed in double, then (x * scale) * w in float */
void pg_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
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

/* v (n_heads, head_dim), rotated in place pair by pair */
void pg_rope_rotate(float *v, int n_heads, int head_dim, int n_rot, const float *cs) {
    for (int h = 0; h < n_heads; h++) {
        float *vh = v + (size_t)h * head_dim;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            const float c = cs[i0], s = cs[i0 + 1];
            const float x0 = vh[i0], x1 = vh[i0 + 1];
            vh[i0] = x0 * c - x1 * s;
            vh[i0 + 1] = x0 * s + x1 * c;
        }
    }
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

int pg_swiglu_isa(int isa, float *g, const float *u, int64_t n) {
    if (!g || !u || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_swiglu_for(isa)(g, u, n);
    return PG_OK;
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
static void scores_ref(float *s, size_t s_stride, const float *q, int n_rep, const pg_half *k, int head_dim,
                       float scale, float *row) {
    half_row_to_float(row, k, head_dim);
    for (int h = 0; h < n_rep; h++) s[h * s_stride] = pg_dot_f32(q + (size_t)h * head_dim, row, head_dim) * scale;
}

static void accumulate_ref(float *out, const float *p, size_t p_stride, int n_rep, const pg_half *v, int head_dim,
                           float *row) {
    half_row_to_float(row, v, head_dim);
    for (int h = 0; h < n_rep; h++) {
        const float ph = p[h * p_stride];
        float *o = out + (size_t)h * head_dim;
        for (int d = 0; d < head_dim; d++) o[d] += ph * row[d];
    }
}

static const pg_attention_kernels ATTENTION_REF = {scores_ref, accumulate_ref};

/* the AVX2 + F16C + FMA kernels of isa/attention_avx2.c, NULL where not built */
extern const pg_attention_kernels pg_attention_kernels_avx2 __attribute__((weak));

const pg_attention_kernels *pg_attention_kernels_for(int isa, int head_dim) {
    /* PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2 (dispatch.h): both machines run the AVX2 kernels */
    if ((isa == 1 || isa == 2) && head_dim % 8 == 0 && &pg_attention_kernels_avx2 != NULL)
        return &pg_attention_kernels_avx2;
    return &ATTENTION_REF;
}

/* out (n_rep, head_dim) = softmax(q K^T * scale) V over positions 0..pos, for n_rep query heads
 * sharing one KV head: pass 1 scores every head against each K row, pass 2 exponentiates (max
 * subtracted, sum in double), pass 3 accumulates each V row into all heads in F32 and divides by
 * the sum at the end */
void pg_attention_group(const pg_attention_kernels *kern, float *out, const float *q, int n_rep, int head_dim,
                        int pos, const pg_half *kc, const pg_half *vc, float scale, float *scratch) {
    const int n_kv = pos + 1;
    float *scores = scratch;                            /* (n_rep, n_kv) */
    float *row = scratch + (size_t)n_rep * n_kv;        /* (head_dim,) one converted K or V row */
    float inv_sum[n_rep];

    for (int j = 0; j < n_kv; j++)
        kern->scores(scores + j, (size_t)n_kv, q, n_rep, kc + (size_t)j * head_dim, head_dim, scale, row);
    for (int h = 0; h < n_rep; h++) {
        float *s = scores + (size_t)h * n_kv;
        float max = -INFINITY;
        for (int j = 0; j < n_kv; j++) max = fmaxf(max, s[j]);
        double sum = 0.0;
        for (int j = 0; j < n_kv; j++) {
            s[j] = expf(s[j] - max);
            sum += (double)s[j];
        }
        inv_sum[h] = (float)(1.0 / sum);
    }
    memset(out, 0, sizeof(float) * (size_t)n_rep * head_dim);
    for (int j = 0; j < n_kv; j++)
        kern->accumulate(out, scores + j, (size_t)n_kv, n_rep, vc + (size_t)j * head_dim, head_dim, row);
    for (int h = 0; h < n_rep; h++)
        for (int d = 0; d < head_dim; d++) out[(size_t)h * head_dim + d] *= inv_sum[h];
}
