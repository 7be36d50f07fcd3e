"""The tiny family models' weights as tests/reference_forward.py reads them: every tensor of a
GGUF file dequantized to float64, numpy order (ggml shape reversed), fused tensors split into the
parts the reference reads, and the LongRoPE factors llama.cpp would pick as `rope_freqs`."""
from __future__ import annotations

import numpy as np

CTX_PAD = 256   # llama.cpp rounds n_ctx up to a multiple of 256 before choosing LongRoPE's factors


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


def reference_weights(w: dict[str, np.ndarray], config, n_ctx: int) -> dict[str, np.ndarray]:
    """w with Phi-3's fused attn_qkv / double ffn_up split, and its long or short rope factors as
    rope_freqs (long when the padded context exceeds the original one), as pygguf binds them"""
    out = dict(w)
    n_q, n_kv = config.n_head * config.head_dim, config.n_head_kv * config.head_dim
    for i in range(config.n_layer):
        p = f"blk.{i}."
        if p + "attn_qkv.weight" in out:
            parts = np.split(out.pop(p + "attn_qkv.weight"), [n_q, n_q + n_kv])
            out[p + "attn_q.weight"], out[p + "attn_k.weight"], out[p + "attn_v.weight"] = parts
        if p + "ffn_up.weight" in out and p + "ffn_gate.weight" not in out and not config.n_expert:
            out[p + "ffn_gate.weight"], out[p + "ffn_up.weight"] = np.split(out.pop(p + "ffn_up.weight"), 2)
    if "rope_factors_long.weight" in out:
        padded = -(-n_ctx // CTX_PAD) * CTX_PAD
        out["rope_freqs.weight"] = out["rope_factors_long.weight" if padded > config.yarn_orig_ctx
                                       else "rope_factors_short.weight"]
    return out
