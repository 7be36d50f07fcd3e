/* Python-facing llama forward pass (cdef'd by cffi).
 * A model is weights (views into one read-only mapping, validated here), a run state with every
 * scratch buffer allocated once, and a KV cache (F16, q8_0 or q4_0) of n_seq sequences of n_ctx positions each.
 * Sequences never see each other's cells: a batch may mix tokens of several sequences (batched
 * decoding), and each token's logits are bit-identical to those of the same tokens run alone.
 * Every entry point returns 0 or a negative PG_E* code (api/status.h). */
#ifndef PYGGUF_API_MODEL_H
#define PYGGUF_API_MODEL_H

#include "api/pool.h"

typedef struct pg_model pg_model;

/* Hyper-parameters, filled by Python from the GGUF metadata. */
typedef struct {
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_rot;
    int32_t n_ctx;              /* KV cache positions of each sequence */
    int32_t n_batch;            /* most tokens per pg_model_decode call */
    int32_t n_seq;              /* sequences the KV cache holds (1..256) */
    int32_t type_k, type_v;     /* KV cache types, ggml ids: PG_F16, or PG_Q8_0 / PG_Q4_0 when
                                   head_dim % 32 == 0 (else PG_EBADTYPE) */
    float rms_eps;
    float rope_base;            /* theta_i = pos * freq_scale * rope_base^(-2i/n_rot) */
    float rope_freq_scale;      /* 1/factor for linear and YaRN scaling, else 1 */
    int32_t rope_yarn;          /* 1: YaRN ramp between interpolated and extrapolated angles */
    int32_t yarn_n_ctx_orig;    /* the context the model was trained with before scaling */
    float yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;  /* yarn_attn_factor: cos and
                                   sin are scaled by it without YaRN too (Phi-3 LongRoPE's attn_factor) */
    int32_t gguf_layout_only;   /* 1: multiply by the mapped GGUF rows only (0: repack where faster) */
    int32_t attn_rot_disable;   /* 1: no Hadamard rotation of a quantized cache (llama.cpp's
                                   LLAMA_ATTN_ROT_DISABLE); 0: q, k, v rotated as llama.cpp does
                                   when type_k / type_v is quantized and head_dim % 64 == 0 */
    int32_t map_is_file;        /* 1: the map is a shared read-only mapping of a file, whose pages
                                 * under a repacked matrix are handed back once it is repacked */

    /* The family's switches (llama: all off), read once at load: pygguf/model/config.py */
    int32_t rope_neox;          /* 1: RoPE rotates pairs (i, i + n_rot/2) (NEOX: Qwen, Gemma, Phi-3);
                                   0: adjacent pairs (2i, 2i+1) */
    float embd_scale;           /* token embeddings multiplied by it (Gemma: sqrt(n_embd)); 1: none */
    float attn_scale;           /* attention scores = attn_scale * q.k (1/sqrt(head_dim) for most) */
    float attn_softcap;         /* > 0: scores -> cap * tanh(scores / cap) before the softmax (Gemma 2) */
    float final_softcap;        /* > 0: logits -> cap * tanh(logits / cap) (Gemma 2) */
    int32_t ffn_gelu;           /* 1: FFN hidden = gelu(gate) * up (Gemma); 0: silu(gate) * up */
    int32_t n_swa;              /* > 0: on the layers with swa_layers[l], a token at pos sees
                                   positions pos - n_swa + 1 .. pos only (sliding window) */
    const uint8_t *swa_layers;  /* (n_layer,) 1: a sliding-window layer; NULL: none */
    float rope_base_swa, rope_freq_scale_swa;  /* RoPE of the sliding-window layers (Gemma 3's local base) */
    int32_t n_expert, n_expert_used;  /* mixture of experts: experts per layer and used per token (0: dense) */
    int32_t n_ff_exp;           /* hidden size of one expert */
    int32_t moe_norm_weights;   /* 1: the chosen experts' softmax weights renormalised to sum 1 */
} pg_model_params;

/* One tensor: where its bytes start in the mapping, its type, ggml shape (ne0 = row length). */
typedef struct {
    uint64_t offset;
    int32_t type;
    int64_t ne0, ne1;
} pg_tensor_desc;

/* Tensor order: token_embd, output_norm, output, rope_freqs, then for each layer its
 * PG_LAYER_TENSORS slots in this order (4 + PG_LAYER_TENSORS * n_layer entries):
 *   attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down,
 *   attn_q bias, attn_k bias, attn_v bias (F32 vectors: Qwen2),
 *   attn_q_norm, attn_k_norm (F32 (head_dim,): RMSNorm of each head of q and k: Qwen3, Gemma 3),
 *   post_attention_norm, post_ffw_norm (F32 (n_embd,): the attention and FFN outputs normed before
 *   the residual add: Gemma 2/3),
 *   ffn_gate_inp (n_expert rows of n_embd: the router), ffn_gate_exps, ffn_up_exps
 *   (n_expert * n_ff_exp rows of n_embd, expert e's rows at e * n_ff_exp), ffn_down_exps
 *   (n_expert * n_embd rows of n_ff_exp).
 * A slot with ne0 == 0 is absent: an absent output is tied to token_embd, an absent rope_freqs
 * means none (else F32, n_rot/2 divisors of the RoPE angles); the three biases, the two head
 * norms and the two post norms are each optional; a MoE model (n_expert > 0) has the four
 * expert slots and not ffn_gate/ffn_up/ffn_down, a dense one the reverse. A fused tensor of the
 * file (Phi-3's attn_qkv, its ffn_up of gate and up rows) is given as the row ranges of its parts.
 * On a bad tensor *bad_tensor is its index, else -1. */
enum { PG_GLOBAL_TENSORS = 4, PG_LAYER_TENSORS = 20 };
int pg_model_new(const pg_model_params *params, const void *map, size_t map_size,
                 const pg_tensor_desc *tensors, int64_t n_tensors, pg_pool *pool,
                 pg_model **out, int64_t *bad_tensor);
void pg_model_free(pg_model *m);

/* One forward pass over a batch: token i goes to sequence seq[i] (0..n_seq-1) at position pos[i] (0..n_ctx-1)
 * and attends to that sequence's positions 0..pos[i], which this batch or an earlier one must
 * have filled. Rows of logits (n_vocab each) are written, in batch order, for the tokens with
 * want[i] != 0. */
int pg_model_decode(pg_model *m, int32_t n_tokens, const int32_t *tokens, const int32_t *pos,
                    const int32_t *seq, const int8_t *want, float *logits);

/* Context shift of one sequence holding n_past positions: drop [keep, keep + discard), move the
 * later entries down and rotate their keys by -discard positions. */
int pg_model_kv_shift(pg_model *m, int32_t seq, int32_t n_past, int32_t keep, int32_t discard);

/* Positions [0, n) of sequence src copied to sequence dst (a shared prompt prefix computed once). */
int pg_model_kv_copy(pg_model *m, int32_t src, int32_t dst, int32_t n);

/* Positions [0, n) of sequence seq as bytes (a saved state): every (layer, KV head)'s n K rows,
 * then every (layer, KV head)'s n V rows, as the cache holds them (its type; Hadamard-rotated
 * when the cache is). size must be exactly pg_model_kv_export_bytes(n); kv_import puts such bytes
 * back into the sequence's positions [0, n). */
int pg_model_kv_export_bytes(const pg_model *m, int32_t n, uint64_t *size);
int pg_model_kv_export(const pg_model *m, int32_t seq, int32_t n, void *out, size_t size);
int pg_model_kv_import(pg_model *m, int32_t seq, int32_t n, const void *in, size_t size);

#endif
