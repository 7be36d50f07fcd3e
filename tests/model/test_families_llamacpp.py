"""The architecture families against llama.cpp: tiny random models of llama, qwen2, qwen3, gemma2,
gemma3, phi3 (plain and LongRoPE), a Mixtral-style llama with experts and qwen3moe
(tests/families/models.py), in F16, Q8_0, Q4_0 and Q4_K_M, and llama.cpp's logits for them
(tests/data/families, recorded by bench/record_families.py; its README says what each model
exercises and how llama.cpp was run).

Each model is regenerated (and must have the recorded sha256: the same bytes llama.cpp read), then
run by pygguf at the context llama.cpp ran (its n_ctx padded to 256). Tolerances are those of
test_forward_llamacpp.py and ../shared/README.md, not loosened: F16 0.03 max and 0.01 rms over
every logit of every position, quantized 0.6 max and 0.12 rms (llama.cpp differs from itself by
that much once 8-bit activations round a tiny upstream difference into whole steps); greedy tokens
equal until llama.cpp's own top-1/top-2 margin is small (0.05 F16, 0.5 quantized), where ours
must be one of its top two.

The float64 numpy forward of tests/reference_forward.py is checked against the recorded F16
logits too (at the same 0.03): it runs today, and states in code what llama.cpp computes.
"""
import json

import numpy as np
import pytest
from families import models, reference
from model_factory import missing_kernels
from model_runner import Runner
from testpaths import TESTS

from pygguf.gguf import GGUFReader
from pygguf.model import Model

DATA = TESTS / "data" / "families"
FAMILIES = list(models.FAMILIES)
CASES = [(fam, t) for fam in FAMILIES for t in models.FILE_TYPES]
F16_TOL = (0.03, 0.01, 0.05)          # max, rms, small greedy margin
QUANT_TOL = (0.6, 0.12, 0.5)


def ids(case):
    return "-".join(case)


def record(fam, t):
    path = DATA / f"{fam}-{t}.npz"
    if not path.exists():
        pytest.skip(f"{path} is missing: run bench/record_families.py")
    return np.load(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("families")


def build(fam, t, model_dir, rec):
    path = models.build(fam, t, model_dir)
    assert models.sha256(path) == str(rec["sha256"]), \
        f"{path.name} is not the file llama.cpp was recorded on (generator or quantizer changed)"
    return path


def load(fam, path, n_ctx, **kwargs):
    """Model.load, or a skip when this build lacks a kernel for one of the file's types."""
    with GGUFReader(path) as r:
        for qtype in {x.qtype for x in r.tensors.values()}:
            reason = missing_kernels(qtype)
            if reason:
                pytest.skip(f"{path.name}: {reason}")
    return Model.load(path, n_ctx=n_ctx, n_threads=2, **kwargs)


def greedy(runner, logits, n):
    """argmax decoding (lowest id on ties) from the prompt's last logits."""
    out = []
    for _ in range(n):
        out.append(int(logits.argmax()))
        logits = runner.eval([out[-1]])
    return out


def compare_greedy(ours, rec, small):
    """ours must equal llama.cpp's tokens up to its first step of top-1/top-2 margin < small,
    and there be one of the tokens llama.cpp scores within `small` of its best (its top two, or
    more when a third is as close: gemma3 Q4_K_M's first step has three within 0.11). Returns the
    number of steps compared strictly."""
    want, margins = rec["greedy_ids"].tolist(), rec["greedy_margins"]
    top, top_logits = rec["greedy_top_ids"], rec["greedy_top_logits"]
    for i, (got, ref) in enumerate(zip(ours, want)):
        if margins[i] < small:
            close = top[i, top_logits[i] >= top_logits[i, 0] - small].tolist()
            assert got in close, f"step {i}: {got} not among llama.cpp's best within {small}: {close}"
            return i
        assert got == ref, f"step {i}: token {got}, llama.cpp {ref} (its margin {margins[i]:.3f})"
    return len(want)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_regenerated_file_is_the_recorded_one(case, model_dir):
    fam, t = case
    build(fam, t, model_dir, record(fam, t))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_logits_match_llama_cpp(case, model_dir):
    fam, t = case
    rec = record(fam, t)
    path = build(fam, t, model_dir, rec)
    max_tol, rms_tol, small = F16_TOL if t == "F16" else QUANT_TOL
    want = rec["logits"].astype(np.float32)
    with Runner(load(fam, path, int(rec["n_ctx"]))) as m:
        got = m.eval_all(rec["tokens"])
        diff = got - want
        worst = np.unravel_index(np.abs(diff).argmax(), diff.shape)
        assert np.abs(diff).max() < max_tol, \
            f"max |ours - llama.cpp| {np.abs(diff).max():.4f} at position {worst[0]}, token {worst[1]}"
        assert np.sqrt(np.mean(diff ** 2)) < rms_tol
        ours = greedy(m, got[-1], len(rec["greedy_ids"]))
    compare_greedy(ours, rec, small)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_batch_equals_token_by_token(case, model_dir):
    """The prompt in one batch and fed one token at a time give the same logits, bit for bit
    (the sliding-window and MoE paths of a decode step against those of a batch)."""
    fam, t = case
    rec = record(fam, t)
    path = build(fam, t, model_dir, rec)
    tokens = rec["tokens"]
    with Runner(load(fam, path, int(rec["n_ctx"]))) as m:
        batch = m.eval_all(tokens)
        m.reset()
        single = np.stack([m.eval([tok]) for tok in tokens])
    assert np.array_equal(batch, single)


@pytest.mark.parametrize("fam", FAMILIES)
def test_reference_forward_matches_llama_cpp(fam, model_dir):
    """tests/reference_forward.py (float64, the oracle of the C forward's family tests) against
    llama.cpp's F16 logits: the family semantics it states are llama.cpp's."""
    import reference_forward as ref
    from pygguf.gguf import GGUFReader
    from pygguf.model.config import Config
    rec = record(fam, "F16")
    path = build(fam, "F16", model_dir, rec)
    with GGUFReader(path) as r:
        config = Config.from_metadata(dict(r.metadata))
    w = reference.reference_weights(reference.load_weights(path), config, int(rec["n_ctx"]))
    ref.ROUTING_CHOICES.clear()
    got = ref.forward(w, config, np.asarray(rec["tokens"]), ref.empty_cache(config), 0)
    diff = got - rec["logits"]
    assert np.abs(diff).max() < F16_TOL[0] and np.sqrt(np.mean(diff ** 2)) < F16_TOL[1]
    f = models.FAMILIES[fam]
    if f.n_expert:
        n = len(rec["tokens"])
        chosen = np.asarray(ref.ROUTING_CHOICES).reshape(f.n_layer, n, f.n_expert_used)
        assert np.array_equal(np.sort(chosen, axis=2), np.sort(rec["experts"][:, :n], axis=2))


@pytest.mark.parametrize("case", [c for c in CASES if models.FAMILIES[c[0]].n_expert], ids=ids)
def test_moe_tokens_choose_different_experts_robustly(case):
    """llama.cpp's recorded choices are the designed ones (models.routing: from the token alone,
    see ROUTING there), the tokens of the batch do not all choose the same experts, and no choice
    is close: the k-th router logit leads the (k+1)-th by over 0.5 everywhere, where rounding
    upstream of the router moves all of a token's router logits by one common factor."""
    fam, t = case
    f, rec = models.FAMILIES[fam], record(fam, t)
    seq = np.concatenate([rec["tokens"], rec["greedy_ids"]])
    want, rel_gap = models.routing(fam)
    assert rel_gap > 0.5
    experts = rec["experts"]
    assert np.array_equal(np.sort(experts, axis=2), np.sort(want[:, seq], axis=2))
    for il in range(f.n_layer):
        assert len({tuple(sorted(row)) for row in experts[il, :len(rec["tokens"])].tolist()}) > 8
    logp = np.log(np.sort(rec["router_probs"].astype(np.float64), axis=2)[:, :, ::-1])
    assert (logp[:, :, f.n_expert_used - 1] - logp[:, :, f.n_expert_used]).min() > 0.5


def test_recorded_settings():
    """The data were recorded as the README says (one llama.cpp, flash attention off)."""
    manifest = json.loads((DATA / "manifest.json").read_text())
    assert manifest["settings"]["flash_attn"] is False
    assert set(manifest["models"]) == {f"{fam}-{t}" for fam, t in CASES}
    assert manifest["tokens"] == models.prompt(len(manifest["tokens"]))
