"""Synthetic benchmark models: real releases' sizes and tensor types, valid blocks, the same bytes
every time, and a forward that stays finite."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from model_factory import synthetic_small_moe_shape, synthetic_small_shape
from tokenizer_vectors import vocab_path

from pygguf.gguf.reader import GGUFReader
from pygguf.gguf.types import by_name
from pygguf.model import Model, kernels
from pygguf.model.batch import Batch
from pygguf.tools import synthetic
from pygguf.tools.quant_mix import file_type

VOCAB = vocab_path("llama-spm")
SMALL = synthetic_small_shape()
SMALL_MOE = synthetic_small_moe_shape()

needs_vocab = pytest.mark.skipif(not VOCAB.exists(), reason=f"{VOCAB} not found (run `make vocab`)")


# Published file sizes (TheBloke's GGUF releases, in GB = 1e9 bytes, rounded to 2 decimals):
# our plan of types must land on the same bytes, or it is not llama-quantize's mix.
@pytest.mark.parametrize("shape, ftype, gb", [
    ("codellama-13b", "Q4_K_M", 7.87), ("codellama-13b", "Q8_0", 13.83), ("codellama-13b", "Q6_K", 10.68),
    ("llama2-7b", "Q4_K_M", 4.08), ("llama2-7b", "Q4_0", 3.83), ("llama2-7b", "Q5_K_M", 4.78),
    ("tinyllama-1.1b", "Q4_K_M", 0.67),
])
def test_planned_sizes_match_released_files(shape, ftype, gb):
    data = synthetic.planned_bytes(synthetic.shape(shape), file_type(ftype))
    assert round(data / 1e9, 2) == gb


def test_q4_k_m_mix_is_llama_quantizes():
    choices = {c.name: c.dst.name for c in synthetic.plan(synthetic.shape("13b"), file_type("Q4_K_M"), 32000)}
    assert choices["output.weight"] == "Q6_K"
    assert choices["token_embd.weight"] == "Q4_K"
    assert choices["blk.0.attn_norm.weight"] == "F32"
    # first and last eighth of the 40 layers, and every third one between: more bits
    more = [i for i in range(40) if choices[f"blk.{i}.ffn_down.weight"] == "Q6_K"]
    assert more == [i for i in range(40) if i < 5 or i >= 35 or (i - 5) % 3 == 2]
    assert [choices[f"blk.{i}.attn_v.weight"] for i in more] == ["Q6_K"] * len(more)
    assert {choices[f"blk.{i}.attn_q.weight"] for i in range(40)} == {"Q4_K"}


@pytest.mark.parametrize("spec, error", [
    ("codellama-13b", "SHAPE:FILE_TYPE"), ("gpt-7:Q4_K_M", "unknown model shape"), ("7b:Q9_K", "unknown file type"),
])
def test_bad_specs_are_refused_clearly(spec, error):
    with pytest.raises(synthetic.SyntheticError, match=error):
        synthetic.parse_spec(spec)


@pytest.mark.parametrize("ftype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_S", "Q5_K_M", "Q6_K"])
def test_random_blocks_dequantize_near_the_target_rms(ftype):
    qt = by_name(synthetic.plan(SMALL, file_type(ftype), 32000)[-1].dst.name)   # a layer matrix
    raw = synthetic.random_tensor(qt, (1024, 64), (7, 1), kernels.dequantize)
    values = kernels.dequantize(qt, raw, 1024 * 64)
    rms = float(np.sqrt(np.mean(values.astype(np.float64) ** 2)))
    assert np.isfinite(values).all()
    assert 0.7 * synthetic.WEIGHT_RMS < rms < 1.3 * synthetic.WEIGHT_RMS


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_vocab
def test_same_request_same_bytes_and_a_finite_forward(tmp_path):
    a = synthetic.build(SMALL, file_type("Q4_K_M"), tmp_path / "a.gguf", VOCAB)
    b = synthetic.build(SMALL, file_type("Q4_K_M"), tmp_path / "b.gguf", VOCAB)
    assert sha256(a) == sha256(b)
    other = synthetic.build(SMALL, file_type("Q4_K_M"), tmp_path / "c.gguf", VOCAB, seed=1)
    assert sha256(other) != sha256(a)
    with GGUFReader(a) as r:
        assert r.metadata["llama.block_count"] == 8
        assert r.metadata["llama.rope.freq_base"] == pytest.approx(1e6)
        assert r.metadata["general.file_type"] == 15
        assert len(r.metadata["tokenizer.ggml.tokens"]) == 32000
        types = {n: t.qtype.name for n, t in r.tensors.items()}
    assert types["output.weight"] == "Q6_K" and types["blk.1.attn_q.weight"] == "Q4_K"
    model = Model.load(a, n_ctx=64, n_threads=1)
    try:
        logits = model.decode(Batch.of(model.tokenizer.encode("def fib(n):")))
        assert np.isfinite(logits).all() and logits.std() > 0
    finally:
        model.close()


@needs_vocab
def test_cached_builds_once(tmp_path, monkeypatch):
    monkeypatch.setitem(synthetic.SHAPES, SMALL.name, SMALL)
    built = []
    path = synthetic.cached(f"{SMALL.name}:Q4_0", tmp_path, VOCAB.parent, on_build=built.append)
    again = synthetic.cached(f"{SMALL.name}:Q4_0", tmp_path, VOCAB.parent, on_build=built.append)
    assert path == again == tmp_path / "synthetic-test-small.Q4_0.gguf" and built == [path]


def test_missing_vocabulary_says_how_to_get_it(tmp_path):
    with pytest.raises(synthetic.SyntheticError, match="make vocab"):
        synthetic.cached("1b:Q4_K_M", tmp_path, tmp_path / "no-vocab")


# ---- mixture of experts ------------------------------------------------------------------------

def test_mixtral_q4_k_m_mix_is_llama_quantizes():
    s = synthetic.shape("mixtral-mini")
    choices = {c.name: c.dst.name for c in synthetic.plan(s, file_type("Q4_K_M"), 32000)}
    assert choices["blk.0.ffn_gate_inp.weight"] == "F32"                  # the converter's F32, never quantized
    assert {choices[f"blk.{i}.{n}.weight"] for i in range(8) for n in ("attn_k", "attn_v")} == {"Q8_0"}   # 8 experts
    assert {choices[f"blk.{i}.attn_output.weight"] for i in range(8)} == {"Q5_K"}
    assert {choices[f"blk.{i}.ffn_{n}_exps.weight"] for i in range(8) for n in ("gate", "up")} == {"Q4_K"}
    assert [i for i in range(8) if choices[f"blk.{i}.ffn_down_exps.weight"] == "Q6_K"] == [0, 3, 6, 7]
    assert "blk.0.ffn_gate.weight" not in choices


def test_dense_twin_reads_as_many_ffn_bytes_as_the_used_experts():
    s = synthetic.shape("mixtral-mini")
    twin = synthetic.dense_twin(s)
    assert (twin.n_ff, twin.n_expert, twin.n_embd, twin.n_layer) == (2 * s.n_ff, 0, s.n_embd, s.n_layer)

    def ffn_bytes(shape, part):
        return sum(c.dst.row_bytes(c.shape[0]) * int(np.prod(c.shape[1:]))
                   for c in synthetic.plan(shape, file_type("Q4_0"), 32000) if part in c.name)
    assert ffn_bytes(twin, "ffn_") - ffn_bytes(twin, "ffn_norm") == ffn_bytes(s, "_exps") * 2 // 8
    with pytest.raises(synthetic.SyntheticError, match="not a mixture of experts"):
        synthetic.dense_twin(SMALL)


@needs_vocab
def test_moe_file_as_llama_cpp_writes_it_and_a_finite_forward(tmp_path):
    path = synthetic.build(SMALL_MOE, file_type("Q4_0"), tmp_path / "moe.gguf", VOCAB)
    with GGUFReader(path) as r:
        assert r.metadata["llama.expert_count"] == 4 and r.metadata["llama.expert_used_count"] == 2
        assert r.metadata["llama.feed_forward_length"] == 256
        t = r.tensors
        assert (t["blk.0.ffn_gate_inp.weight"].qtype.name, tuple(t["blk.0.ffn_gate_inp.weight"].shape)) == ("F32", (256, 4))
        assert tuple(t["blk.3.ffn_gate_exps.weight"].shape) == tuple(t["blk.3.ffn_up_exps.weight"].shape) == (256, 256, 4)
        assert tuple(t["blk.3.ffn_down_exps.weight"].shape) == (256, 256, 4)
        assert t["blk.3.ffn_down_exps.weight"].qtype.name == "Q4_0" and "blk.0.ffn_up.weight" not in t
    model = Model.load(path, n_ctx=32, n_threads=1, repack=False)
    try:
        assert (model.config.n_expert, model.config.n_expert_used, model.config.n_ff_exp) == (4, 2, 256)
        tokens = model.tokenizer.encode("def fib(n):")
        logits = model.decode(Batch.of(tokens))
        assert np.isfinite(logits).all() and logits.std() > 0
        logits = model.decode(Batch.of([int(np.argmax(logits[-1]))], len(tokens)))
        assert np.isfinite(logits).all() and logits.std() > 0
    finally:
        model.close()
