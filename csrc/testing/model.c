/* The model's test entry points (testing/model.h). */
#include <stdlib.h>
#include "model/model.h"
#include "model/chunks.h"
#include "testing/model.h"

int pg_model_kv_read(pg_model *m, int32_t seq, int32_t layer, int32_t pos0, int32_t n, float *k, float *v) {
    if (!m || !k || !v || seq < 0 || seq >= m->p.n_seq || layer < 0 || layer >= m->p.n_layer || pos0 < 0 || n < 0 ||
        pos0 > m->p.n_ctx - n)
        return PG_EBADARG;
    const int hd = m->p.head_dim;
    const pg_type_traits *tk = pg_traits(m->p.type_k), *tv = pg_traits(m->p.type_v);
    for (int g = 0; g < m->p.n_head_kv; g++)
        for (int j = 0; j < n; j++) {
            const size_t at = ((size_t)g * n + j) * hd;
            tk->dequantize(pg_k_row(m, layer, g, seq, pos0 + j), k + at, hd);
            tv->dequantize(pg_v_row(m, layer, g, seq, pos0 + j), v + at, hd);
        }
    return PG_OK;
}

int pg_model_rotation(const pg_model *m, int32_t *rot_k, int32_t *rot_v) {
    if (!m || !rot_k || !rot_v) return PG_EBADARG;
    *rot_k = m->rot_k;
    *rot_v = m->rot_v;
    return PG_OK;
}

typedef struct {
    pg_pool *pool;
    const pg_isa_kernels *k;
    const pg_matrix *const *ms;   /* (count,) matrices of one shape, multiplied in turn */
    int count;
    const float *x;          /* (ntok, n) */
    int ntok, reps;
    float *y;                /* (ntok, nrows) */
    char *act;               /* (n_threads, ntok, act_row) each thread's quantized x */
    size_t act_row;
} stage_task;

/* the weight as the model binds it (load.c) and repacks it (weights.c) */
struct pg_matrix {
    pg_weight w;
};

/* reps x each matrix in turn (quantize x into this thread's buffer, take chunks of W's rows,
 * barrier) */
static void matrix_stage(void *arg, int ith, int nth) {
    const stage_task *b = arg;
    const pg_weight *w0 = &b->ms[0]->w;
    const int act_type = w0->traits->act_type;
    const pg_quantize_fn quantize = b->k->type[act_type].quantize_act.run;
    char *a = b->act + (size_t)ith * b->ntok * b->act_row;
    const int64_t step = pg_chunk_rows(w0->rows, w0->n, b->ntok, 16, nth);
    for (int rep = 0; rep < b->reps; rep++)
        for (int i = 0; i < b->count; i++) {
            const pg_weight *w = &b->ms[i]->w;
            if (act_type != PG_F32)
                for (int t = 0; t < b->ntok; t++) quantize(b->x + (size_t)t * w->n, a + (size_t)t * b->act_row, w->n);
            const void *at = act_type == PG_F32 ? (const void *)b->x : a;
            for (int64_t r0, r1; pg_next_rows(b->pool, ith, w->rows, step, &r0, &r1);)
                pg_weight_gemm(w, b->k, r0, r1, at, b->act_row, b->ntok, b->y + r0, (size_t)w->rows);
            pg_pool_barrier(b->pool);
        }
}

int pg_matrix_new(int type, const void *w, int64_t nrows, int64_t n, int repack, pg_matrix **out) {
    const pg_type_traits *t = pg_traits(type);
    if (!t) return PG_EBADTYPE;
    if (!w || !out || nrows <= 0 || nrows > INT32_MAX) return PG_EBADARG;
    if (n <= 0 || n % t->blck_size) return PG_EBADSIZE;
    const pg_isa_kernels *ref = pg_kernels(PG_ISA_SCALAR);   /* every ISA falls back to it */
    if (!ref->type[type].gemm.run || !ref->type[t->act_type].quantize_act.run) return PG_ENOKERNEL;
    pg_matrix *m = malloc(sizeof *m);
    if (!m) return PG_ENOMEM;
    m->w = (pg_weight){w, t, type, n, nrows, pg_row_bytes(t, n), NULL};
    if (repack) pg_weight_repack(&m->w, pg_kernels(pg_isa_active()), NULL);
    *out = m;
    return PG_OK;
}

void pg_matrix_free(pg_matrix *m) {
    if (!m) return;
    pg_weight_free_packed(&m->w);
    free(m);
}

int pg_matrix_stage(pg_pool *pool, const pg_matrix *m, const float *x, int ntok, float *y, int reps) {
    return pg_matrix_set_stage(pool, &m, 1, x, ntok, y, reps);
}

int pg_matrix_set_stage(pg_pool *pool, const pg_matrix *const *ms, int count, const float *x, int ntok, float *y,
                        int reps) {
    if (!pool || !ms || count <= 0 || !x || !y || ntok <= 0 || ntok > (1 << 20) || reps < 0) return PG_EBADARG;
    for (int i = 0; i < count; i++)
        if (!ms[i] || ms[i]->w.type != ms[0]->w.type || ms[i]->w.n != ms[0]->w.n || ms[i]->w.rows != ms[0]->w.rows)
            return PG_EBADARG;
    const pg_weight *w = &ms[0]->w;
    const size_t act_row = pg_row_bytes(pg_traits(w->traits->act_type), w->n);
    char *act = malloc((size_t)pg_pool_size(pool) * (size_t)ntok * act_row);
    if (!act) return PG_ENOMEM;
    stage_task b = {pool, pg_kernels(pg_isa_active()), ms, count, x, ntok, reps, y, act, act_row};
    const int rc = pg_pool_run(pool, matrix_stage, &b);
    free(act);
    return rc;
}
