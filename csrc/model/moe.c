/* The mixture-of-experts FFN (Mixtral-style llama files, qwen3moe), with llama.cpp's routing
 * (build_moe_ffn): the router's logits, their softmax over all experts, the n_used most probable
 * experts (best first), their probabilities as weights, renormalised to sum 1 (its sum clamped
 * below at 2^-14 as llama.cpp does), each chosen expert's SwiGLU FFN, and the weighted outputs
 * summed in choice order and added to the residual stream.
 *
 * A batch's tokens are grouped by expert so each expert's matrices are read once for all the
 * tokens that chose it: prefill still multiplies matrices by several tokens, and a decode step
 * reads only the chosen experts' rows. Every thread routes the whole batch itself (the router is
 * n_expert rows, next to n_used experts of 3 * n_ff_exp rows each), so no barrier is needed
 * before the experts run; each expert's rows are then cut into chunks like any matrix stage. */
#include <math.h>
#include <string.h>
#include "model/model.h"
#include "model/chunks.h"

/* Per-thread views of the routing tables (pg_moe_state) */
typedef struct {
    float *logits, *weight;
    int32_t *choice, *row_of, *first, *token_of;
    int n_used_experts;
    int32_t used[512];             /* the experts some token chose, ascending (EXPERT_MAX) */
} routing;

static routing routing_of(const pg_model *m, int ith) {
    const pg_moe_state *s = &m->s.moe;
    const size_t B = (size_t)m->p.n_batch, E = (size_t)m->p.n_expert, K = (size_t)m->p.n_expert_used;
    return (routing){s->logits + ith * B * E, s->weight + ith * B * K, s->choice + ith * B * K,
                     s->row_of + ith * B * K, s->first + ith * (E + 1), s->token_of + ith * B * K, 0, {0}};
}

/* The K largest of p (n,), best first; the lower index wins a tie */
static void top_k(const float *p, int n, int K, int32_t *out) {
    for (int j = 0; j < K; j++) {
        int best = -1;
        for (int e = 0; e < n; e++) {
            int taken = 0;
            for (int i = 0; i < j; i++) taken |= out[i] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        out[j] = best;
    }
}

/* p (n,) -> softmax(p) in place, as ggml_soft_max: exp(p - max), their sum in double, each
 * multiplied by 1 / sum rounded to float */
static void softmax(float *p, int n) {
    float max = -INFINITY;
    for (int e = 0; e < n; e++) max = p[e] > max ? p[e] : max;
    double sum = 0.0;
    for (int e = 0; e < n; e++) sum += (double)(p[e] = expf(p[e] - max));
    const float inv = (float)(1.0 / sum);
    for (int e = 0; e < n; e++) p[e] *= inv;
}

/* One token's experts and weights from its router logits (turned into probabilities in place) */
static void route_token(const pg_model *m, float *logits, int32_t *choice, float *weight) {
    const int E = m->p.n_expert, K = m->p.n_expert_used;
    softmax(logits, E);
    top_k(logits, E, K, choice);
    double sum = 0.0;
    for (int j = 0; j < K; j++) sum += (double)(weight[j] = logits[choice[j]]);
    const float total = fmaxf((float)sum, 6.103515625e-5f);
    for (int j = 0; j < K && m->p.moe_norm_weights; j++) weight[j] /= total;
}

/* Routes every token and groups the (token, expert) pairs by expert */
static void route(const pg_model *m, const pg_isa_kernels *k, const pg_layer *L, const float *xb, void *const *xb_act,
                  int ntok, routing *r) {
    const int E = m->p.n_expert, K = m->p.n_expert_used;
    const int act = L->router.traits->act_type;
    const void *a = act == PG_F32 ? (const void *)xb : xb_act[act];
    pg_weight_gemm(&L->router, k, 0, E, a, pg_row_bytes(pg_traits(act), m->p.n_embd), ntok, r->logits, (size_t)E);
    int count[E + 1];
    memset(count, 0, sizeof count);
    for (int t = 0; t < ntok; t++) {
        route_token(m, r->logits + (size_t)t * E, r->choice + (size_t)t * K, r->weight + (size_t)t * K);
        for (int j = 0; j < K; j++) count[r->choice[t * K + j]]++;
    }
    r->first[0] = 0;
    for (int e = 0; e < E; e++) {
        r->first[e + 1] = r->first[e] + count[e];
        if (count[e]) r->used[r->n_used_experts++] = e;
        count[e] = 0;
    }
    for (int t = 0; t < ntok; t++)
        for (int j = 0; j < K; j++) {
            const int e = r->choice[t * K + j], row = r->first[e] + count[e]++;
            r->row_of[t * K + j] = row;
            r->token_of[row] = t;
        }
}

/* xb's rows, in each format the experts' gate and up read, copied into grouped order */
static void gather(const pg_model *m, const pg_layer *L, const float *xb, void *const *xb_act, int n_rows,
                   const routing *r, pg_act_buffers *out) {
    const int types[2] = {L->gate_exps.traits->act_type, L->up_exps.traits->act_type};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && types[1] == types[0]) break;
        const size_t rb = pg_row_bytes(pg_traits(types[i]), m->p.n_embd);
        const char *src = types[i] == PG_F32 ? (const char *)xb : xb_act[types[i]];
        for (int row = 0; row < n_rows; row++)
            memcpy((char *)out->buf[types[i]] + row * rb, src + (size_t)r->token_of[row] * rb, rb);
    }
}

/* Rows per chunk of a stage over the used experts' `rows` rows each, `row_macs` per token, so
 * that the stage has at most PG_MAX_STAGE_CHUNKS chunks */
static int64_t expert_step(int64_t rows, int64_t row_macs, int tokens_per_expert, int64_t align, int n_used, int nth) {
    int64_t step = pg_chunk_rows(rows, row_macs, tokens_per_expert, align, nth);
    const int64_t most = PG_MAX_STAGE_CHUNKS / n_used;
    if (pg_chunk_count(rows, step) > most) step = (rows / most + align) / align * align;
    return step;
}

/* hidden = silu(gate a) * (up a) for each used expert over its tokens, quantized for down */
static void experts_gate_up(pg_model *m, const pg_isa_kernels *k, const pg_layer *L, const routing *r, int ith,
                            int nth) {
    pg_moe_state *s = &m->s.moe;
    const int64_t F = m->p.n_ff_exp, n_embd = m->p.n_embd;
    const int down_act = L->down_exps.traits->act_type;
    const pg_type_traits *act = pg_traits(down_act);
    const int64_t align = act->blck_size > 16 ? act->blck_size : 16;
    const int n_rows = r->first[m->p.n_expert], U = r->n_used_experts;
    const int64_t step = expert_step(F, 2 * n_embd, (n_rows + U - 1) / U, align, U, nth);
    const int64_t per_expert = pg_chunk_count(F, step);
    const size_t rb_down = pg_row_bytes(act, F);
    const pg_act_buffers *g = &s->gathered[ith];
    for (int64_t c0, c1; pg_pool_next_chunks(m->pool, ith, U * per_expert, &c0, &c1);)
        for (int64_t c = c0; c < c1; c++) {
            const int e = r->used[c / per_expert], first = r->first[e], n_tok = r->first[e + 1] - first;
            const int64_t r0 = c % per_expert * step, r1 = r0 + step < F ? r0 + step : F, base = (int64_t)e * F;
            const pg_weight *w[2] = {&L->gate_exps, &L->up_exps};
            float *y[2] = {s->hidden + (size_t)first * F, s->hidden2 + (size_t)first * F};
            for (int i = 0; i < 2; i++) {
                const int a = w[i]->traits->act_type;
                const size_t rb = pg_row_bytes(pg_traits(a), n_embd);
                pg_weight_gemm(w[i], k, base + r0, base + r1, (const char *)g->buf[a] + (size_t)first * rb, rb, n_tok,
                               y[i] + r0, (size_t)F);
            }
            for (int t = 0; t < n_tok; t++) {
                float *h = y[0] + (size_t)t * F;
                k->swiglu.run(h + r0, y[1] + (size_t)t * F + r0, r1 - r0);
                if (down_act != PG_F32)
                    k->type[down_act].quantize_act.run(h + r0, (char *)s->hidden_act.buf[down_act] +
                                                       (size_t)(first + t) * rb_down + r0 / act->blck_size * act->type_size,
                                                       r1 - r0);
            }
        }
}

/* out = down hidden for each used expert over its tokens */
static void experts_down(pg_model *m, const pg_isa_kernels *k, const pg_layer *L, const routing *r, int ith, int nth) {
    pg_moe_state *s = &m->s.moe;
    const int64_t F = m->p.n_ff_exp, n_embd = m->p.n_embd;
    const int a = L->down_exps.traits->act_type;
    const size_t rb = pg_row_bytes(pg_traits(a), F);
    const char *in = a == PG_F32 ? (const char *)s->hidden : s->hidden_act.buf[a];
    const int n_rows = r->first[m->p.n_expert], U = r->n_used_experts;
    const int64_t step = expert_step(n_embd, F, (n_rows + U - 1) / U, 16, U, nth);
    const int64_t per_expert = pg_chunk_count(n_embd, step);
    for (int64_t c0, c1; pg_pool_next_chunks(m->pool, ith, U * per_expert, &c0, &c1);)
        for (int64_t c = c0; c < c1; c++) {
            const int e = r->used[c / per_expert], first = r->first[e], n_tok = r->first[e + 1] - first;
            const int64_t r0 = c % per_expert * step, r1 = r0 + step < n_embd ? r0 + step : n_embd;
            const int64_t base = (int64_t)e * n_embd;
            pg_weight_gemm(&L->down_exps, k, base + r0, base + r1, in + (size_t)first * rb, rb, n_tok,
                           s->out + (size_t)first * n_embd + r0, (size_t)n_embd);
        }
}

/* x += the weighted sum of each token's experts' outputs, in choice order, rows cut in chunks */
static void combine(pg_model *m, const routing *r, int ntok, int ith, int nth) {
    const int64_t n_embd = m->p.n_embd, K = m->p.n_expert_used;
    const int64_t step = pg_chunk_rows(n_embd, K, ntok, 16, nth);
    const float *out = m->s.moe.out;
    for (int64_t r0, r1; pg_next_rows(m->pool, ith, n_embd, step, &r0, &r1);)
        for (int t = 0; t < ntok; t++) {
            const int32_t *rows = r->row_of + t * K;
            const float *w = r->weight + t * K;
            float *x = m->s.x + t * n_embd;
            for (int64_t i = r0; i < r1; i++) {
                float sum = out[rows[0] * n_embd + i] * w[0];
                for (int j = 1; j < K; j++) sum = sum + out[rows[j] * n_embd + i] * w[j];
                x[i] = sum + x[i];
            }
        }
}

void pg_moe_ffn(pg_model *m, const pg_isa_kernels *k, const pg_layer *L, const float *xb, void *const *xb_act,
                int ntok, int ith, int nth) {
    routing r = routing_of(m, ith);
    route(m, k, L, xb, xb_act, ntok, &r);
    gather(m, L, xb, xb_act, r.first[m->p.n_expert], &r, &m->s.moe.gathered[ith]);
    experts_gate_up(m, k, L, &r, ith, nth);
    pg_pool_barrier(m->pool);
    experts_down(m, k, L, &r, ith, nth);
    pg_pool_barrier(m->pool);
    combine(m, &r, ntok, ith, nth);
    pg_pool_barrier(m->pool);
}
