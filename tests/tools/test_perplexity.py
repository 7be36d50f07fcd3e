"""Perplexity math against fake models with known probabilities, the KL base-file round trip,
the CLI, and (when the real Model and SmolLM2 are present) an end-to-end run."""
import math

import numpy as np
import pytest
from click.testing import CliRunner

from pygguf.tools import perplexity as P
from pygguf.tools.perplexity import PerplexityError


class FakeTokenizer:
    def __init__(self, ids, add_bos=False, bos_id=1):
        self.ids, self.add_bos, self.bos_id = list(ids), add_bos, bos_id

    def encode(self, text, add_special=True, parse_special=True):
        return list(self.ids)


class BigramModel:
    """Logits at a position depend only on the token there: table[token]. Model's decode(batch);
    each chunk must start at position 0 (an empty cache) and continue where it left off."""

    def __init__(self, table, tokenizer=None, n_batch=4096):
        self.table = np.asarray(table, dtype=np.float32)
        self.tokenizer = tokenizer
        self.n_batch = n_batch
        self.fed = []

    def decode(self, batch):
        tokens, pos0 = batch.tokens[:batch.n].tolist(), int(batch.pos[0])
        if pos0 == 0:
            self.fed.append([])
        assert pos0 == len(self.fed[-1]), "chunk evaluated on a non-empty cache"
        assert batch.want[:batch.n].all(), "every position's logits are scored"
        self.fed[-1] += tokens
        return self.table[np.asarray(tokens)]


def sticky_table(p_same):
    return np.log(np.array([[p_same, 1 - p_same], [1 - p_same, p_same]]))


def test_uniform_model_has_ppl_equal_to_vocab_size():
    model = BigramModel(np.zeros((4, 4)))
    tokens = np.random.default_rng(0).integers(0, 4, 16)
    r = P.perplexity(model, tokens, 8)
    assert r.n_chunk == 2 and r.count == 2 * 3   # positions 4, 5, 6 of each 8-token chunk
    assert r.ppl == pytest.approx(4.0, rel=1e-6) and r.uncertainty == 0.0


def test_hand_computed_ppl_and_uncertainty():
    # scored: positions 4,5,6 predict tokens 5,6,7 = 0,0,1 after 0,0,0 -> p = .8, .8, .2 per chunk
    model = BigramModel(sticky_table(0.8))
    chunk = [0, 0, 1, 1, 0, 0, 0, 1]
    r = P.perplexity(model, chunk * 2 + [0, 1, 0], 8)
    a, b = -math.log(0.8), -math.log(0.2)
    mean = (2 * a + b) / 3
    var = (4 * a * a + 2 * b * b) / 6 - mean * mean
    assert r.ppl == pytest.approx(math.exp(mean), rel=1e-6)            # 1.98425
    assert r.uncertainty == pytest.approx(math.exp(mean) * math.sqrt(var / 5), rel=1e-6)   # 0.57993
    assert r.chunk_estimates == pytest.approx([math.exp(mean)] * 2, rel=1e-6)
    assert r.ppl == pytest.approx(1.98425, abs=1e-4) and r.uncertainty == pytest.approx(0.57993, abs=1e-4)


def test_chunks_start_from_empty_cache_and_chunk_limit():
    model = BigramModel(sticky_table(0.7))
    tokens = list(np.random.default_rng(1).integers(0, 2, 50))
    r = P.perplexity(model, tokens, 10, max_chunks=3)
    assert r.n_chunk == 3 and [len(f) for f in model.fed] == [10, 10, 10]
    assert model.fed[1] == [int(t) for t in tokens[10:20]]
    assert P.perplexity(BigramModel(sticky_table(0.7)), tokens, 10).n_chunk == 5
    split = P.perplexity(BigramModel(sticky_table(0.7), n_batch=3), tokens, 10)   # chunks over several decodes
    assert split.ppl == P.perplexity(BigramModel(sticky_table(0.7)), tokens, 10).ppl


def test_bos_replaces_the_first_token_of_each_chunk_but_not_the_scored_ones():
    model = BigramModel(np.zeros((4, 4)))
    tokens = [2, 3, 0, 3, 2, 2, 3, 0, 1, 2]
    P.perplexity(model, tokens, 4, bos_id=1)
    assert model.fed == [[1, 3, 0, 3], [1, 2, 3, 0]]


def test_too_little_text_is_a_clear_error():
    with pytest.raises(PerplexityError, match="at least 16 tokens.*only 15"):
        P.perplexity(BigramModel(np.zeros((2, 2))), [0] * 15, 8)


def test_token_nll_matches_float64_reference():
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((5, 1000)) * 4).astype(np.float32)
    targets = rng.integers(0, 1000, 5)
    x = logits.astype(np.float64)
    ref = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1) - x[np.arange(5), targets]
    np.testing.assert_allclose(P.token_nll(logits, targets), ref, rtol=1e-6)


def random_table(seed, v=50, spread=3.0):
    return (np.random.default_rng(seed).standard_normal((v, v)) * spread).astype(np.float32)


def test_kld_base_file_round_trip_and_self_divergence(tmp_path):
    table = random_table(3)
    tokens = list(np.random.default_rng(4).integers(0, 50, 64))
    path = tmp_path / "base.kld"
    base_run = P.perplexity(BigramModel(table), tokens, 16, base_file=path)
    reader = P.BaseLogprobReader(path)
    assert (reader.n_ctx, reader.n_vocab, reader.n_chunk) == (16, 50, 4)
    assert reader.tokens.tolist() == [int(t) for t in tokens]
    # stored log-probs equal the true ones within the quantization step
    logits = table[np.asarray(tokens[16:32])][8:15].astype(np.float64)
    true_lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    floor = np.maximum(logits.min(1), logits.max(1) - 16)
    step = (logits.max(1) - floor) / 65535
    kept = logits >= floor[:, None]   # below the 16-nat floor the file stores the floor
    err = np.abs(reader.chunk_logprobs(1) - true_lp)
    assert (err <= step[:, None] / 2 + 1e-5)[kept].all() and kept.mean() > 0.9
    # the same model against its own base: KLD ~ 0, same top token everywhere, same PPL
    acc = P.kl_divergence(BigramModel(table), reader)
    assert acc.count == 4 * 7
    assert abs(acc.mean_kld()[0]) < 1e-6 and acc.same_top == acc.count
    assert acc.ppl()[0] == pytest.approx(base_run.ppl, rel=1e-5)
    assert acc.ppl_base()[0] == pytest.approx(base_run.ppl, rel=1e-4)


def test_kld_against_a_different_model_matches_direct_computation(tmp_path):
    base_t, other_t = random_table(5, spread=1.5), random_table(6, spread=1.5)   # spread < 16 nats: nothing clipped
    tokens = list(np.random.default_rng(7).integers(0, 50, 40))
    path = tmp_path / "base.kld"
    P.perplexity(BigramModel(base_t), tokens, 20, base_file=path)
    acc = P.kl_divergence(BigramModel(other_t), P.BaseLogprobReader(path))

    def logsoftmax(x):
        x = x.astype(np.float64)
        return x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(1, keepdims=True)

    klds, same = [], 0
    for c in range(2):
        pos = np.asarray(tokens[c * 20:(c + 1) * 20])[10:19]
        lp, lq = logsoftmax(base_t[pos]), logsoftmax(other_t[pos])
        klds += (np.exp(lp) * (lp - lq)).sum(1).tolist()
        same += int((base_t[pos].argmax(1) == other_t[pos].argmax(1)).sum())
    assert acc.mean_kld()[0] == pytest.approx(np.mean(klds), rel=1e-3)
    assert acc.same_top == same
    assert acc.mean_kld()[1] == pytest.approx(np.std(klds) / math.sqrt(len(klds) - 1), rel=1e-2)
    assert any(line.startswith("Mean    KLD:") for line in P.kld_report(acc))


def test_bad_base_files_are_rejected(tmp_path):
    bad = tmp_path / "bad.kld"
    bad.write_bytes(b"_logits_" + b"\0" * 64)
    with pytest.raises(PerplexityError, match="bad magic"):
        P.BaseLogprobReader(bad)
    good = tmp_path / "good.kld"
    P.perplexity(BigramModel(random_table(8)), list(range(40)), 20, base_file=good)
    (tmp_path / "cut.kld").write_bytes(good.read_bytes()[:-10])
    with pytest.raises(PerplexityError, match="expected"):
        P.BaseLogprobReader(tmp_path / "cut.kld")
    with pytest.raises(PerplexityError, match="vocabulary mismatch"):
        P.kl_divergence(BigramModel(random_table(9, v=60)), P.BaseLogprobReader(good))


def test_cli_prints_running_estimates_and_final_line(tmp_path, monkeypatch):
    from pygguf_cli import perplexity as cli
    text = tmp_path / "t.txt"
    text.write_text("anything\n")
    model = BigramModel(np.zeros((4, 4)), FakeTokenizer([0, 1, 2, 3] * 6))
    monkeypatch.setattr(cli, "load_model", lambda *a, **k: model)
    result = CliRunner().invoke(cli.main, ["-m", "x.gguf", "-f", str(text), "-c", "8"])
    assert result.exit_code == 0, result.output
    assert "[1]4.0000,[2]4.0000,[3]4.0000," in result.output
    assert "Final estimate: PPL = 4.0000" in result.output
    base = tmp_path / "b.kld"
    result = CliRunner().invoke(cli.main, ["-m", "x.gguf", "-f", str(text), "-c", "8", "--kl-divergence-base", str(base)])
    assert result.exit_code == 0 and base.exists()
    result = CliRunner().invoke(cli.main, ["-m", "x.gguf", "--kl-divergence-base", str(base), "--kl-divergence"])
    assert result.exit_code == 0, result.output
    assert "Same top p" in result.output
    result = CliRunner().invoke(cli.main, ["-m", "x.gguf", "-f", str(text), "-c", "16"])
    assert result.exit_code != 0 and "at least 32 tokens" in result.output


SHORT_TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 +
              "Perplexity measures how well a language model predicts a sample of text; lower is better. " * 4)


def test_end_to_end_smollm2_short_text(tmp_path):
    from pygguf_cli.paths import default_model_path
    model_mod = pytest.importorskip("pygguf.model", reason="pygguf.model not merged yet")
    path = default_model_path()
    if not path.exists():
        pytest.skip(f"{path} absent (make model)")
    m = model_mod.Model.load(str(path), n_ctx=32, n_threads=2)
    tokens = m.tokenizer.encode(SHORT_TEXT, add_special=True, parse_special=False)
    bos = m.tokenizer.bos_id if m.tokenizer.add_bos else None
    base = tmp_path / "smollm2.kld"
    r = P.perplexity(m, tokens, 32, max_chunks=2, bos_id=bos, base_file=base)
    # a repetitive English text: a working 135M model is far better than chance (49152) and not perfect
    assert 1.0 < r.ppl < 60.0, r
    assert r.count == 2 * 15
    # the same model against its own base run: no divergence, same top token everywhere
    acc = P.kl_divergence(m, P.BaseLogprobReader(base), bos_id=bos)
    assert acc.mean_kld()[0] < 1e-4 and acc.same_top == acc.count == 30
    assert acc.ppl()[0] == pytest.approx(r.ppl, rel=1e-5)
