"""Context shift end to end: the real C model (tiny, random, F32 weights) behind the real engine
and a greedy Sampler, -c 64 -n 300 --keep 4, as `pygguf -c 64 -n 300 --keep 4 --temp 0` runs it.

What a shift should produce: the kept cells untouched, the surviving tail moved down with its keys
re-rotated to the new positions, nothing recomputed. Two references check the logits that follow:
- a float64 numpy replay (tests/reference_forward.py) of the run's exact evals and shifts;
- on a ONE-layer model, a fresh model evaluating the cached tokens from scratch. Only with one
  layer is that the same computation: there a cell's K/V depend on its token and position alone,
  while deeper layers' cells also depend on the (now discarded) tokens they attended to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import reference_forward as ref
from model_factory import encode, random_weights, tiny_config
from model_runner import Runner, read_kv
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import FinishReason
from pygguf.gguf.types import by_name
from pygguf.model import Model
from pygguf.sampling import Sampler, SamplerParams
from pygguf_cli.main import generate_text, one_shot_request
from pygguf_cli.options import GenerationParams

N_CTX, N_PREDICT, N_KEEP = 64, 300, 4
PROMPT_TEXT = "ab ba cab ca b ab a cab"

# Max |logit difference| in units of the logits' standard deviation (about 3 here). F32 weights
# keep activation quantization out of it, so what differs is the F16 KV cache: each cached K/V
# value is rounded to 11 significant bits (relative error <= 2^-12), and a shifted key is rounded
# again after its re-rotation (the fresh model rounds it once, float64 numpy never). Measured on
# this run: up to 0.8e-3 std before the first shift, 1.6e-3 after shifts (float64 replay), 0.8e-3
# (one-layer fresh evaluation). 5e-3 leaves 3x headroom and still catches the smallest mistakes,
# measured against the same run: keys left unrotated 1.3-2.5 std, rotated one position too far
# 0.4-0.7 std, the dropped range one cell off 0.05-0.9 std.
TOLERANCE = 5e-3
# The greedy token must agree wherever the top-2 margin is wider than the error can reach.
SAFE_MARGIN = 10 * TOLERANCE

NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def spm_metadata() -> dict:
    """A llama (SentencePiece) vocabulary: <unk> <s> </s>, 256 byte tokens, a few words. Adds BOS."""
    tokens, types = ["<unk>", "<s>", "</s>"], [UNKNOWN, CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    words = ["▁", "a", "b", "c", "▁a", "▁b", "▁c", "ab", "ba", "▁ab", "▁ba", "ca", "▁ca", "cab", "▁cab"]
    tokens += words
    types += [NORMAL] * len(words)
    scores = [0.0] * 259 + [float(len(w)) for w in words]       # longer pieces merge first
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0}


@dataclass
class Shift:
    keep: int
    discard: int
    n_past_before: int
    kv_before: list        # per layer (K, V) [n_head_kv, n_past_before, head_dim]
    kv_after: list         # per layer (K, V) [n_head_kv, n_past_before - discard, head_dim]
    cached_after: list     # the tokens the cache holds after the shift, position by position


class RecordingModel:
    """The real Model behind the engine's interface, logging what reaches its KV cache: every
    decode (tokens and a copy of the logits, None for a prompt chunk that wants none), every
    shift (with K/V snapshots around it), and the tokens each cache position should hold."""

    def __init__(self, model: Model):
        self.model = model
        self.n_ctx, self.n_seq, self.n_batch = model.n_ctx, 1, model.n_batch
        self.config = model.config
        self.tokenizer = model.tokenizer
        self.cached: list[int] = []
        self.events: list[tuple] = []          # ("eval", tokens, logits | None) | ("shift", Shift)
        self.max_n_past = 0

    @property
    def n_past(self) -> int:
        return len(self.cached)

    def _kv(self) -> list:
        return [read_kv(self.model, layer, 0, self.n_past) for layer in range(self.model.config.n_layer)]

    def decode(self, batch):
        tokens = batch.tokens[:batch.n].tolist()
        assert int(batch.pos[0]) == self.n_past and set(batch.seq[:batch.n].tolist()) == {0}
        rows = self.model.decode(batch)
        self.cached += tokens
        self.max_n_past = max(self.max_n_past, self.n_past)
        self.events.append(("eval", tokens, rows[-1].copy() if rows.shape[0] else None))
        return rows

    def kv_shift(self, seq, n_past, keep, discard):
        assert seq == 0 and n_past == self.n_past
        before = self._kv()
        self.model.kv_shift(seq, n_past, keep, discard)
        del self.cached[keep:keep + discard]
        self.events.append(("shift", Shift(keep, discard, n_past, before, self._kv(), list(self.cached))))

    @property
    def shifts(self) -> list[Shift]:
        return [e[1] for e in self.events if e[0] == "shift"]

    def evals_after_shifts(self):
        """(shift, tokens, logits) of the first eval after each shift."""
        out = []
        for i, event in enumerate(self.events[:-1]):
            if event[0] == "shift" and self.events[i + 1][0] == "eval":
                out.append((event[1], self.events[i + 1][1], self.events[i + 1][2]))
        return out


def build_tensors(n_layer: int, seed: int):
    metadata = spm_metadata()
    config = tiny_config(n_vocab=len(metadata["tokenizer.ggml.tokens"]), n_layer=n_layer)
    tensors, exact = encode(random_weights(config, seed=seed), by_name("F32"), config)
    return config, tensors, exact, metadata


def run(setup, **params):
    """One greedy generation on a fresh model; -> (result, recorder, prompt tokens)."""
    config, tensors, _, metadata = setup
    model = Model.from_tensors(config, tensors, metadata, n_ctx=N_CTX, n_threads=2, n_batch=16)
    recorder = RecordingModel(model)
    tok = model.tokenizer
    sampler = Sampler(SamplerParams(temp=0), config.n_vocab, tok.eog_ids)
    params = dict(dict(n_predict=N_PREDICT, n_keep=N_KEEP, ignore_eos=True), **params)
    prompt = tok.encode(PROMPT_TEXT)
    engine = Engine(recorder, tok, slots=1)
    seq = engine.new_sequence(one_shot_request(prompt, GenerationParams(**params)), sampler=sampler)
    generate_text(engine, seq, lambda text: None)
    return seq, recorder, prompt


def expected_shifts(n_prompt: int, n_keep: int) -> list[tuple[int, int]]:
    """llama.cpp's schedule: before each of the n_predict - 1 decodes, if n_past + 1 >= n_ctx,
    keep n_keep cells and discard half of the rest."""
    n_past, shifts = n_prompt, []
    for _ in range(N_PREDICT - 1):
        if n_past + 1 >= N_CTX:
            discard = (n_past - n_keep) // 2
            shifts.append((n_keep, discard))
            n_past -= discard
        n_past += 1
    return shifts


def pair_norms(k):                                           # [..., hd] -> [..., hd/2]
    """lengths of RoPE's rotated pairs: a rotation keeps them"""
    return np.hypot(k[..., 0::2], k[..., 1::2])


def max_error_in_std(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.std(want))


def assert_same_greedy_token(got, want, where):
    top2 = np.sort(want)[-2:]
    if (top2[1] - top2[0]) / np.std(want) > SAFE_MARGIN:
        assert int(np.argmax(got)) == int(np.argmax(want)), f"{where}: greedy token differs"


@pytest.fixture(scope="module")
def two_layers():
    return build_tensors(n_layer=2, seed=11)


@pytest.fixture(scope="module")
def shifted_run(two_layers):
    return run(two_layers)


# ---- 1. the run: 300 tokens through a 64-cell context ------------------------------------------

def test_generates_past_the_context_with_shifts_that_keep_the_prompt_head(two_layers, shifted_run):
    config, tensors, _, metadata = two_layers
    result, rec, prompt = shifted_run
    assert rec.tokenizer.add_bos and prompt[0] == rec.tokenizer.bos_id
    n_keep = N_KEEP + 1                                      # --keep 4 plus the BOS
    assert result.finish_reason is FinishReason.LENGTH
    assert len(result.tokens) == N_PREDICT
    assert rec.max_n_past <= N_CTX - 1                       # llama.cpp shifts at n_past + 1 >= n_ctx
    want = expected_shifts(len(prompt), n_keep)
    assert len(want) >= 5
    assert [(s.keep, s.discard) for s in rec.shifts] == want
    # what the prompt's first n_keep tokens put in the cache, alone (bit-identical whatever the
    # batch size: the forward's contract, tested in test_forward)
    with Model.from_tensors(config, tensors, metadata, n_ctx=N_CTX, n_threads=2, n_batch=16) as alone:
        runner = Runner(alone)
        runner.eval(prompt[:n_keep])
        prompt_head = [runner.kv_cache(layer) for layer in range(config.n_layer)]
    for s in rec.shifts:
        n_left = s.n_past_before - s.discard
        assert s.cached_after[:n_keep] == prompt[:n_keep] and len(s.cached_after) == n_left
        for (k0, v0), (k1, v1), (kp, vp) in zip(s.kv_before, s.kv_after, prompt_head):
            assert k1.shape[1] == v1.shape[1] == n_left
            # the kept cells still hold the prompt's head, untouched ...
            assert np.array_equal(k1[:, :n_keep], kp) and np.array_equal(v1[:, :n_keep], vp)
            # ... the surviving values only moved down (bit for bit) ...
            assert np.array_equal(v1[:, n_keep:], v0[:, n_keep + s.discard:])
            # ... and the surviving keys were re-rotated (same pair lengths, different values)
            moved, old = k1[:, n_keep:], k0[:, n_keep + s.discard:]
            assert not np.array_equal(moved, old)
            np.testing.assert_allclose(pair_norms(moved), pair_norms(old), rtol=2e-3, atol=1e-3)


# ---- 2. what the shift should produce -----------------------------------------------------------

def test_every_logit_of_the_run_matches_a_float64_replay(two_layers, shifted_run):
    """Replays the run's evals and shifts in float64 numpy (shift = keep, drop, re-rotate)."""
    config, _, exact, _ = two_layers
    _, rec, _ = shifted_run
    cache, n_cached, worst = ref.empty_cache(config), 0, 0.0
    for event in rec.events:
        if event[0] == "shift":
            s = event[1]
            cache = ref.shift_cache(cache, config, s.keep, s.discard)
            n_cached -= s.discard
            continue
        _, tokens, got = event
        want = ref.forward(exact, config, np.array(tokens), cache, n_cached)[-1]
        n_cached += len(tokens)
        if got is None:                                      # a prompt chunk: no logits asked for
            continue
        err = max_error_in_std(got, want)
        worst = max(worst, err)
        assert err < TOLERANCE, f"after {n_cached} cells: max |diff| {err:.2e} std"
        assert_same_greedy_token(got, want, f"after {n_cached} cells")
    assert len(rec.evals_after_shifts()) == len(rec.shifts)


def test_one_layer_shift_equals_a_fresh_evaluation_of_the_cached_tokens():
    setup = build_tensors(n_layer=1, seed=12)
    config, tensors, _, metadata = setup
    _, rec, _ = run(setup)
    checked = rec.evals_after_shifts()
    assert len(checked) == len(rec.shifts) >= 5
    with Model.from_tensors(config, tensors, metadata, n_ctx=N_CTX, n_threads=2, n_batch=16) as fresh:
        runner = Runner(fresh)
        for s, tokens, got in checked:
            runner.reset()
            want = runner.eval(s.cached_after + tokens).astype(np.float64)
            err = max_error_in_std(got, want)
            assert err < TOLERANCE, f"shift at n_past={s.n_past_before}: max |diff| {err:.2e} std"
            assert_same_greedy_token(got, want, f"shift at n_past={s.n_past_before}")


# ---- 3. no shift: stop at the boundary ---------------------------------------------------------

@pytest.mark.parametrize("params, detail", [
    (dict(context_shift=False), "context full and context shift is disabled => stopping"),
    (dict(n_predict=-2), "context full and n_predict == -2 => stopping"),
], ids=["no-context-shift", "n-minus-2"])
def test_without_shift_the_run_stops_at_the_boundary(two_layers, shifted_run, params, detail):
    result, rec, prompt = run(two_layers, **params)
    assert result.finish_reason is FinishReason.CONTEXT
    assert result.detail == detail
    assert rec.shifts == []
    assert rec.n_past == N_CTX - 1                  # stops when n_past + 1 >= n_ctx
    n_generated = N_CTX - len(prompt)                     # the last sampled token is never evaluated
    assert result.tokens == shifted_run[0].tokens[:n_generated]
