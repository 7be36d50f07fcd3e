/* Building a model: check the hyper-parameters, point every weight into the mapping after
 * checking its type, shape, offset and size against the mapping, then allocate the run state and
 * the KV cache once. Nothing from the file is trusted; any failure frees what was built. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"

enum { DIM_MAX = 1 << 20, LAYER_MAX = 1 << 12, CTX_MAX = 1 << 24, VOCAB_MAX = 1 << 24, SEQ_MAX = 256, EXPERT_MAX = 512 };

static int finite_positive(float x) { return x > 0.0f && x <= 3.4e38f; }

/* The family's switches: scales finite and positive, caps 0 (off) or positive, a window with the
 * RoPE of its layers, experts that fit */
static int family_ok(const pg_model_params *p) {
    if (!finite_positive(p->embd_scale) || !finite_positive(p->attn_scale)) return 0;
    if (!(p->attn_softcap >= 0.0f && p->attn_softcap <= 3.4e38f)) return 0;
    if (!(p->final_softcap >= 0.0f && p->final_softcap <= 3.4e38f)) return 0;
    if (p->n_swa < 0 || (p->n_swa > 0 && (!finite_positive(p->rope_base_swa) || !finite_positive(p->rope_freq_scale_swa))))
        return 0;
    if (p->n_expert == 0) return 1;
    /* the grouped (token, expert) rows of a batch are counted in int32 (moe.c) */
    return p->n_expert > 0 && p->n_expert <= EXPERT_MAX && p->n_expert_used > 0 && p->n_expert_used <= p->n_expert &&
           p->n_ff_exp > 0 && p->n_ff_exp <= DIM_MAX && (int64_t)p->n_expert * p->n_ff_exp <= (int64_t)DIM_MAX * 64 &&
           (int64_t)p->n_batch * p->n_expert_used <= INT32_MAX;
}

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
    return family_ok(p);
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
    /* blocks are read as structs: Model copies a file's misaligned tensors before it gets here */
    if ((uintptr_t)(map + d->offset) % t->align) return PG_EBADARG;
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

/* An optional F32 vector: absent (ne0 == 0) leaves *out NULL */
static int bind_optional_norm(const float **out, const pg_tensor_desc *d, int64_t n, const char *map,
                              size_t map_size) {
    return d->ne0 == 0 ? PG_OK : bind_norm(out, d, n, map, map_size);
}

/* A layer's tensor slots, in api/model.h's order */
enum {
    T_ATTN_NORM, T_WQ, T_WK, T_WV, T_WO, T_FFN_NORM, T_GATE, T_UP, T_DOWN, T_BQ, T_BK, T_BV, T_Q_NORM, T_K_NORM,
    T_POST_ATTN_NORM, T_POST_FFN_NORM, T_ROUTER, T_GATE_EXPS, T_UP_EXPS, T_DOWN_EXPS, T_COUNT
};
_Static_assert((int)T_COUNT == (int)PG_LAYER_TENSORS, "api/model.h lists the layer slots");

/* The FFN of a layer: dense (gate, up, down) or, with experts, the router and the experts'
 * matrices, each expert's rows one after the other */
static int bind_ffn(pg_model *m, pg_layer *L, const pg_tensor_desc *d, int64_t i, const char *map, size_t map_size,
                    int64_t *bad) {
    const pg_model_params *p = &m->p;
    int rc;
#define BIND(slot, call) do { if ((rc = (call)) != PG_OK) { *bad = i + (slot); return rc; } } while (0)
    if (p->n_expert == 0) {
        BIND(T_GATE, bind_weight(&L->w_gate, &d[T_GATE], p->n_embd, p->n_ff, map, map_size, 0));
        BIND(T_UP, bind_weight(&L->w_up, &d[T_UP], p->n_embd, p->n_ff, map, map_size, 0));
        BIND(T_DOWN, bind_weight(&L->w_down, &d[T_DOWN], p->n_ff, p->n_embd, map, map_size, 0));
        L->act_ffn = act_bit(&L->w_gate) | act_bit(&L->w_up);
        L->act_down = act_bit(&L->w_down);
        return PG_OK;
    }
    const int64_t n_exp = p->n_expert, ff = p->n_ff_exp;
    BIND(T_ROUTER, bind_weight(&L->router, &d[T_ROUTER], p->n_embd, n_exp, map, map_size, 0));
    BIND(T_GATE_EXPS, bind_weight(&L->gate_exps, &d[T_GATE_EXPS], p->n_embd, n_exp * ff, map, map_size, 0));
    BIND(T_UP_EXPS, bind_weight(&L->up_exps, &d[T_UP_EXPS], p->n_embd, n_exp * ff, map, map_size, 0));
    BIND(T_DOWN_EXPS, bind_weight(&L->down_exps, &d[T_DOWN_EXPS], ff, n_exp * p->n_embd, map, map_size, 0));
    L->act_ffn = act_bit(&L->router) | act_bit(&L->gate_exps) | act_bit(&L->up_exps);
    L->act_down = act_bit(&L->down_exps);
    return PG_OK;
}

/* One layer's tensors, slots [i, i + PG_LAYER_TENSORS) of the table */
static int bind_layer(pg_model *m, int l, const pg_tensor_desc *d, int64_t i, const char *map, size_t map_size,
                      int64_t *bad) {
    const pg_model_params *p = &m->p;
    pg_layer *L = &m->w.layers[l];
    int rc;
    BIND(T_ATTN_NORM, bind_norm(&L->attn_norm, &d[T_ATTN_NORM], p->n_embd, map, map_size));
    BIND(T_WQ, bind_weight(&L->wq, &d[T_WQ], p->n_embd, m->n_q, map, map_size, 0));
    BIND(T_WK, bind_weight(&L->wk, &d[T_WK], p->n_embd, m->n_kv, map, map_size, 0));
    BIND(T_WV, bind_weight(&L->wv, &d[T_WV], p->n_embd, m->n_kv, map, map_size, 0));
    BIND(T_WO, bind_weight(&L->wo, &d[T_WO], m->n_q, p->n_embd, map, map_size, 0));
    BIND(T_FFN_NORM, bind_norm(&L->ffn_norm, &d[T_FFN_NORM], p->n_embd, map, map_size));
    BIND(T_BQ, bind_optional_norm(&L->bq, &d[T_BQ], m->n_q, map, map_size));
    BIND(T_BK, bind_optional_norm(&L->bk, &d[T_BK], m->n_kv, map, map_size));
    BIND(T_BV, bind_optional_norm(&L->bv, &d[T_BV], m->n_kv, map, map_size));
    BIND(T_Q_NORM, bind_optional_norm(&L->q_norm, &d[T_Q_NORM], p->head_dim, map, map_size));
    BIND(T_K_NORM, bind_optional_norm(&L->k_norm, &d[T_K_NORM], p->head_dim, map, map_size));
    BIND(T_POST_ATTN_NORM, bind_optional_norm(&L->post_attn_norm, &d[T_POST_ATTN_NORM], p->n_embd, map, map_size));
    BIND(T_POST_FFN_NORM, bind_optional_norm(&L->post_ffn_norm, &d[T_POST_FFN_NORM], p->n_embd, map, map_size));
#undef BIND
    L->act_qkv = act_bit(&L->wq) | act_bit(&L->wk) | act_bit(&L->wv);
    L->act_o = act_bit(&L->wo);
    L->swa = p->n_swa > 0 && p->swa_layers && p->swa_layers[l];
    return bind_ffn(m, L, d, i, map, map_size, bad);
}

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
#undef BIND
    for (int l = 0; l < p->n_layer; l++) {
        const int64_t i = PG_GLOBAL_TENSORS + PG_LAYER_TENSORS * (int64_t)l;
        if ((rc = bind_layer(m, l, td + i, i, map, map_size, bad)) != PG_OK) return rc;
    }
    return PG_OK;
}

/* YaRN's first and last dimension pair to blend (llama.cpp's corr_dims) */
static float yarn_corr_dim(int n_rot, int n_ctx_orig, float beta, float base) {
    return (float)n_rot * logf((float)n_ctx_orig / (beta * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

/* RoPE with a base and frequency scale: the full-attention layers' (rope_base, rope_freq_scale)
 * or the sliding-window layers' (Gemma 3 gives its local layers a base of their own) */
static void set_rope(pg_rope_params *r, const pg_model *m, float base, float freq_scale) {
    const pg_model_params *p = &m->p;
    *r = (pg_rope_params){p->n_rot, base, freq_scale, p->rope_yarn,
                          p->yarn_ext_factor, p->yarn_attn_factor, 0.0f, 0.0f, m->w.rope_freqs};
    if (p->rope_yarn) {
        r->corr_low = fmaxf(0.0f, floorf(yarn_corr_dim(p->n_rot, p->yarn_n_ctx_orig, p->yarn_beta_fast, base)));
        r->corr_high = fminf((float)(p->n_rot - 1), ceilf(yarn_corr_dim(p->n_rot, p->yarn_n_ctx_orig, p->yarn_beta_slow, base)));
    }
}

/* Whether the sliding-window layers rotate with angles of their own */
static int swa_rope_differs(const pg_model_params *p) {
    return p->n_swa > 0 && (p->rope_base_swa != p->rope_base || p->rope_freq_scale_swa != p->rope_freq_scale);
}

static void *alloc_floats(size_t n) { return malloc(n * sizeof(float)); }

/* B rows of n values in each activation format of `used` (F32 needs no copy unless with_f32) */
static int alloc_act_buffers(pg_act_buffers *a, uint32_t used, int64_t n, size_t B, int with_f32) {
    for (int t = 0; t < PG_TYPE_COUNT; t++) {
        if (!(used & (1u << t)) || (t == PG_F32 && !with_f32)) continue;
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

/* A mixture-of-experts model's scratch (pg_moe_state) for n_batch tokens */
static int alloc_moe_state(pg_model *m) {
    const pg_model_params *p = &m->p;
    pg_moe_state *s = &m->s.moe;
    const size_t T = (size_t)m->n_threads, B = (size_t)p->n_batch, E = (size_t)p->n_expert;
    const size_t rows = B * (size_t)p->n_expert_used;
    s->logits = alloc_floats(T * B * E);
    s->weight = alloc_floats(T * rows);
    s->choice = malloc(T * rows * sizeof(int32_t));
    s->row_of = malloc(T * rows * sizeof(int32_t));
    s->token_of = malloc(T * rows * sizeof(int32_t));
    s->first = malloc(T * (E + 1) * sizeof(int32_t));
    s->hidden = alloc_floats(rows * p->n_ff_exp);
    s->hidden2 = alloc_floats(rows * p->n_ff_exp);
    s->out = alloc_floats(rows * p->n_embd);
    if (!s->logits || !s->weight || !s->choice || !s->row_of || !s->token_of || !s->first || !s->hidden ||
        !s->hidden2 || !s->out || !(s->gathered = calloc(T, sizeof(pg_act_buffers))))
        return PG_ENOMEM;
    uint32_t gathered = 0, hidden = 0;
    for (int l = 0; l < p->n_layer; l++) {
        const pg_layer *L = &m->w.layers[l];
        gathered |= act_bit(&L->gate_exps) | act_bit(&L->up_exps);
        hidden |= L->act_down;
    }
    for (size_t i = 0; i < T; i++)   /* F32 activations are gathered too */
        if (alloc_act_buffers(&s->gathered[i], gathered, p->n_embd, rows, 1) != PG_OK) return PG_ENOMEM;
    return alloc_act_buffers(&s->hidden_act, hidden, p->n_ff_exp, rows, 0);
}

static void free_moe_state(pg_moe_state *s, int n_threads) {
    free(s->logits); free(s->weight); free(s->choice); free(s->row_of); free(s->token_of); free(s->first);
    free(s->hidden); free(s->hidden2); free(s->out);
    for (int t = 0; t < PG_TYPE_COUNT; t++) {
        for (int i = 0; s->gathered && i < n_threads; i++) free(s->gathered[i].buf[t]);
        free(s->hidden_act.buf[t]);
    }
    free(s->gathered);
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
    s->rope_cs_swa = swa_rope_differs(p) ? alloc_floats(B * p->n_rot) : s->rope_cs;
    s->out_rows = malloc(B * sizeof(int32_t));
    if (!s->x || !s->xb || !s->y || !s->q || !s->att || !s->k || !s->v || !s->hb || !s->hb2 || !s->rope_cs ||
        !s->rope_cs_swa || !s->out_rows)
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
        if (alloc_act_buffers(&s->act[i], used, widest, B, 0) != PG_OK) return PG_ENOMEM;
    if (alloc_act_buffers(&s->act_hidden, used_hidden, p->n_ff, B, 0) != PG_OK) return PG_ENOMEM;

    /* attention scores for n_rep heads over the whole context and the attention loops' work
     * space (which holds one K/V row for the context shift), and RoPE angles; rounded to
     * 64-byte lines so threads never share one */
    s->angles_offset = ((size_t)m->n_rep * p->n_ctx + pg_attention_work_floats(m->n_rep, p->head_dim) + 15) &
                       ~(size_t)15;
    s->per_thread_floats = s->angles_offset + (((size_t)2 * p->n_rot + 15) & ~(size_t)15);   /* two sets of angles */
    if (!(s->per_thread = aligned_alloc(64, s->per_thread_floats * sizeof(float) * m->n_threads))) return PG_ENOMEM;

    s->k_row_bytes = pg_row_bytes(pg_traits(p->type_k), p->head_dim);
    s->v_row_bytes = pg_row_bytes(pg_traits(p->type_v), p->head_dim);
    if (!(s->k_cache = alloc_cache(p, s->k_row_bytes)) || !(s->v_cache = alloc_cache(p, s->v_row_bytes)))
        return PG_ENOMEM;
    return p->n_expert ? alloc_moe_state(m) : PG_OK;
}

void pg_model_free(pg_model *m) {
    if (!m) return;
    pg_run_state *s = &m->s;
    free(s->x); free(s->xb); free(s->y); free(s->q); free(s->att); free(s->k); free(s->v);
    free(s->hb); free(s->hb2); free(s->per_thread); free(s->k_cache); free(s->v_cache); free(s->out_rows);
    if (s->rope_cs_swa != s->rope_cs) free(s->rope_cs_swa);
    free(s->rope_cs);
    for (int t = 0; t < PG_TYPE_COUNT; t++) {
        for (int i = 0; s->act && i < m->n_threads; i++) free(s->act[i].buf[t]);
        free(s->act_hidden.buf[t]);
    }
    free(s->act);
    free_moe_state(&s->moe, m->n_threads);
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
    if (n_tensors != PG_GLOBAL_TENSORS + PG_LAYER_TENSORS * (int64_t)params->n_layer) return PG_EBADARG;

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
    if (rc == PG_OK) m->qkv_align = pg_qkv_align(m);
    set_rope(&m->rope, m, params->rope_base, params->rope_freq_scale);
    set_rope(&m->rope_swa, m, params->rope_base_swa, params->rope_freq_scale_swa);
    if (rc == PG_OK && !params->gguf_layout_only) pg_weights_repack(m, pg_kernels(pg_isa_active()));
    if (rc != PG_OK) {
        pg_model_free(m);
        return rc;
    }
    *out = m;
    return PG_OK;
}
