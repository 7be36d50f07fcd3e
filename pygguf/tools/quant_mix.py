"""Which tensor type each tensor gets in a quantized file: llama-quantize's file-type mixes.

These are llama.cpp's `llama_tensor_get_type` rules (src/llama-quant.cpp), restated for the file
types pygguf can write: attn_v and ffn_down get more bits in some layers, output.weight (or the
token embedding when it is tied to the output) goes to Q6_K, rows that do not fill a K-quant
super-block fall back to a legacy type, and 1-D tensors and norms keep their type. The rules run
over the tensors in llama.cpp's order (`llama_tensor_order`), because some count layers as they go.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from pygguf.errors import PyggufError
from pygguf.gguf.types import QuantType, by_name


class QuantMixError(PyggufError, ValueError):
    """A file type or a tensor the mixes cannot handle."""


@dataclass(frozen=True)
class FileType:
    name: str        # as llama-quantize spells it
    ftype_id: int    # llama_ftype, written as general.file_type
    default: str     # the tensor type most weights get


FILE_TYPES: list[FileType] = [
    FileType("F32", 0, "F32"),
    FileType("F16", 1, "F16"),
    FileType("BF16", 32, "BF16"),
    FileType("Q4_0", 2, "Q4_0"),
    FileType("Q4_1", 3, "Q4_1"),
    FileType("Q5_0", 8, "Q5_0"),
    FileType("Q5_1", 9, "Q5_1"),
    FileType("Q8_0", 7, "Q8_0"),
    FileType("Q2_K", 10, "Q2_K"),
    FileType("Q3_K_S", 11, "Q3_K"),
    FileType("Q3_K_M", 12, "Q3_K"),
    FileType("Q3_K_L", 13, "Q3_K"),
    FileType("Q4_K_S", 14, "Q4_K"),
    FileType("Q4_K_M", 15, "Q4_K"),
    FileType("Q5_K_S", 16, "Q5_K"),
    FileType("Q5_K_M", 17, "Q5_K"),
    FileType("Q6_K", 18, "Q6_K"),
]
FILE_TYPE_BY_NAME = {f.name: f for f in FILE_TYPES}
# llama-quantize also takes these short names for the medium mixes
FILE_TYPE_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}


def file_type(spec: str | int) -> FileType:
    """'Q4_K_M', 'q4_k_m', 'Q4_K' or the llama_ftype number 15."""
    text = str(spec).strip().upper()
    if text.isdigit():
        for f in FILE_TYPES:
            if f.ftype_id == int(text):
                return f
    text = FILE_TYPE_ALIASES.get(text, text)
    if text in FILE_TYPE_BY_NAME:
        return FILE_TYPE_BY_NAME[text]
    raise QuantMixError(f"unknown file type {spec!r}; known: {', '.join(FILE_TYPE_BY_NAME)}")


@dataclass(frozen=True)
class ModelInfo:
    """The hyperparameters the mixes look at."""
    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        # llama.cpp calls a LLaMA with 80 layers and grouped-query attention "70B"
        return self.arch == "llama" and self.n_layer == 80 and self.n_head != self.n_head_kv

    @classmethod
    def from_metadata(cls, metadata: dict) -> "ModelInfo":
        arch = metadata.get("general.architecture", "")

        def first(key, default):
            value = metadata.get(f"{arch}.{key}", default)
            return value[0] if isinstance(value, list) and value else value   # per-layer arrays

        n_head = int(first("attention.head_count", 0))
        return cls(arch, int(first("block_count", 0)), n_head, int(first("attention.head_count_kv", n_head)),
                   int(first("expert_count", 0)))


class Category(Enum):
    TOKEN_EMBD = "token_embd"
    ATTN_Q = "attn_q"
    ATTN_K = "attn_k"
    ATTN_V = "attn_v"          # also fused attn_qkv / attn_kv_b: the attn_v rules apply to them
    ATTN_QKV = "attn_qkv"
    ATTN_KV_B = "attn_kv_b"
    ATTN_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OUTPUT = "output"
    OTHER = "other"


_ATTN_V_LIKE = (Category.ATTN_V, Category.ATTN_QKV, Category.ATTN_KV_B)

# (substring, category), first match wins; output / token_embd are matched by exact name first
_CATEGORY_SUBSTRINGS = [
    ("attn_qkv.weight", Category.ATTN_QKV), ("attn_kv_b.weight", Category.ATTN_KV_B),
    ("attn_v.weight", Category.ATTN_V), ("attn_k.weight", Category.ATTN_K),
    ("attn_q.weight", Category.ATTN_Q), ("attn_output.weight", Category.ATTN_OUTPUT),
    ("ffn_up", Category.FFN_UP), ("ffn_gate", Category.FFN_GATE), ("ffn_down", Category.FFN_DOWN),
]


def category(name: str) -> Category:
    if name == "output.weight":
        return Category.OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return Category.TOKEN_EMBD
    for part, cat in _CATEGORY_SUBSTRINGS:
        if part in name:
            return cat
    return Category.OTHER


# Weights llama-quantize never quantizes: small or special tensors, matched as substrings.
_NEVER_QUANTIZED = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)
_NEVER_QUANTIZED_NAMES = ("position_embd.weight", "token_types.weight")


def effective_n_dims(shape) -> int:
    """ggml_n_dims: trailing dimensions of 1 do not count ([256, 1] is 1-D)."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return n


def allows_quantization(name: str, shape) -> bool:
    """Only 2-D/3-D weights are quantized; norms, biases and the special tensors keep their type."""
    if effective_n_dims(shape) < 2 or not name.endswith("weight"):
        return False
    if name in _NEVER_QUANTIZED_NAMES:
        return False
    return not any(part in name for part in _NEVER_QUANTIZED)


_LAYER_PREFIX = re.compile(r"blk\.([+-]?\d+)")


def layer_of(name: str) -> int:
    """The block number of blk.N.* names, -1 for the others (as llama.cpp's sscanf gives)."""
    m = _LAYER_PREFIX.match(name)
    return int(m.group(1)) if m else -1


def llama_tensor_order(names) -> list[str]:
    """llama.cpp's loader keeps weights sorted by (block number, name): non-block tensors first."""
    return sorted(names, key=lambda n: (layer_of(n), n.encode("utf-8", errors="surrogateescape")))


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    """The first and last eighth of the layers, and every third one between, get more bits."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


@dataclass
class _Counters:
    """Per-category tensor counters: the rules see 'the i-th attn_v' in llama.cpp's order."""
    n_attn_v: int = 0
    n_layer: int = 0
    i_attn_v: int = 0
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0
    tied_embeddings: bool = True
    fallbacks: list = field(default_factory=list)


def _layer(model: ModelInfo, counter: int, n_layer: int, name: str) -> tuple[int, int]:
    """Which layer a ffn tensor is in: the running count, or with experts, the name's block number."""
    if model.n_expert > 1:
        i = layer_of(name)
        if not name.startswith("blk.") or not 0 <= i < n_layer:
            raise QuantMixError(f"cannot tell the layer of tensor {name!r} (model has {n_layer} layers)")
        return i, n_layer
    return counter, n_layer


def _mix_type(c: _Counters, model: ModelInfo, ft: str, name: str, shape, cat: Category, new: str) -> str:
    """The file type's mix: llama.cpp's per-category rules for the non-IQ file types."""
    falcon = model.arch == "falcon"
    if cat == Category.OUTPUT or (c.tied_embeddings and cat == Category.TOKEN_EMBD):
        if falcon or shape[0] % by_name(new).block_size:
            return "Q8_0"
        return new if new == "Q8_0" else "Q6_K"
    if cat == Category.TOKEN_EMBD:
        return new
    if cat in _ATTN_V_LIKE:
        new = _attn_v_type(c, model, ft, new)
        c.i_attn_v += 1
        return new
    if cat == Category.ATTN_K:
        return "Q8_0" if model.n_expert == 8 else new
    if cat == Category.FFN_DOWN:
        i, n = _layer(model, c.i_ffn_down, c.n_layer, name)
        c.i_ffn_down += 1
        return _ffn_down_type(falcon, ft, i, n, new)
    if cat == Category.ATTN_OUTPUT:
        return _attn_output_type(model, falcon, ft, new)
    if cat == Category.ATTN_QKV:
        return {"Q3_K_M": "Q4_K", "Q3_K_L": "Q4_K", "Q4_K_M": "Q5_K", "Q5_K_M": "Q6_K"}.get(ft, new)
    if cat == Category.FFN_GATE:
        _layer(model, c.i_ffn_gate, c.n_layer, name)
        c.i_ffn_gate += 1
    elif cat == Category.FFN_UP:
        _layer(model, c.i_ffn_up, c.n_layer, name)
        c.i_ffn_up += 1
    return new


def _attn_v_type(c: _Counters, model: ModelInfo, ft: str, new: str) -> str:
    i, n = c.i_attn_v, c.n_attn_v
    if ft == "Q2_K":
        new = "Q4_K" if model.n_gqa >= 4 else "Q3_K"
    elif ft == "Q3_K_M":
        new = "Q5_K" if i < 2 else "Q4_K"
    elif ft == "Q3_K_L":
        new = "Q5_K"
    elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
        new = "Q6_K"
    elif ft == "Q4_K_S" and i < 4:
        new = "Q5_K"
    if model.is_70b and new in ("Q3_K", "Q4_K"):
        new = "Q5_K"     # 8 heads share attn_v there: more bits for little size
    if model.n_expert == 8:
        new = "Q8_0"
    return new


def _ffn_down_type(falcon: bool, ft: str, i: int, n: int, new: str) -> str:
    if ft == "Q2_K":
        return "Q3_K"
    if ft == "Q3_K_M":
        if i < n // 16:
            return "Q5_K"
        return "Q4_K" if not falcon or _use_more_bits(i, n) else "Q3_K"
    if ft == "Q3_K_L":
        return "Q4_K" if falcon else "Q5_K"
    if ft == "Q4_K_M":
        if falcon:
            return "Q6_K" if i < n // 16 else "Q5_K" if _use_more_bits(i, n) else "Q4_K"
        return "Q6_K" if _use_more_bits(i, n) else new
    if ft == "Q5_K_M" and _use_more_bits(i, n):
        return "Q6_K"
    if ft == "Q4_K_S" and not falcon and i < n // 8:
        return "Q5_K"
    return new


def _attn_output_type(model: ModelInfo, falcon: bool, ft: str, new: str) -> str:
    if falcon:
        return "Q4_K" if ft == "Q3_K_L" else new
    if model.n_expert == 8:
        return "Q5_K" if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M") else new
    return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ft, new)


# A K-quant whose 256-value super-block does not fit the row falls back to a legacy type.
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def _fallback(c: _Counters, name: str, ncols: int, new: str) -> str:
    if ncols % by_name(new).block_size == 0:
        return new
    if new not in _FALLBACK:
        raise QuantMixError(f"tensor {name!r}: row length {ncols} does not fit {new} blocks and "
                            f"{new} has no fallback type")
    to = _FALLBACK[new]
    if ncols % by_name(to).block_size:
        to = "F16"       # not even a multiple of 32: llama.cpp keeps such a tensor in F16
    c.fallbacks.append((name, new, to))
    return to


@dataclass(frozen=True)
class TypeChoice:
    name: str
    shape: tuple
    src: QuantType
    dst: QuantType
    fallback_from: str | None = None     # the K-quant this tensor could not use, if any


def choose_types(tensors, ft: FileType | str, model: ModelInfo, pure: bool = False) -> list[TypeChoice]:
    """tensors: (name, shape, source QuantType) in llama.cpp's order (`llama_tensor_order`).
    Returns the tensor type llama-quantize would pick for each."""
    ft = file_type(ft) if not isinstance(ft, FileType) else ft
    tensors = list(tensors)
    default = ft.default
    c = _Counters(n_layer=model.n_layer)
    for name, _, _ in tensors:
        cat = category(name)
        c.n_attn_v += cat in _ATTN_V_LIKE
        if cat == Category.OUTPUT:
            c.tied_embeddings = False
    choices = []
    for name, shape, src in tensors:
        shape = tuple(shape)
        if not allows_quantization(name, shape):
            choices.append(TypeChoice(name, shape, src, src))
            continue
        new = default
        fell_back = None
        if by_name(default).block_size > 1:          # a quantized default: the mix and the fallback
            if not pure:
                new = _mix_type(c, model, ft.name, name, shape, category(name), new)
            before = new
            new = _fallback(c, name, shape[0], new)
            fell_back = before if new != before else None
        choices.append(TypeChoice(name, shape, src, by_name(new), fell_back))
    return choices
