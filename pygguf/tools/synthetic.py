"""Synthetic models for benchmarks: the shapes, metadata and per-tensor types of real releases,
with random but valid weights.

Nothing bigger than SmolLM2-135M can be downloaded here, and a model's speed does not depend on
its weight values, only on its shapes and types. So a benchmark of "CodeLlama-13B Q4_K_M" runs a
file with CodeLlama-13B's hyperparameters, the llama SentencePiece vocabulary (from llama.cpp's
ggml-vocab-llama-spm.gguf), and the tensor types llama-quantize picks for that file type
(quant_mix.choose_types). Each block's bits are random and its fp16 scales are set so that the
dequantized weights have an RMS near 0.02 (trained models' range), which keeps activations finite
through every layer. Tensors are made one at a time while the file is written (never the whole
file in memory), from a seed per tensor, so the same request gives the same bytes every time.

Mixture-of-experts shapes (n_expert > 0) are Mixtral-style llama files as llama.cpp's converter
writes them: `llama.expert_count` / `llama.expert_used_count`, `llama.feed_forward_length` is one
expert's hidden size, and each layer has an F32 router blk.N.ffn_gate_inp.weight (n_embd, n_expert)
and 3-D expert tensors blk.N.ffn_{gate,up}_exps.weight (n_embd, n_ff, n_expert) and
blk.N.ffn_down_exps.weight (n_ff, n_embd, n_expert) in place of the dense FFN's three matrices.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pygguf.errors import PyggufError
from pygguf.gguf.format import GGUFValueType
from pygguf.gguf.reader import GGUFReader
from pygguf.gguf.types import QuantType, by_name
from pygguf.gguf.writer import GGUFWriter
from pygguf.tools.quant_mix import FileType, ModelInfo, TypeChoice, choose_types, file_type, llama_tensor_order

VOCAB_FILE = "ggml-vocab-llama-spm.gguf"
WEIGHT_RMS = 0.02
QUANTIZATION_VERSION = 2
FLOAT_DTYPES = {"F32": np.float32, "F16": np.float16}


class SyntheticError(PyggufError, ValueError):
    """An unknown shape or file type, or a vocabulary that cannot be used."""


@dataclass(frozen=True)
class Shape:
    """A released model's hyperparameters (llama architecture)."""
    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx_train: int
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    label: str = ""          # llama-bench's size label ("7B")
    n_expert: int = 0        # mixture of experts: experts per layer (0: a dense FFN)
    n_expert_used: int = 0   # experts each token is routed to

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


SHAPES: dict[str, Shape] = {s.name: s for s in [
    Shape("tinyllama-1.1b", 2048, 22, 32, 4, 5632, 2048, label="1B"),
    Shape("llama2-7b", 4096, 32, 32, 32, 11008, 4096, label="7B"),
    Shape("codellama-13b", 5120, 40, 40, 40, 13824, 16384, rope_base=1e6, label="13B"),
    Shape("mixtral-8x7b", 4096, 32, 32, 8, 14336, 32768, rope_base=1e6, label="8x7B", n_expert=8, n_expert_used=2),
    # Mixtral's layout scaled to a small machine: TinyLlama's width and FFN, 8 layers of 8 experts
    # (2 used), head_dim 128 and GQA 4 as Mixtral: 1.39 GB at Q4_0, of which a decode step reads ~30%
    Shape("mixtral-mini", 2048, 8, 16, 4, 5632, 4096, rope_base=1e6, n_expert=8, n_expert_used=2),
]}
SHAPE_ALIASES = {"1b": "tinyllama-1.1b", "tinyllama": "tinyllama-1.1b", "7b": "llama2-7b",
                 "llama-2-7b": "llama2-7b", "13b": "codellama-13b", "codellama-13b-python": "codellama-13b",
                 "mixtral": "mixtral-8x7b", "8x7b": "mixtral-8x7b"}


def shape(name: str) -> Shape:
    key = SHAPE_ALIASES.get(name.lower(), name.lower())
    if key not in SHAPES:
        raise SyntheticError(f"unknown model shape {name!r}; known: {', '.join(SHAPES)}")
    return SHAPES[key]


def dense_twin(s: Shape) -> Shape:
    """A dense llama with a mixture-of-experts shape's attention and an FFN as wide as its used
    experts together: the same weights read per token (its active parameters), all of them read."""
    if not s.n_expert:
        raise SyntheticError(f"{s.name} is not a mixture of experts")
    return replace(s, name=f"{s.name}-dense", n_ff=s.n_ff * s.n_expert_used, label="", n_expert=0, n_expert_used=0)


def parse_spec(spec: str) -> tuple[Shape, FileType]:
    """'codellama-13b:Q4_K_M' -> (its Shape, its FileType)."""
    name, sep, ftype = spec.partition(":")
    if not sep:
        raise SyntheticError(f"synthetic model {spec!r}: write SHAPE:FILE_TYPE, e.g. codellama-13b:Q4_K_M")
    try:
        return shape(name), file_type(ftype)
    except ValueError as e:
        raise SyntheticError(str(e)) from None


def file_name(s: Shape, ft: FileType) -> str:
    return f"synthetic-{s.name}.{ft.name}.gguf"


def tensor_shapes(s: Shape, n_vocab: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of a llama model, GGUF shapes (row length first); a mixture of experts has a
    router and 3-D expert tensors in place of the dense FFN."""
    n_kv = s.head_dim * s.n_head_kv
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (s.n_embd, n_vocab),
        "output_norm.weight": (s.n_embd,),
        "output.weight": (s.n_embd, n_vocab),
    }
    for i in range(s.n_layer):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": (s.n_embd,),
            p + "attn_q.weight": (s.n_embd, s.n_embd),
            p + "attn_k.weight": (s.n_embd, n_kv),
            p + "attn_v.weight": (s.n_embd, n_kv),
            p + "attn_output.weight": (s.n_embd, s.n_embd),
            p + "ffn_norm.weight": (s.n_embd,),
        })
        if s.n_expert:
            shapes.update({
                p + "ffn_gate_inp.weight": (s.n_embd, s.n_expert),
                p + "ffn_gate_exps.weight": (s.n_embd, s.n_ff, s.n_expert),
                p + "ffn_up_exps.weight": (s.n_embd, s.n_ff, s.n_expert),
                p + "ffn_down_exps.weight": (s.n_ff, s.n_embd, s.n_expert),
            })
        else:
            shapes.update({
                p + "ffn_gate.weight": (s.n_embd, s.n_ff),
                p + "ffn_up.weight": (s.n_embd, s.n_ff),
                p + "ffn_down.weight": (s.n_ff, s.n_embd),
            })
    return shapes


def metadata(s: Shape, ft: FileType, vocab: GGUFReader) -> list[tuple[str, object, object]]:
    """(key, value, GGUF type) in the order llama.cpp's converter writes them."""
    u32, f32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32
    out = [
        ("general.name", f"synthetic {s.name} (random weights, benchmark only)", None),
        ("llama.context_length", s.n_ctx_train, u32),
        ("llama.embedding_length", s.n_embd, u32),
        ("llama.block_count", s.n_layer, u32),
        ("llama.feed_forward_length", s.n_ff, u32),
        ("llama.rope.dimension_count", s.head_dim, u32),
        ("llama.attention.head_count", s.n_head, u32),
        ("llama.attention.head_count_kv", s.n_head_kv, u32),
    ]
    if s.n_expert:
        out += [("llama.expert_count", s.n_expert, u32), ("llama.expert_used_count", s.n_expert_used, u32)]
    out += [
        ("llama.attention.layer_norm_rms_epsilon", s.rms_eps, f32),
        ("llama.rope.freq_base", s.rope_base, f32),
        ("general.file_type", ft.ftype_id, u32),
        ("general.quantization_version", QUANTIZATION_VERSION, u32),
    ]
    for key, value in vocab.metadata.items():
        if key.startswith("tokenizer."):
            out.append((key, value, vocab.metadata_types[key]))
    return out


# Where each block type keeps its fp16 scale fields (byte offsets inside a block; the layouts of
# csrc/quants/blocks.h). Every other bit pattern of a block is a valid quant or sub-scale, so
# random bytes with these fields fixed make a valid block.
SCALE_OFFSETS: dict[str, tuple[int, ...]] = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}


def random_tensor(qtype: QuantType, shape: tuple[int, ...], seed: tuple[int, ...],
                  dequantize: Callable[[QuantType, np.ndarray, int], np.ndarray]) -> np.ndarray:
    """One tensor's bytes: random blocks whose dequantized values have an RMS near WEIGHT_RMS.
    Norm weights (1-D) are ones, as an untrained RMSNorm."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if len(shape) == 1:
        return np.ones(n, dtype=np.float32)
    if qtype.name in ("F32", "F16"):
        return (rng.standard_normal(n, dtype=np.float32) * WEIGHT_RMS).astype(FLOAT_DTYPES[qtype.name])
    if qtype.name not in SCALE_OFFSETS:
        raise SyntheticError(f"no synthetic blocks for type {qtype.name}")
    blocks = np.frombuffer(rng.bytes(n // qtype.block_size * qtype.type_size), dtype=np.uint8)
    blocks = blocks.reshape(-1, qtype.type_size).copy()
    scale = _unit_scale(qtype, blocks[:64].copy(), dequantize)
    # each block's scale a little different, as real ones are
    for off in SCALE_OFFSETS[qtype.name]:
        values = scale * rng.uniform(0.75, 1.25, len(blocks))
        blocks[:, off:off + 2] = values.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(-1)


def _unit_scale(qtype: QuantType, sample: np.ndarray, dequantize) -> float:
    """The fp16 scale that gives these random quants an RMS of WEIGHT_RMS (dequantized values are
    linear in the scale fields, so one trial with scales of 1 says what they must be)."""
    for off in SCALE_OFFSETS[qtype.name]:
        sample[:, off:off + 2] = np.array([1.0], dtype=np.float16).view(np.uint8)
    values = dequantize(qtype, sample.reshape(-1), len(sample) * qtype.block_size)
    return WEIGHT_RMS / float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))


def plan(s: Shape, ft: FileType, n_vocab: int) -> list[TypeChoice]:
    """Every tensor in llama.cpp's order with the type llama-quantize gives it in a file of type ft."""
    shapes = tensor_shapes(s, n_vocab)
    info = ModelInfo("llama", s.n_layer, s.n_head, s.n_head_kv, s.n_expert)
    return choose_types(((n, shapes[n], _source_type(n, shapes[n])) for n in llama_tensor_order(shapes)), ft, info)


def planned_bytes(s: Shape, ft: FileType, n_vocab: int = 32000) -> int:
    """Bytes of tensor data the file will hold (without metadata and alignment)."""
    return sum(c.dst.row_bytes(c.shape[0]) * int(np.prod(c.shape[1:])) for c in plan(s, ft, n_vocab))


def build(s: Shape, ft: FileType, path, vocab_path, seed: int = 0,
          progress: Callable[[str, int], None] | None = None) -> Path:
    """Write the synthetic model to path (streamed, through a temporary name). Same arguments,
    same bytes. progress(name, nbytes) follows each tensor written."""
    from pygguf.model import kernels  # the reference dequantizer: only the scale calibration needs C

    path = Path(path)
    with GGUFReader(vocab_path) as vocab:
        if vocab.metadata.get("tokenizer.ggml.model") != "llama":
            raise SyntheticError(f"{vocab_path}: not a llama SentencePiece vocabulary")
        choices = plan(s, ft, len(vocab.metadata["tokenizer.ggml.tokens"]))
        w = GGUFWriter(path)
        for key, value, vtype in metadata(s, ft, vocab):
            w.add(key, value, vtype)
    for index, c in enumerate(choices):
        w.add_tensor(c.name, lambda c=c, index=index: random_tensor(c.dst, c.shape, (seed, index), kernels.dequantize),
                     c.shape, c.dst)
    path.parent.mkdir(parents=True, exist_ok=True)
    w.write(progress)
    return path


def _source_type(name: str, tensor_shape) -> QuantType:
    """What a converted (unquantized) file holds: F32 norms and routers (convert_hf_to_gguf keeps
    ffn_gate_inp in F32, and llama-quantize never quantizes it), F16 matrices."""
    return by_name("F32" if len(tensor_shape) == 1 or "ffn_gate_inp" in name else "F16")


def cached(spec: str, models_dir, vocab_dir, progress=None, on_build: Callable[[Path], None] | None = None) -> Path:
    """The synthetic model for 'SHAPE:FILE_TYPE' in models_dir, built on first use."""
    s, ft = parse_spec(spec)
    path = Path(models_dir) / file_name(s, ft)
    if path.exists():
        return path
    vocab_path = Path(vocab_dir) / VOCAB_FILE
    if not vocab_path.exists():
        raise SyntheticError(f"{vocab_path} is missing: `make vocab` fetches llama.cpp's vocabularies")
    if on_build:
        on_build(path)
    return build(s, ft, path, vocab_path, progress=progress)
