/* Checked entry points over the type table and the gemm table, for Python. */
#include <stdint.h>
#include <stddef.h>
#include "api/kernels.h"
#include "kernels/dispatch.h"

static const pg_type_traits *checked(int type, int64_t n, int *err) {
    const pg_type_traits *t = pg_traits(type);
    if (!t) { *err = PG_EBADTYPE; return NULL; }
    if (n < 0 || n % t->blck_size != 0) { *err = PG_EBADSIZE; return NULL; }
    *err = PG_OK;
    return t;
}

int pg_type_info(int type, int64_t *blck_size, size_t *type_size, int *act_type) {
    const pg_type_traits *t = pg_traits(type);
    if (!t) return PG_EBADTYPE;
    *blck_size = t->blck_size;
    *type_size = t->type_size;
    *act_type = (int)t->act_type;
    return (t->quantize_ref && t->dequantize && t->vec_dot_ref) ? PG_OK : PG_ENOKERNEL;
}

const char *pg_type_name(int type) {
    const pg_type_traits *t = pg_traits(type);
    return t ? t->name : "unknown";
}

int pg_quantize(int type, const float *x, void *y, int64_t n) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    if (!t->quantize_ref) return PG_ENOKERNEL;
    t->quantize_ref(x, y, n);
    return PG_OK;
}

int pg_quantize_activation(int type, const float *x, void *y, int64_t n) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    if (!t->quantize_act) return PG_ENOKERNEL;
    t->quantize_act(x, y, n);
    return PG_OK;
}

int pg_dequantize(int type, const void *x, float *y, int64_t n) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    if (!t->dequantize) return PG_ENOKERNEL;
    t->dequantize(x, y, n);
    return PG_OK;
}

int pg_vec_dot(int type, int64_t n, float *s, const void *w, const void *a) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    if (!t->vec_dot_ref) return PG_ENOKERNEL;
    t->vec_dot_ref(n, s, w, a);
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
    pg_gemm_fn gemm = pg_gemm_for(isa, type);
    if (!gemm) return PG_ENOKERNEL;
    gemm(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy);
    return PG_OK;
}
