"""The C forward pass against the float64 numpy forward (tests/reference_forward.py) on tiny
random llama models, for every weight type this build can run; bit-for-bit determinism across
threads and batch sizes; the KV cache operations; and the errors bad models give."""
import dataclasses

import numpy as np
import pytest

import reference_forward as ref
from model_factory import encode, missing_kernels, random_weights, tiny_config
from model_runner import Runner
from pygguf.errors import ModelError
from pygguf.gguf.types import WEIGHT_TYPES, by_name
from pygguf.model import Model, TensorRef
from pygguf.model.batch import Batch
from pygguf.model.config import Config

TOKENS = [5, 17, 250, 3, 99, 42, 7, 7, 180, 0, 299]

# max |C - numpy| over all logits, in units of the logits' standard deviation (about 3 here).
# F32 weights: only the F16 KV cache rounds (2^-11 relative). F16/BF16 weights also round each
# activation to 11 / 8 significant bits before the dot product. Quantized weights are compared
# with their own dequantized values, so what differs is the activation's 8-bit quantization
# (Q8_0/Q8_1 per 32 values, Q8_K per 256), about 0.4% per value, which llama.cpp shares: its
# quantized files differ from themselves by up to ~0.6 in a logit (0.2 std; flash attention on vs
# off). Measured here: 0.04-0.08 std for every quantized type.
TOLERANCE = {"F32": 2e-3, "F16": 4e-3, "BF16": 3e-2}
QUANT_TOLERANCE = 0.15


def tolerance(qtype) -> float:
    return TOLERANCE.get(qtype.name, QUANT_TOLERANCE)


def build(tensors, config, **kwargs):
    """A model run one sequence at a time (tests/model_runner.py)"""
    kwargs.setdefault("n_ctx", 64)
    return Runner(Model.from_tensors(config, tensors, **kwargs))


def reference_logits(exact, config, tokens):
    return ref.forward(exact, config, np.array(tokens), ref.empty_cache(config), 0)


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    return config, random_weights(config, seed=1)


@pytest.mark.parametrize("qtype", WEIGHT_TYPES, ids=lambda t: t.name)
def test_matches_reference_and_is_deterministic(tiny, qtype):
    reason = missing_kernels(qtype)
    if reason:
        pytest.skip(reason)
    config, weights = tiny
    tensors, exact = encode(weights, qtype, config)
    want = reference_logits(exact, config, TOKENS)
    runs = {}
    for threads in (1, 2):
        for n_batch in (1, 4, 16):
            with build(tensors, config, n_threads=threads, n_batch=n_batch) as m:
                runs[threads, n_batch] = m.eval_all(TOKENS)
    got = runs[2, 16]
    err = np.abs(got - want).max() / want.std()
    assert err < tolerance(qtype), f"{qtype.name}: max |diff| {err:.4f} std"
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.8
    for key, logits in runs.items():
        assert np.array_equal(logits, got), f"{qtype.name}: threads/n_batch {key} changed the logits"
    # generation one token at a time, and eval's last-logits view, give the same bits
    with build(tensors, config, n_threads=2, n_batch=16) as m:
        one_by_one = np.stack([m.eval([t]).copy() for t in TOKENS])
        m.reset()
        last = m.eval(TOKENS)
    assert np.array_equal(one_by_one, got)
    assert np.array_equal(last, got[-1])


@pytest.mark.parametrize("variant", [
    dict(n_head_kv=4),                                    # multi-head attention
    dict(n_head_kv=1),                                    # multi-query attention
    dict(rope_base=1e6),                                  # CodeLlama's base
    dict(n_rot=32),                                       # RoPE on part of each head
    dict(rope_scaling="linear", rope_freq_scale=0.25),
    dict(rope_scaling="yarn", rope_freq_scale=0.25, yarn_orig_ctx=16),
    dict(n_layer=1, n_ff=256, head_dim=32, n_head=4, n_head_kv=2),   # n_head * head_dim != n_embd
], ids=["mha", "mqa", "base1e6", "partial-rope", "linear", "yarn", "narrow-heads"])
def test_architecture_variants(variant):
    config = tiny_config(**variant)
    tensors, exact = encode(random_weights(config, seed=2), by_name("F32"), config)
    want = reference_logits(exact, config, TOKENS)
    with build(tensors, config, n_threads=2, n_batch=4) as m:
        got = m.eval_all(TOKENS)
    assert np.abs(got - want).max() / want.std() < TOLERANCE["F32"]


def test_rope_freq_factors():
    config = tiny_config(rope_base=5e5)
    tensors, exact = encode(random_weights(config, seed=4, rope_freqs=True), by_name("F32"), config)
    want = reference_logits(exact, config, TOKENS)
    with build(tensors, config) as m:
        got = m.eval_all(TOKENS)
        m.shift(2, 3)
        k, _ = m.kv_cache(0)
    assert np.abs(got - want).max() / want.std() < TOLERANCE["F32"]
    cache = ref.empty_cache(config)
    ref.forward(exact, config, np.array(TOKENS), cache, 0)
    shifted = ref.shift_cache(cache, config, 2, 3, exact["rope_freqs.weight"])
    assert np.abs(k - shifted[0][0]).max() < 2e-3 * np.abs(shifted[0][0]).max()


def test_tied_output():
    config = tiny_config()
    tensors, exact = encode(random_weights(config, seed=3, tied=True), by_name("F16"), config)
    want = reference_logits(exact, config, TOKENS)
    with build(tensors, config) as m:
        assert m.tied_output
        got = m.eval_all(TOKENS)
    assert np.abs(got - want).max() / want.std() < TOLERANCE["F16"]


def test_context_shift_matches_shifted_reference(tiny):
    config, weights = tiny
    tensors, exact = encode(weights, by_name("F32"), config)
    prompt, more = list(range(20, 40)), [7, 8, 9]
    keep, discard = 4, 6
    cache = ref.empty_cache(config)
    ref.forward(exact, config, np.array(prompt), cache, 0)
    cache = ref.shift_cache(cache, config, keep, discard)
    want = ref.forward(exact, config, np.array(more), cache, len(prompt) - discard)
    results = []
    for threads in (1, 2):
        with build(tensors, config, n_threads=threads, n_batch=8) as m:
            m.eval(prompt)
            m.shift(keep, discard)
            assert m.n_past == len(prompt) - discard
            for layer in range(config.n_layer):
                k, v = m.kv_cache(layer)
                scale = np.abs(cache[layer][0]).max()
                assert np.abs(k - cache[layer][0][:, :m.n_past]).max() < 2e-3 * scale
                assert np.abs(v - cache[layer][1][:, :m.n_past]).max() < 2e-3 * np.abs(cache[layer][1]).max()
            results.append(m.eval_all(more))
    assert np.abs(results[0] - want).max() / want.std() < TOLERANCE["F32"]
    assert np.array_equal(results[0], results[1])


def test_truncate_and_reset_replay_bit_for_bit(tiny):
    config, weights = tiny
    tensors, _ = encode(weights, by_name("F16"), config)
    with build(tensors, config, n_batch=4) as m:
        full = m.eval_all(TOKENS)
        m.truncate(6)
        assert m.n_past == 6
        assert np.array_equal(m.eval_all(TOKENS[6:]), full[6:])
        m.reset()
        assert m.n_past == 0
        assert np.array_equal(m.eval(TOKENS[:3]), full[2])


def test_bad_positions_and_tokens_are_refused(tiny):
    config, weights = tiny
    tensors, _ = encode(weights, by_name("F32"), config)
    with build(tensors, config, n_ctx=8) as m:
        with pytest.raises(ModelError, match="position outside the context"):
            m.decode(Batch.of(TOKENS[:4], pos0=6))              # positions 6..9 of 8 cells
        with pytest.raises(ModelError, match="vocabulary"):
            m.decode(Batch.of([config.n_vocab]))
        with pytest.raises(ModelError, match="decode of 0 tokens"):
            m.decode(Batch(1))
        with pytest.raises(ModelError, match="vocabulary"):      # the one-token decode path
            m.decode(Batch.of([-1]))
        m.eval(TOKENS[:8])
        with pytest.raises(ModelError, match="position outside the context"):   # one token, cache full
            m.decode(Batch.of([TOKENS[0]], pos0=8))
        with pytest.raises(ModelError):
            m.kv_shift(0, 8, 4, 5)
        with pytest.raises(ModelError):
            m.kv_shift(0, 9, 4, 1)
    with pytest.raises(ModelError, match="closed"):
        m.decode(Batch.of([1]))


# ---- bad models -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def f32_tensors(tiny):
    config, weights = tiny
    return encode(weights, by_name("F32"), config)[0]


def test_missing_tensor_is_named(tiny, f32_tensors):
    config, _ = tiny
    tensors = dict(f32_tensors)
    del tensors["blk.1.ffn_up.weight"]
    with pytest.raises(ModelError, match=r"missing tensor blk\.1\.ffn_up\.weight"):
        build(tensors, config)


def test_misshapen_tensor_is_named(tiny, f32_tensors):
    config, _ = tiny
    tensors = dict(f32_tensors)
    raw, qtype, _ = tensors["blk.0.attn_k.weight"]
    tensors["blk.0.attn_k.weight"] = (raw, qtype, (128, 256))
    with pytest.raises(ModelError, match=r"blk\.0\.attn_k\.weight has shape \[128, 256\], expected \[256, 128\]"):
        build(tensors, config)


def test_quantized_norm_is_refused(tiny, f32_tensors):
    config, _ = tiny
    tensors = dict(f32_tensors)
    tensors["output_norm.weight"] = (np.zeros(256, np.uint16), by_name("F16"), (256,))
    with pytest.raises(ModelError, match=r"output_norm\.weight is F16"):
        build(tensors, config)


def test_tensor_past_the_buffer_is_caught_in_c(tiny, f32_tensors):
    config, _ = tiny
    buffer = np.zeros(1024, dtype=np.uint8)
    refs = {name: TensorRef(0, qtype, shape, 0) for name, (raw, qtype, shape) in f32_tensors.items()}
    refs["output_norm.weight"] = TensorRef(0, by_name("F32"), (256,), 1024)
    with pytest.raises(ModelError, match=r"tensor token_embd\.weight \(F32\): shape or extent"):
        Model(config, {}, buffer, refs, n_ctx=16)


def test_unknown_architecture_and_missing_keys():
    with pytest.raises(ModelError, match="unsupported architecture 'gpt2'"):
        Config.from_metadata({"general.architecture": "gpt2"})
    with pytest.raises(ModelError, match="missing metadata key llama.embedding_length"):
        Config.from_metadata({"general.architecture": "llama", "llama.vocab_size": 10})
    with pytest.raises(ModelError, match="multiple of head_count_kv"):
        tiny_config(n_head_kv=3)


# ---- loading GGUF files ---------------------------------------------------------------------------

def test_load_gguf_gives_the_same_bits(tiny, tmp_path):
    pytest.importorskip("pygguf.gguf")
    from model_factory import write_gguf
    config, weights = tiny
    qtype = by_name("Q8_0") if not missing_kernels(by_name("Q8_0")) else by_name("F16")
    tensors, _ = encode(weights, qtype, config)
    write_gguf(tmp_path / "tiny.gguf", config, tensors)
    with build(tensors, config, n_batch=8) as direct, \
            Runner(Model.load(tmp_path / "tiny.gguf", n_ctx=64, n_batch=8)) as loaded:
        assert loaded.config == dataclasses.replace(config, rms_eps=float(np.float32(config.rms_eps)))
        assert loaded.metadata["general.architecture"] == "llama"
        assert np.array_equal(loaded.eval_all(TOKENS), direct.eval_all(TOKENS))
    with Model.load(tmp_path / "tiny.gguf", rope_freq_base=5e5) as m:
        assert m.config.rope_base == 5e5
        assert m.n_ctx == config.n_ctx_train            # default: the trained context


def test_load_refuses_bad_files(tiny, f32_tensors, tmp_path):
    pytest.importorskip("pygguf.gguf")
    from model_factory import write_gguf
    config, _ = tiny
    write_gguf(tmp_path / "gpt2.gguf", config, f32_tensors, arch="gpt2")
    with pytest.raises(ModelError, match="unsupported architecture 'gpt2'"):
        Model.load(tmp_path / "gpt2.gguf")
    write_gguf(tmp_path / "nokey.gguf", config, f32_tensors, drop_keys=("block_count",))
    with pytest.raises(ModelError, match="llama.block_count"):
        Model.load(tmp_path / "nokey.gguf")
    tensors = {k: v for k, v in f32_tensors.items() if k != "blk.0.attn_v.weight"}
    write_gguf(tmp_path / "missing.gguf", config, tensors)
    with pytest.raises(ModelError, match=r"missing tensor blk\.0\.attn_v\.weight"):
        Model.load(tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 20)
    with pytest.raises(ModelError, match="junk.gguf"):
        Model.load(tmp_path / "junk.gguf")


def test_default_n_ctx_is_capped_to_free_memory(tiny, f32_tensors, monkeypatch, caplog):
    """no n_ctx: the training context, capped so the KV cache fits (kv_cache.fit_context, tested
    on its own in test_kv_cache_size.py)"""
    from pygguf.model import kv_cache
    config = dataclasses.replace(tiny[0], n_ctx_train=1 << 20)
    per_pos = kv_cache.CacheShape(config.n_layer, config.n_head_kv, config.head_dim).bytes_per_position()
    weights = sum(np.asarray(raw).nbytes for raw, _, _ in f32_tensors.values())
    monkeypatch.setattr(kv_cache, "available_memory", lambda: (512 << 20) + weights + 4096 * per_pos)  # margin 512 MiB
    with caplog.at_level("WARNING", logger="pygguf"):
        with Model.from_tensors(config, f32_tensors) as m:
            assert m.n_ctx == 4096
    assert "context 1048576 would need 1.0 GiB of KV cache" in caplog.text
    assert "using -c 4096" in caplog.text
    monkeypatch.setattr(kv_cache, "available_memory", lambda: None)
    assert kv_cache.fit_context(1 << 20, per_pos, weights, None) == (1 << 20, None)


def test_every_instruction_set_gives_the_same_model(tiny):
    """the forward picks the gemm of the active ISA on every call; each must agree with the others"""
    from pygguf.model import kernels
    config, weights = tiny
    qtype = next((by_name(n) for n in ("Q4_K", "Q4_0", "F16") if not missing_kernels(by_name(n))))
    tensors, _ = encode(weights, qtype, config)
    active = kernels.active_isa()
    results = {}
    try:
        for isa in [name for name in kernels.ISAS if kernels.isa_supported(name)]:
            kernels.set_isa(isa)
            with build(tensors, config, n_batch=4) as m:
                results[isa] = m.eval_all(TOKENS)
    finally:
        kernels.set_isa(active)
    scalar = results.pop("scalar")
    for isa, logits in results.items():
        assert np.abs(logits - scalar).max() / scalar.std() < 1e-3, isa
