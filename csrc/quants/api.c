/* Checked entry points over the type table (api/kernels.h). */
#include <stdint.h>
#include <stddef.h>
#include "api/kernels.h"
#include "api/status.h"
#include "quants/traits.h"

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

size_t pg_type_alignment(int type) {
    const pg_type_traits *t = pg_traits(type);
    return t ? t->align : 0;
}

int pg_quantize(int type, const float *x, void *y, int64_t n) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    if (!t->quantize_ref) return PG_ENOKERNEL;
    if ((uintptr_t)x % _Alignof(float) || (uintptr_t)y % t->align) return PG_EBADARG;
    t->quantize_ref(x, y, n);
    return PG_OK;
}

int pg_dequantize(int type, const void *x, float *y, int64_t n) {
    int err;
    const pg_type_traits *t = checked(type, n, &err);
    if (!t) return err;
    if (!t->dequantize) return PG_ENOKERNEL;
    if ((uintptr_t)x % t->align || (uintptr_t)y % _Alignof(float)) return PG_EBADARG;   /* blocks are read as structs */
    t->dequantize(x, y, n);
    return PG_OK;
}
