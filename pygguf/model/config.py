"""The llama architecture as GGUF describes it: hyper-parameters from `llama.*` metadata and the
tensor table (name pattern, attribute, expected ggml shape, required) the forward pass reads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pygguf.errors import ModelError

ARCHITECTURES = ("llama",)




@dataclass
class Config:
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx_train: int
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    head_dim: int = 0              # derived: n_embd // n_head unless the file says otherwise
    n_rot: int = 0                 # derived: head_dim unless rope.dimension_count says otherwise
    rope_scaling: str = "none"     # "none", "linear" or "yarn"
    rope_freq_scale: float = 1.0   # 1 / rope.scaling.factor for linear and YaRN
    yarn_orig_ctx: int = 0         # the context before YaRN scaling (defaults to n_ctx_train)
    yarn_attn_factor: float = 1.0
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    arch: str = "llama"

    def __post_init__(self):
        for name in ("n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv", "n_ff"):
            if getattr(self, name) <= 0:
                raise ModelError(f"{self.arch}: {name} must be positive, got {getattr(self, name)}")
        if self.n_head % self.n_head_kv:
            raise ModelError(f"{self.arch}: head_count {self.n_head} is not a multiple of head_count_kv {self.n_head_kv}")
        if self.head_dim == 0:
            if self.n_embd % self.n_head:
                raise ModelError(f"{self.arch}: embedding_length {self.n_embd} is not a multiple of head_count {self.n_head}")
            self.head_dim = self.n_embd // self.n_head
        if self.n_rot == 0:
            self.n_rot = self.head_dim
        if self.head_dim % 2 or self.n_rot % 2 or self.n_rot > self.head_dim:
            raise ModelError(f"{self.arch}: rope.dimension_count {self.n_rot} must be even and at most head_dim {self.head_dim}")
        if self.rope_scaling not in ("none", "linear", "yarn"):
            raise ModelError(f"{self.arch}: unsupported rope.scaling.type {self.rope_scaling!r}")
        if self.yarn_orig_ctx == 0:
            self.yarn_orig_ctx = self.n_ctx_train

    @property
    def n_rep(self) -> int:
        """query heads per KV head (GQA)"""
        return self.n_head // self.n_head_kv

    @classmethod
    def from_metadata(cls, md: dict, n_vocab_fallback: int | None = None) -> "Config":
        arch = md.get("general.architecture")
        if arch not in ARCHITECTURES:
            raise ModelError(f"unsupported architecture {arch!r} (supported: {', '.join(ARCHITECTURES)})")

        def key(name, default=None, kind=int):
            value = md.get(f"{arch}.{name}", default)
            if value is None:
                raise ModelError(f"missing metadata key {arch}.{name}")
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ModelError(f"metadata key {arch}.{name} has a bad value {value!r}") from None

        n_vocab = md.get(f"{arch}.vocab_size")
        if n_vocab is None and isinstance(md.get("tokenizer.ggml.tokens"), list):
            n_vocab = len(md["tokenizer.ggml.tokens"])
        if n_vocab is None:
            n_vocab = n_vocab_fallback
        if n_vocab is None:
            raise ModelError(f"cannot tell the vocabulary size: no {arch}.vocab_size and no tokenizer.ggml.tokens")
        n_embd, n_head = key("embedding_length"), key("attention.head_count")
        scaling = str(md.get(f"{arch}.rope.scaling.type", "none"))
        factor = key("rope.scaling.factor", 0.0, float)
        if f"{arch}.rope.scale_linear" in md and factor == 0.0:   # the older spelling of linear scaling
            scaling, factor = "linear", key("rope.scale_linear", 1.0, float)
        freq_scale = 1.0 / factor if scaling in ("linear", "yarn") and factor > 0 else 1.0
        return cls(
            n_vocab=int(n_vocab), n_embd=n_embd, n_layer=key("block_count"), n_head=n_head,
            n_head_kv=key("attention.head_count_kv", n_head), n_ff=key("feed_forward_length"),
            n_ctx_train=key("context_length", 4096), rope_base=key("rope.freq_base", 10000.0, float),
            rms_eps=key("attention.layer_norm_rms_epsilon", 1e-5, float),
            head_dim=key("attention.key_length", 0), n_rot=key("rope.dimension_count", 0),
            rope_scaling=scaling, rope_freq_scale=freq_scale,
            yarn_orig_ctx=key("rope.scaling.original_context_length", 0),
            yarn_attn_factor=key("rope.scaling.attn_factor", 1.0, float), arch=arch)


@dataclass(frozen=True)
class TensorSpec:
    pattern: str                              # GGUF name; "{i}" is the layer index
    attribute: str
    shape: Callable[[Config], tuple]          # ggml order: row length first
    required: bool = True
    per_layer: bool = False


def _layer(pattern, attribute, shape):
    return TensorSpec("blk.{i}." + pattern, attribute, shape, True, True)


# The order is the C side's (csrc/api/model.h): globals, then nine tensors per layer.
GLOBAL_TENSORS = [
    TensorSpec("token_embd.weight", "token_embd", lambda c: (c.n_embd, c.n_vocab)),
    TensorSpec("output_norm.weight", "output_norm", lambda c: (c.n_embd,)),
    TensorSpec("output.weight", "output", lambda c: (c.n_embd, c.n_vocab), required=False),  # tied if absent
    TensorSpec("rope_freqs.weight", "rope_freqs", lambda c: (c.n_rot // 2,), required=False),  # Llama 3.1
]
LAYER_TENSORS = [
    _layer("attn_norm.weight", "attn_norm", lambda c: (c.n_embd,)),
    _layer("attn_q.weight", "wq", lambda c: (c.n_embd, c.n_head * c.head_dim)),
    _layer("attn_k.weight", "wk", lambda c: (c.n_embd, c.n_head_kv * c.head_dim)),
    _layer("attn_v.weight", "wv", lambda c: (c.n_embd, c.n_head_kv * c.head_dim)),
    _layer("attn_output.weight", "wo", lambda c: (c.n_head * c.head_dim, c.n_embd)),
    _layer("ffn_norm.weight", "ffn_norm", lambda c: (c.n_embd,)),
    _layer("ffn_gate.weight", "w_gate", lambda c: (c.n_embd, c.n_ff)),
    _layer("ffn_up.weight", "w_up", lambda c: (c.n_embd, c.n_ff)),
    _layer("ffn_down.weight", "w_down", lambda c: (c.n_ff, c.n_embd)),
]
F32_ONLY = {"output_norm", "attn_norm", "ffn_norm", "rope_freqs"}   # vectors, read as float32


def tensor_names(config: Config) -> list[tuple[str, TensorSpec]]:
    """Every (name, spec) the forward reads, in the C side's order."""
    names = [(spec.pattern, spec) for spec in GLOBAL_TENSORS]
    for i in range(config.n_layer):
        names += [(spec.pattern.format(i=i), spec) for spec in LAYER_TENSORS]
    return names


def ggml_shape(shape) -> tuple:
    """a GGUF shape with trailing 1s dropped (a vector may be stored as (n, 1))"""
    shape = tuple(int(d) for d in shape)
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape
