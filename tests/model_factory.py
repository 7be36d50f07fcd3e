"""Tiny random llama models for the forward tests: raw tensors for Model.from_tensors (or a
GGUF file), and the same weights dequantized to float64 for the numpy reference."""
from __future__ import annotations

import numpy as np

from pygguf._native import ffi, lib
from pygguf.errors import KernelError
from pygguf.gguf.types import QuantType, by_id, by_name
from pygguf.model import kernels
from pygguf.model.config import Config, required, tensor_names

F32 = by_name("F32")

# rows of 256 so every K-quant is really used; 300 vocab rows and 2 KV heads of 64 (GQA 2:1)
TINY = dict(n_vocab=300, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_ctx_train=128, rope_base=1e4)


def missing_kernels(qtype: QuantType) -> str | None:
    """why a weight type cannot run in this build, or None"""
    info = [ffi.new("int64_t *"), ffi.new("size_t *"), ffi.new("int *")]
    if lib.pg_type_info(qtype.ggml_id, *info) != lib.PG_OK:
        return f"{qtype.name}: reference quantize/dequantize/dot not in this build"
    act = by_id(info[2][0])
    if lib.pg_type_info(act.ggml_id, *info) != lib.PG_OK:
        return f"{qtype.name}: activation format {act.name} has no reference quantizer in this build"
    return None


def has_quantizer(qtype: QuantType | str) -> bool:
    """Whether this build has a reference quantizer for the type."""
    qtype = by_name(qtype) if isinstance(qtype, str) else qtype
    try:
        kernels.quantize(qtype, np.zeros(qtype.block_size, dtype=np.float32))
        return True
    except KernelError:
        return False


def random_weights(config: Config, seed: int, tied: bool = False, rope_freqs: bool = False) -> dict[str, np.ndarray]:
    """float32 matrices (rows, row length), scaled like ref/tiny: unit-ish activations throughout"""
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in tensor_names(config):
        if (tied and name == "output.weight") or (not rope_freqs and name == "rope_freqs.weight"):
            continue
        if spec.attribute not in ("output", "rope_freqs") and not required(spec, config):
            continue
        if name == "rope_freqs.weight":                  # like Llama 3.1's: 1 for fast pairs, up to 8 for slow
            out[name] = np.linspace(1, 8, config.n_rot // 2).astype(np.float32)
            continue
        shape = spec.shape(config)
        if len(shape) == 1:
            out[name] = (1 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
            continue
        n, rows = shape
        gain = {"token_embd": 1.0, "wq": 1.4, "wk": 1.4, "output": 3.0}.get(spec.attribute, 1.0)
        scale = gain if spec.attribute == "token_embd" else gain / np.sqrt(n)
        out[name] = (rng.standard_normal((rows, n)) * scale).astype(np.float32)
    return out


def encode(weights: dict[str, np.ndarray], qtype: QuantType, config: Config):
    """-> (tensors for Model.from_tensors, float64 weights the stored bytes really mean)"""
    tensors, exact = {}, {}
    shapes = dict((name, spec.shape(config)) for name, spec in tensor_names(config))
    for name, w in weights.items():
        t = F32 if w.ndim == 1 else qtype
        raw = kernels.quantize(t, w) if t is not F32 else w
        tensors[name] = (raw, t, shapes[name])
        exact[name] = kernels.dequantize(t, raw, w.size).reshape(w.shape).astype(np.float64)
    return tensors, exact


def tiny_config(**overrides) -> Config:
    return Config(**{**TINY, **overrides})


def write_gguf(path, config: Config, tensors: dict, arch: str = "llama", drop_keys=(),
               extra: dict | None = None) -> None:
    """A GGUF file holding `tensors` (as for Model.from_tensors), config's llama.* keys and the
    `extra` ones ({key: value or (value, type)}: general.alignment sets the file's alignment)."""
    from pygguf.gguf import GGUFWriter

    w = GGUFWriter(path, arch=arch)
    keys = {
        "vocab_size": config.n_vocab, "context_length": config.n_ctx_train,
        "embedding_length": config.n_embd, "block_count": config.n_layer,
        "feed_forward_length": config.n_ff, "attention.head_count": config.n_head,
        "attention.head_count_kv": config.n_head_kv, "rope.dimension_count": config.n_rot,
        "rope.freq_base": (config.rope_base, "float32"),
        "attention.layer_norm_rms_epsilon": (config.rms_eps, "float32"),
    }
    for key, value in keys.items():
        if key in drop_keys:
            continue
        value, vtype = value if isinstance(value, tuple) else (value, "uint32")
        w.add(f"{arch}.{key}", value, vtype)
    for key, value in (extra or {}).items():
        w.add(key, *(value if isinstance(value, tuple) else (value,)))
    for name, (raw, qtype, shape) in tensors.items():
        w.add_tensor(name, raw, shape, qtype)
    w.write()


def write_gguf_raw(path, metadata: dict, tensors: dict) -> None:
    """A GGUF file with the given metadata (types inferred) and {name: (raw, qtype, shape)}."""
    from pygguf.gguf import GGUFWriter

    w = GGUFWriter(path, arch=None)
    for key, value in metadata.items():
        w.add(key, value)
    for name, (raw, qtype, shape) in tensors.items():
        w.add_tensor(name, raw, shape, qtype)
    w.write()


def synthetic_small_shape():
    """A synthetic-model shape of the llama family small enough for tests: 8 layers 256 wide (so
    the first and last eighth of the layers are layers), GQA 4/2, rope base 1e6."""
    from pygguf.tools.synthetic import Shape
    return Shape("test-small", 256, 8, 4, 2, 512, 1024, rope_base=1e6, label="tiny")


def synthetic_small_moe_shape():
    """A Mixtral-style synthetic shape small enough for tests: 4 layers 256 wide, 4 experts of
    n_ff 256, 2 used per token."""
    from pygguf.tools.synthetic import Shape
    return Shape("test-moe", 256, 4, 4, 2, 256, 1024, rope_base=1e6, label="tiny", n_expert=4, n_expert_used=2)
