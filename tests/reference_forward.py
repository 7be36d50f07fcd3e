"""A float64 numpy llama forward, picoGPT style: the oracle for the C forward pass.

`w` maps GGUF tensor names to float64 matrices in numpy order (rows, row length); `cache` is a
list with one (K, V) pair per layer, each [n_head_kv, n_cached, head_dim], keys stored rotated,
index = position (as in the C cache after a context shift).
"""
import numpy as np


def rmsnorm(x, w, eps):                                                  # [n, d] -> [n, d]
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_angles(pos, c, freq_factors=None):                              # [n] -> ([n, n_rot/2], mscale)
    inv = c.rope_base ** (-np.arange(0, c.n_rot, 2) / c.n_rot)           # [n_rot/2] unscaled frequencies
    inv = inv if freq_factors is None else inv / freq_factors            # [n_rot/2] Llama 3.1's rope_freqs
    extrap = np.outer(pos, inv)                                          # [n, n_rot/2]
    if c.rope_scaling != "yarn":
        return extrap * c.rope_freq_scale, 1.0
    dim = lambda beta: c.n_rot * np.log(c.yarn_orig_ctx / (beta * 2 * np.pi)) / (2 * np.log(c.rope_base))
    low, high = max(0.0, np.floor(dim(c.yarn_beta_fast))), min(c.n_rot - 1.0, np.ceil(dim(c.yarn_beta_slow)))
    ramp = 1 - np.clip((np.arange(c.n_rot // 2) - low) / max(0.001, high - low), 0, 1)   # [n_rot/2]
    theta = extrap * c.rope_freq_scale * (1 - ramp) + extrap * ramp      # [n, n_rot/2]
    return theta, c.yarn_attn_factor * (1 + 0.1 * np.log(1 / c.rope_freq_scale))


def rope(x, theta, mscale, n_rot):                                       # [n, h, hd] -> [n, h, hd]
    x = x.copy()
    cos, sin = (np.cos(theta) * mscale)[:, None, :], (np.sin(theta) * mscale)[:, None, :]   # [n, 1, n_rot/2]
    x0, x1 = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()          # [n, h, n_rot/2] adjacent pairs
    x[..., 0:n_rot:2], x[..., 1:n_rot:2] = x0 * cos - x1 * sin, x0 * sin + x1 * cos
    return x


def softmax(x):                                                          # [..., P] -> [..., P]
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def silu(x):                                                             # [...] -> [...]
    return x / (1 + np.exp(-x))


def attention(q, K, V, pos, n_rep):                                      # q [n, H, hd], K/V [Hkv, P, hd] -> [n, H*hd]
    n, H, hd = q.shape
    K, V = np.repeat(K, n_rep, axis=0), np.repeat(V, n_rep, axis=0)      # [H, P, hd] each query head's KV head
    scores = np.einsum("nhd,hpd->hnp", q, K) / np.sqrt(hd)               # [H, n, P]
    causal = pos[:, None] >= np.arange(K.shape[1])[None, :]              # [n, P]
    probs = softmax(np.where(causal, scores, -np.inf))                   # [H, n, P]
    return np.einsum("hnp,hpd->nhd", probs, V).reshape(n, H * hd)        # [n, H*hd]


def forward(w, c, tokens, cache, pos0, rounding=None):                   # [n] -> logits [n, n_vocab]
    """rounding: {"q", "k", "v": f([n, h, hd]) -> same}, what a quantized KV cache does to the keys
    and values it stores (and to the queries its scores read), applied after RoPE"""
    n, hd = len(tokens), c.head_dim
    rounding = rounding or {}
    keep = lambda a: a                                                   # noqa: E731
    pos = np.arange(pos0, pos0 + n)                                      # [n]
    theta, mscale = rope_angles(pos, c, w.get("rope_freqs.weight"))      # [n, n_rot/2]
    x = w["token_embd.weight"][tokens]                                   # [n, d]
    for i in range(c.n_layer):
        p = f"blk.{i}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], c.rms_eps)             # [n, d]
        q = (h @ w[p + "attn_q.weight"].T).reshape(n, c.n_head, hd)      # [n, H, hd]
        k = (h @ w[p + "attn_k.weight"].T).reshape(n, c.n_head_kv, hd)   # [n, Hkv, hd]
        v = (h @ w[p + "attn_v.weight"].T).reshape(n, c.n_head_kv, hd)   # [n, Hkv, hd]
        q, k = rope(q, theta, mscale, c.n_rot), rope(k, theta, mscale, c.n_rot)
        q, k, v = (rounding.get(name, keep)(a) for name, a in (("q", q), ("k", k), ("v", v)))
        K = np.concatenate([cache[i][0][:, :pos0], k.transpose(1, 0, 2)], axis=1)   # [Hkv, pos0+n, hd]
        V = np.concatenate([cache[i][1][:, :pos0], v.transpose(1, 0, 2)], axis=1)   # [Hkv, pos0+n, hd]
        cache[i] = (K, V)
        x = x + attention(q, K, V, pos, c.n_rep) @ w[p + "attn_output.weight"].T      # [n, d]
        h = rmsnorm(x, w[p + "ffn_norm.weight"], c.rms_eps)              # [n, d]
        gate, up = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T     # [n, n_ff]
        x = x + (silu(gate) * up) @ w[p + "ffn_down.weight"].T           # [n, d]
    x = rmsnorm(x, w["output_norm.weight"], c.rms_eps)                   # [n, d]
    return x @ w.get("output.weight", w["token_embd.weight"]).T          # [n, n_vocab]


def empty_cache(c):                                                      # -> n_layer x ([Hkv, 0, hd], same)
    return [(np.zeros((c.n_head_kv, 0, c.head_dim)),) * 2 for _ in range(c.n_layer)]


def shift_cache(cache, c, keep, discard, freq_factors=None):             # drop [keep, keep+discard), re-rotate
    theta, _ = rope_angles(np.array([-discard]), c, freq_factors)        # [1, n_rot/2] rotation by -discard
    out = []
    for K, V in cache:                                                   # [Hkv, P, hd]
        K = np.concatenate([K[:, :keep], rope(K[:, keep + discard:], theta, 1.0, c.n_rot)], axis=1)
        out.append((K, np.concatenate([V[:, :keep], V[:, keep + discard:]], axis=1)))
    return out
