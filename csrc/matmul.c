/* Y (ntok, nrows) = X (ntok, n) @ W (nrows, n)^T over the thread pool.
 * Stage 1: each thread quantizes some rows of X into the weight type's activation format.
 * Stage 2: each thread takes a contiguous, 16-aligned range of W's rows and runs the ISA's gemm
 * over all tokens, so every weight row is read once per call however many tokens there are. */
#include "core/threadpool.h"
#include "kernels/dispatch.h"

size_t pg_matmul_scratch_bytes(int wtype, int64_t n, int64_t ntok) {
    const pg_type_traits *t = pg_traits(wtype);
    if (!t || n <= 0 || ntok <= 0) return 0;
    const pg_type_traits *act = pg_traits(t->act_type);
    if (!act || n % act->blck_size) return 0;
    return pg_row_bytes(act, n) * (size_t)ntok;
}

typedef struct {
    const pg_type_traits *act;
    pg_gemm_fn gemm;
    const char *w; size_t w_stride; int64_t nrows; int64_t n;
    const float *x; int64_t ntok; float *y;
    char *xq; size_t xq_stride;
    pg_pool *pool;
} matmul_task;

static void matmul_worker(void *p, int ith, int nth) {
    matmul_task *m = p;
    for (int64_t t = ith; t < m->ntok; t += nth)
        m->act->quantize_act(m->x + t * m->n, m->xq + t * m->xq_stride, m->n);
    pg_pool_barrier(m->pool);
    int64_t r0, r1;
    pg_split(m->nrows, 16, ith, nth, &r0, &r1);
    if (r1 > r0)
        m->gemm(m->n, m->w + r0 * m->w_stride, m->w_stride, (int)(r1 - r0),
                m->xq, m->xq_stride, (int)m->ntok, m->y + r0, (size_t)m->nrows);
}

int pg_matmul(pg_pool *pool, int wtype, const void *w, size_t w_stride, int64_t nrows, int64_t n,
              const float *x, int64_t ntok, float *y, void *scratch, size_t scratch_bytes) {
    const pg_type_traits *t = pg_traits(wtype);
    if (!t) return PG_EBADTYPE;
    if (!pool || nrows <= 0 || ntok <= 0 || nrows > (1 << 30) || ntok > (1 << 30)) return PG_EBADARG;
    size_t need = pg_matmul_scratch_bytes(wtype, n, ntok);
    if (need == 0 || n % t->blck_size) return PG_EBADSIZE;
    if (scratch_bytes < need || w_stride < pg_row_bytes(t, n)) return PG_EBADARG;
    const pg_type_traits *act = pg_traits(t->act_type);
    pg_gemm_fn gemm = pg_gemm_for(pg_isa_current(), wtype);
    if (!gemm || !act->quantize_act) return PG_ENOKERNEL;
    matmul_task m = {act, gemm, w, w_stride, nrows, n, x, ntok, y, scratch, pg_row_bytes(act, n), pool};
    pg_pool_run(pool, matmul_worker, &m);
    return PG_OK;
}
