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
