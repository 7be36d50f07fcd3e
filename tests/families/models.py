"""Tiny random GGUF models of the architecture families llama.cpp runs, for forward-pass tests.

One model per family (FAMILIES), each with llama.cpp's tensor names, ggml shapes and `{arch}.*`
metadata keys (src/llama-arch.cpp, src/models/<arch>.cpp of llama.cpp), a small SentencePiece
("llama") vocabulary llama.cpp accepts, and seeded random weights: the same bytes every time.

    build("gemma2", "Q4_K_M", directory) -> path of tiny-gemma2-Q4_K_M.gguf

The F16 file is what a converter writes (matrices F16; norms, biases, the MoE router and rope
factors F32); the quantized files are that F16 file through pygguf's quantizer, which gives
llama-quantize's bytes (bench/record_families.py checks this against llama.cpp's own
llama_model_quantize). tests/data/families/README.md says what each family exercises.

Weights are scaled so the logits are not degenerate: unit-RMS activations into every matrix
(N(0, 1/n_in) entries), a gain on the query/key projections so attention is not uniform, and an
output projection giving logits of a few units with clear top-1/top-2 margins.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pygguf.gguf.format import GGUFValueType as T
from pygguf.gguf.types import by_name
from pygguf.gguf.writer import GGUFWriter

FILE_TYPES = ("F16", "Q8_0", "Q4_0", "Q4_K_M")

# ---- the vocabulary ---------------------------------------------------------------------------

N_VOCAB = 320
BOS, EOS, UNK = 1, 2, 0
ENDOFTEXT = 259
_WORDS = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no"]


def vocab_metadata() -> list[tuple[str, object, object]]:
    """A SentencePiece-style `llama` vocabulary of N_VOCAB tokens: <unk> <s> </s>, the 256 byte
    tokens <0x00>..<0xFF>, <|endoftext|> (llama.cpp's vocab loader looks it up in models named
    "phi3"), then "▁" + common words and single letters, scored by rank."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["<|endoftext|>"]
    types = [2, 3, 3] + [6] * 256 + [3]                # UNKNOWN, CONTROL, CONTROL, BYTE..., CONTROL
    scores = [0.0] * len(tokens)
    pieces = ["▁"] + ["▁" + w for w in _WORDS] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = pieces[:N_VOCAB - len(tokens)]
    assert len(tokens) + len(pieces) == N_VOCAB, "vocabulary too short"
    for rank, piece in enumerate(pieces):
        tokens.append(piece)
        types.append(1)                                 # NORMAL
        scores.append(-float(rank))
    return [
        ("tokenizer.ggml.model", "llama", None),
        ("tokenizer.ggml.tokens", tokens, [T.STRING]),
        ("tokenizer.ggml.scores", scores, [T.FLOAT32]),
        ("tokenizer.ggml.token_type", types, [T.INT32]),
        ("tokenizer.ggml.bos_token_id", BOS, T.UINT32),
        ("tokenizer.ggml.eos_token_id", EOS, T.UINT32),
        ("tokenizer.ggml.unknown_token_id", UNK, T.UINT32),
        ("tokenizer.ggml.add_bos_token", True, T.BOOL),
        ("tokenizer.ggml.add_eos_token", False, T.BOOL),
    ]


# ---- the families -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    name: str
    arch: str
    n_layer: int
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64                  # attention.key_length (= value_length)
    n_ff: int = 512
    n_ctx_train: int = 4096
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    seed: int = 0
    write_head_dim: bool = False        # write attention.key_length / value_length
    write_n_rot: bool = False           # write rope.dimension_count
    tied: bool = False                  # no output.weight: the output is token_embd
    qkv_bias: bool = False              # qwen2: attn_{q,k,v}.bias
    qk_norm: bool = False               # qwen3, gemma3: attn_q_norm / attn_k_norm (head_dim)
    post_norms: bool = False            # gemma2/3: post_attention_norm, post_ffw_norm
    fused_qkv: bool = False             # phi3: attn_qkv
    fused_up: bool = False              # phi3: ffn_up of 2*n_ff rows (gate rows first), no ffn_gate
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0                   # qwen3moe: expert_feed_forward_length (feed_forward_length unused)
    longrope: bool = False              # phi3: rope_factors_long/short + rope.scaling.* keys
    embd_std: float = 1.0
    out_norm_std: float = 0.0           # > 0: output_norm weights N(0, std), signs mixed (see _init)
    post_norm_gain: float = 1.0         # gemma: post_attention_norm / post_ffw_norm weights near this
    router_gain: float = 3.0
    routing_channels: int = 0           # MoE: residual channels only the embedding writes (see ROUTING)
    out_gain: float = 3.0
    qk_gain: float = 1.4
    extra: tuple = ()                   # further (key suffix, value, type) metadata
    notes: str = ""

    @property
    def n_embd_q(self) -> int:
        return self.n_head * self.head_dim

    @property
    def n_embd_kv(self) -> int:
        return self.n_head_kv * self.head_dim

    @property
    def n_ff_expert(self) -> int:
        return self.n_ff_exp or self.n_ff


# ROUTING: in the MoE models the first `routing_channels` channels of the residual stream hold the
# token embedding alone (attn_output and ffn_down_exps have zero rows there: exact zeros in every
# quantized type too) and the routers read only those channels. There each token's embedding is
# Q @ c: Q an orthonormal (routing_channels x n_expert) basis, c[e] in [1, 2] for the n_expert_used
# experts drawn for that token and in [-1, 0] for the others; layer l's router row e is
# router_gain * Q[:, perm_l(e)] (perm_0 the identity, later layers a random permutation). So a
# token's router logits are router_gain * c[perm_l(e)] (times the ffn_norm weights, near 1, over
# the RMS of the whole residual: a factor common to all experts): every token of the vocabulary
# chooses its experts with the k-th and (k+1)-th logits about router_gain/RMS apart (0.7 and more
# here), and rounding upstream of the router (8-bit activations move a whole-residual router's
# logits by ~0.1) changes only that common factor, so it cannot flip a choice. The tokens of a
# batch still choose different experts, the unchosen experts keep over a fifth of the softmax
# mass (so the renormalisation of the chosen weights matters), and the experts' outputs are mixed
# as usual. (With random routers reading the whole residual, dozens of choices per prompt lie
# within 0.01 of the next expert, and an implementation as right as llama.cpp would pick others.)
SWA_WINDOW = 8          # the gemma sliding windows: smaller than the recorded prompt
PHI3_LONGROPE_ORIG_CTX = 128   # < llama.cpp's context (padded to 256): the long factors are used

FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("llama", "llama", n_layer=2, write_n_rot=True, seed=1,
           notes="control: the architecture pygguf runs today (NORM rope, SwiGLU, untied output)"),
    Family("qwen2", "qwen2", n_layer=2, rope_base=1e6, rms_eps=1e-6, qkv_bias=True, seed=2,
           notes="Q/K/V biases, NEOX rope, untied output"),
    Family("qwen3", "qwen3", n_layer=2, head_dim=128, rope_base=1e6, rms_eps=1e-6, qk_norm=True, tied=True,
           write_head_dim=True, embd_std=0.19, seed=3,
           notes="attn_q_norm/attn_k_norm (RMS over each head), head_dim 128 != n_embd/n_head, tied output"),
    Family("gemma2", "gemma2", n_layer=4, n_head=8, n_head_kv=4, head_dim=64, rms_eps=1e-6, post_norms=True,
           tied=True, write_head_dim=True, embd_std=0.1, out_norm_std=2.0, post_norm_gain=2.0, seed=4,
           extra=(("attention.sliding_window", SWA_WINDOW, T.UINT32),
                  ("attn_logit_softcapping", 4.0, T.FLOAT32),
                  ("final_logit_softcapping", 15.0, T.FLOAT32)),
           notes="x*sqrt(n_embd), post norms, GELU (tanh), attn + final softcap, SWA on even layers"),
    Family("gemma3", "gemma3", n_layer=6, n_head=4, n_head_kv=1, head_dim=128, rope_base=1e6, rms_eps=1e-6,
           qk_norm=True, post_norms=True, tied=True, write_head_dim=True, embd_std=0.1, out_norm_std=2.0,
           post_norm_gain=2.0, seed=5,
           extra=(("attention.sliding_window", SWA_WINDOW, T.UINT32),
                  ("rope.scaling.type", "linear", None),
                  ("rope.scaling.factor", 8.0, T.FLOAT32)),
           notes="5 local : 1 global layers, local rope base 10000 (no key), global 1e6 with linear "
                 "scaling 8, head_dim 128 != n_embd/n_head, one KV head, q/k norms, post norms"),
    Family("phi3", "phi3", n_layer=2, n_head=4, n_head_kv=4, n_ff=256, fused_qkv=True, fused_up=True,
           write_n_rot=True, seed=6,
           extra=(("attention.sliding_window", 16, T.UINT32),),
           notes="fused attn_qkv, ffn_up of 2*n_ff rows (gate first), sliding_window key that llama.cpp ignores"),
    Family("phi3-longrope", "phi3", n_layer=2, n_head=8, n_head_kv=2, head_dim=32, n_ff=256, fused_qkv=True,
           fused_up=True, write_n_rot=True, longrope=True, seed=7,
           notes="phi3 with LongRoPE: rope_factors_long/short, rope.scaling.attn_factor, "
                 "original_context_length 128 (llama.cpp's 256 context > 128: long factors)"),
    Family("mixtral", "llama", n_layer=2, n_ff=256, n_expert=8, n_expert_used=2, rope_base=1e6, write_n_rot=True,
           routing_channels=32, router_gain=1.0, seed=8,
           notes="llama with 8 experts, top-2: ffn_gate_inp + 3-D ffn_*_exps"),
    Family("qwen3moe", "qwen3moe", n_layer=2, rope_base=1e6, rms_eps=1e-6, qk_norm=True, n_ff=1024,
           n_expert=16, n_expert_used=4, n_ff_exp=256, write_head_dim=True, routing_channels=32,
           router_gain=1.0, seed=9,
           notes="16 experts top-4, q/k norms; expert_feed_forward_length 256 (feed_forward_length 1024 unused)"),
]}


# ---- the tensors ------------------------------------------------------------------------------

@dataclass
class Tensor:
    name: str
    shape: tuple                        # ggml order: row length first
    stored: str                         # "F32" or "F16" in the converted file
    kind: str                           # what initialises it (see _init)
    fan_in: int = 0
    gain: float = 1.0
    values: np.ndarray | None = field(default=None, repr=False)


def tensors(f: Family) -> list[Tensor]:
    """Every tensor of the converted (F16) file, in llama.cpp's loader order."""
    d, q, kv, ff, ffe = f.n_embd, f.n_embd_q, f.n_embd_kv, f.n_ff, f.n_ff_expert
    out = [Tensor("token_embd.weight", (d, N_VOCAB), "F16", "embd"),
           Tensor("output_norm.weight", (d,), "F32", "out_norm" if f.out_norm_std else "norm")]
    if not f.tied:
        out.append(Tensor("output.weight", (d, N_VOCAB), "F16", "mat", d, f.out_gain))
    if f.longrope:
        out.append(Tensor("rope_factors_long.weight", (f.head_dim // 2,), "F32", "rope_long"))
        out.append(Tensor("rope_factors_short.weight", (f.head_dim // 2,), "F32", "rope_short"))
    for i in range(f.n_layer):
        p = f"blk.{i}."
        layer = [Tensor(p + "attn_norm.weight", (d,), "F32", "norm")]
        if f.fused_qkv:
            layer.append(Tensor(p + "attn_qkv.weight", (d, q + 2 * kv), "F16", "qkv", d))
        else:
            layer += [Tensor(p + "attn_q.weight", (d, q), "F16", "mat", d, f.qk_gain),
                      Tensor(p + "attn_k.weight", (d, kv), "F16", "mat", d, f.qk_gain),
                      Tensor(p + "attn_v.weight", (d, kv), "F16", "mat", d)]
        if f.qkv_bias:
            layer += [Tensor(p + "attn_q.bias", (q,), "F32", "bias", gain=0.5),
                      Tensor(p + "attn_k.bias", (kv,), "F32", "bias", gain=1.0),
                      Tensor(p + "attn_v.bias", (kv,), "F32", "bias", gain=0.3)]
        if f.qk_norm:
            layer += [Tensor(p + "attn_q_norm.weight", (f.head_dim,), "F32", "qk_norm"),
                      Tensor(p + "attn_k_norm.weight", (f.head_dim,), "F32", "qk_norm")]
        layer.append(Tensor(p + "attn_output.weight", (q, d), "F16", "mat", q))
        if f.post_norms:
            layer.append(Tensor(p + "post_attention_norm.weight", (d,), "F32", "post_norm"))
            layer.append(Tensor(p + "post_ffw_norm.weight", (d,), "F32", "post_norm"))
        layer.append(Tensor(p + "ffn_norm.weight", (d,), "F32", "norm"))
        if f.n_expert:
            e = f.n_expert
            layer += [Tensor(p + "ffn_gate_inp.weight", (d, e), "F32", "router", f.routing_channels, f.router_gain),
                      Tensor(p + "ffn_gate_exps.weight", (d, ffe, e), "F16", "mat", d),
                      Tensor(p + "ffn_up_exps.weight", (d, ffe, e), "F16", "mat", d),
                      Tensor(p + "ffn_down_exps.weight", (ffe, d, e), "F16", "mat", ffe)]
        elif f.fused_up:
            layer += [Tensor(p + "ffn_up.weight", (d, 2 * ff), "F16", "mat", d),
                      Tensor(p + "ffn_down.weight", (ff, d), "F16", "mat", ff)]
        else:
            layer += [Tensor(p + "ffn_gate.weight", (d, ff), "F16", "mat", d),
                      Tensor(p + "ffn_up.weight", (d, ff), "F16", "mat", d),
                      Tensor(p + "ffn_down.weight", (ff, d), "F16", "mat", ff)]
        out += layer
    from pygguf.tools.quant_mix import llama_tensor_order
    order = {n: k for k, n in enumerate(llama_tensor_order([t.name for t in out]))}
    return sorted(out, key=lambda t: order[t.name])


def _init(f: Family, t: Tensor) -> np.ndarray:
    """float32 values in numpy order (ggml shape reversed); a seed per (family, tensor name)."""
    rng = np.random.default_rng([f.seed, zlib.crc32(t.name.encode())])
    shape = tuple(reversed(t.shape))
    if t.kind == "norm":
        return (1 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    if t.kind == "post_norm":
        return (f.post_norm_gain * (1 + 0.1 * rng.standard_normal(shape))).astype(np.float32)
    if t.kind == "out_norm":
        # A tied output reads the token embedding that the residual stream carries (gemma: times
        # sqrt(n_embd)): with norm weights near 1 every position predicts its own input token by
        # a wide margin. Weights of mixed sign scramble that self-alignment.
        return (f.out_norm_std * rng.standard_normal(shape)).astype(np.float32)
    if t.kind == "qk_norm":
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if t.kind == "bias":
        return (t.gain * rng.standard_normal(shape)).astype(np.float32)
    if t.kind == "embd":
        return (f.embd_std * rng.standard_normal(shape)).astype(np.float32)
    if t.kind == "rope_long":                           # like Phi-3's: 1 for fast pairs, growing for slow
        n = shape[0]
        return np.geomspace(1.0, 16.0, n).astype(np.float32)
    if t.kind == "rope_short":
        n = shape[0]
        return np.linspace(1.0, 1.3, n).astype(np.float32)
    if t.kind == "qkv":                                 # Q rows (query gain), then K (key gain), then V
        w = rng.standard_normal(shape) / np.sqrt(t.fan_in)
        w[:f.n_embd_q + f.n_embd_kv] *= f.qk_gain
        return w.astype(np.float32)
    if t.kind == "router":                              # filled in by _route
        return np.zeros(shape, dtype=np.float32)
    assert t.kind == "mat", t.kind
    w = (t.gain * rng.standard_normal(shape) / np.sqrt(t.fan_in)).astype(np.float32)
    if f.routing_channels and (t.name.endswith("attn_output.weight") or t.name.endswith("ffn_down_exps.weight")):
        w[..., :f.routing_channels, :] = 0             # no layer writes into the routing channels
    return w


def weights(f: Family) -> list[Tensor]:
    """tensors(f) with their float32 values (before the F16 rounding of the matrices)."""
    out = tensors(f)
    for t in out:
        t.values = _init(f, t)
    if f.routing_channels:
        _route(f, {t.name: t for t in out})
    return out


def _route(f: Family, by_name: dict) -> None:
    """The routing channels of the embedding and the routers (see ROUTING)."""
    m, n_exp, k = f.routing_channels, f.n_expert, f.n_expert_used
    rng = np.random.default_rng([f.seed, zlib.crc32(b"routing")])
    basis, _ = np.linalg.qr(rng.standard_normal((m, n_exp)))          # orthonormal columns
    coef = rng.uniform(-1.0, 0.0, (N_VOCAB, n_exp))
    for tok in range(N_VOCAB):
        chosen = rng.choice(n_exp, k, replace=False)
        coef[tok, chosen] = rng.uniform(1.0, 2.0, k)
    by_name["token_embd.weight"].values[:, :m] = coef @ basis.T
    for il in range(f.n_layer):
        perm = np.arange(n_exp) if il == 0 else rng.permutation(n_exp)
        router = by_name[f"blk.{il}.ffn_gate_inp.weight"].values             # (n_expert, n_embd)
        router[:, :m] = f.router_gain * basis[:, perm].T


def routing(f: Family | str, token_embd: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(n_layer, N_VOCAB, n_expert_used) the experts each token chooses in each layer (highest
    router logit first), and the smallest gap between a chosen expert's router logit and an
    unchosen one's, relative to router_gain, over all tokens and layers: from the weights alone
    (token_embd: the file's dequantized embedding, numpy order; default: the F16-rounded one),
    with the ffn_norm weights and a residual RMS of 1."""
    f = FAMILIES[f] if isinstance(f, str) else f
    w = {t.name: t.values for t in weights(f)}
    emb = w["token_embd.weight"].astype(np.float16).astype(np.float64) if token_embd is None else token_embd
    chosen, gap = [], np.inf
    for il in range(f.n_layer):
        logits = (emb * w[f"blk.{il}.ffn_norm.weight"]) @ w[f"blk.{il}.ffn_gate_inp.weight"].T.astype(np.float64)
        order = np.argsort(-logits, axis=1, kind="stable")
        ranked = np.take_along_axis(logits, order, axis=1)
        gap = min(gap, float((ranked[:, f.n_expert_used - 1] - ranked[:, f.n_expert_used]).min()) / f.router_gain)
        chosen.append(order[:, :f.n_expert_used])
    return np.stack(chosen), gap


def metadata(f: Family) -> list[tuple[str, object, object]]:
    """general.* and {arch}.* keys (as llama.cpp's converter names them), then the vocabulary."""
    a = f.arch
    md = [("general.name", f"tiny-{f.name} (random weights, tests only)", None),
          (f"{a}.context_length", f.n_ctx_train, T.UINT32),
          (f"{a}.embedding_length", f.n_embd, T.UINT32),
          (f"{a}.block_count", f.n_layer, T.UINT32),
          (f"{a}.feed_forward_length", f.n_ff, T.UINT32),
          (f"{a}.attention.head_count", f.n_head, T.UINT32),
          (f"{a}.attention.head_count_kv", f.n_head_kv, T.UINT32),
          (f"{a}.attention.layer_norm_rms_epsilon", f.rms_eps, T.FLOAT32),
          (f"{a}.rope.freq_base", f.rope_base, T.FLOAT32)]
    if f.write_n_rot:
        md.append((f"{a}.rope.dimension_count", f.head_dim, T.UINT32))
    if f.write_head_dim:
        md.append((f"{a}.attention.key_length", f.head_dim, T.UINT32))
        md.append((f"{a}.attention.value_length", f.head_dim, T.UINT32))
    if f.n_expert:
        md.append((f"{a}.expert_count", f.n_expert, T.UINT32))
        md.append((f"{a}.expert_used_count", f.n_expert_used, T.UINT32))
    if f.n_ff_exp:
        md.append((f"{a}.expert_feed_forward_length", f.n_ff_exp, T.UINT32))
    if f.longrope:
        # as convert_hf_to_gguf.py's Phi3MiniModel writes a 128k model: context_length is the
        # long context, original_context_length the short one, attn_factor sqrt(1 + ln(s)/ln(orig))
        scale = f.n_ctx_train / PHI3_LONGROPE_ORIG_CTX
        md.append((f"{a}.rope.scaling.original_context_length", PHI3_LONGROPE_ORIG_CTX, T.UINT32))
        md.append((f"{a}.rope.scaling.attn_factor",
                   float(np.sqrt(1 + np.log(scale) / np.log(PHI3_LONGROPE_ORIG_CTX))), T.FLOAT32))
    for suffix, value, vtype in f.extra:
        md.append((f"{a}.{suffix}", value, vtype))
    md.append(("general.file_type", 1, T.UINT32))           # MOSTLY_F16
    return md + vocab_metadata()


# ---- files ------------------------------------------------------------------------------------

def file_name(family: str, ftype: str) -> str:
    return f"tiny-{family}-{ftype}.gguf"


def write_f16(f: Family, path) -> Path:
    """The converted file: matrices F16, vectors and the router F32."""
    path = Path(path)
    w = GGUFWriter(path, arch=f.arch)
    for key, value, vtype in metadata(f):
        w.add(key, value, vtype)
    for t in weights(f):
        raw = t.values.astype(np.float16) if t.stored == "F16" else t.values
        w.add_tensor(t.name, raw, t.shape, by_name(t.stored))
    path.parent.mkdir(parents=True, exist_ok=True)
    w.write()
    return path


def build(family: str, ftype: str, directory) -> Path:
    """tiny-<family>-<ftype>.gguf in directory (F16 first, then quantized from it as
    llama-quantize would); files already there are reused."""
    from pygguf.tools.quantize import quantize_file

    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    directory = Path(directory)
    f16 = directory / file_name(family, "F16")
    if not f16.exists():
        write_f16(FAMILIES[family], f16)
    if ftype == "F16":
        return f16
    out = directory / file_name(family, ftype)
    if not out.exists():
        quantize_file(f16, out, ftype)
    return out


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prompt(n: int = 32, seed: int = 1234) -> list[int]:
    """The recorded token sequence: BOS, then n-1 ids drawn from the bytes and pieces (no
    special token)."""
    rng = np.random.default_rng(seed)
    ids = [int(x) for x in rng.integers(3, N_VOCAB - 1, n - 1)]
    return [BOS] + [x + (x >= ENDOFTEXT) for x in ids]
