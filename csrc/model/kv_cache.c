/* The KV cache, (n_layer, n_head_kv, n_seq, n_ctx) rows of head_dim values for K and for V, each
 * of its own type (F16, q8_0 or q4_0): forward.c writes it; here are llama.cpp's context shift
 * (drop a range, move the rest down, re-rotate the moved keys without recomputing anything), the
 * copy of one sequence's prefix into another (a shared prompt computed once), and one sequence's
 * positions read out and written back as bytes (a saved state, pygguf/model/state.py). */
#include <string.h>
#include "model/model.h"

/* keys (n rows of row_bytes, of the cache type `type`) rotated in place by the angles cs: each
 * row read as floats, rotated, and stored back as the forward stores a new key (so a quantized
 * K is dequantized, rotated and requantized, as llama.cpp's shift does through F32); a
 * Hadamard-rotated K is turned back by H (its own inverse) before RoPE and rotated again after */
static void rotate_keys(const pg_model *m, char *k, int n, const float *cs, float *row) {
    const int hd = m->p.head_dim, type = m->p.type_k;
    const pg_type_traits *t = pg_traits(type);
    const pg_isa_kernels *kern = pg_kernels(pg_isa_active());
    for (int j = 0; j < n; j++) {
        char *kj = k + (size_t)j * m->s.k_row_bytes;
        t->dequantize(kj, row, hd);
        if (m->rot_k) pg_hadamard_rotate(row, hd, m->rot_k);
        pg_rope_rotate(row, 1, hd, m->p.n_rot, cs, m->p.rope_neox);
        if (m->rot_k) pg_hadamard_rotate(row, hd, m->rot_k);
        pg_kv_store(kern, type, kj, row, hd);
    }
}

static int seq_ok(const pg_model *m, int32_t seq) { return seq >= 0 && seq < m->p.n_seq; }

static int kv_shift(pg_model *m, int32_t seq, int32_t n_past, int32_t keep, int32_t discard) {
    if (!seq_ok(m, seq) || n_past < 0 || n_past > m->p.n_ctx || keep < 0 || discard <= 0 ||
        keep > n_past - discard)
        return PG_EBADARG;
    const int n_moved = n_past - keep - discard;
    /* a rotation by -discard positions; its angles come from the same rule as the forward's,
     * without YaRN's magnitude factor, which the cached keys already carry */
    float *row = m->s.per_thread;
    float *cs = m->s.per_thread + m->s.angles_offset;   /* the rotation of full-attention layers */
    float *cs_swa = cs + m->p.n_rot;                    /* and of sliding-window layers */
    pg_rope_angles(cs, -(double)discard, &m->rope, 0);
    pg_rope_angles(cs_swa, -(double)discard, &m->rope_swa, 0);
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++) {
            char *k = pg_k_row(m, l, g, seq, keep), *v = pg_v_row(m, l, g, seq, keep);
            memmove(k, k + (size_t)discard * m->s.k_row_bytes, (size_t)n_moved * m->s.k_row_bytes);
            memmove(v, v + (size_t)discard * m->s.v_row_bytes, (size_t)n_moved * m->s.v_row_bytes);
            rotate_keys(m, k, n_moved, m->w.layers[l].swa ? cs_swa : cs, row);
        }
    return PG_OK;
}

static int kv_copy(pg_model *m, int32_t src, int32_t dst, int32_t n) {
    if (!seq_ok(m, src) || !seq_ok(m, dst) || n < 0 || n > m->p.n_ctx) return PG_EBADARG;
    if (src == dst || n == 0) return PG_OK;
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++) {
            memcpy(pg_k_row(m, l, g, dst, 0), pg_k_row(m, l, g, src, 0), (size_t)n * m->s.k_row_bytes);
            memcpy(pg_v_row(m, l, g, dst, 0), pg_v_row(m, l, g, src, 0), (size_t)n * m->s.v_row_bytes);
        }
    return PG_OK;
}

/* The bytes of positions [0, n) of one sequence: every (layer, KV head)'s n K rows, in that
 * order, then every (layer, KV head)'s n V rows. The rows are copied as the cache holds them, so
 * a quantized cache's Hadamard-rotated rows stay rotated (the saved state records the rotation). */
static size_t state_bytes(const pg_model *m, int32_t n) {
    return (size_t)m->p.n_layer * m->p.n_head_kv * n * (m->s.k_row_bytes + m->s.v_row_bytes);
}

static int state_args_ok(const pg_model *m, int32_t seq, int32_t n, const void *buf, size_t size) {
    return m && seq_ok(m, seq) && n >= 0 && n <= m->p.n_ctx && (buf || n == 0) && size == state_bytes(m, n);
}

static int kv_export(const pg_model *m, int32_t seq, int32_t n, void *out, size_t size) {
    if (!state_args_ok(m, seq, n, out, size)) return PG_EBADARG;
    char *dst = out;
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++, dst += (size_t)n * m->s.k_row_bytes)
            memcpy(dst, pg_k_row(m, l, g, seq, 0), (size_t)n * m->s.k_row_bytes);
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++, dst += (size_t)n * m->s.v_row_bytes)
            memcpy(dst, pg_v_row(m, l, g, seq, 0), (size_t)n * m->s.v_row_bytes);
    return PG_OK;
}

static int kv_import(pg_model *m, int32_t seq, int32_t n, const void *in, size_t size) {
    if (!state_args_ok(m, seq, n, in, size)) return PG_EBADARG;
    const char *src = in;
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++, src += (size_t)n * m->s.k_row_bytes)
            memcpy(pg_k_row(m, l, g, seq, 0), src, (size_t)n * m->s.k_row_bytes);
    for (int l = 0; l < m->p.n_layer; l++)
        for (int g = 0; g < m->p.n_head_kv; g++, src += (size_t)n * m->s.v_row_bytes)
            memcpy(pg_v_row(m, l, g, seq, 0), src, (size_t)n * m->s.v_row_bytes);
    return PG_OK;
}

int pg_model_kv_export_bytes(const pg_model *m, int32_t n, uint64_t *size) {
    if (!m || !size || n < 0 || n > m->p.n_ctx) return PG_EBADARG;
    *size = state_bytes(m, n);
    return PG_OK;
}

/* The entry points hold the model's pool, as its decode does (forward.c): a second thread
 * shifting, copying, exporting or importing while one decodes is refused (PG_EBUSY) before it
 * touches the cache or the scratch they share. */
int pg_model_kv_shift(pg_model *m, int32_t seq, int32_t n_past, int32_t keep, int32_t discard) {
    if (!m) return PG_EBADARG;
    if (pg_pool_hold(m->pool) != PG_OK) return PG_EBUSY;
    const int rc = kv_shift(m, seq, n_past, keep, discard);
    pg_pool_release(m->pool);
    return rc;
}

int pg_model_kv_copy(pg_model *m, int32_t src, int32_t dst, int32_t n) {
    if (!m) return PG_EBADARG;
    if (pg_pool_hold(m->pool) != PG_OK) return PG_EBUSY;
    const int rc = kv_copy(m, src, dst, n);
    pg_pool_release(m->pool);
    return rc;
}

int pg_model_kv_export(const pg_model *m, int32_t seq, int32_t n, void *out, size_t size) {
    if (!m) return PG_EBADARG;
    if (pg_pool_hold(m->pool) != PG_OK) return PG_EBUSY;
    const int rc = kv_export(m, seq, n, out, size);
    pg_pool_release(m->pool);
    return rc;
}

int pg_model_kv_import(pg_model *m, int32_t seq, int32_t n, const void *in, size_t size) {
    if (!m) return PG_EBADARG;
    if (pg_pool_hold(m->pool) != PG_OK) return PG_EBUSY;
    const int rc = kv_import(m, seq, n, in, size);
    pg_pool_release(m->pool);
    return rc;
}
