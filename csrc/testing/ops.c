/* The forward pass's small kernels as the tests call them (testing/ops.h): each entry point
 * checks its arguments, takes the kernel an ISA's row of the dispatch table gives the forward
 * pass and refuses an ISA this machine cannot run. */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <math.h>
#include "kernels/dispatch.h"
#include "testing/ops.h"
#include "model/hadamard.h"
#if defined(__x86_64__)
#include "kernels/x86/x86.h"
#endif

int pg_swiglu_isa(int isa, float *g, const float *u, int64_t n) {
    if (!g || !u || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_kernels(isa)->swiglu.run(g, u, n);
    return PG_OK;
}

int pg_geglu_isa(int isa, float *g, const float *u, int64_t n) {
    if (!g || !u || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_kernels(isa)->geglu.run(g, u, n);
    return PG_OK;
}

int pg_rmsnorm_isa(int isa, float *out, const float *x, const float *w, int64_t n, float eps) {
    if (!out || !x || !w || n <= 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_kernels(isa)->rmsnorm.run(out, x, w, n, eps);
    return PG_OK;
}

int pg_f16_row_isa(int isa, uint16_t *out, const float *x, int64_t n) {
    if (!out || !x || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    pg_kernels(isa)->f16_row.run(out, x, n);
    return PG_OK;
}

static int cache_type_ok(int type, int head_dim) {
    const int kv = pg_kv_index(type);
    return kv == PG_KV_F16 || (kv >= 0 && head_dim % 32 == 0);
}

int pg_attention_isa(int isa, float *out, float *scores, const float *q, int n_rep, int head_dim, int n_kv,
                     int type_k, const void *k, int type_v, const void *v, float scale) {
    if (!out || !q || !k || !v || n_rep <= 0 || head_dim <= 0 || n_kv <= 0) return PG_EBADARG;
    if (!cache_type_ok(type_k, head_dim) || !cache_type_ok(type_v, head_dim)) return PG_EBADTYPE;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    const pg_attention_kernels *kern = pg_attention_for(isa, head_dim);
    const size_t work = pg_attention_work_floats(n_rep, head_dim);
    float *scratch = malloc(sizeof(float) * ((size_t)n_rep * n_kv + work));
    if (!scratch) return PG_ENOMEM;
    if (scores)
        kern->scores[pg_kv_index(type_k)](scores, q, n_rep, k, n_kv, head_dim, scale, scratch + (size_t)n_rep * n_kv);
    pg_attention_group(kern, out, q, n_rep, head_dim, n_kv - 1, type_k, k, type_v, v, scale, 0.0f, scratch);
    free(scratch);
    return PG_OK;
}

int pg_attention_softmax_isa(int isa, float *s, int n, float *inv_sum) {
    if (!s || !inv_sum || n <= 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    *inv_sum = pg_attention_for(isa, 8)->softmax(s, n);
    return PG_OK;
}

#if defined(__x86_64__)
int pg_attention_score_order_avx2(float *s, const float *q, const uint16_t *k, int head_dim, float scale) {
    if (!s || !q || !k || head_dim <= 0 || head_dim % 8) return PG_EBADARG;
    if (!pg_isa_supported(PG_ISA_AVX2)) return PG_ENOKERNEL;
    *s = pg_attention_score_lane_order(q, k, head_dim, scale);
    return PG_OK;
}

int pg_attention_accumulate_order_avx2(float *out, const float *p, int n_rep, const uint16_t *v, int n_kv,
                                       int head_dim) {
    if (!out || !p || !v || n_rep <= 0 || n_kv <= 0 || head_dim <= 0 || head_dim % 8) return PG_EBADARG;
    if (!pg_isa_supported(PG_ISA_AVX2)) return PG_ENOKERNEL;
    pg_attention_accumulate_lane_order(out, p, n_rep, v, n_kv, head_dim);
    return PG_OK;
}
#else
int pg_attention_score_order_avx2(float *s, const float *q, const uint16_t *k, int head_dim, float scale) {
    (void)s; (void)q; (void)k; (void)head_dim; (void)scale;
    return PG_ENOKERNEL;
}

int pg_attention_accumulate_order_avx2(float *out, const float *p, int n_rep, const uint16_t *v, int n_kv,
                                       int head_dim) {
    (void)out; (void)p; (void)n_rep; (void)v; (void)n_kv; (void)head_dim;
    return PG_ENOKERNEL;
}
#endif

/* the exp of the ISA's attention softmax: AVX2's vector exp where its row has the AVX2 loops */
int pg_attention_expf_isa(int isa, float *y, const float *x, int64_t n) {
    if (!y || !x || n < 0) return PG_EBADARG;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
#if defined(__x86_64__)
    if (pg_attention_for(isa, 8) == &pg_attention_kernels_avx2) {
        pg_expf_row_avx2(y, x, n);
        return PG_OK;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
    return PG_OK;
}

int pg_hadamard_rotate_checked(float *x, int64_t n, int block) {
    if (!x || block < 4 || (block & (block - 1)) || n < 0 || n % block) return PG_EBADARG;
    pg_hadamard_rotate(x, n, block);
    return PG_OK;
}
