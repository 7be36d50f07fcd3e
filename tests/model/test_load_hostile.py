"""Model.load on files whose metadata disagrees with their tensors (issue 18): a ModelError naming
the key, before any table per layer is built."""
from __future__ import annotations

import dataclasses

import pytest

from model_factory import encode, random_weights, tiny_config, write_gguf
from pygguf.errors import ModelError
from pygguf.gguf.types import by_name
from pygguf.model.model import Model


@pytest.fixture(scope="module")
def tiny_f32():
    config = tiny_config()
    tensors, _ = encode(random_weights(config, seed=3), by_name("F32"), config)
    return config, tensors


@pytest.mark.parametrize("block_count", [3, 100, 4096])
def test_block_count_beyond_the_layers_present(tiny_f32, tmp_path, block_count):
    # main: "missing tensor blk.2.attn_norm.weight" after building block_count * 20 names
    config, tensors = tiny_f32
    write_gguf(tmp_path / "m.gguf", dataclasses.replace(config, n_layer=block_count), tensors)
    with pytest.raises(ModelError, match=rf"llama\.block_count is {block_count}, but the file holds tensors for 2 layers"):
        Model.load(tmp_path / "m.gguf", n_ctx=16)


@pytest.mark.parametrize("block_count", [2**31, 2**32 - 1])
def test_block_count_past_the_loader_limit(tiny_f32, tmp_path, block_count):
    config, tensors = tiny_f32
    write_gguf(tmp_path / "m.gguf", dataclasses.replace(config, n_layer=1), tensors)
    from pygguf.gguf import GGUFWriter
    w = GGUFWriter(tmp_path / "huge.gguf")
    with Model.load(tmp_path / "m.gguf", n_ctx=16) as m:
        for key, value in m.metadata.items():
            if key != "general.architecture":
                w.add(key, block_count if key == "llama.block_count" else value, "uint32" if key == "llama.block_count" else None)
    for name, (raw, qtype, shape) in tensors.items():
        w.add_tensor(name, raw, shape, qtype)
    w.write()
    with pytest.raises(ModelError, match="block_count"):
        Model.load(tmp_path / "huge.gguf", n_ctx=16)


@pytest.mark.parametrize("case", ["norm_as_f16", "transposed_embedding", "short_ffn"])
def test_a_tensor_whose_type_or_shape_disagrees_is_named(tiny_f32, tmp_path, case):
    import numpy as np
    config, tensors = tiny_f32
    tensors = dict(tensors)
    if case == "norm_as_f16":
        raw, _, shape = tensors["blk.1.attn_norm.weight"]
        tensors["blk.1.attn_norm.weight"] = (np.asarray(raw, np.float16), by_name("F16"), shape)
        words = r"blk\.1\.attn_norm\.weight is F16"
    elif case == "transposed_embedding":
        raw, qtype, shape = tensors["token_embd.weight"]
        tensors["token_embd.weight"] = (raw, qtype, shape[::-1])
        words = r"token_embd\.weight has shape"
    else:
        raw, qtype, shape = tensors["blk.0.ffn_down.weight"]
        tensors["blk.0.ffn_down.weight"] = (np.asarray(raw)[: shape[1] // 2], qtype, (shape[0], shape[1] // 2))
        words = r"blk\.0\.ffn_down\.weight has shape"
    write_gguf(tmp_path / "m.gguf", config, tensors)
    with pytest.raises(ModelError, match=words):
        Model.load(tmp_path / "m.gguf", n_ctx=16)
