/* Building a model: check the hyper-parameters, point every weight into the mapping after
 * checking its type, shape, offset and size against the mapping, then allocate the run state and
 * the KV cache once. Nothing from the file is trusted; any failure frees what was built. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"

enum { DIM_MAX = 1 << 20, LAYER_MAX = 1 << 12, CTX_MAX = 1 << 24, VOCAB_MAX = 1 << 24, SEQ_MAX = 256 };

static int params_ok(const pg_model_params *p) {
    if (p->n_vocab <= 0 || p->n_vocab > VOCAB_MAX) return 0;
    if (p->n_embd <= 0 || p->n_embd > DIM_MAX || p->n_ff <= 0 || p->n_ff > DIM_MAX) return 0;
    if (p->n_layer <= 0 || p->n_layer > LAYER_MAX) return 0;
    if (p->n_head <= 0 || p->n_head_kv <= 0 || p->n_head % p->n_head_kv) return 0;
    if (p->head_dim <= 0 || p->head_dim % 2 || (int64_t)p->head_dim * p->n_head > DIM_MAX) return 0;
    if (p->n_rot <= 0 || p->n_rot % 2 || p->n_rot > p->head_dim) return 0;
    if (p->n_ctx <= 0 || p->n_ctx > CTX_MAX || p->n_batch <= 0 || p->n_batch > CTX_MAX) return 0;
    if (p->n_seq <= 0 || p->n_seq > SEQ_MAX) return 0;
    if (!(p->rms_eps >= 0.0f) || !(p->rope_base > 0.0f) || !(p->rope_freq_scale > 0.0f)) return 0;
    if (p->rope_yarn && (p->yarn_n_ctx_orig <= 0 || !(p->yarn_beta_fast > 0.0f) || !(p->yarn_beta_slow > 0.0f)))
        return 0;
    return 1;
}

/* A KV cache type the attention loops read, in rows of whole blocks */
static int cache_type_ok(int type, int head_dim) {
    const int kv = pg_kv_index(type);
    return kv == PG_KV_F16 || (kv >= 0 && head_dim % QK8_0 == 0);
}

/* [offset, offset + bytes) inside a mapping of map_size bytes, without overflow */
static int in_mapping(uint64_t offset, uint64_t bytes, size_t map_size) {
    return offset <= map_size && bytes <= map_size - offset;
}

/* A matrix of `rows` rows of n values that some gemm (or, for the embedding, the dequantizer)
 * can read. */
static int bind_weight(pg_weight *w, const pg_tensor_desc *d, int64_t n, int64_t rows,
                       const char *map, size_t map_size, int as_embedding) {
    const pg_type_traits *t = pg_traits(d->type);
    if (!t) return PG_EBADTYPE;
    if (d->ne0 != n || d->ne1 != rows || n % t->blck_size) return PG_EBADSIZE;
    size_t rb = pg_row_bytes(t, n);
    if ((uint64_t)rows > UINT64_MAX / rb || !in_mapping(d->offset, (uint64_t)rows * rb, map_size)) return PG_EBADSIZE;
    if (as_embedding) {
        if (!t->dequantize) return PG_ENOKERNEL;
    } else {
        const pg_isa_kernels *ref = pg_kernels(PG_ISA_SCALAR);   /* every ISA falls back to it */
        if (!ref->type[d->type].gemm.run || !ref->type[t->act_type].quantize_act.run) return PG_ENOKERNEL;
    }
    *w = (pg_weight){map + d->offset, t, d->type, n, rows, rb};
    return PG_OK;
}

/* An F32 vector of n values (the norms). */
static int bind_norm(const float **out, const pg_tensor_desc *d, int64_t n, const char *map, size_t map_size) {
    if (d->type != PG_F32) return PG_EBADTYPE;
    if (d->ne0 != n || d->ne1 != 1) return PG_EBADSIZE;
    if (!in_mapping(d->offset, (uint64_t)n * sizeof(float), map_size)) return PG_EBADSIZE;
    if ((uintptr_t)(map + d->offset) % sizeof(float)) return PG_EBADARG;
    *out = (const float *)(map + d->offset);
    return PG_OK;
}

static uint32_t act_bit(const pg_weight *w) { return 1u << w->traits->act_type; }

/* Binds every tensor; on failure *bad is the index of the offending one. */
static int bind_weights(pg_model *m, const char *map, size_t map_size, const pg_tensor_desc *td, int64_t *bad) {
    const pg_model_params *p = &m->p;
    int rc;
#define BIND(i, call) do { if ((rc = (call)) != PG_OK) { *bad = (i); return rc; } } while (0)
    BIND(0, bind_weight(&m->w.token_embd, &td[0], p->n_embd, p->n_vocab, map, map_size, 1));
    BIND(1, bind_norm(&m->w.output_norm, &td[1], p->n_embd, map, map_size));
    if (td[2].ne0 == 0) BIND(0, bind_weight(&m->w.output, &td[0], p->n_embd, p->n_vocab, map, map_size, 0));
    else BIND(2, bind_weight(&m->w.output, &td[2], p->n_embd, p->n_vocab, map, map_size, 0));
    m->w.act_output = act_bit(&m->w.output);
    if (td[3].ne0 != 0) BIND(3, bind_norm(&m->w.rope_freqs, &td[3], p->n_rot / 2, map, map_size));
    for (int l = 0; l < p->n_layer; l++) {
        const pg_tensor_desc *d = td + 4 + 9 * (int64_t)l;
        int64_t i = 4 + 9 * (int64_t)l;
        pg_layer *L = &m->w.layers[l];
        BIND(i + 0, bind_norm(&L->attn_norm, &d[0], p->n_embd, map, map_size));
        BIND(i + 1, bind_weight(&L->wq, &d[1], p->n_embd, m->n_q, map, map_size, 0));
        BIND(i + 2, bind_weight(&L->wk, &d[2], p->n_embd, m->n_kv, map, map_size, 0));
        BIND(i + 3, bind_weight(&L->wv, &d[3], p->n_embd, m->n_kv, map, map_size, 0));
        BIND(i + 4, bind_weight(&L->wo, &d[4], m->n_q, p->n_embd, map, map_size, 0));
        BIND(i + 5, bind_norm(&L->ffn_norm, &d[5], p->n_embd, map, map_size));
        BIND(i + 6, bind_weight(&L->w_gate, &d[6], p->n_embd, p->n_ff, map, map_size, 0));
        BIND(i + 7, bind_weight(&L->w_up, &d[7], p->n_embd, p->n_ff, map, map_size, 0));
        BIND(i + 8, bind_weight(&L->w_down, &d[8], p->n_ff, p->n_embd, map, map_size, 0));
        L->act_qkv = act_bit(&L->wq) | act_bit(&L->wk) | act_bit(&L->wv);
        L->act_o = act_bit(&L->wo);
        L->act_ffn = act_bit(&L->w_gate) | act_bit(&L->w_up);
        L->act_down = act_bit(&L->w_down);
    }
#undef BIND
    return PG_OK;
}

/* YaRN's first and last dimension pair to blend (llama.cpp's corr_dims) */
static float yarn_corr_dim(int n_rot, int n_ctx_orig, float beta, float base) {
    return (float)n_rot * logf((float)n_ctx_orig / (beta * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

static void set_rope(pg_model *m) {
    const pg_model_params *p = &m->p;
    pg_rope_params *r = &m->rope;
    *r = (pg_rope_params){p->n_rot, p->rope_base, p->rope_freq_scale, p->rope_yarn,
                          p->yarn_ext_factor, p->yarn_attn_factor, 0.0f, 0.0f, m->w.rope_freqs};
    if (p->rope_yarn) {
        r->corr_low = fmaxf(0.0f, floorf(yarn_corr_dim(p->n_rot, p->yarn_n_ctx_orig, p->yarn_beta_fast, p->rope_base)));
        r->corr_high = fminf((float)(p->n_rot - 1),
                             ceilf(yarn_corr_dim(p->n_rot, p->yarn_n_ctx_orig, p->yarn_beta_slow, p->rope_base)));
    }
}

static void *alloc_floats(size_t n) { return malloc(n * sizeof(float)); }

/* B rows of n values in each activation format of `used` (F32 needs no copy) */
static int alloc_act_buffers(pg_act_buffers *a, uint32_t used, int64_t n, size_t B) {
    for (int t = 0; t < PG_TYPE_COUNT; t++) {
        if (!(used & (1u << t)) || t == PG_F32) continue;
        const pg_type_traits *act = pg_traits(t);
        size_t row = (size_t)((n + act->blck_size - 1) / act->blck_size) * act->type_size;
        if (!(a->buf[t] = malloc(B * row))) return PG_ENOMEM;
    }
    return PG_OK;
}

/* One zeroed cache of (n_layer, n_head_kv, n_seq, n_ctx) rows of row_bytes; NULL when its size
 * would wrap (hyper-parameters near their limits) or the memory is not there */
static char *alloc_cache(const pg_model_params *p, size_t row_bytes) {
    size_t bytes = row_bytes;
    const size_t dims[] = {p->n_layer, p->n_head_kv, p->n_seq, p->n_ctx};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (__builtin_mul_overflow(bytes, dims[i], &bytes)) return NULL;
    return calloc(bytes, 1);
}

/* Every scratch buffer for n_batch tokens, the per-thread attention scratch and the KV cache. */
static int alloc_run_state(pg_model *m) {
    const pg_model_params *p = &m->p;
    pg_run_state *s = &m->s;
    size_t B = (size_t)p->n_batch;
    s->x = alloc_floats(B * p->n_embd);
    s->xb = alloc_floats((size_t)m->n_threads * B * p->n_embd);
    s->y = alloc_floats(B * p->n_embd);
    s->q = alloc_floats(B * m->n_q);
    s->att = alloc_floats(B * m->n_q);
    s->k = alloc_floats(B * m->n_kv);
    s->v = alloc_floats(B * m->n_kv);
    s->hb = alloc_floats(B * p->n_ff);
    s->hb2 = alloc_floats(B * p->n_ff);
    s->rope_cs = alloc_floats(B * p->n_rot);
    s->out_rows = malloc(B * sizeof(int32_t));
    if (!s->x || !s->xb || !s->y || !s->q || !s->att || !s->k || !s->v || !s->hb || !s->hb2 || !s->rope_cs ||
        !s->out_rows)
        return PG_ENOMEM;

    uint32_t used = m->w.act_output, used_hidden = 0;
    for (int l = 0; l < p->n_layer; l++) {
        const pg_layer *L = &m->w.layers[l];
        used |= L->act_qkv | L->act_o | L->act_ffn;
        used_hidden |= L->act_down;
    }
    int64_t widest = p->n_embd > m->n_q ? p->n_embd : m->n_q;
    if (!(s->act = calloc((size_t)m->n_threads, sizeof(pg_act_buffers)))) return PG_ENOMEM;
    for (int i = 0; i < m->n_threads; i++)
        if (alloc_act_buffers(&s->act[i], used, widest, B) != PG_OK) return PG_ENOMEM;
    if (alloc_act_buffers(&s->act_hidden, used_hidden, p->n_ff, B) != PG_OK) return PG_ENOMEM;

    /* attention scores for n_rep heads over the whole context and the attention loops' work
     * space (which holds one K/V row for the context shift), and RoPE angles; rounded to
     * 64-byte lines so threads never share one */
    s->angles_offset = ((size_t)m->n_rep * p->n_ctx + pg_attention_work_floats(m->n_rep, p->head_dim) + 15) &
                       ~(size_t)15;
    s->per_thread_floats = s->angles_offset + (((size_t)p->n_rot + 15) & ~(size_t)15);
    if (!(s->per_thread = aligned_alloc(64, s->per_thread_floats * sizeof(float) * m->n_threads))) return PG_ENOMEM;

    s->k_row_bytes = pg_row_bytes(pg_traits(p->type_k), p->head_dim);
    s->v_row_bytes = pg_row_bytes(pg_traits(p->type_v), p->head_dim);
    if (!(s->k_cache = alloc_cache(p, s->k_row_bytes)) || !(s->v_cache = alloc_cache(p, s->v_row_bytes)))
        return PG_ENOMEM;
    return PG_OK;
}

void pg_model_free(pg_model *m) {
    if (!m) return;
    pg_run_state *s = &m->s;
    free(s->x); free(s->xb); free(s->y); free(s->q); free(s->att); free(s->k); free(s->v);
    free(s->hb); free(s->hb2); free(s->rope_cs); free(s->per_thread); free(s->k_cache); free(s->v_cache);
    free(s->out_rows);
    for (int t = 0; t < PG_TYPE_COUNT; t++) {
        for (int i = 0; s->act && i < m->n_threads; i++) free(s->act[i].buf[t]);
        free(s->act_hidden.buf[t]);
    }
    free(s->act);
    pg_weights_free_packed(m);
    free(m->w.layers);
    free(m);
}

int pg_model_new(const pg_model_params *params, const void *map, size_t map_size,
                 const pg_tensor_desc *tensors, int64_t n_tensors, pg_pool *pool,
                 pg_model **out, int64_t *bad_tensor) {
    if (bad_tensor) *bad_tensor = -1;
    if (!params || !map || !tensors || !pool || !out || !bad_tensor) return PG_EBADARG;
    *out = NULL;
    if (!params_ok(params)) return PG_EBADARG;
    if (!cache_type_ok(params->type_k, params->head_dim) || !cache_type_ok(params->type_v, params->head_dim))
        return PG_EBADTYPE;
    if (n_tensors != 4 + 9 * (int64_t)params->n_layer) return PG_EBADARG;

    pg_model *m = calloc(1, sizeof *m);
    if (!m) return PG_ENOMEM;
    m->p = *params;
    m->n_q = params->n_head * params->head_dim;
    m->n_kv = params->n_head_kv * params->head_dim;
    m->n_rep = params->n_head / params->n_head_kv;
    if (!params->attn_rot_disable)
        pg_hadamard_blocks(params->type_k, params->type_v, params->head_dim, &m->rot_k, &m->rot_v);
    m->pool = pool;
    pg_pool_set_adaptive(pool, 1);   /* the forward gives the same bits on any thread count */
    m->n_threads = pg_pool_size(pool);
    int rc = PG_ENOMEM;
    if ((m->w.layers = calloc((size_t)params->n_layer, sizeof(pg_layer))) != NULL &&
        (rc = bind_weights(m, map, map_size, tensors, bad_tensor)) == PG_OK)
        rc = alloc_run_state(m);
    set_rope(m);
    if (rc == PG_OK && !params->gguf_layout_only) pg_weights_repack(m, pg_kernels(pg_isa_active()));
    if (rc != PG_OK) {
        pg_model_free(m);
        return rc;
    }
    *out = m;
    return PG_OK;
}
