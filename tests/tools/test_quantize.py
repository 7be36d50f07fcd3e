"""pygguf-quantize on generated models: layout, metadata, values, refusals, and the CLI through
CliRunner. (Byte-exactness against llama-quantize's files: test_quantize_llamacpp.py.)"""
from __future__ import annotations


import numpy as np
import pytest
from click.testing import CliRunner

from pygguf.model import kernels
from pygguf.gguf import GGUFReader, GGUFValueType, GGUFWriter
from pygguf.model.kernels import KernelError
from pygguf.tools.quant_mix import file_type
from model_factory import has_quantizer
from pygguf.tools.quantize import QuantizeError, quantize_file
from pygguf.gguf.types import WEIGHT_TYPES
from pygguf_cli.quantize import main as quantize_main

from gguf_oracle import assert_same_as_oracle

gguf = pytest.importorskip("gguf", reason="the gguf PyPI package is the test oracle")


# ---- a small generated model ----------------------------------------------------------------

N_EMBD, N_FF, N_VOCAB = 64, 128, 50


def make_model(path, weight_type="F32", extra=None):
    """A 2-layer llama-shaped file, tensors written in a different order from llama.cpp's."""
    rng = np.random.default_rng(7)
    w = GGUFWriter(path, arch="llama")
    w.add("general.file_type", 0, "uint32")
    w.add("llama.block_count", 2, "uint32")
    w.add("llama.attention.head_count", 4, "uint32")
    w.add("llama.attention.head_count_kv", 2, "uint32")
    w.add("split.count", 1, "uint16")
    w.add("tokenizer.ggml.tokens", [f"t{i}" for i in range(N_VOCAB)])
    shapes = {"token_embd.weight": (N_EMBD, N_VOCAB), "output_norm.weight": (N_EMBD,)}
    for i in range(2):
        shapes |= {f"blk.{i}.attn_norm.weight": (N_EMBD,), f"blk.{i}.attn_q.weight": (N_EMBD, N_EMBD),
                   f"blk.{i}.attn_v.weight": (N_EMBD, N_EMBD // 2), f"blk.{i}.ffn_down.weight": (N_FF, N_EMBD)}
    for name, shape in (extra or {}).items():
        shapes[name] = shape
    values = {}
    for name, shape in shapes.items():
        x = rng.standard_normal(int(np.prod(shape))).astype(np.float32)
        values[name] = x
        if len(shape) == 1 or weight_type == "F32":
            w.add_tensor(name, x, shape, "F32")
        else:
            w.add_tensor(name, x.astype(np.float16).view(np.uint8), shape, weight_type)
    w.write()
    return values


def test_f16_output_layout_metadata_and_values(tmp_path):
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    values = make_model(src)
    report = quantize_file(src, dst, "F16")
    with GGUFReader(dst) as r:
        keys = list(r.metadata)
        assert keys[-2:] == ["general.quantization_version", "general.file_type"]
        assert r.metadata["general.quantization_version"] == 2 and r.metadata["general.file_type"] == 1
        assert r.metadata_types["general.file_type"] == GGUFValueType.UINT32
        assert "split.count" not in r.metadata
        assert r.metadata["tokenizer.ggml.tokens"] == [f"t{i}" for i in range(N_VOCAB)]
        assert list(r.tensors)[:3] == ["output_norm.weight", "token_embd.weight", "blk.0.attn_norm.weight"]
        for name, t in r.tensors.items():
            if len(t.shape) == 1:
                assert t.qtype.name == "F32" and np.array_equal(t.data.view(np.float32), values[name])
            else:
                assert t.qtype.name == "F16"
                assert bytes(t.data) == values[name].astype(np.float16).tobytes(), name
    assert report.size_before == sum(v.nbytes for v in values.values())
    assert report.size_after < report.size_before
    assert_same_as_oracle(dst)


def test_bf16_from_f16_needs_no_requantize_flag(tmp_path):
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    values = make_model(src, weight_type="F16")
    quantize_file(src, dst, "BF16")
    with GGUFReader(dst) as r:
        t = r.tensors["blk.1.attn_q.weight"]
        assert t.qtype.name == "BF16"
        as_f32 = (t.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        halves = values["blk.1.attn_q.weight"].astype(np.float16).astype(np.float32)
        assert np.max(np.abs(as_f32 - halves)) <= np.max(np.abs(halves)) * 2 ** -8


def test_requantizing_needs_the_flag(tmp_path):
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    make_model(src, weight_type="F16")
    with GGUFReader(src) as r:
        w = GGUFWriter(tmp_path / "q.gguf", arch=None)
        for k, v in r.metadata.items():
            w.add(k, v, r.metadata_types[k])
        for t in r.tensors.values():
            w.add_tensor(t.name, t.data, t.shape, t.qtype)
        w.add_tensor("blk.0.ffn_up.weight", np.zeros(4 * 34, np.uint8), (N_EMBD, 2), "Q8_0")
        w.write()
    with pytest.raises(QuantizeError, match="requantizing from type Q8_0 is disabled"):
        quantize_file(tmp_path / "q.gguf", dst, "F16")
    assert not dst.exists()
    try:
        quantize_file(tmp_path / "q.gguf", dst, "F16", allow_requantize=True)
    except KernelError as e:
        assert "no dequantizer for Q8_0" in str(e)          # this build lacks the Q8_0 kernels
    else:
        with GGUFReader(dst) as r:      # all-zero Q8_0 blocks dequantize to zeros
            assert r.tensors["blk.0.ffn_up.weight"].qtype.name == "F16"
            assert not r.tensors["blk.0.ffn_up.weight"].data.any()


def test_missing_quantizer_is_refused_before_writing(tmp_path):
    """A build without some quantizer: the kernel refuses, and nothing is written."""
    def quantizer_without_q4_0(qt, floats):
        if qt.name == "Q4_0":
            raise KernelError("quantize Q4_0: no kernel for this type")
        return kernels.quantize(qt, floats)

    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    make_model(src)
    with pytest.raises(KernelError, match="no quantizer for Q4_0 in this build"):
        quantize_file(src, dst, "Q4_0", pure=True, quantizer=quantizer_without_q4_0)
    assert not dst.exists()
    missing = [t.name for t in WEIGHT_TYPES if not has_quantizer(t)]
    for name in missing:                   # and the real kernels refuse the same way
        with pytest.raises(KernelError):
            kernels.quantize(name, np.zeros(256, np.float32))


def test_same_input_and_output_refused(tmp_path):
    src = tmp_path / "in.gguf"
    make_model(src)
    with pytest.raises(QuantizeError, match="same file"):
        quantize_file(src, src, "F16")


# ---- the CLI --------------------------------------------------------------------------------

def cli(*args):
    return CliRunner().invoke(quantize_main, [str(a) for a in args])


def test_cli_converts_and_summarises(tmp_path):
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    make_model(src)
    res = cli(src, dst, "f16")
    assert res.exit_code == 0, res.stderr
    assert "model size =" in res.stderr and "quant size =" in res.stderr and "F16" in res.stderr
    with GGUFReader(dst) as r:
        assert r.metadata["general.file_type"] == file_type("F16").ftype_id


@pytest.mark.parametrize("args, words", [
    (("{src}", "{dst}", "Q9_9"), "unknown file type"),
    (("{tmp}/missing.gguf", "{dst}", "F16"), "cannot open"),
    (("{src}", "{src}", "F16"), "same file"),
])
def test_cli_errors_are_one_line(tmp_path, args, words):
    src = tmp_path / "in.gguf"
    make_model(src)
    res = cli(*(a.format(src=src, dst=tmp_path / "out.gguf", tmp=tmp_path) for a in args))
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in res.stderr


def test_cli_refuses_missing_quantizer_or_quantizes(tmp_path):
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    make_model(src)
    res = cli(src, dst, "Q4_0", "--pure")
    if has_quantizer("Q4_0"):
        assert res.exit_code == 0, res.stderr
        with GGUFReader(dst) as r:
            assert r.tensors["blk.0.attn_q.weight"].qtype.name == "Q4_0"
    else:
        assert res.exit_code == 1
        assert res.stderr.strip() == ("pygguf-quantize: error: no quantizer for Q4_0 in this build of pygguf "
                                      "(quantize Q4_0: no kernel for this type)")
