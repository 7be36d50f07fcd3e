/* The llama model in C, llama2.c style: hyper-parameters, weights (pointers into the mapped
 * file, validated in load.c), a run state whose scratch buffers are all allocated once at load,
 * and the KV cache (F16, q8_0 or q4_0 rows). forward.c reads them top to bottom; every kernel comes from the dispatch
 * table (kernels/dispatch.h). */
#ifndef PYGGUF_MODEL_H
#define PYGGUF_MODEL_H

#include <stdint.h>
#include <stddef.h>
#include "api/model.h"
#include "core/threadpool.h"
#include "kernels/dispatch.h"
#include "model/rope.h"
#include "model/hadamard.h"

/* One weight matrix: rows of n values, stored row after row in `data`; and, for the types an
 * x86 kernel reads faster that way, the same rows repacked once at load (weights.c). */
typedef struct {
    const char *data;              /* first row, inside the mapping */
    const pg_type_traits *traits;  /* its type */
    int type;
    int64_t n, rows;               /* ne0 (row length), ne1 */
    size_t row_bytes;
    void *packed;                  /* the rows in the type's repacked layout (kernels/repack.h), or NULL */
} pg_weight;

typedef struct {
    const float *attn_norm;        /* (n_embd,) */
    pg_weight wq;                  /* (n_q rows, n_embd)   n_q = n_head * head_dim */
    pg_weight wk, wv;              /* (n_kv rows, n_embd)  n_kv = n_head_kv * head_dim */
    pg_weight wo;                  /* (n_embd rows, n_q) */
    const float *ffn_norm;         /* (n_embd,) */
    pg_weight w_gate, w_up;        /* (n_ff rows, n_embd) */
    pg_weight w_down;              /* (n_embd rows, n_ff) */
    const float *bq, *bk, *bv;     /* (n_q,), (n_kv,), (n_kv,) projection biases, or NULL */
    const float *q_norm, *k_norm;  /* (head_dim,) RMSNorm weights of each q and k head, or NULL */
    const float *post_attn_norm, *post_ffn_norm;  /* (n_embd,) or NULL */
    pg_weight router;              /* MoE: (n_expert rows, n_embd) */
    pg_weight gate_exps, up_exps;  /* MoE: (n_expert * n_ff_exp rows, n_embd), expert by expert */
    pg_weight down_exps;           /* MoE: (n_expert * n_embd rows, n_ff_exp) */
    int swa;                       /* a sliding-window layer (model p.n_swa) */
    uint32_t act_qkv, act_o, act_ffn, act_down;  /* bit t: activation format t is read */
} pg_layer;

typedef struct {
    pg_weight token_embd;          /* (n_vocab rows, n_embd) */
    const float *output_norm;      /* (n_embd,) */
    const float *rope_freqs;       /* (n_rot/2,) or NULL */
    pg_weight output;              /* (n_vocab rows, n_embd); token_embd when tied */
    pg_layer *layers;              /* (n_layer,) */
    uint32_t act_output;
} pg_weights;

/* Activations quantized for the weights that read them: one buffer per activation format the
 * model's weights use (F32 needs none: the float input is used as is). */
typedef struct {
    void *buf[PG_TYPE_COUNT];      /* (n_batch, row bytes of max(n_embd, n_q, n_ff) values) */
} pg_act_buffers;

/* A mixture-of-experts layer's scratch (moe.c). Each thread routes every token itself (the router
 * is small), so the routing, the grouping of the batch's tokens by expert and the gathered
 * activations are per thread, identical on all; the experts' hidden states and outputs are
 * shared, cut by rows. A "grouped row" is one (token, chosen expert) pair: expert e's tokens
 * take grouped rows first[e] .. first[e + 1] - 1, in token order. */
typedef struct {
    float *logits;                 /* (n_threads, n_batch, n_expert) router softmax */
    int32_t *choice;               /* (n_threads, n_batch, n_used) each token's experts, best first */
    float *weight;                 /* (n_threads, n_batch, n_used) their weights */
    int32_t *row_of;               /* (n_threads, n_batch, n_used) the grouped row of each choice */
    int32_t *first;                /* (n_threads, n_expert + 1) each expert's first grouped row */
    int32_t *token_of;             /* (n_threads, n_batch * n_used) the token of each grouped row */
    pg_act_buffers *gathered;      /* (n_threads,) xb's quantized rows in grouped order */
    float *hidden, *hidden2;       /* (n_batch * n_used, n_ff_exp) act(gate) * up, and up */
    pg_act_buffers hidden_act;     /* hidden quantized for down */
    float *out;                    /* (n_batch * n_used, n_embd) each expert's output, grouped rows */
} pg_moe_state;

typedef struct {
    float *x;                      /* (n_batch, n_embd) residual stream */
    float *xb;                     /* (n_threads, n_batch, n_embd) each thread's normed residual */
    float *q;                      /* (n_batch, n_q) queries */
    float *k, *v;                  /* (n_batch, n_kv) this batch's keys and values */
    float *att;                    /* (n_batch, n_q) attention output */
    float *y;                      /* (n_batch, n_embd) projection output before the residual add */
    float *hb, *hb2;               /* (n_batch, n_ff) silu(gate) * up, and up */
    float *rope_cs;                /* (n_batch, n_rot) each token's RoPE cos, sin pairs */
    float *rope_cs_swa;            /* the same for the sliding-window layers' RoPE, or rope_cs when alike */
    pg_act_buffers *act;           /* (n_threads,) each thread's quantized xb and att */
    pg_act_buffers act_hidden;     /* of hb, the input of ffn_down */
    float *per_thread;             /* (n_threads, per_thread_floats) scores, rope and K/V rows */
    size_t per_thread_floats;
    size_t angles_offset;          /* where each thread's RoPE angles start: (2, n_rot), the full-attention and the sliding-window layers' (a context shift) */
    int32_t *out_rows;          /* (n_batch,) the batch rows whose logits are wanted */
    pg_moe_state moe;              /* mixture-of-experts layers only */
    char *k_cache, *v_cache;       /* (n_layer, n_head_kv, n_seq, n_ctx) rows of head_dim values, */
    size_t k_row_bytes, v_row_bytes; /* of the types p.type_k, p.type_v */
} pg_run_state;

struct pg_model {
    pg_model_params p;
    int n_q, n_kv, n_rep;          /* n_head * head_dim, n_head_kv * head_dim, n_head / n_head_kv */
    int rot_k, rot_v;              /* Hadamard blocks of q and k, of v and the attention output, or
                                      0: unrotated (model/hadamard.h) */
    pg_rope_params rope, rope_swa; /* of the full-attention and the sliding-window layers */
    int64_t qkv_align;             /* rows a chunk of q, k and v is a multiple of (forward.c) */
    pg_weights w;
    pg_run_state s;
    pg_pool *pool;
    int n_threads;
};

/* The cached row of (layer, KV head) for position pos of sequence seq in a cache of rows of
 * row_bytes: each sequence's positions are contiguous, so attention reads one sequence as one
 * array. pg_k_row / pg_v_row: of the K or the V cache. */
static inline char *pg_kv_row(char *cache, size_t row_bytes, const pg_model *m, int layer, int kv_head, int seq,
                              int pos) {
    size_t head = (size_t)layer * m->p.n_head_kv + kv_head;
    return cache + ((head * m->p.n_seq + seq) * m->p.n_ctx + pos) * row_bytes;
}
static inline char *pg_k_row(const pg_model *m, int layer, int kv_head, int seq, int pos) {
    return pg_kv_row(m->s.k_cache, m->s.k_row_bytes, m, layer, kv_head, seq, pos);
}
static inline char *pg_v_row(const pg_model *m, int layer, int kv_head, int seq, int pos) {
    return pg_kv_row(m->s.v_cache, m->s.v_row_bytes, m, layer, kv_head, seq, pos);
}

/* x (n,) floats stored as n values of a cache type (n a whole number of its blocks) with the
 * conversion of the ISA row k, which is llama.cpp's when it writes its cache (its from_float):
 * F16 rounded to nearest even, q8_0 with the run-time rounding of activations, q4_0 with the
 * reference quantizer (the scalar row's q4_0 activation quantizer is quants/q4_0.c's). */
static inline void pg_kv_store(const pg_isa_kernels *k, int type, void *dst, const float *x, int64_t n) {
    if (type == PG_F16) k->f16_row.run(dst, x, n);
    else k->type[type].quantize_act.run(x, dst, n);
}

/* Rows [r0, r1) of W (r0 a multiple of 8) times ntok activation rows in W's activation format,
 * a_stride bytes apart, into y[t*ldy + r - r0], with the kernels of an ISA's row (pg_kernels):
 * the repacked rows when W has them and the row a kernel for them, else the GGUF rows. Either
 * gives the same bits. */
void pg_weight_gemm(const pg_weight *w, const pg_isa_kernels *k, int64_t r0, int64_t r1, const void *a,
                    size_t a_stride, int ntok, float *y, size_t ldy);

/* W's rows repacked when its type has a repacked kernel in the row k; a matrix that cannot get
 * the memory keeps its GGUF rows only. pg_weight_free_packed releases them. */
void pg_weight_repack(pg_weight *w, const pg_isa_kernels *k, pg_pool *pool);
void pg_weight_free_packed(pg_weight *w);

/* x (ntok, n_embd) += the mixture-of-experts FFN of layer L on xb (ntok, n_embd), this thread's
 * normed copy, whose quantized rows are in xb_act (moe.c); ends at a barrier */
void pg_moe_ffn(pg_model *m, const pg_isa_kernels *k, const pg_layer *L, const float *xb, void *const *xb_act,
                int ntok, int ith, int nth);

/* The rows a chunk of the q, k, v stage is a multiple of (forward.c), fixed at load */
int64_t pg_qkv_align(const pg_model *m);

/* pg_weight_repack / pg_weight_free_packed on every matrix the forward multiplies by */
void pg_weights_repack(pg_model *m, const pg_isa_kernels *k);
void pg_weights_free_packed(pg_model *m);

#endif
