"""Per-tensor type choices of every file-type mix, against llama-quantize's recorded choices on
tiny-codellama (all 14 quantized file types), plus the rules the tiny model does not reach."""
from __future__ import annotations

import json

import pytest

from pygguf_cli import paths
from testpaths import shown
from pygguf.tools.quant_mix import (FILE_TYPES, ModelInfo, QuantMixError, allows_quantization, choose_types,
                              effective_n_dims, file_type, llama_tensor_order)
from pygguf.gguf.types import by_name

F16, F32 = by_name("F16"), by_name("F32")


def _record():
    shared = paths.shared_dir()
    if shared is None:
        pytest.skip("../shared is absent: no llama-quantize reference choices")
    path = shared / "ref" / "tiny" / "quant_tensors_tiny_codellama.json"
    if not path.exists():
        pytest.skip(f"{shown(path)} is absent")
    return json.loads(path.read_text())


def _tiny_model(shared) -> ModelInfo:
    config = json.loads((shared / "ref" / "tiny" / "refs_tiny_codellama.json").read_text())["config"]
    return ModelInfo("llama", config["n_layer"], config["n_head"], config["n_head_kv"])


QUANT_FILES = [f"tiny-codellama-{f.name}.gguf" for f in FILE_TYPES if by_name(f.default).block_size > 1]


def test_fourteen_quantized_file_types():
    assert len(QUANT_FILES) == 14


@pytest.mark.parametrize("fname", QUANT_FILES)
def test_type_choices_match_llama_quantize(fname):
    record = _record()
    source = {t["name"]: t for t in record["files"]["tiny-codellama-F16.gguf"]["tensors"]}
    expected = record["files"][fname]
    ft = file_type(fname[len("tiny-codellama-"):-len(".gguf")])
    assert ft.ftype_id == expected["general_file_type"]
    order = llama_tensor_order(source)
    assert order == [t["name"] for t in expected["tensors"]]          # llama.cpp's output order
    model = _tiny_model(paths.shared_dir())
    choices = choose_types([(n, source[n]["shape"], by_name(source[n]["type"])) for n in order], ft, model)
    got = [(c.name, c.dst.name) for c in choices]
    want = [(t["name"], t["type"]) for t in expected["tensors"]]
    agree = sum(g == w for g, w in zip(got, want))
    assert agree == len(want) == 39, [(g, w) for g, w in zip(got, want) if g != w]


# ---- rules the tiny model does not exercise -----------------------------------------------------

def _pick(tensors, ft, model=None, pure=False):
    model = model or ModelInfo("llama", 8, 8, 8)
    names = llama_tensor_order([n for n, _ in tensors])
    shapes = dict(tensors)
    return {c.name: c.dst.name for c in choose_types([(n, shapes[n], F16) for n in names], ft, model, pure)}


def test_rows_not_a_multiple_of_256_fall_back_to_legacy_types():
    # SmolLM2-like: n_embd 576 = 2.25 super-blocks
    tensors = [("blk.0.attn_q.weight", (576, 576)), ("blk.0.attn_v.weight", (576, 192)),
               ("blk.0.ffn_down.weight", (1536, 576)), ("output.weight", (576, 1000))]
    assert _pick(tensors, "Q4_K_M", ModelInfo("llama", 1, 9, 3)) == {
        "blk.0.attn_q.weight": "Q5_0",            # Q4_K -> Q5_0
        "blk.0.attn_v.weight": "Q8_0",            # Q6_K (more bits in the first layer) -> Q8_0
        "blk.0.ffn_down.weight": "Q6_K",          # 1536 = 6 x 256 fits
        "output.weight": "Q8_0",                  # output rule: not a multiple of 256 -> Q8_0
    }
    assert _pick(tensors, "Q2_K")["blk.0.attn_q.weight"] == "Q4_0"
    assert _pick(tensors, "Q3_K_S")["blk.0.attn_q.weight"] == "Q4_0"
    assert _pick(tensors, "Q5_K_S")["blk.0.attn_q.weight"] == "Q5_1"
    assert _pick(tensors, "Q6_K")["blk.0.attn_q.weight"] == "Q8_0"


def test_rows_not_a_multiple_of_32_stay_f16():
    assert _pick([("blk.0.attn_q.weight", (48, 64))], "Q4_K_S")["blk.0.attn_q.weight"] == "F16"
    with pytest.raises(QuantMixError, match="no fallback"):
        _pick([("blk.0.attn_q.weight", (48, 64))], "Q4_0")


def test_one_dimensional_and_norm_tensors_keep_their_type():
    tensors = [("blk.0.attn_norm.weight", (256,)), ("blk.0.attn_q.bias", (256,)),
               ("blk.0.attn_q.weight", (256, 1)), ("blk.0.ffn_gate_inp.weight", (256, 8)),
               ("blk.0.attn_k.weight", (256, 256))]
    got = _pick(tensors, "Q4_0")
    assert got["blk.0.attn_norm.weight"] == got["blk.0.attn_q.bias"] == "F16"      # source type kept
    assert got["blk.0.attn_q.weight"] == "F16"                                       # [256, 1] is 1-D
    assert got["blk.0.ffn_gate_inp.weight"] == "F16"
    assert got["blk.0.attn_k.weight"] == "Q4_0"
    assert effective_n_dims((256, 1, 1)) == 1 and effective_n_dims((256, 2, 1)) == 2
    assert not allows_quantization("token_types.weight", (256, 2))


def test_tied_embeddings_get_the_output_rule():
    tied = _pick([("token_embd.weight", (256, 1000)), ("blk.0.attn_q.weight", (256, 256))], "Q4_K_M")
    assert tied["token_embd.weight"] == "Q6_K"
    untied = _pick([("token_embd.weight", (256, 1000)), ("output.weight", (256, 1000))], "Q4_K_M")
    assert untied == {"token_embd.weight": "Q4_K", "output.weight": "Q6_K"}
    assert _pick([("output.weight", (256, 1000))], "Q8_0")["output.weight"] == "Q8_0"


def test_pure_skips_the_mix_but_not_the_fallback():
    tensors = [("output.weight", (256, 100)), ("blk.0.attn_v.weight", (256, 256)),
               ("blk.0.ffn_down.weight", (576, 256))]
    assert _pick(tensors, "Q4_K_M", pure=True) == {
        "output.weight": "Q4_K", "blk.0.attn_v.weight": "Q4_K", "blk.0.ffn_down.weight": "Q5_0"}


def test_float_file_types_convert_every_weight():
    tensors = [("output.weight", (40, 10)), ("blk.0.attn_norm.weight", (40,))]
    assert _pick(tensors, "BF16") == {"output.weight": "BF16", "blk.0.attn_norm.weight": "F16"}


def test_gqa_experts_and_70b_rules():
    v = [("blk.0.attn_v.weight", (256, 256))]
    assert _pick(v, "Q2_K", ModelInfo("llama", 8, 32, 8))["blk.0.attn_v.weight"] == "Q4_K"   # n_gqa 4
    assert _pick(v, "Q2_K", ModelInfo("llama", 8, 32, 16))["blk.0.attn_v.weight"] == "Q3_K"
    assert _pick(v, "Q3_K_S", ModelInfo("llama", 80, 64, 8))["blk.0.attn_v.weight"] == "Q5_K"  # 70B
    assert _pick(v, "Q4_0", ModelInfo("llama", 8, 32, 8, n_expert=8))["blk.0.attn_v.weight"] == "Q8_0"


def test_expert_tensors_take_their_layer_from_their_name():
    # llama.cpp: with experts, "the i-th ffn_down" is not the layer (Mixtral's experts were once
    # sprinkled through the file), so the layer is parsed from the name; 3-D *_exps tensors are
    # quantized like any matrix, the router (ffn_gate_inp) never
    moe = ModelInfo("llama", 8, 32, 8, n_expert=8)
    names = [f"blk.{i}.ffn_down_exps.weight" for i in (7, 0, 3, 1, 6, 2, 5, 4)]        # out of order
    tensors = [(n, (256, 256, 8), F16) for n in names] + [("blk.0.ffn_gate_inp.weight", (256, 8), F32)]
    got = {c.name: c.dst.name for c in choose_types(tensors, "Q4_K_M", moe)}
    assert [i for i in range(8) if got[f"blk.{i}.ffn_down_exps.weight"] == "Q6_K"] == [0, 3, 6, 7]
    assert got["blk.0.ffn_gate_inp.weight"] == "F32"
    dense = {c.name: c.dst.name for c in choose_types(tensors, "Q4_K_M", ModelInfo("llama", 8, 32, 8))}
    assert [n for n in names if dense[n] == "Q6_K"] == [names[i] for i in (0, 3, 6, 7)]   # by count
    with pytest.raises(QuantMixError, match="cannot tell the layer"):
        choose_types([("blk.9.ffn_up_exps.weight", (256, 256, 8), F16)], "Q4_K_M", moe)


def test_use_more_bits_layers_for_q4_k_m_ffn_down():
    n = 32
    tensors = [(f"blk.{i}.ffn_down.weight", (256, 256)) for i in range(n)]
    got = _pick(tensors, "Q4_K_M", ModelInfo("llama", n, 8, 8))
    more = [i for i in range(n) if got[f"blk.{i}.ffn_down.weight"] == "Q6_K"]
    # first and last eighth, and every third layer in between
    assert more == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


def test_tensor_order_is_numeric_by_block():
    names = ["blk.10.attn_q.weight", "token_embd.weight", "blk.2.ffn_up.weight", "blk.2.attn_k.weight",
             "output_norm.weight", "output.weight"]
    assert llama_tensor_order(names) == ["output.weight", "output_norm.weight", "token_embd.weight",
                                         "blk.2.attn_k.weight", "blk.2.ffn_up.weight", "blk.10.attn_q.weight"]


def test_file_type_names_and_numbers():
    assert file_type("q4_k_m").ftype_id == 15
    assert file_type("Q4_K").name == "Q4_K_M"
    assert file_type(7).name == "Q8_0" and file_type("32").name == "BF16"
    with pytest.raises(QuantMixError, match="unknown file type"):
        file_type("Q9_X")
