/* The kernels' test entry points (testing/kernels.h): checked calls of one ISA's kernels, taken
 * from the dispatch table like the forward pass takes them. */
#include <stdint.h>
#include <stddef.h>
#include "kernels/dispatch.h"
#include "kernels/repack.h"
#include "testing/kernels.h"
#if defined(__x86_64__)
#include "kernels/x86/x86.h"
#endif

/* the type's traits when n is a whole number of its blocks, else NULL and *err */
static const pg_type_traits *checked(int type, int64_t n, int *err) {
    const pg_type_traits *t = pg_traits(type);
    if (!t) { *err = PG_EBADTYPE; return NULL; }
    if (n < 0 || n % t->blck_size != 0) { *err = PG_EBADSIZE; return NULL; }
    *err = PG_OK;
    return t;
}

int pg_vec_dot(int type, int64_t n, float *s, const void *w, const void *a) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    t->vec_dot_ref(n, s, w, a);
    return PG_OK;
}

int pg_quantize_activation_isa(int isa, int type, const float *x, void *y, int64_t n) {
    const pg_type_traits *t = pg_traits(type);
    if (!t) return PG_EBADTYPE;
    if (!x || !y || n < 0) return PG_EBADARG;
    if (n % t->blck_size) return PG_EBADSIZE;
    if (!pg_isa_supported(isa)) return PG_ENOKERNEL;
    const pg_quantize_fn quantize = pg_kernels(isa)->type[type].quantize_act.run;
    if (!quantize) return PG_ENOKERNEL;
    quantize(x, y, n);
    return PG_OK;
}

int pg_gemm(int isa, int type, int64_t n, const void *w, size_t w_stride, int nrows,
            const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    if (isa < 0 || isa >= PG_ISA_COUNT || !pg_isa_supported(isa)) return PG_EBADISA;
    if (nrows < 0 || ntok < 0 || (ntok > 1 && ldy < (size_t)nrows)) return PG_EBADARG;
    if (w_stride < pg_row_bytes(t, n) || a_stride < pg_row_bytes(pg_traits(t->act_type), n)) return PG_EBADARG;
    const pg_gemm_fn gemm = pg_kernels(isa)->type[type].gemm.run;
    if (!gemm) return PG_ENOKERNEL;
    gemm(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);
    return PG_OK;
}

/* the arguments pg_gemm_r8 and pg_gemm_r8_amx check: PG_OK or the error */
static int r8_args_ok(int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
                      const void *a, size_t a_stride, int ntok, const float *y, size_t ldy) {
    if (!pg_r8_block_bytes(type, &(int){0}, &(size_t){0}) && !pg_repack_is_sliced(type)) return PG_ENOKERNEL;
    const size_t need = pg_repack_r8_bytes(type, n, nrows);
    if (!need && nrows > 0) return PG_EBADSIZE;
    if (nrows < 0 || ntok < 0 || (ntok > 1 && ldy < (size_t)nrows) || packed_bytes < need || !packed || !a || !y)
        return PG_EBADARG;
    const size_t act_row = pg_row_bytes(pg_traits(pg_traits(type)->act_type), n);
    return a_stride < act_row ? PG_EBADARG : PG_OK;
}

int pg_gemm_r8(int isa, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
               const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    if (isa < 0 || isa >= PG_ISA_COUNT || !pg_isa_supported(isa)) return PG_EBADISA;
    const int rc = r8_args_ok(type, n, packed, packed_bytes, nrows, a, a_stride, ntok, y, ldy);
    if (rc != PG_OK) return rc;
    const pg_gemm_r8_fn gemm = pg_kernels(isa)->type[type].gemm_r8.run;
    if (!gemm) return PG_ENOKERNEL;
    gemm(n, packed, nrows, a, a_stride, ntok, y, ldy);
    return PG_OK;
}

int pg_gemm_r8_amx(int emulate, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
                   const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
#if defined(__x86_64__)
    if (emulate ? !pg_isa_supported(PG_ISA_AVX2) : !pg_amx_available()) return PG_EBADISA;
    const int rc = r8_args_ok(type, n, packed, packed_bytes, nrows, a, a_stride, ntok, y, ldy);
    if (rc != PG_OK) return rc;
    /* every type, not only the table's (Q8_0): the Q4 tile kernels are kept working and tested */
    const pg_gemm_r8_fn gemm = type == PG_Q4_0 ? (emulate ? pg_gemm_q4_0_r8_amx_emulated : pg_gemm_q4_0_r8_amx)
                             : type == PG_Q4_1 ? (emulate ? pg_gemm_q4_1_r8_amx_emulated : pg_gemm_q4_1_r8_amx)
                                               : (emulate ? pg_gemm_q8_0_r8_amx_emulated : pg_gemm_q8_0_r8_amx);
    gemm(n, packed, nrows, a, a_stride, ntok, y, ldy);
    return PG_OK;
#else
    (void)emulate; (void)type; (void)n; (void)packed; (void)packed_bytes; (void)nrows; (void)a; (void)a_stride;
    (void)ntok; (void)y; (void)ldy;
    return PG_EBADISA;
#endif
}

const char *pg_kernel_name(int isa, int op, int type, int ntok, int amx, int head_dim) {
    const pg_isa_kernels *k = pg_kernels(isa);
    if (!k) return NULL;
    if (op == PG_OP_RMSNORM) return k->rmsnorm.name;
    if (op == PG_OP_SWIGLU) return k->swiglu.name;
    if (op == PG_OP_GEGLU) return k->geglu.name;
    if (op == PG_OP_F16_ROW) return k->f16_row.name;
    if (op == PG_OP_ATTENTION) return head_dim > 0 ? pg_attention_for(isa, head_dim)->name : NULL;
    if (type < 0 || type >= PG_TYPE_COUNT) return NULL;
    const pg_type_kernels *tk = &k->type[type];
    if (op == PG_OP_GEMM) return tk->gemm.name;
    if (op == PG_OP_QUANTIZE_ACT) return tk->quantize_act.name;
    if (op != PG_OP_GEMM_R8) return NULL;
    const pg_gemm_r8_fn chosen = pg_r8_kernel(tk, ntok, amx);
    return !chosen ? NULL : chosen == tk->gemm_r8_amx.run ? tk->gemm_r8_amx.name : tk->gemm_r8.name;
}
