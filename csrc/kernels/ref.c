/* The portable kernels, the scalar row of the dispatch table: the fallback of every ISA and the
 * oracle of every SIMD kernel. Plain C, one obvious order of operations per value; the SIMD
 * kernels give these bits, except attention's dot products and the F32/F16/BF16 and 32-value
 * formats' gemms, which keep their own fixed order (see the tests' tolerances). */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include "kernels/ref.h"

/* ---- gemm ------------------------------------------------------------------------------------ */

/* W (nrows, n) @ A (ntok, n)^T -> y: one vec_dot per (row, token), so it meets the tiling contract
 * trivially */
static void gemm_by_vec_dot(pg_vec_dot_fn dot, PG_GEMM_ARGS) {
    for (int t = 0; t < ntok; t++)
        for (int r = 0; r < nrows; r++)
            dot(n, &y[(size_t)t * ldy + r], (const char *)w + (size_t)r * w_stride,
                (const char *)a + (size_t)t * a_stride);
}

#define PG_DEFINE_GEMM_REF(t)                                                    \
    void pg_vec_dot_ref_##t(int64_t n, float *s, const void *w, const void *a);  \
    void pg_gemm_##t##_ref(PG_GEMM_ARGS) {                                       \
        gemm_by_vec_dot(pg_vec_dot_ref_##t, n, w, w_stride, nrows, a, a_stride, ntok, y, ldy); \
    }
PG_DEFINE_GEMM_REF(f32) PG_DEFINE_GEMM_REF(f16) PG_DEFINE_GEMM_REF(bf16)
PG_DEFINE_GEMM_REF(q4_0) PG_DEFINE_GEMM_REF(q4_1) PG_DEFINE_GEMM_REF(q5_0) PG_DEFINE_GEMM_REF(q5_1)
PG_DEFINE_GEMM_REF(q8_0)
PG_DEFINE_GEMM_REF(q2_K) PG_DEFINE_GEMM_REF(q3_K) PG_DEFINE_GEMM_REF(q4_K) PG_DEFINE_GEMM_REF(q5_K)
PG_DEFINE_GEMM_REF(q6_K)

/* ---- rmsnorm, SwiGLU, GEGLU, F16 rows -------------------------------------------------------- */

/* x (n,) -> out (n,); mean of squares summed in double, then (x * scale) * w in float */
void pg_rmsnorm_ref(float *out, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

/* g (n,) = g / (1 + exp(-g)) * u */
void pg_swiglu_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* GEGLU, gelu(gate) * up, as llama.cpp's CPU backend computes Gemma 2/3's FFN in F32:
 *   - build_ffn (src/llama-graph.cpp) turns LLM_FFN_GELU with LLM_FFN_PAR into one fused
 *     ggml_geglu_split(gate, up), not ggml_gelu then ggml_mul; ggml_compute_forward_geglu_f32
 *     (ggml-cpu/ops.cpp) runs ggml_vec_geglu_f32 (ggml-cpu/vec.h) on each row.
 *   - vec.h defines GGML_GELU_FP16, so that function looks the value up; it never calls tanhf.
 *     A gate <= -10 gives +0 outright (not 0 * up, so an inf or NaN up still gives 0), a gate
 *     >= 10 gives gate * up, and a NaN gate fails both tests and reads a NaN entry.
 *   - Any other gate is rounded to binary16 to nearest even (GGML_CPU_FP32_TO_FP16: vcvtps2ph
 *     on F16C, vcvt on NEON, the portable code elsewhere, the same bits) and those bits index
 *     ggml_table_gelu_f16; the binary16 entry, widened to float, times up is the one rounding.
 *   - ggml_cpu_init (ggml-cpu.c) fills the table once: entry h is binary16(ggml_gelu_f32(h)),
 *     the tanh form 0.5 x (1 + tanhf(sqrt(2/pi) x (1 + 0.044715 x x))) in float, products left
 *     to right (SQRT_2_OVER_PI and GELU_COEF_A of vec.h). Built for a CPU with FMA (every AVX2
 *     and every aarch64 build) the compiler contracts 1 + (0.044715 x) x into one fma, which
 *     moves one entry (x = -1.999) by a binary16 ulp, so the fma is written out here: this
 *     table equals, all 65536 entries, the one llama-cpp-python 0.3.36's libggml-cpu builds
 *     (compared once; tests/kernels/test_geglu.py keeps its hash). glibc's tanhf is not
 *     correctly rounded, but its values and the correctly rounded ones give the same table.
 * The table is kept widened to float, so a lookup is one load and every ISA's kernel gives the
 * bits of this loop. */
static float gelu_table[1 << 16];
static pthread_once_t gelu_table_once = PTHREAD_ONCE_INIT;

static float gelu_tanh(float x) {
    const float inner = fmaf(0.044715f * x, x, 1.0f);
    return 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * inner));
}

static void fill_gelu_table(void) {
    for (uint32_t h = 0; h < (1u << 16); h++)
        gelu_table[h] = pg_half_to_float(pg_float_to_half(gelu_tanh(pg_half_to_float((pg_half)h))));
}

const float *pg_gelu_table(void) {
    pthread_once(&gelu_table_once, fill_gelu_table);
    return gelu_table;
}

/* g (n,) = gelu(g) * u, through the table as llama.cpp (above) */
void pg_geglu_ref(float *g, const float *u, int64_t n) {
    const float *gelu = pg_gelu_table();
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = x <= -10.0f ? 0.0f : x >= 10.0f ? x * u[i] : gelu[pg_float_to_half(x)] * u[i];
    }
}

/* x (n,) -> out (n,) binary16, rounded to nearest even */
void pg_f16_row_ref(pg_half *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = pg_float_to_half(x[i]);
}

/* ---- attention ------------------------------------------------------------------------------- */

/* a, b (n,) -> dot in float, eight fixed partial sums (same order every call) */
static float dot_f32(const float *a, const float *b, int n) {
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

void pg_ref_init(void) { pthread_once(&half_table_once, fill_half_table); }

static void half_row_to_float(float *out, const pg_half *h, int n) {
    for (int i = 0; i < n; i++) out[i] = half_table[h[i]];
}

/* s (n_rep, n_kv): each K row converted through the table, eight fixed partial sums per dot */
void pg_attention_scores_f16_ref(float *s, const float *q, int n_rep, const void *kv, int n_kv, int head_dim,
                                 float scale, float *row) {
    const pg_half *k = kv;
    for (int j = 0; j < n_kv; j++) {
        half_row_to_float(row, k + (size_t)j * head_dim, head_dim);
        for (int h = 0; h < n_rep; h++)
            s[(size_t)h * n_kv + j] = dot_f32(q + (size_t)h * head_dim, row, head_dim) * scale;
    }
}

/* out (n_rep, head_dim) = p (n_rep, n_kv) V (n_kv, head_dim), position by position */
void pg_attention_accumulate_f16_ref(float *out, const float *p, int n_rep, const void *vv, int n_kv, int head_dim,
                                     float *row) {
    const pg_half *v = vv;
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
float pg_attention_softmax_ref(float *s, int n) {
    float max = -INFINITY;
    for (int j = 0; j < n; j++) max = s[j] > max ? s[j] : max;
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - max);
        sum += (double)s[j];
    }
    return (float)(1.0 / sum);
}

const pg_attention_kernels pg_attention_kernels_ref = {
    "pg_attention_kernels_ref", 1,
    .scores = {[PG_KV_F16] = pg_attention_scores_f16_ref, [PG_KV_Q8_0] = pg_attention_scores_q8_0_ref,
               [PG_KV_Q4_0] = pg_attention_scores_q4_0_ref},
    .softmax = pg_attention_softmax_ref,
    .accumulate = {[PG_KV_F16] = pg_attention_accumulate_f16_ref, [PG_KV_Q8_0] = pg_attention_accumulate_q8_0_ref,
                   [PG_KV_Q4_0] = pg_attention_accumulate_q4_0_ref},
};

/* out (n_rep, head_dim) = softmax(q K^T * scale) V over positions 0..pos, for n_rep query heads
 * sharing one KV head: the kernels score every head against all K rows, each row of scores is
 * exponentiated (max subtracted, sum in double), V is accumulated into all heads in F32, and
 * each head is divided by its sum at the end */
void pg_attention_group(const pg_attention_kernels *kern, float *out, const float *q, int n_rep, int head_dim,
                        int pos, int type_k, const void *kc, int type_v, const void *vc, float scale,
                        float softcap, float *scratch) {
    const int n_kv = pos + 1;
    float *scores = scratch;                            /* (n_rep, n_kv) */
    float *work = scratch + (size_t)n_rep * n_kv;       /* pg_attention_work_floats */
    float inv_sum[n_rep];

    kern->scores[pg_kv_index(type_k)](scores, q, n_rep, kc, n_kv, head_dim, scale, work);
    if (softcap > 0.0f)
        for (size_t j = 0; j < (size_t)n_rep * n_kv; j++) scores[j] = softcap * tanhf(scores[j] * (1.0f / softcap));
    for (int h = 0; h < n_rep; h++) inv_sum[h] = kern->softmax(scores + (size_t)h * n_kv, n_kv);
    kern->accumulate[pg_kv_index(type_v)](out, scores, n_rep, vc, n_kv, head_dim, work);
    for (int h = 0; h < n_rep; h++)
        for (int d = 0; d < head_dim; d++) out[(size_t)h * head_dim + d] *= inv_sum[h];
}
