/* The forward pass's small kernels as Python calls them in the tests (api/ops.h): each entry
 * point checks its arguments, picks the kernel an instruction set runs in the forward pass and
 * refuses an ISA this machine or build cannot run. */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <math.h>
#include "model/ops.h"
#include "core/threadpool.h"   /* api/kernels.h: pg_isa_supported and the PG_E* codes */
#include "api/ops.h"

/* x86 kernels the tests call beside the reference; NULL where not built */
void pg_expf_row_avx2(float *y, const float *x, int64_t n) __attribute__((weak));
float pg_attention_score_lane_order(const float *q, const pg_half *k, int head_dim, float scale) __attribute__((weak));
void pg_attention_accumulate_lane_order(float *out, const float *p, int n_rep, const pg_half *v, int n_kv,
                                        int head_dim) __attribute__((weak));

static int is_avx2(int isa) { return isa == 1 || isa == 2; }   /* PG_ISA_AVX2, PG_ISA_AVX512 (dispatch.h) */

int pg_swiglu_isa(int isa, float *g, const float *u, int64_t n) {
    if (!g || !u || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_swiglu_for(isa)(g, u, n);
    return PG_OK;
}

int pg_rmsnorm_isa(int isa, float *out, const float *x, const float *w, int64_t n, float eps) {
    if (!out || !x || !w || n <= 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_rmsnorm_for(isa)(out, x, w, n, eps);
    return PG_OK;
}

int pg_quantize_activation_isa(int isa, int type, const float *x, void *y, int64_t n) {
    const pg_type_traits *t = pg_traits(type);
    if (!t) return PG_EBADTYPE;
    if (!x || !y || n < 0) return PG_EBADARG;
    if (n % t->blck_size) return PG_EBADSIZE;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    const pg_quantize_fn quantize = pg_act_quantizer_for(isa, type);
    if (!quantize) return PG_ENOKERNEL;
    quantize(x, y, n);
    return PG_OK;
}

int pg_f16_row_isa(int isa, uint16_t *out, const float *x, int64_t n) {
    if (!out || !x || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_f16_row_for(isa)(out, x, n);
    return PG_OK;
}

int pg_attention_isa(int isa, float *out, float *scores, const float *q, int n_rep, int head_dim, int n_kv,
                     const uint16_t *k, const uint16_t *v, float scale) {
    if (!out || !q || !k || !v || n_rep <= 0 || head_dim <= 0 || n_kv <= 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_ops_init();
    const pg_attention_kernels *kern = pg_attention_kernels_for(isa, head_dim);
    float *scratch = malloc(sizeof(float) * ((size_t)n_rep * n_kv + head_dim));
    if (!scratch) return PG_ENOMEM;
    if (scores) kern->scores(scores, q, n_rep, k, n_kv, head_dim, scale, scratch + (size_t)n_rep * n_kv);
    pg_attention_group(kern, out, q, n_rep, head_dim, n_kv - 1, k, v, scale, scratch);
    free(scratch);
    return PG_OK;
}

int pg_attention_softmax_isa(int isa, float *s, int n, float *inv_sum) {
    if (!s || !inv_sum || n <= 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    *inv_sum = pg_attention_kernels_for(isa, 8)->softmax(s, n);
    return PG_OK;
}

int pg_attention_score_order_avx2(float *s, const float *q, const uint16_t *k, int head_dim, float scale) {
    if (!s || !q || !k || head_dim <= 0 || head_dim % 8) return PG_EBADARG;
    if (!pg_isa_supported(1) || !pg_attention_score_lane_order) return PG_ENOKERNEL;
    *s = pg_attention_score_lane_order(q, k, head_dim, scale);
    return PG_OK;
}

int pg_attention_accumulate_order_avx2(float *out, const float *p, int n_rep, const uint16_t *v, int n_kv,
                                       int head_dim) {
    if (!out || !p || !v || n_rep <= 0 || n_kv <= 0 || head_dim <= 0 || head_dim % 8) return PG_EBADARG;
    if (!pg_isa_supported(1) || !pg_attention_accumulate_lane_order) return PG_ENOKERNEL;
    pg_attention_accumulate_lane_order(out, p, n_rep, v, n_kv, head_dim);
    return PG_OK;
}

int pg_attention_expf_isa(int isa, float *y, const float *x, int64_t n) {
    if (!y || !x || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    if (is_avx2(isa) && pg_expf_row_avx2) {
        pg_expf_row_avx2(y, x, n);
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
    }
    return PG_OK;
}
