"""A float64 numpy llama forward, picoGPT style: the oracle for the C forward pass.

`w` maps GGUF tensor names to float64 matrices in numpy order (rows, row length); `cache` is a
list with one (K, V) pair per layer, each [n_head_kv, n_cached, head_dim], keys stored rotated,
index = position (as in the C cache after a context shift).
"""
import numpy as np


def rmsnorm(x, w, eps):                                                  # [n, d] -> [n, d]
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_angles(pos, c, freq_factors=None, swa=False):                   # [n] -> ([n, n_rot/2], mscale)
    base, freq_scale = (c.rope_base_swa, c.rope_freq_scale_swa) if swa else (c.rope_base, c.rope_freq_scale)
    inv = base ** (-np.arange(0, c.n_rot, 2) / c.n_rot)                  # [n_rot/2] unscaled frequencies
    inv = inv if freq_factors is None else inv / freq_factors            # [n_rot/2] Llama 3.1's rope_freqs
    extrap = np.outer(pos, inv)                                          # [n, n_rot/2]
    if c.rope_scaling != "yarn":
        return extrap * freq_scale, c.yarn_attn_factor
    dim = lambda beta: c.n_rot * np.log(c.yarn_orig_ctx / (beta * 2 * np.pi)) / (2 * np.log(c.rope_base))
    low, high = max(0.0, np.floor(dim(c.yarn_beta_fast))), min(c.n_rot - 1.0, np.ceil(dim(c.yarn_beta_slow)))
    ramp = 1 - np.clip((np.arange(c.n_rot // 2) - low) / max(0.001, high - low), 0, 1)   # [n_rot/2]
    theta = extrap * c.rope_freq_scale * (1 - ramp) + extrap * ramp      # [n, n_rot/2]
    return theta, c.yarn_attn_factor * (1 + 0.1 * np.log(1 / c.rope_freq_scale))


def rope(x, theta, mscale, n_rot, neox=False):                           # [n, h, hd] -> [n, h, hd]
    x = x.copy()
    cos, sin = (np.cos(theta) * mscale)[:, None, :], (np.sin(theta) * mscale)[:, None, :]   # [n, 1, n_rot/2]
    first, second = ((slice(0, n_rot // 2), slice(n_rot // 2, n_rot)) if neox     # NEOX: pairs (i, i + n_rot/2)
                     else (slice(0, n_rot, 2), slice(1, n_rot, 2)))               # adjacent pairs
    x0, x1 = x[..., first].copy(), x[..., second].copy()                # [n, h, n_rot/2]
    x[..., first], x[..., second] = x0 * cos - x1 * sin, x0 * sin + x1 * cos
    return x


def softmax(x):                                                          # [..., P] -> [..., P]
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def silu(x):                                                             # [...] -> [...]
    return x / (1 + np.exp(-x))


def gelu(x):                                                             # [...] -> [...] the tanh approximation
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def softcap(x, cap):
    return cap * np.tanh(x / cap) if cap else x


def attention(q, K, V, pos, n_rep, c=None, window=0):                    # q [n, H, hd], K/V [Hkv, P, hd] -> [n, H*hd]
    n, H, hd = q.shape
    K, V = np.repeat(K, n_rep, axis=0), np.repeat(V, n_rep, axis=0)      # [H, P, hd] each query head's KV head
    scale = c.attn_scale if c is not None else 1 / np.sqrt(hd)
    scores = softcap(np.einsum("nhd,hpd->hnp", q, K) * scale, c.attn_softcap if c is not None else 0)  # [H, n, P]
    causal = pos[:, None] >= np.arange(K.shape[1])[None, :]              # [n, P]
    if window:                                                           # a sliding-window layer
        causal &= pos[:, None] - np.arange(K.shape[1])[None, :] < window
    probs = softmax(np.where(causal, scores, -np.inf))                   # [H, n, P]
    return np.einsum("hnp,hpd->nhd", probs, V).reshape(n, H * hd)        # [n, H*hd]


ROUTING_MARGINS = []    # the router logit of the last expert chosen minus the next one's, per token: near 0 a
                        # rounding anywhere upstream can flip the choice (tests check it is not)
ROUTING_CHOICES = []    # each token's chosen experts, best first, layer after layer


def moe(h, w, p, c):                                                     # [n, d] -> [n, d] llama.cpp's build_moe_ffn
    probs = softmax(h @ w[p + "ffn_gate_inp.weight"].T)                  # [n, n_expert]
    out = np.zeros_like(h)
    for t in range(len(h)):
        order = np.argsort(-probs[t], kind="stable")
        chosen = order[:c.n_expert_used]                                 # best first
        ROUTING_CHOICES.append(chosen)
        if c.n_expert_used < c.n_expert:
            ROUTING_MARGINS.append(np.log(probs[t, order[c.n_expert_used - 1]] / probs[t, order[c.n_expert_used]]))
        weights = probs[t, chosen] / probs[t, chosen].sum()
        for e, wt in zip(chosen, weights):
            gate = h[t] @ w[p + "ffn_gate_exps.weight"][e].T
            up = h[t] @ w[p + "ffn_up_exps.weight"][e].T
            out[t] += wt * ((silu(gate) * up) @ w[p + "ffn_down_exps.weight"][e].T)
    return out


def forward(w, c, tokens, cache, pos0, rounding=None):                   # [n] -> logits [n, n_vocab]
    """rounding: {"q", "k", "v": f([n, h, hd]) -> same}, what a quantized KV cache does to the keys
    and values it stores (and to the queries its scores read), applied after RoPE. The family
    switches of c (pygguf.model.config.Config) are followed; expert tensors are [n_expert, rows, n]."""
    n, hd = len(tokens), c.head_dim
    rounding = rounding or {}
    keep = lambda a: a                                                   # noqa: E731
    get = lambda name, default=0.0: w.get(name, default)                # noqa: E731
    pos = np.arange(pos0, pos0 + n)                                      # [n]
    neox = getattr(c, "rope_neox", False)
    x = w["token_embd.weight"][tokens] * getattr(c, "embd_scale", 1.0)  # [n, d]
    for i in range(c.n_layer):
        p = f"blk.{i}."
        swa = bool(c.swa_layers and c.swa_layers[i]) if hasattr(c, "swa_layers") else False
        theta, mscale = rope_angles(pos, c, w.get("rope_freqs.weight"), swa)   # [n, n_rot/2]
        h = rmsnorm(x, w[p + "attn_norm.weight"], c.rms_eps)             # [n, d]
        q = (h @ w[p + "attn_q.weight"].T + get(p + "attn_q.bias")).reshape(n, c.n_head, hd)      # [n, H, hd]
        k = (h @ w[p + "attn_k.weight"].T + get(p + "attn_k.bias")).reshape(n, c.n_head_kv, hd)   # [n, Hkv, hd]
        v = (h @ w[p + "attn_v.weight"].T + get(p + "attn_v.bias")).reshape(n, c.n_head_kv, hd)   # [n, Hkv, hd]
        if p + "attn_q_norm.weight" in w:
            q, k = rmsnorm(q, w[p + "attn_q_norm.weight"], c.rms_eps), rmsnorm(k, w[p + "attn_k_norm.weight"], c.rms_eps)
        q, k = rope(q, theta, mscale, c.n_rot, neox), rope(k, theta, mscale, c.n_rot, neox)
        q, k, v = (rounding.get(name, keep)(a) for name, a in (("q", q), ("k", k), ("v", v)))
        K = np.concatenate([cache[i][0][:, :pos0], k.transpose(1, 0, 2)], axis=1)   # [Hkv, pos0+n, hd]
        V = np.concatenate([cache[i][1][:, :pos0], v.transpose(1, 0, 2)], axis=1)   # [Hkv, pos0+n, hd]
        cache[i] = (K, V)
        a = attention(q, K, V, pos, c.n_rep, c, c.n_swa if swa else 0) @ w[p + "attn_output.weight"].T   # [n, d]
        x = x + (rmsnorm(a, w[p + "post_attention_norm.weight"], c.rms_eps) if p + "post_attention_norm.weight" in w else a)
        h = rmsnorm(x, w[p + "ffn_norm.weight"], c.rms_eps)              # [n, d]
        if getattr(c, "n_expert", 0):
            f = moe(h, w, p, c)
        else:
            gate, up = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T     # [n, n_ff]
            f = ((gelu(gate) if getattr(c, "ffn_gelu", False) else silu(gate)) * up) @ w[p + "ffn_down.weight"].T
        x = x + (rmsnorm(f, w[p + "post_ffw_norm.weight"], c.rms_eps) if p + "post_ffw_norm.weight" in w else f)
    x = rmsnorm(x, w["output_norm.weight"], c.rms_eps)                   # [n, d]
    return softcap(x @ w.get("output.weight", w["token_embd.weight"]).T, getattr(c, "final_softcap", 0.0))


def empty_cache(c):                                                      # -> n_layer x ([Hkv, 0, hd], same)
    return [(np.zeros((c.n_head_kv, 0, c.head_dim)),) * 2 for _ in range(c.n_layer)]


def shift_cache(cache, c, keep, discard, freq_factors=None):             # drop [keep, keep+discard), re-rotate
    theta, _ = rope_angles(np.array([-discard]), c, freq_factors)        # [1, n_rot/2] rotation by -discard
    out = []
    for K, V in cache:                                                   # [Hkv, P, hd]
        K = np.concatenate([K[:, :keep], rope(K[:, keep + discard:], theta, 1.0, c.n_rot, getattr(c, "rope_neox", False))], axis=1)
        out.append((K, np.concatenate([V[:, :keep], V[:, keep + discard:]], axis=1)))
    return out
