"""Every family's switches in the C forward against the float64 numpy forward
(tests/reference_forward.py), on tiny random models: Qwen2's biases, Qwen3's head norms, Gemma's
scaled embeddings, GELU, post norms, soft caps, sliding windows with their own RoPE base, Phi-3's
fused tensors and LongRoPE factors, and mixtures of experts. The same tolerances as the llama
forward tests (test_forward.py); llama.cpp's own logits for these families are checked in
test_families_llamacpp.py."""
import numpy as np
import pytest

import reference_forward as ref
from model_factory import TINY, missing_kernels
from model_runner import Runner
from pygguf.gguf.types import by_name
from pygguf.model import Model, kernels
from pygguf.model.batch import Batch
from pygguf.model.config import FAMILIES, Config, required, tensor_names

TOKENS = [5, 17, 250, 3, 99, 42, 7, 7, 180, 0, 299, 12, 64, 128]
TOLERANCE = {"F32": 2e-3, "F16": 4e-3}
QUANT_TOLERANCE = 0.15
F32 = by_name("F32")


def family_config(arch, **switches) -> Config:
    base = dict(TINY, n_layer=3)
    base.update(switches.pop("shape", {}))
    base.update({k: switches.pop(k) for k in list(switches) if k in base})
    family = FAMILIES[arch]
    return Config(**base, arch=arch, family=family, rope_neox=family.rope_neox, **switches)


CASES = {
    "qwen2": lambda: family_config("qwen2"),
    "qwen3": lambda: family_config("qwen3"),
    "gemma": lambda: family_config("gemma", embd_scale=16.0, ffn_gelu=True),
    "gemma2": lambda: family_config("gemma2", embd_scale=16.0, ffn_gelu=True, attn_scale=0.1, attn_softcap=5.0,
                                    final_softcap=3.0, n_swa=4, swa_layers=(True, False, True)),
    "gemma3": lambda: family_config("gemma3", shape=dict(n_embd=256, n_head=4, n_head_kv=1, head_dim=128),
                                    embd_scale=16.0, ffn_gelu=True, n_swa=5,
                                    swa_layers=(True, True, False), rope_base=1e6, rope_base_swa=1e4),
    "phi3": lambda: family_config("phi3", rope_scaling="longrope", yarn_orig_ctx=256, yarn_attn_factor=1.2),
    "llama-moe": lambda: family_config("llama", n_expert=4, n_expert_used=2, n_ff_exp=256),
    "qwen3moe": lambda: family_config("qwen3moe", shape=dict(n_layer=2), n_expert=6, n_expert_used=3, n_ff_exp=256),
}
BIASES = {"qwen2"}
# Seeds whose routing is clear of near-ties (the last expert chosen beats the next by over 0.05 in
# router logit everywhere): at a near-tie a rounding anywhere upstream flips the choice, and one
# flipped expert moves a token's logits far more than any tolerance. Other cases: seed 3.
SEEDS = {"llama-moe": 9, "qwen3moe": 72}


def family_weights(config: Config, seed: int, fused: bool) -> dict[str, np.ndarray]:
    """float32 weights by GGUF name (expert tensors (n_expert, rows, n)), scaled like model_factory's;
    with `fused`, Phi-3's attn_qkv and double-width ffn_up in place of the parts"""
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in tensor_names(config):
        attribute = spec.attribute
        if attribute in ("output", "rope_freqs") or not (required(spec, config) or
                                                         (config.arch in BIASES and attribute in ("bq", "bk", "bv"))):
            continue
        shape = spec.shape(config)
        if len(shape) == 1:
            base = 0.0 if attribute.startswith("b") and len(attribute) == 2 else 1.0
            out[name] = (base + 0.2 * rng.standard_normal(shape)).astype(np.float32)
            continue
        gain = {"token_embd": 1.0 / config.embd_scale, "wq": 1.4, "wk": 1.4, "router": 2.0}.get(attribute, 1.0)
        scale = gain if attribute == "token_embd" else gain / np.sqrt(shape[0])
        out[name] = (rng.standard_normal(shape[::-1]) * scale).astype(np.float32)
    if config.arch == "phi3":
        out["rope_factors_long.weight"] = np.linspace(1, 4, config.n_rot // 2).astype(np.float32)
        out["rope_factors_short.weight"] = np.linspace(1, 1.5, config.n_rot // 2).astype(np.float32)
    if fused:
        for i in range(config.n_layer):
            p = f"blk.{i}."
            out[p + "attn_qkv.weight"] = np.concatenate([out.pop(p + x) for x in ("attn_q.weight", "attn_k.weight",
                                                                                   "attn_v.weight")])
            out[p + "ffn_up.weight"] = np.concatenate([out.pop(p + "ffn_gate.weight"), out[p + "ffn_up.weight"]])
    return out


def encode(weights, qtype):
    """-> (tensors for Model.from_tensors, float64 weights the stored bytes mean)"""
    tensors, exact = {}, {}
    for name, w in weights.items():
        t = F32 if w.ndim == 1 else qtype
        flat = w.reshape(-1, w.shape[-1])
        raw = kernels.quantize(t, flat) if t is not F32 else w
        tensors[name] = (raw, t, w.shape[::-1])
        exact[name] = kernels.dequantize(t, raw, w.size).reshape(w.shape).astype(np.float64)
    return tensors, exact


def unfused(exact, config):
    """the reference reads the parts of fused tensors"""
    out = dict(exact)
    n_q, n_kv = config.n_head * config.head_dim, config.n_head_kv * config.head_dim
    for i in range(config.n_layer):
        p = f"blk.{i}."
        if p + "attn_qkv.weight" in out:
            qkv = out.pop(p + "attn_qkv.weight")
            out[p + "attn_q.weight"], out[p + "attn_k.weight"], out[p + "attn_v.weight"] = np.split(qkv, [n_q, n_q + n_kv])
            up = out.pop(p + "ffn_up.weight")
            out[p + "ffn_gate.weight"], out[p + "ffn_up.weight"] = np.split(up, 2)
    return out


def run_case(case, qtype, fused=False, n_ctx=64, threads=2, n_batch=512):
    config = CASES[case]()
    tensors, exact = encode(family_weights(config, seed=SEEDS.get(case, 3), fused=fused), qtype)
    model = Model.from_tensors(config, tensors, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch)
    exact = unfused(exact, config)
    if config.arch == "phi3":        # the factors C read: short while the context (padded to 256) fits
        exact["rope_freqs.weight"] = exact["rope_factors_long.weight" if -(-n_ctx // 256) * 256 > config.yarn_orig_ctx
                                           else "rope_factors_short.weight"]
    ref.ROUTING_MARGINS.clear()
    want = ref.forward(exact, config, np.array(TOKENS), ref.empty_cache(config), 0)
    assert min(ref.ROUTING_MARGINS, default=1.0) > 0.05, "a near-tie in routing: pick another seed"
    got = np.array(Runner(model).eval_all(TOKENS))
    return config, got, want, model


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0", "Q4_K"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_family_matches_reference(case, qtype):
    qtype = by_name(qtype)
    reason = missing_kernels(qtype)
    if reason:
        pytest.skip(reason)
    config, got, want, model = run_case(case, qtype)
    err = np.abs(got - want).max() / want.std()
    # GELU is llama.cpp's table of fp16 values (the reference takes tanh exactly): the FFN's hidden
    # state carries F16's rounding even with F32 weights
    name = "F16" if config.ffn_gelu and qtype.name == "F32" else qtype.name
    assert err < TOLERANCE.get(name, QUANT_TOLERANCE), f"{case} {qtype.name}: {err:.4f} std"
    model.close()


def test_phi3_fused_tensors_and_long_factors():
    """Phi-3's attn_qkv and double ffn_up are read as row ranges; a context beyond the original
    one switches to rope_factors_long"""
    for n_ctx in (256, 257):
        config, got, want, model = run_case("phi3", by_name("F32"), fused=True, n_ctx=n_ctx)
        assert np.abs(got - want).max() / want.std() < TOLERANCE["F32"], n_ctx
        model.close()


def test_sliding_window_reaches_back_only_n_swa():
    """the prompt (14 tokens) is longer than the windows (4 and 5): without them the logits differ"""
    for case in ("gemma2", "gemma3"):
        config, got, want, model = run_case(case, by_name("F32"))
        model.close()
        config.n_swa = 1000
        no_window = ref.forward(family_ref_weights(case), config, np.array(TOKENS), ref.empty_cache(config), 0)
        assert np.abs(no_window - want).max() > 10 * np.abs(got - want).max(), case


def family_ref_weights(case):
    config = CASES[case]()
    return encode(family_weights(config, seed=SEEDS.get(case, 3), fused=False), F32)[1]


@pytest.mark.parametrize("case", ["gemma3", "qwen3moe", "qwen2"])
def test_bit_identical_across_threads_and_batches(case):
    """one thread or two, the whole prompt in one batch or token by token: the same bits"""
    _, got, _, m1 = run_case(case, by_name("Q8_0"), threads=2)
    _, got1, _, m2 = run_case(case, by_name("Q8_0"), threads=1, n_batch=1)
    np.testing.assert_array_equal(got, got1)
    m1.close(), m2.close()


def test_moe_tokens_choose_different_experts():
    """the batch's tokens do not all pick the same experts (so grouping by expert is exercised)"""
    config = CASES["qwen3moe"]()
    w = encode(family_weights(config, seed=SEEDS["qwen3moe"], fused=False), F32)[1]
    x = w["token_embd.weight"][TOKENS]
    h = ref.rmsnorm(x, w["blk.0.ffn_norm.weight"], config.rms_eps)
    choices = {tuple(sorted(np.argsort(-(r @ w["blk.0.ffn_gate_inp.weight"].T))[:config.n_expert_used])) for r in h}
    assert len(choices) > 2


def test_moe_batch_of_several_sequences_matches_alone():
    """tokens of two sequences in one batch: each sequence's logits equal those of it run alone"""
    config = CASES["llama-moe"]()
    tensors, _ = encode(family_weights(config, seed=SEEDS["llama-moe"], fused=False), by_name("Q8_0"))
    model = Model.from_tensors(config, tensors, n_ctx=32, n_seq=2)
    a, b = TOKENS[:6], TOKENS[6:12]
    batch = Batch(len(a) + len(b))
    batch.add_run(a, 0, 0, logits="all")
    batch.add_run(b, 0, 1, logits="all")
    both = model.decode(batch).copy()
    alone = Model.from_tensors(config, tensors, n_ctx=32)
    want_a = np.array(Runner(alone).eval_all(a))
    np.testing.assert_array_equal(both[:6], want_a)
    model.close(), alone.close()


def test_sliding_window_pattern_from_metadata():
    """Gemma 3's default 5 local : 1 global, a pattern given as n, or one flag per layer"""
    md = {"general.architecture": "gemma3", "gemma3.embedding_length": 256, "gemma3.block_count": 7,
          "gemma3.attention.head_count": 4, "gemma3.feed_forward_length": 512, "gemma3.vocab_size": 300,
          "gemma3.attention.sliding_window": 512}
    assert Config.from_metadata(md).swa_layers == (True,) * 5 + (False, True)
    assert Config.from_metadata({**md, "gemma3.attention.sliding_window_pattern": 2}).swa_layers == \
        (True, False, True, False, True, False, True)
    flags = [False, True, True, False, True, True, False]
    assert Config.from_metadata({**md, "gemma3.attention.sliding_window_pattern": flags}).swa_layers == tuple(flags)
    with pytest.raises(Exception, match="sliding_window_pattern has 2 flags for 7 layers"):
        Config.from_metadata({**md, "gemma3.attention.sliding_window_pattern": [True, False]})
    assert Config.from_metadata({k: v for k, v in md.items() if "sliding" not in k}).n_swa == 0
