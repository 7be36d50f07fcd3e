"""Which bytes of a GGUF file fill each slot of the C forward's tensor table (config.py's order).

Most slots are one tensor of the file, checked against the shape the forward expects. Two kinds
are parts of a larger tensor, given to C as row ranges of it so nothing is copied:
- a fused projection: `attn_qkv` (Phi-3, and any family llama.cpp lets fuse them) is q's rows,
  then k's, then v's; its bias likewise;
- Phi-3's `ffn_up` of 2 * n_ff rows with no `ffn_gate`: the gate's rows, then up's.
Expert tensors (n_expert, rows, n) are given as one matrix of n_expert * rows rows.
Phi-3's LongRoPE factors fill the rope_freqs slot: `rope_factors_long` when the context per
sequence (rounded up to 256, as llama.cpp pads it) exceeds the original one, else
`rope_factors_short`, as llama.cpp chooses.
"""
from __future__ import annotations

from dataclasses import dataclass

from pygguf.errors import ModelError
from pygguf.model.config import F32_ONLY, Config, TensorSpec, ggml_shape, required, tensor_names

__all__ = ["Slot", "bind"]


@dataclass(frozen=True)
class Slot:
    """One entry of the C table: n values per row, `rows` rows starting at `offset`."""
    name: str                 # the file's tensor (and the part of it, for a fused one)
    offset: int
    qtype: object             # QuantType
    n: int
    rows: int


def _part(name: str, ref, n: int, first_row: int, rows: int) -> Slot:
    return Slot(name, ref.offset + first_row * ref.qtype.row_bytes(n), ref.qtype, n, rows)


def _check(name: str, spec: TensorSpec, ref, want: tuple) -> None:
    got = ggml_shape(ref.shape)
    if got != want:
        raise ModelError(f"tensor {name} has shape {list(got)}, expected {list(want)}")
    if spec.attribute in F32_ONLY and ref.qtype.name != "F32":
        raise ModelError(f"tensor {name} is {ref.qtype.name}; norms, biases and rope factors must be F32")


def _whole(name: str, spec: TensorSpec, ref, config: Config) -> Slot:
    want = spec.shape(config)
    _check(name, spec, ref, want)
    rows = 1
    for d in want[1:]:
        rows *= d
    return Slot(name, ref.offset, ref.qtype, want[0], rows)


class _Fused:
    """The parts of a layer's fused tensors, by slot attribute"""

    def __init__(self, config: Config, tensors: dict, i: int):
        self.parts: dict[str, Slot] = {}
        n_q, n_kv, n_embd = config.n_head * config.head_dim, config.n_head_kv * config.head_dim, config.n_embd
        qkv = tensors.get(f"blk.{i}.attn_qkv.weight")
        if qkv is not None:
            self._split(f"blk.{i}.attn_qkv.weight", qkv, (n_embd, n_q + 2 * n_kv), n_embd,
                        [("wq", n_q), ("wk", n_kv), ("wv", n_kv)])
        bias = tensors.get(f"blk.{i}.attn_qkv.bias")
        if bias is not None:
            self._split(f"blk.{i}.attn_qkv.bias", bias, (n_q + 2 * n_kv,), n_q + 2 * n_kv,
                        [("bq", n_q), ("bk", n_kv), ("bv", n_kv)], vector=True)
        up = tensors.get(f"blk.{i}.ffn_up.weight")
        if up is not None and f"blk.{i}.ffn_gate.weight" not in tensors and not config.n_expert:
            self._split(f"blk.{i}.ffn_up.weight", up, (n_embd, 2 * config.n_ff), n_embd,
                        [("w_gate", config.n_ff), ("w_up", config.n_ff)])

    def _split(self, name, ref, want, n, parts, vector=False):
        got = ggml_shape(ref.shape)
        if got != want:
            raise ModelError(f"tensor {name} has shape {list(got)}, expected {list(want)}")
        if vector and ref.qtype.name != "F32":
            raise ModelError(f"tensor {name} is {ref.qtype.name}; biases must be F32")
        first = 0
        for attribute, rows in parts:
            if vector:   # a bias: one row of `rows` values at an offset of `first` values
                self.parts[attribute] = Slot(f"{name}[{first}:{first + rows}]", ref.offset + 4 * first, ref.qtype, rows, 1)
            else:
                self.parts[attribute] = _part(f"{name}[{first}:{first + rows}]", ref, n, first, rows)
            first += rows


CTX_PAD = 256   # llama.cpp rounds n_ctx up to a multiple of 256 before it compares it


def _rope_factors(config: Config, tensors: dict, n_ctx_seq: int):
    """rope_freqs, or Phi-3's long/short LongRoPE factors chosen by the context as llama.cpp
    does (get_rope_factors, on its padded context)"""
    if "rope_freqs.weight" in tensors:
        return "rope_freqs.weight"
    padded = -(-n_ctx_seq // CTX_PAD) * CTX_PAD
    name = "rope_factors_long.weight" if padded > config.yarn_orig_ctx else "rope_factors_short.weight"
    return name if name in tensors else None


def bind(config: Config, tensors: dict, n_ctx_seq: int) -> list[Slot | None]:
    """The C table: a Slot, or None for an absent optional slot (a tied output, no rope factors,
    no bias, ...); ModelError names a missing or misshapen tensor."""
    table: list[Slot | None] = []
    fused: dict[int, _Fused] = {}
    for name, spec in tensor_names(config):
        if spec.attribute == "rope_freqs":
            name = _rope_factors(config, tensors, n_ctx_seq)
            table.append(None if name is None else _whole(name, spec, tensors[name], config))
            continue
        if spec.per_layer:
            i = int(name.split(".")[1])
            part = fused.setdefault(i, _Fused(config, tensors, i)).parts.get(spec.attribute)
            if part is not None:
                table.append(part)
                continue
        ref = tensors.get(name)
        if ref is None:
            if required(spec, config):
                raise ModelError(f"missing tensor {name}")
            table.append(None)
            continue
        if spec.attribute == "output" and config.family.tied_output_only:
            table.append(None)                  # llama.cpp reads token_embd even when output exists
            continue
        table.append(_whole(name, spec, ref, config))
    return table
