/* The llama forward pass for a batch of tokens, each at its own position of its own sequence,
 * in one pg_pool_run: every thread walks the same stages, takes each stage's work in chunks
 * (16-aligned runs of weight rows, or query heads) through pg_pool_next_chunks, its own share
 * first and then what the slower threads have not started, and meets the others at a barrier,
 * five per layer. Norms and
 * activation quantization are done by every thread into its own buffers rather than split,
 * which costs O(n_embd) per token and saves a barrier each. Each value is computed by code that
 * depends only on its own inputs, never on the split or on the other tokens of the batch, so any
 * thread count, batch size or mix of sequences gives bit-identical logits. */
#include <math.h>
#include <string.h>
#include "model/model.h"
#include "model/chunks.h"

/* One batch: token t is at position pos[t] of sequence seq[t]; logits rows are wanted for the
 * n_out tokens out_rows[0..n_out) (in that order). */
typedef struct {
    pg_model *m;
    const int32_t *tokens, *pos, *seq;
    int ntok;
    const int32_t *out_rows;
    int n_out;
    float *logits;
    int isa;
    const pg_isa_kernels *k;   /* the ISA's row of the dispatch table */
} forward_task;

/* ---- helpers every stage uses --------------------------------------------------------------- */

static size_t act_row_bytes(int act_type, int64_t n) {
    return pg_row_bytes(pg_traits(act_type), n);
}

/* The quantized copies of a float input. The normed input and the attention output are
 * quantized by every thread into its own buffers (redundant work of O(n) per token that saves
 * a barrier); the FFN hidden state is shared, each thread quantizing the blocks it computed. */
static void *const *acts_of(const pg_model *m, const float *x, int ith) {
    return x == m->s.hb ? m->s.act_hidden.buf : m->s.act[ith].buf;
}

/* The rows of x (ntok, n) in w's activation format: F32 reads x itself, others the buffer. */
static const void *act_for(const pg_model *m, const pg_weight *w, const float *x, int ith) {
    int act = w->traits->act_type;
    return act == PG_F32 ? (const void *)x : acts_of(m, x, ith)[act];
}

/* Quantizes every token row of x (ntok, n) into this thread's copies for the formats in `mask`. */
static void quantize_rows(const forward_task *f, const float *x, int64_t n, int ntok, uint32_t mask, int ith) {
    for (int a = 0; a < PG_TYPE_COUNT; a++) {
        if (!(mask & (1u << a)) || a == PG_F32) continue;
        const size_t rb = act_row_bytes(a, n);
        const pg_quantize_fn quantize = f->k->type[a].quantize_act.run;
        char *out = acts_of(f->m, x, ith)[a];
        for (int t = 0; t < ntok; t++) quantize(x + (size_t)t * n, out + (size_t)t * rb, n);
    }
}

/* This thread's own normed copy xb (nrows, n_embd) of rows `rows` of x (all ntok rows when NULL),
 * quantized for `mask`: every thread computes the same values, so the matmuls that follow need
 * no barrier before them. */
static float *norm_quantize(const forward_task *f, const float *x, const float *w, const int32_t *rows, int nrows,
                            uint32_t mask, int ith) {
    const pg_model *m = f->m;
    const int64_t n = m->p.n_embd;
    const pg_rmsnorm_fn rmsnorm = f->k->rmsnorm.run;
    float *xb = m->s.xb + (size_t)ith * m->p.n_batch * n;
    for (int t = 0; t < nrows; t++)
        rmsnorm(xb + (size_t)t * n, x + (size_t)(rows ? rows[t] : t) * n, w, n, m->p.rms_eps);
    quantize_rows(f, xb, n, nrows, mask, ith);
    return xb;
}

/* y (ntok, w->rows) at row stride ldy = W a^T, rows [r0, r1) of W only */
static void project_rows(const forward_task *f, const pg_weight *w, const float *x, int ntok, float *y, size_t ldy,
                         int64_t r0, int64_t r1, int ith) {
    pg_weight_gemm(w, f->k, r0, r1, act_for(f->m, w, x, ith), act_row_bytes(w->traits->act_type, w->n), ntok,
                   y + r0, ldy);
}

/* x (ntok, n) += W a^T, chunk by chunk: each thread adds the rows it computed, so the add needs
 * no barrier of its own */
static void project_residual(const forward_task *f, const pg_weight *w, const float *a, int ntok, int ith, int nth) {
    pg_model *m = f->m;
    const int64_t n = m->p.n_embd, step = pg_chunk_rows(w->rows, w->n, ntok, 16, nth);
    for (int64_t r0, r1; pg_next_rows(m->pool, ith, w->rows, step, &r0, &r1);) {
        project_rows(f, w, a, ntok, m->s.y, (size_t)n, r0, r1, ith);
        for (int t = 0; t < ntok; t++)
            for (int64_t r = r0; r < r1; r++) m->s.x[t * n + r] += m->s.y[t * n + r];
    }
}

/* ---- the stages of one layer ---------------------------------------------------------------- */

/* The RoPE angles of token t for layer L: the sliding-window layers may have their own */
static const float *rope_angles(const forward_task *f, const pg_layer *L, int t) {
    const pg_model *m = f->m;
    return (L->swa ? m->s.rope_cs_swa : m->s.rope_cs) + (size_t)t * m->p.n_rot;
}

/* RoPE on rows [r0, r1) of y (ntok, ld), whose rows are heads of head_dim. Adjacent pairs: a
 * thread's range is 16-aligned, so it holds whole (2i, 2i+1) pairs and can rotate them right
 * after its matmul; NEOX pairs (i, i + n_rot/2): the range holds whole heads (qkv_align). */
static void rope_rows(const forward_task *f, const pg_layer *L, float *y, size_t ld, int64_t r0, int64_t r1) {
    const pg_model *m = f->m;
    const int64_t hd = m->p.head_dim, n_rot = m->p.n_rot;
    for (int t = 0; t < f->ntok; t++) {
        const float *cs = rope_angles(f, L, t);
        float *yt = y + t * ld;
        for (int64_t h0 = r0 - r0 % hd; h0 < r1; h0 += hd) {    /* each head the range meets */
            if (m->p.rope_neox) {
                pg_rope_neox(yt + h0, cs, (int)n_rot);
                continue;
            }
            const int64_t d0 = r0 > h0 ? r0 - h0 : 0, d1 = r1 - h0 < n_rot ? r1 - h0 : n_rot;
            if (d1 > d0) pg_rope_pairs(yt + h0 + d0, cs + d0, (int)(d1 - d0));
        }
    }
}

/* Rows [r0, r1) of y (ntok, ld) plus the bias b (Qwen2's q, k and v), and then each whole head
 * in the range RMS-normed by `norm` (Qwen3's and Gemma 3's q and k); either may be NULL */
static void bias_and_head_norm(const forward_task *f, float *y, size_t ld, const float *b, const float *norm,
                               int64_t r0, int64_t r1) {
    const pg_model *m = f->m;
    const int64_t hd = m->p.head_dim;
    for (int t = 0; t < f->ntok && b; t++)
        for (int64_t r = r0; r < r1; r++) y[t * ld + r] += b[r];
    for (int t = 0; t < f->ntok && norm; t++)
        for (int64_t h0 = r0; h0 < r1; h0 += hd) f->k->rmsnorm.run(y + t * ld + h0, y + t * ld + h0, norm, hd, m->p.rms_eps);
}

/* Rows [r0, r1) of this batch's keys or values (ntok, n_kv) into a cache of `type` with rows of
 * row_bytes at their positions, a run of each KV head's row at a time; for a quantized cache
 * r0 and r1 are multiples of 32 (qkv's chunks), so each run is whole blocks. */
static void store_rows(const forward_task *f, char *cache, int type, size_t row_bytes, int layer, const float *y,
                       int64_t r0, int64_t r1) {
    const pg_model *m = f->m;
    const int64_t hd = m->p.head_dim;
    const pg_type_traits *t = pg_traits(type);
    for (int tok = 0; tok < f->ntok; tok++) {
        const float *yt = y + (size_t)tok * m->n_kv;
        for (int64_t h0 = r0 - r0 % hd; h0 < r1; h0 += hd) {
            const int64_t d0 = r0 > h0 ? r0 - h0 : 0, d1 = r1 - h0 < hd ? r1 - h0 : hd;
            char *row = pg_kv_row(cache, row_bytes, m, layer, (int)(h0 / hd), f->seq[tok], f->pos[tok]);
            pg_kv_store(f->k, type, row + pg_row_bytes(t, d0), yt + h0 + d0, d1 - d0);
        }
    }
}

/* Rows [r0, r1) of q (which 0), k (1) or v (2): RoPE'd (q, k), Hadamard-rotated for a quantized
 * cache (q and k by H_rot_k, v by H_rot_v: the chunks hold whole blocks) and cached (k, v) by the
 * thread that computed them */
static void qkv_rows(const forward_task *f, const pg_layer *L, int layer, const float *xb, int which,
                     int64_t r0, int64_t r1, int ith) {
    pg_model *m = f->m;
    const pg_weight *w = which == 0 ? &L->wq : which == 1 ? &L->wk : &L->wv;
    float *y = which == 0 ? m->s.q : which == 1 ? m->s.k : m->s.v;
    const size_t ld = which == 0 ? (size_t)m->n_q : (size_t)m->n_kv;
    const int rot = which == 2 ? m->rot_v : m->rot_k;
    project_rows(f, w, xb, f->ntok, y, ld, r0, r1, ith);
    bias_and_head_norm(f, y, ld, which == 0 ? L->bq : which == 1 ? L->bk : L->bv,
                       which == 0 ? L->q_norm : which == 1 ? L->k_norm : NULL, r0, r1);
    if (which < 2) rope_rows(f, L, y, ld, r0, r1);
    if (rot)
        for (int t = 0; t < f->ntok; t++) pg_hadamard_rotate(y + t * ld + r0, r1 - r0, rot);
    if (which == 1) store_rows(f, m->s.k_cache, m->p.type_k, m->s.k_row_bytes, layer, y, r0, r1);
    if (which == 2) store_rows(f, m->s.v_cache, m->p.type_v, m->s.v_row_bytes, layer, y, r0, r1);
}

/* The rows a chunk of q, k and v is a multiple of: 16 (whole RoPE pairs); 32 when a quantized
 * cache stores whole 32-value blocks; a whole rotation block when the cache is rotated; whole
 * heads for NEOX RoPE and for head norms. Fixed at load. */
int64_t pg_qkv_align(const pg_model *m) {
    int64_t align = m->p.type_k == PG_F16 && m->p.type_v == PG_F16 ? 16 : 32;
    if (m->rot_k > align) align = m->rot_k;
    if (m->rot_v > align) align = m->rot_v;
    int head_norms = 0;
    for (int l = 0; l < m->p.n_layer; l++) head_norms |= m->w.layers[l].q_norm || m->w.layers[l].k_norm;
    if (m->p.rope_neox || head_norms) align = (align + m->p.head_dim - 1) / m->p.head_dim * m->p.head_dim;
    return align;
}

/* q, k, v projections as one stage: q's chunks, then k's, then v's, cut at qkv_align */
static void qkv(const forward_task *f, const pg_layer *L, int layer, const float *xb, int ith, int nth) {
    const pg_model *m = f->m;
    const int64_t align = m->qkv_align;
    const int64_t step = pg_chunk_rows(m->n_q, L->wq.n, f->ntok, align, nth);
    const int64_t rows[3] = {m->n_q, m->n_kv, m->n_kv};
    const int64_t count[3] = {pg_chunk_count(rows[0], step), pg_chunk_count(rows[1], step), pg_chunk_count(rows[2], step)};
    for (int64_t c0, c1; pg_pool_next_chunks(m->pool, ith, count[0] + count[1] + count[2], &c0, &c1);) {
        int64_t base = 0;   /* the taken chunks, matrix by matrix */
        for (int which = 0; which < 3 && c0 < c1; base += count[which], which++) {
            const int64_t end = c1 < base + count[which] ? c1 : base + count[which];
            if (c0 >= end) continue;
            const int64_t r1 = (end - base) * step;
            qkv_rows(f, L, layer, xb, which, (c0 - base) * step, r1 < rows[which] ? r1 : rows[which], ith);
            c0 = end;
        }
    }
}

/* Attention for every (token, query head), drawn in chunks of query heads: whole KV groups (each
 * cached row read once for the group's n_rep heads) when there are enough of them to go round,
 * else the heads cut evenly over the threads (one token, 3 groups of 3 heads on 2 threads: 5 and
 * 4 heads rather than 2 groups and 1). A head's output does not depend on which heads of its
 * group share the call. A token sees its own sequence's positions 0..pos only, and on a
 * sliding-window layer the last n_swa of them. A rotated V gives rotated outputs, turned back
 * by H_rot_v (its own inverse) before the output projection. */
static void attention(const forward_task *f, const pg_layer *L, int layer, float *scratch, int ith, int nth) {
    pg_model *m = f->m;
    const int hd = m->p.head_dim, n_head = m->p.n_head, n_rep = m->n_rep;
    const int total = f->ntok * n_head;
    const pg_attention_kernels *kern = pg_attention_for(f->isa, hd);
    int per_chunk = total / n_rep >= 4 * nth ? n_rep : (total + nth - 1) / nth;
    if (total / per_chunk >= PG_MAX_STAGE_CHUNKS) per_chunk = n_rep * (total / n_rep / PG_MAX_STAGE_CHUNKS + 1);
    for (int64_t c0, c1; pg_pool_next_chunks(m->pool, ith, (total + per_chunk - 1) / per_chunk, &c0, &c1);) {
        const int u1 = c1 * per_chunk < total ? (int)c1 * per_chunk : total;
        for (int u = (int)c0 * per_chunk, next; u < u1; u = next) {
            next = (u / n_rep + 1) * n_rep < u1 ? (u / n_rep + 1) * n_rep : u1;   /* this KV group's heads */
            const int t = u / n_head, g = u % n_head / n_rep, pos = f->pos[t];
            const int first = L->swa && pos >= m->p.n_swa ? pos - m->p.n_swa + 1 : 0;
            const size_t at = (size_t)t * m->n_q + (size_t)(u % n_head) * hd;
            pg_attention_group(kern, m->s.att + at, m->s.q + at, next - u, hd, pos - first,
                               m->p.type_k, pg_k_row(m, layer, g, f->seq[t], first),
                               m->p.type_v, pg_v_row(m, layer, g, f->seq[t], first), m->p.attn_scale,
                               m->p.attn_softcap, scratch);
            if (m->rot_v) pg_hadamard_rotate(m->s.att + at, (int64_t)(next - u) * hd, m->rot_v);
        }
    }
}

/* hb = act(gate a) * (up a) on a chunk of rows of both matrices, act SiLU or (Gemma) GELU, then
 * those values quantized for ffn_down: chunks hold whole activation blocks so no other thread is
 * needed */
static void gate_up(const forward_task *f, const pg_layer *L, const float *xb, int ith, int nth) {
    pg_model *m = f->m;
    const int64_t n_ff = m->p.n_ff;
    const pg_type_traits *act = pg_traits(L->w_down.traits->act_type);
    const int64_t align = act->blck_size > 16 ? act->blck_size : 16;   /* 1, 32 and 256 all divide or are multiples of 16 */
    const int act_type = L->w_down.traits->act_type;
    const size_t rb = pg_row_bytes(act, n_ff);
    const pg_quantize_fn quantize = f->k->type[act_type].quantize_act.run;
    const pg_swiglu_fn glu = m->p.ffn_gelu ? (pg_swiglu_fn)f->k->geglu.run : f->k->swiglu.run;   /* one signature */
    const int64_t step = pg_chunk_rows(n_ff, 2 * L->w_gate.n, f->ntok, align, nth);
    for (int64_t r0, r1; pg_next_rows(m->pool, ith, n_ff, step, &r0, &r1);) {
        project_rows(f, &L->w_gate, xb, f->ntok, m->s.hb, (size_t)n_ff, r0, r1, ith);
        project_rows(f, &L->w_up, xb, f->ntok, m->s.hb2, (size_t)n_ff, r0, r1, ith);
        for (int t = 0; t < f->ntok; t++) {
            float *h = m->s.hb + t * n_ff;
            glu(h + r0, m->s.hb2 + t * n_ff + r0, r1 - r0);
            if (act_type != PG_F32)
                quantize(h + r0, (char *)m->s.act_hidden.buf[act_type] + t * rb + r0 / act->blck_size * act->type_size,
                         r1 - r0);
        }
    }
}

/* x (ntok, n_embd) += W a^T, or with a post norm (Gemma) x += rmsnorm(W a^T): the whole product
 * first, then each token's row normed and added by one thread */
static void project_add(const forward_task *f, const pg_weight *w, const float *a, const float *post_norm, int ith,
                        int nth) {
    pg_model *m = f->m;
    if (!post_norm) {
        project_residual(f, w, a, f->ntok, ith, nth);
        return;
    }
    const int64_t n = m->p.n_embd, step = pg_chunk_rows(w->rows, w->n, f->ntok, 16, nth);
    for (int64_t r0, r1; pg_next_rows(m->pool, ith, w->rows, step, &r0, &r1);)
        project_rows(f, w, a, f->ntok, m->s.y, (size_t)n, r0, r1, ith);
    pg_pool_barrier(m->pool);
    float *normed = m->s.xb + (size_t)ith * m->p.n_batch * n;   /* this thread's own scratch row */
    for (int t = ith; t < f->ntok; t += nth) {
        f->k->rmsnorm.run(normed, m->s.y + t * n, post_norm, n, m->p.rms_eps);
        for (int64_t i = 0; i < n; i++) m->s.x[t * n + i] += normed[i];
    }
}

/* ---- the forward pass ----------------------------------------------------------------------- */

/* Each token's row of token_embd dequantized into the residual stream (and scaled: Gemma), and
 * its RoPE angles, the same for every layer (and those of the sliding-window layers) */
static void embed(const forward_task *f, int ith, int nth) {
    pg_model *m = f->m;
    pg_run_state *s = &m->s;
    const int64_t n_embd = m->p.n_embd;
    const pg_weight *E = &m->w.token_embd;
    for (int t = ith; t < f->ntok; t += nth) {
        float *x = s->x + t * n_embd;
        E->traits->dequantize(E->data + (size_t)f->tokens[t] * E->row_bytes, x, n_embd);
        if (m->p.embd_scale != 1.0f)
            for (int64_t i = 0; i < n_embd; i++) x[i] *= m->p.embd_scale;
        pg_rope_angles(s->rope_cs + (size_t)t * m->p.n_rot, f->pos[t], &m->rope, 1);
        if (s->rope_cs_swa != s->rope_cs) pg_rope_angles(s->rope_cs_swa + (size_t)t * m->p.n_rot, f->pos[t], &m->rope_swa, 1);
    }
}

/* logits of the wanted tokens: final rmsnorm, the output matrix, and (Gemma 2) the soft cap on
 * the rows this thread computed */
static void output_logits(const forward_task *f, int ith, int nth) {
    pg_model *m = f->m;
    float *xb = norm_quantize(f, m->s.x, m->w.output_norm, f->out_rows, f->n_out, m->w.act_output, ith);
    const pg_weight *out = &m->w.output;
    const int64_t n_vocab = m->p.n_vocab, step = pg_chunk_rows(out->rows, out->n, f->n_out, 16, nth);
    const float cap = m->p.final_softcap;
    for (int64_t r0, r1; pg_next_rows(m->pool, ith, out->rows, step, &r0, &r1);) {
        project_rows(f, out, xb, f->n_out, f->logits, (size_t)n_vocab, r0, r1, ith);
        for (int t = 0; t < f->n_out && cap > 0.0f; t++)
            for (int64_t r = r0; r < r1; r++) {
                float *z = f->logits + t * n_vocab + r;
                *z = cap * tanhf(*z * (1.0f / cap));
            }
    }
}

static void forward_worker(void *arg, int ith, int nth) {
    forward_task *f = arg;
    pg_model *m = f->m;
    pg_run_state *s = &m->s;
    pg_pool *pool = m->pool;
    const int ntok = f->ntok;
    float *scratch = s->per_thread + (size_t)ith * s->per_thread_floats;

    embed(f, ith, nth);
    pg_pool_barrier(pool);
    for (int l = 0; l < m->p.n_layer; l++) {
        const pg_layer *L = &m->w.layers[l];
        /* attention rmsnorm, quantized once (per thread) for Q, K and V */
        float *xb = norm_quantize(f, s->x, L->attn_norm, NULL, ntok, L->act_qkv, ith);
        /* q, k, v projections (biases, head norms), RoPE on q and k, this batch's keys and
         * values into the cache */
        qkv(f, L, l, xb, ith, nth);
        pg_pool_barrier(pool);
        /* causal GQA attention over the cache (or its window) */
        attention(f, L, l, scratch, ith, nth);
        pg_pool_barrier(pool);
        /* output projection (its input quantized per thread), added to the residual stream */
        quantize_rows(f, s->att, m->n_q, ntok, L->act_o, ith);
        project_add(f, &L->wo, s->att, L->post_attn_norm, ith, nth);
        pg_pool_barrier(pool);
        /* ffn rmsnorm, quantized once (per thread) for gate and up; the gated activation,
         * thread-local because gate and up use the same rows; its output quantized for down by
         * the same thread */
        xb = norm_quantize(f, s->x, L->ffn_norm, NULL, ntok, L->act_ffn, ith);
        if (m->p.n_expert) {   /* or the mixture of experts (moe.c), down and the add included */
            pg_moe_ffn(m, f->k, L, xb, s->act[ith].buf, ntok, ith, nth);
            continue;
        }
        gate_up(f, L, xb, ith, nth);
        pg_pool_barrier(pool);
        /* down projection, added to the residual stream */
        project_add(f, &L->w_down, s->hb, L->post_ffn_norm, ith, nth);
        pg_pool_barrier(pool);
    }
    if (f->n_out) output_logits(f, ith, nth);
}

static int run_batch(pg_model *m, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int ntok,
                     const int32_t *out_rows, int n_out, float *logits) {
    const int isa = pg_isa_active();
    forward_task f = {m, tokens, pos, seq, ntok, out_rows, n_out, logits, isa, pg_kernels(isa)};
    pg_pool_run_held(m->pool, forward_worker, &f);
    return PG_OK;
}

static int tokens_ok(const pg_model *m, const int32_t *tokens, int32_t n_tokens) {
    if (!tokens || n_tokens <= 0 || n_tokens > m->p.n_batch) return 0;
    for (int t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || tokens[t] >= m->p.n_vocab) return 0;
    return 1;
}

int pg_model_decode(pg_model *m, int32_t n_tokens, const int32_t *tokens, const int32_t *pos,
                    const int32_t *seq, const int8_t *want, float *logits) {
    if (!m || !tokens_ok(m, tokens, n_tokens) || !pos || !seq || !want) return PG_EBADARG;
    int n_out = 0;
    for (int t = 0; t < n_tokens; t++) {
        if (pos[t] < 0 || pos[t] >= m->p.n_ctx || seq[t] < 0 || seq[t] >= m->p.n_seq) return PG_EBADARG;
        n_out += want[t] != 0;
    }
    if (n_out && !logits) return PG_EBADARG;
    /* held before the scratch is written: a second thread decoding with this model is refused
     * with nothing touched (kv_cache.c's entry points hold it too) */
    if (pg_pool_hold(m->pool) != PG_OK) return PG_EBUSY;
    for (int t = 0, i = 0; t < n_tokens; t++)
        if (want[t]) m->s.out_rows[i++] = t;
    const int rc = run_batch(m, tokens, pos, seq, n_tokens, m->s.out_rows, n_out, logits);
    pg_pool_release(m->pool);
    return rc;
}
