"""A float64 numpy forward of the tiny family models, written from llama.cpp's graphs
(src/models/<arch>.cpp, src/llama-graph.cpp): an executable statement of what each family computes.

It is checked against llama.cpp's recorded F16 logits (tests/model/test_families_llamacpp.py), so
the facts it encodes are llama.cpp's: which rope pairs rotate, where scales and softcaps apply,
which layers slide, how experts are chosen and weighted. Whole-prompt evaluation only (no cache).
"""
from __future__ import annotations

import numpy as np

from families.models import FAMILIES, N_VOCAB, PHI3_LONGROPE_ORIG_CTX, Family


def load_weights(path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file dequantized to float64, numpy order (ggml shape reversed)."""
    from pygguf.gguf import GGUFReader
    from pygguf.model import kernels

    out = {}
    with GGUFReader(path) as r:
        for name, t in r.tensors.items():
            n = int(np.prod(t.shape))
            x = np.asarray(t.data).view(np.float32)[:n].copy() if t.qtype.name == "F32" else \
                kernels.dequantize(t.qtype, t.data, n)
            out[name] = x.astype(np.float64).reshape(tuple(reversed(t.shape)))
    return out


def r16(x):
    """x rounded to fp16 (and back): what llama.cpp's CPU backend does to the activations of a
    product with an F16 matrix, to K and V in its F16 cache, to Q in K*Q, and to the softmax
    probabilities in V*softmax(KQ)."""
    return x.astype(np.float16).astype(np.float64)


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def silu(x):
    return x / (1 + np.exp(-x))


def gelu_tanh(x):
    # ggml_gelu: the tanh approximation (the CPU backend reads it from an fp16 table)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * x * (1 + 0.044715 * x * x)))


def rope(x, pos, base, neox, freq_scale=1.0, factors=None, mscale=1.0):
    """x [n, heads, hd]; NORM rotates (2i, 2i+1), NEOX rotates (i, i + hd/2); theta_i =
    pos * freq_scale * base^(-2i/hd) / factors[i]; cos and sin both times mscale."""
    hd = x.shape[-1]
    inv = base ** (-np.arange(0, hd, 2) / hd)
    if factors is not None:
        inv = inv / factors
    theta = np.outer(pos, inv) * freq_scale                       # [n, hd/2]
    cos, sin = (np.cos(theta) * mscale)[:, None, :], (np.sin(theta) * mscale)[:, None, :]
    if neox:
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
    return out


def metadata_value(f: Family, suffix: str, default=None):
    for s, value, _ in f.extra:
        if s == suffix:
            return value
    return default


def layer_is_swa(f: Family, il: int) -> bool:
    """gemma2: llama_hparams::set_swa_pattern(2): even layers slide; gemma3: pattern 6, layers
    il % 6 < 5 slide; phi3: its sliding_window key is ignored (swa_type NONE)."""
    if f.arch == "gemma2":
        return il % 2 < 1
    if f.arch == "gemma3":
        return il % 6 < 5
    return False


def moe(h, w, p, f: Family, trace=None, mm=None):
    """softmax over all experts, top-k by probability, the k probabilities renormalised to sum 1,
    each expert's down(silu(gate h) * up h) times its weight, summed in rank order."""
    logits = h @ w[p + "ffn_gate_inp.weight"].T                  # [n, n_expert]
    probs = softmax(logits)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :f.n_expert_used]
    if trace is not None:
        trace.append(logits)
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        sel = probs[t, top[t]]
        weights = sel / sel.sum()
        for e, wt in zip(top[t], weights):
            g = mm(h[t], w[p + "ffn_gate_exps.weight"][e])
            u = mm(h[t], w[p + "ffn_up_exps.weight"][e])
            out[t] += wt * mm(silu(g) * u, w[p + "ffn_down_exps.weight"][e])
    return out


def forward(f: Family | str, w: dict, tokens, n_ctx: int = 256, router_trace=None, f16: bool = False) -> np.ndarray:
    """logits [n, n_vocab] of the whole token sequence at positions 0..n-1. n_ctx: the context
    llama.cpp runs (its n_ctx_seq, 256 here), which picks phi3's long or short rope factors.
    f16: round where llama.cpp's F16 path rounds (r16), for F16 files."""
    rnd = r16 if f16 else (lambda a: a)

    def mm(x, m):                       # x [.., k] times matrix m [rows, k] (numpy order)
        return rnd(x) @ m.T
    f = FAMILIES[f] if isinstance(f, str) else f
    tokens = np.asarray(tokens)
    n, hd = len(tokens), f.head_dim
    pos = np.arange(n)
    neox = f.arch != "llama"
    gemma = f.arch in ("gemma2", "gemma3")
    eps = f.rms_eps
    x = w["token_embd.weight"][tokens].copy()
    if gemma:
        x *= np.sqrt(f.n_embd)
    factors, mscale = None, 1.0
    if f.longrope:
        factors = w["rope_factors_long.weight" if n_ctx > PHI3_LONGROPE_ORIG_CTX else "rope_factors_short.weight"]
        scale = f.n_ctx_train / PHI3_LONGROPE_ORIG_CTX
        mscale = np.float32(np.sqrt(1 + np.log(scale) / np.log(PHI3_LONGROPE_ORIG_CTX)))
    attn_cap = metadata_value(f, "attn_logit_softcapping") if f.arch == "gemma2" else None
    final_cap = metadata_value(f, "final_logit_softcapping")
    window = metadata_value(f, "attention.sliding_window")
    linear = metadata_value(f, "rope.scaling.factor", 1.0)
    causal = pos[:, None] >= pos[None, :]
    for il in range(f.n_layer):
        p = f"blk.{il}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], eps)
        if f.fused_qkv:
            qkv = mm(h, w[p + "attn_qkv.weight"])
            q, k, v = np.split(qkv, [f.n_embd_q, f.n_embd_q + f.n_embd_kv], axis=1)
        else:
            q, k, v = (mm(h, w[p + f"attn_{c}.weight"]) for c in "qkv")
        if f.qkv_bias:
            q, k, v = q + w[p + "attn_q.bias"], k + w[p + "attn_k.bias"], v + w[p + "attn_v.bias"]
        q, k, v = q.reshape(n, f.n_head, hd), k.reshape(n, f.n_head_kv, hd), v.reshape(n, f.n_head_kv, hd)
        if f.qk_norm:
            q, k = rmsnorm(q, w[p + "attn_q_norm.weight"], eps), rmsnorm(k, w[p + "attn_k_norm.weight"], eps)
        swa = layer_is_swa(f, il)
        base, fscale = f.rope_base, 1.0 / linear
        if swa:      # gemma3: rope_freq_base_train_swa defaults to 10000; gemma2 copies freq_base
            base, fscale = (10000.0 if f.arch == "gemma3" else f.rope_base), 1.0
        q = rope(q, pos, base, neox, fscale, factors, mscale)
        k = rope(k, pos, base, neox, fscale, factors, mscale)
        rep = f.n_head // f.n_head_kv
        K, V = np.repeat(rnd(k), rep, axis=1), np.repeat(rnd(v), rep, axis=1)  # [n, H, hd]
        scores = np.einsum("qhd,khd->hqk", rnd(q), K) / np.sqrt(hd)
        if attn_cap:
            scores = attn_cap * np.tanh(scores / attn_cap)
        mask = causal & ((pos[:, None] - pos[None, :]) < window) if swa else causal
        probs = softmax(np.where(mask, scores, -np.inf))
        attn = mm(np.einsum("hqk,khd->qhd", rnd(probs), V).reshape(n, f.n_embd_q), w[p + "attn_output.weight"])
        if f.post_norms:
            attn = rmsnorm(attn, w[p + "post_attention_norm.weight"], eps)
        x = x + attn
        h = rmsnorm(x, w[p + "ffn_norm.weight"], eps)
        if f.n_expert:
            ff = moe(h, w, p, f, router_trace, mm)
        elif f.fused_up:
            gate, up = np.split(mm(h, w[p + "ffn_up.weight"]), 2, axis=1)   # gate rows first
            ff = mm(silu(gate) * up, w[p + "ffn_down.weight"])
        else:
            gate, up = mm(h, w[p + "ffn_gate.weight"]), mm(h, w[p + "ffn_up.weight"])
            act = gelu_tanh(gate) if gemma else silu(gate)
            ff = mm(act * up, w[p + "ffn_down.weight"])
        if f.post_norms:
            ff = rmsnorm(ff, w[p + "post_ffw_norm.weight"], eps)
        x = x + ff
    x = rmsnorm(x, w["output_norm.weight"], eps)
    logits = mm(x, w.get("output.weight", w["token_embd.weight"]))
    if final_cap:
        logits = final_cap * np.tanh(logits / final_cap)
    assert logits.shape == (n, N_VOCAB)
    return logits
