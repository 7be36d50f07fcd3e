/* The F16 KV cache, (n_layer, n_head_kv, n_seq, n_ctx, head_dim) for K and for V: forward.c
 * writes it; here are llama.cpp's context shift (drop a range, move the rest down, re-rotate the
 * moved keys without recomputing anything), the copy of one sequence's prefix into another (a
 * shared prompt computed once). */
#include <string.h>
#include "model/model.h"

/* keys (n, head_dim) F16 rotated in place by the angles cs */
static void rotate_keys(pg_half *k, int n, int head_dim, int n_rot, const float *cs, float *row) {
    for (int j = 0; j < n; j++) {
        pg_half *kj = k + (size_t)j * head_dim;
        for (int d = 0; d < head_dim; d++) row[d] = pg_half_to_float(kj[d]);
        pg_rope_rotate(row, 1, head_dim, n_rot, cs);
        for (int d = 0; d < head_dim; d++) kj[d] = pg_float_to_half(row[d]);
    }
}

static int seq_ok(const pg_model *m, int32_t seq) { return seq >= 0 && seq < m->p.n_seq; }

int pg_model_kv_shift(pg_model *m, int32_t seq, int32_t n_past, int32_t keep, int32_t discard) {
    if (!m || !seq_ok(m, seq) || n_past < 0 || n_past > m->p.n_ctx || keep < 0 || discard <= 0 ||
        keep > n_past - discard)
        return PG_EBADARG;
    const int hd = m->p.head_dim, n_moved = n_past - keep - discard;
    /* a rotation by -discard positions; its angles come from the same rule as the forward's,
     * without YaRN's magnitude factor, which the cached keys already carry */
    float *cs = m->s.per_thread + m->s.angles_offset, *row = m->s.per_thread;
    pg_rope_angles(cs, -(double)discard, &m->rope, 0);
    const size_t bytes = (size_t)n_moved * hd * sizeof(pg_half);
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++) {
            pg_half *k = pg_kv_row(m->s.k_cache, m, l, g, seq, keep), *v = pg_kv_row(m->s.v_cache, m, l, g, seq, keep);
            memmove(k, k + (size_t)discard * hd, bytes);
            memmove(v, v + (size_t)discard * hd, bytes);
            rotate_keys(k, n_moved, hd, m->p.n_rot, cs, row);
        }
    return PG_OK;
}

int pg_model_kv_copy(pg_model *m, int32_t src, int32_t dst, int32_t n) {
    if (!m || !seq_ok(m, src) || !seq_ok(m, dst) || n < 0 || n > m->p.n_ctx) return PG_EBADARG;
    if (src == dst || n == 0) return PG_OK;
    const size_t bytes = (size_t)n * m->p.head_dim * sizeof(pg_half);
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++) {
            memcpy(pg_kv_row(m->s.k_cache, m, l, g, dst, 0), pg_kv_row(m->s.k_cache, m, l, g, src, 0), bytes);
            memcpy(pg_kv_row(m->s.v_cache, m, l, g, dst, 0), pg_kv_row(m->s.v_cache, m, l, g, src, 0), bytes);
        }
    return PG_OK;
}
