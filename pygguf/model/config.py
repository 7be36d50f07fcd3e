"""The architectures pygguf runs, as GGUF describes them: hyper-parameters from `{arch}.*`
metadata, each family's switches (a small description of its layer, read once at load: RoPE pair
layout, norms, biases, activation, attention window and caps, experts), and the tensor table (name
pattern, attribute, expected ggml shape, required) the one C forward reads. The families are
llama.cpp's, with its metadata keys and tensor names (src/llama-arch.cpp, src/models/*.cpp)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

from pygguf.errors import ModelError


@dataclass(frozen=True)
class Family:
    """What sets an architecture's layer apart from llama's. Required tensors beyond llama's are
    named by their layer attribute."""
    rope_neox: bool = False          # RoPE pairs (i, i + n_rot/2) rather than (2i, 2i+1)
    gemma: bool = False              # embeddings * sqrt(n_embd), GELU FFN, Gemma's attention scale
    head_norms: bool = False         # attn_q_norm / attn_k_norm (RMSNorm of each q and k head)
    post_norms: bool = False         # post_attention_norm / post_ffw_norm
    swa_pattern: int = 0             # sliding-window layers: il % n < n - 1 (llama.cpp's set_swa_pattern)
    swa_default: int = 0             # the window when the file has no attention.sliding_window
    swa_rope_base: float | None = None   # local layers' RoPE base (None: the global one)
    attn_softcap: bool = False       # reads attn_logit_softcapping (Gemma 2)
    experts: str = "optional"        # "optional" (llama: Mixtral), "required" (qwen3moe), "none"
    tied_output_only: bool = False   # the output matrix is always token_embd (Gemma 2)


FAMILIES = {
    "llama": Family(),
    "qwen2": Family(rope_neox=True, experts="none"),
    "qwen3": Family(rope_neox=True, head_norms=True, experts="none"),
    "qwen3moe": Family(rope_neox=True, head_norms=True, experts="required"),
    "gemma": Family(rope_neox=True, gemma=True, experts="none", tied_output_only=True),
    "gemma2": Family(rope_neox=True, gemma=True, post_norms=True, swa_pattern=2, swa_default=4096,
                     attn_softcap=True, experts="none", tied_output_only=True),
    "gemma3": Family(rope_neox=True, gemma=True, head_norms=True, post_norms=True, swa_pattern=6,
                     swa_rope_base=10000.0, experts="none"),
    "phi3": Family(rope_neox=True, experts="none"),
}
ARCHITECTURES = tuple(FAMILIES)
GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}
MAX_EXPERTS = 512                                 # the C forward's limit (csrc/model/load.c)
# The C loader's limits (csrc/model/load.c): checked here first, so that a file's huge value
# neither builds a table per layer in Python nor overflows a C int on its way there
MAX_DIM, MAX_LAYERS, MAX_VOCAB, MAX_WINDOW = 1 << 20, 1 << 12, 1 << 24, (1 << 31) - 1   # llama.cpp scales their queries by n_embd / n_head
# the GGUF keys (after "{arch}.") of the Config fields an error may name: the file's words, not ours
METADATA_KEYS = {"n_vocab": "vocab_size", "n_embd": "embedding_length", "n_layer": "block_count",
                 "n_head": "attention.head_count", "n_head_kv": "attention.head_count_kv",
                 "n_ff": "feed_forward_length", "head_dim": "attention.key_length", "n_rot": "rope.dimension_count",
                 "n_ff_exp": "expert_feed_forward_length", "n_swa": "attention.sliding_window",
                 "n_ctx_train": "context_length", "yarn_orig_ctx": "rope.scaling.original_context_length"}
MAX_CONTEXT = 1 << 24                             # the most positions per sequence the C cache takes (CTX_MAX)


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
    rope_scaling: str = "none"     # "none", "linear", "yarn" or "longrope" (Phi-3's factors)
    rope_freq_scale: float = 1.0   # 1 / rope.scaling.factor for linear and YaRN
    yarn_orig_ctx: int = 0         # the context before YaRN scaling (defaults to n_ctx_train)
    yarn_attn_factor: float = 1.0  # also LongRoPE's attention factor: cos and sin are scaled by it
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    arch: str = "llama"
    # the family's switches (llama: all off; FAMILIES and from_metadata set them)
    rope_neox: bool = False
    embd_scale: float = 1.0        # Gemma: sqrt(n_embd)
    attn_scale: float = 0.0        # derived: 1 / sqrt(head_dim) unless the family says otherwise
    attn_softcap: float = 0.0      # Gemma 2: scores -> cap * tanh(scores / cap)
    final_softcap: float = 0.0     # Gemma 2: logits -> cap * tanh(logits / cap)
    ffn_gelu: bool = False         # Gemma: gelu(gate) * up
    n_swa: int = 0                 # sliding window of the layers in swa_layers
    swa_layers: tuple = ()         # (n_layer,) bools
    rope_base_swa: float = 0.0     # derived: rope_base unless the family says otherwise
    rope_freq_scale_swa: float = 1.0
    n_expert: int = 0              # mixture of experts (0: dense)
    n_expert_used: int = 0
    n_ff_exp: int = 0              # one expert's hidden size
    family: Family = field(default_factory=Family)

    def __post_init__(self):
        for name in ("n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv", "n_ff"):
            if getattr(self, name) <= 0:
                raise ModelError(f"{self.arch}: {name} must be positive, got {getattr(self, name)}")
        limits = {"n_vocab": MAX_VOCAB, "n_layer": MAX_LAYERS, "n_embd": MAX_DIM, "n_head": MAX_DIM,
                  "n_head_kv": MAX_DIM, "n_ff": MAX_DIM, "head_dim": MAX_DIM, "n_rot": MAX_DIM,
                  "n_ff_exp": MAX_DIM, "n_swa": MAX_WINDOW, "n_ctx_train": MAX_WINDOW, "yarn_orig_ctx": MAX_WINDOW}
        for name, most in limits.items():
            if not -most <= getattr(self, name) <= most:
                raise ModelError(f"{self.arch}.{METADATA_KEYS[name]} {getattr(self, name)} is beyond the loader's "
                                 f"limit {most}")
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
        if self.rope_scaling not in ("none", "linear", "yarn", "longrope"):
            raise ModelError(f"{self.arch}: unsupported rope.scaling.type {shown(self.rope_scaling)}")
        if self.yarn_orig_ctx == 0:
            self.yarn_orig_ctx = self.n_ctx_train
        if self.attn_scale == 0.0:
            self.attn_scale = 1.0 / math.sqrt(self.head_dim)
        if self.rope_base_swa == 0.0:
            self.rope_base_swa = self.rope_base
        self._check_family()

    def _check_family(self):
        if self.n_swa < 0 or (self.n_swa and len(self.swa_layers) != self.n_layer):
            raise ModelError(f"{self.arch}: attention.sliding_window {self.n_swa} needs a pattern over {self.n_layer} layers")
        for name in ("attn_softcap", "final_softcap"):
            if not (0.0 <= getattr(self, name) < math.inf):
                raise ModelError(f"{self.arch}: {name} must be finite and non-negative, got {getattr(self, name)}")
        if self.n_expert:
            if not 0 < self.n_expert <= MAX_EXPERTS:
                raise ModelError(f"{self.arch}: expert_count {self.n_expert} is outside 1..{MAX_EXPERTS}")
            if not 0 < self.n_expert_used <= self.n_expert:
                raise ModelError(f"{self.arch}: expert_used_count {self.n_expert_used} must be 1..expert_count {self.n_expert}")
            if self.n_ff_exp <= 0:
                raise ModelError(f"{self.arch}: the experts' feed_forward_length must be positive, got {self.n_ff_exp}")

    @property
    def n_rep(self) -> int:
        """query heads per KV head (GQA)"""
        return self.n_head // self.n_head_kv

    @classmethod
    def from_metadata(cls, md: dict, n_vocab_fallback: int | None = None) -> "Config":
        arch = md.get("general.architecture")
        if not isinstance(arch, str) or arch not in FAMILIES:     # (an array is unhashable)
            raise ModelError(f"unsupported architecture {shown(arch)} (supported: {', '.join(ARCHITECTURES)})")
        family = FAMILIES[arch]

        def key(name, default=None, kind=int):
            value = md.get(f"{arch}.{name}", default)
            if value is None:
                raise ModelError(f"missing metadata key {arch}.{name}")
            return typed(value, kind, f"{arch}.{name}")

        n_vocab = md.get(f"{arch}.vocab_size")
        if n_vocab is not None:
            n_vocab = typed(n_vocab, int, f"{arch}.vocab_size")
        if n_vocab is None and isinstance(md.get("tokenizer.ggml.tokens"), list):
            n_vocab = len(md["tokenizer.ggml.tokens"])
        if n_vocab is None:
            n_vocab = n_vocab_fallback
        if n_vocab is None:
            raise ModelError(f"cannot tell the vocabulary size: no {arch}.vocab_size and no tokenizer.ggml.tokens")
        n_embd, n_head, n_layer = key("embedding_length"), key("attention.head_count"), key("block_count")
        for name, value, most in (("embedding_length", n_embd, MAX_DIM), ("attention.head_count", n_head, MAX_DIM),
                                  ("block_count", n_layer, MAX_LAYERS)):
            if not 0 < value <= most:   # before the family's switches divide by them or build a table per layer
                raise ModelError(f"{arch}: {name} must be 1..{most}, got {value}")
        scaling = str(md.get(f"{arch}.rope.scaling.type", "none"))
        if scaling == "su":                       # Phi-3's first name for LongRoPE
            scaling = "longrope"
        factor = key("rope.scaling.factor", 0.0, float)
        if f"{arch}.rope.scale_linear" in md and factor == 0.0:   # the older spelling of linear scaling
            scaling, factor = "linear", key("rope.scale_linear", 1.0, float)
        freq_scale = 1.0 / factor if scaling in ("linear", "yarn") and factor > 0 else 1.0
        n_ff = key("feed_forward_length")
        n_ctx_train = key("context_length", 4096)
        if not 0 <= n_ctx_train <= MAX_WINDOW:      # positions are int32 in C (main: OverflowError in cffi)
            raise ModelError(f"{arch}.context_length {n_ctx_train} is outside 0..{MAX_WINDOW}")
        rope_base = key("rope.freq_base", 10000.0, float)
        switches = family_switches(family, arch, key, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_ff=n_ff,
                                   rope_base=rope_base, freq_scale=freq_scale)
        return cls(
            n_vocab=int(n_vocab), n_embd=n_embd, n_layer=n_layer, n_head=n_head,
            n_head_kv=key("attention.head_count_kv", n_head), n_ff=n_ff,
            n_ctx_train=n_ctx_train, rope_base=rope_base,
            rms_eps=key("attention.layer_norm_rms_epsilon", 1e-5, float),
            head_dim=key("attention.key_length", 0), n_rot=key("rope.dimension_count", 0),
            rope_scaling=scaling, rope_freq_scale=freq_scale,
            yarn_orig_ctx=key("rope.scaling.original_context_length", 0),
            yarn_attn_factor=key("rope.scaling.attn_factor", 1.0, float), arch=arch, family=family, **switches)


def typed(value, kind, name: str):
    """A metadata value as kind: int takes a GGUF integer (an integral float too), float any
    finite number; anything else (a string, an array, a bool, NaN) is a ModelError naming the key.
    Other kinds are converters, their failures ModelErrors too."""
    if kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ModelError(f"metadata key {name} must be an integer, got {shown(value)}")
    if kind is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ModelError(f"metadata key {name} must be a finite number, got {shown(value)}")
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ModelError(f"metadata key {name} has a bad value {shown(value)}") from None


def shown(value) -> str:
    """A metadata value in a message: strings cut short, arrays by their length."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)}"
    return repr(value)


def family_switches(family: Family, arch: str, key, *, n_layer, n_embd, n_head, n_ff, rope_base, freq_scale) -> dict:
    """The Config fields a family sets from its metadata, as llama.cpp's load_arch_hparams does"""
    out = {"rope_neox": family.rope_neox}
    head_dim = key("attention.key_length", 0) or n_embd // n_head
    if not 0 < head_dim <= MAX_DIM:
        raise ModelError(f"{arch}: head_dim {head_dim} (attention.key_length, or embedding_length / head_count) must be 1..{MAX_DIM}")
    if family.gemma:
        out["embd_scale"] = float(math.sqrt(n_embd))
        out["ffn_gelu"] = True
        big = GEMMA_27B_LAYERS.get(arch) == n_layer      # llama.cpp: the 27B scales by n_embd / n_head
        out["attn_scale"] = 1.0 / math.sqrt(max(n_embd // n_head, 1) if big else head_dim)
        out["final_softcap"] = key("final_logit_softcapping", 0.0, float)
    if family.attn_softcap:
        out["attn_softcap"] = key("attn_logit_softcapping", 0.0, float)
    if family.swa_pattern:
        n_swa = key("attention.sliding_window", family.swa_default)
        if n_swa > 0:
            out["n_swa"] = n_swa
            out["swa_layers"] = swa_layers(key, arch, n_layer, family.swa_pattern)
            out["rope_base_swa"] = key("rope.freq_base_swa", family.swa_rope_base or rope_base, float)
            out["rope_freq_scale_swa"] = 1.0 if family.swa_rope_base else freq_scale
    if family.experts != "none":
        n_expert = key("expert_count", 0)
        if family.experts == "required" and n_expert <= 0:
            raise ModelError(f"{arch}: expert_count must be positive")
        if n_expert:
            used = key("expert_used_count", 0)
            out.update(n_expert=n_expert, n_expert_used=used,
                       n_ff_exp=key("expert_feed_forward_length", 0) or (n_ff // used if used and arch != "llama" else n_ff))
    return out


def swa_layers(key, arch: str, n_layer: int, default_pattern: int) -> tuple:
    """Which layers slide: `attention.sliding_window_pattern` as one flag per layer, or as n (layer
    il slides when il % n < n - 1; 0: all), as llama.cpp's load_swa_pattern reads it"""
    pattern = key("attention.sliding_window_pattern", default_pattern, lambda v: v)
    if isinstance(pattern, (list, tuple)):
        if len(pattern) != n_layer:
            raise ModelError(f"{arch}.attention.sliding_window_pattern has {len(pattern)} flags for {n_layer} layers")
        return tuple(bool(v) for v in pattern)
    try:
        pattern = int(pattern)
    except (TypeError, ValueError, OverflowError):
        raise ModelError(f"metadata key {arch}.attention.sliding_window_pattern has a bad value {shown(pattern)}") from None
    if pattern < 0:
        raise ModelError(f"{arch}.attention.sliding_window_pattern must not be negative, got {pattern}")
    return tuple(pattern == 0 or il % pattern < pattern - 1 for il in range(n_layer))


@dataclass(frozen=True)
class TensorSpec:
    pattern: str                              # GGUF name; "{i}" is the layer index
    attribute: str
    shape: Callable[[Config], tuple]          # ggml order: row length first
    required: bool = True
    per_layer: bool = False


def _layer(pattern, attribute, shape, required=True):
    return TensorSpec("blk.{i}." + pattern, attribute, shape, required, True)


def _n_q(c: Config) -> int:
    return c.n_head * c.head_dim


def _n_kv(c: Config) -> int:
    return c.n_head_kv * c.head_dim


# The order is the C side's (csrc/api/model.h): globals, then PG_LAYER_TENSORS slots per layer.
GLOBAL_TENSORS = [
    TensorSpec("token_embd.weight", "token_embd", lambda c: (c.n_embd, c.n_vocab)),
    TensorSpec("output_norm.weight", "output_norm", lambda c: (c.n_embd,)),
    TensorSpec("output.weight", "output", lambda c: (c.n_embd, c.n_vocab), required=False),  # tied if absent
    TensorSpec("rope_freqs.weight", "rope_freqs", lambda c: (c.n_rot // 2,), required=False),  # Llama 3.1
]
LAYER_TENSORS = [
    _layer("attn_norm.weight", "attn_norm", lambda c: (c.n_embd,)),
    _layer("attn_q.weight", "wq", lambda c: (c.n_embd, _n_q(c))),
    _layer("attn_k.weight", "wk", lambda c: (c.n_embd, _n_kv(c))),
    _layer("attn_v.weight", "wv", lambda c: (c.n_embd, _n_kv(c))),
    _layer("attn_output.weight", "wo", lambda c: (_n_q(c), c.n_embd)),
    _layer("ffn_norm.weight", "ffn_norm", lambda c: (c.n_embd,)),
    _layer("ffn_gate.weight", "w_gate", lambda c: (c.n_embd, c.n_ff)),
    _layer("ffn_up.weight", "w_up", lambda c: (c.n_embd, c.n_ff)),
    _layer("ffn_down.weight", "w_down", lambda c: (c.n_ff, c.n_embd)),
    _layer("attn_q.bias", "bq", lambda c: (_n_q(c),), required=False),
    _layer("attn_k.bias", "bk", lambda c: (_n_kv(c),), required=False),
    _layer("attn_v.bias", "bv", lambda c: (_n_kv(c),), required=False),
    _layer("attn_q_norm.weight", "q_norm", lambda c: (c.head_dim,), required=False),
    _layer("attn_k_norm.weight", "k_norm", lambda c: (c.head_dim,), required=False),
    _layer("post_attention_norm.weight", "post_attn_norm", lambda c: (c.n_embd,), required=False),
    _layer("post_ffw_norm.weight", "post_ffn_norm", lambda c: (c.n_embd,), required=False),
    _layer("ffn_gate_inp.weight", "router", lambda c: (c.n_embd, c.n_expert), required=False),
    _layer("ffn_gate_exps.weight", "gate_exps", lambda c: (c.n_embd, c.n_ff_exp, c.n_expert), required=False),
    _layer("ffn_up_exps.weight", "up_exps", lambda c: (c.n_embd, c.n_ff_exp, c.n_expert), required=False),
    _layer("ffn_down_exps.weight", "down_exps", lambda c: (c.n_ff_exp, c.n_embd, c.n_expert), required=False),
]
F32_ONLY = {"output_norm", "attn_norm", "ffn_norm", "rope_freqs", "bq", "bk", "bv", "q_norm", "k_norm",
            "post_attn_norm", "post_ffn_norm"}   # vectors, read as float32
DENSE_FFN = {"w_gate", "w_up", "w_down"}
EXPERT_FFN = {"router", "gate_exps", "up_exps", "down_exps"}


def required(spec: TensorSpec, config: Config) -> bool:
    """Whether this model must have the tensor: llama's set, plus the family's own, with the FFN
    of its kind (dense or experts)"""
    if spec.attribute in DENSE_FFN:
        return not config.n_expert
    if spec.attribute in EXPERT_FFN:
        return bool(config.n_expert)
    family = config.family
    if spec.attribute in ("q_norm", "k_norm"):
        return family.head_norms
    if spec.attribute in ("post_attn_norm", "post_ffn_norm"):
        return family.post_norms
    return spec.required


def check_layer_count(config: Config, names) -> None:
    """block_count against the layers the file holds tensors for (blk.N.*), before a table of
    tensor names is built per layer: a file claiming more layers than it has is refused at once."""
    present = 0
    for name in names:
        if name.startswith("blk."):
            index = name[4:].partition(".")[0]
            if index.isdigit() and len(index) < 10:
                present = max(present, int(index) + 1)
    if config.n_layer > present:
        raise ModelError(f"{config.arch}.block_count is {config.n_layer}, but the file holds tensors for "
                         f"{present} layers")


def tensor_names(config: Config) -> list[tuple[str, TensorSpec]]:
    """Every (name, spec) slot the forward reads, in the C side's order."""
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
