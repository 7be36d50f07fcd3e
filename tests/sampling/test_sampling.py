"""Samplers against hand-computed results on tiny vocabularies, distribution tests with fixed seeds,
and the Sampler object (defaults, chain order, determinism, penalties over prompt tokens)."""
import math

import numpy as np
import pytest

from pygguf.sampling import filters
from pygguf.sampling.candidates import Candidates, top_positions
from pygguf.sampling.dry import dry, process_breakers
from pygguf.sampling.rng import Mt19937
from pygguf.sampling import (DEFAULT_SAMPLERS, Sampler, SamplerError, SamplerParams, parse_logit_bias,
                             parse_sampler_names, parse_samplers, parse_sampling_seq)

PROBS4 = np.array([0.5, 0.3, 0.15, 0.05])


def cand_of(logits, ids=None, sorted=False):
    logits = np.asarray(logits, dtype=np.float32)
    ids = np.arange(len(logits)) if ids is None else np.asarray(ids)
    return Candidates(ids.astype(np.int64), logits, sorted)


def probs_cand():
    return cand_of(np.log(PROBS4))


# --- parameters and parsing -----------------------------------------------------------------------
def test_defaults_are_llama_cpp_defaults():
    p = SamplerParams()
    assert (p.temp, p.top_k, p.top_p, p.min_p, p.typical_p) == (0.8, 40, 0.95, 0.05, 1.0)
    assert (p.repeat_penalty, p.repeat_last_n, p.presence_penalty, p.frequency_penalty) == (1.0, 64, 0.0, 0.0)
    assert (p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_penalty_last_n) == (0.0, 1.75, 2, -1)
    assert p.dry_sequence_breakers == ["\n", ":", "\"", "*"]
    assert (p.xtc_probability, p.xtc_threshold, p.top_n_sigma) == (0.0, 0.1, -1.0)
    assert (p.dynatemp_range, p.dynatemp_exponent) == (0.0, 1.0)
    assert (p.mirostat, p.mirostat_lr, p.mirostat_ent) == (0, 0.1, 5.0)
    assert p.logit_bias == {} and p.ignore_eos is False and p.seed == -1
    assert p.samplers == DEFAULT_SAMPLERS == "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature"


def test_default_chain_description_matches_llama_cpp():
    s = Sampler(SamplerParams(seed=1), 10)
    assert s.chain_description() == ("sampler chain: logits -> ?penalties -> ?dry -> ?top-n-sigma -> top-k -> "
                                     "?typical -> top-p -> min-p -> ?xtc -> temp-ext -> dist")
    s = Sampler(SamplerParams(seed=1, logit_bias={3: 1.0}, repeat_penalty=1.1, samplers="kt"), 10)
    assert s.chain_description() == "sampler chain: logits -> logit-bias -> top-k -> temp-ext -> dist"
    s = Sampler(SamplerParams(seed=1, mirostat=2), 10)
    assert s.chain_description() == "sampler chain: logits -> temp -> mirostat-v2"


def test_parse_samplers_names_alt_names_and_letters():
    assert parse_samplers(DEFAULT_SAMPLERS) == parse_samplers("edskypmxt")
    assert parse_samplers("top-k;nucleus;temp") == ["top_k", "top_p", "temperature"]
    assert parse_samplers("typical;min-p") == ["typ_p", "min_p"]
    assert parse_samplers("kt") == ["top_k", "temperature"]
    with pytest.raises(SamplerError, match="unknown sampler 'bogus'"):
        parse_samplers("top_k;bogus")
    with pytest.raises(SamplerError, match="not supported"):
        parse_samplers("infill")
    assert parse_sampler_names(["top_k", "temp"]) == ["top_k", "temperature"]
    assert parse_sampling_seq("kpt") == ["top_k", "top_p", "temperature"]
    with pytest.raises(SamplerError, match="unknown sampler letter 'z'"):
        parse_sampling_seq("kz")


@pytest.mark.parametrize("spec, expected", [("15043+1", (15043, 1.0)), ("15043-1", (15043, -1.0)),
                                            ("2-inf", (2, -math.inf)), ("7+0.5", (7, 0.5)),
                                            (" 3+inf ", (3, math.inf))])
def test_parse_logit_bias(spec, expected):
    assert parse_logit_bias(spec) == expected


@pytest.mark.parametrize("spec, message", [("abc", "expected TOKEN_ID"), ("15043", "followed by \\+ or -"),
                                           ("15043*2", "followed by \\+ or -"), ("15043+x", "'x' is not a number"),
                                           ("15043+", "'' is not a number"), ("-5+1", "expected TOKEN_ID"),
                                           ("5+nan", "NaN")])
def test_parse_logit_bias_errors_are_clear(spec, message):
    with pytest.raises(SamplerError, match=message):
        parse_logit_bias(spec)


def test_bad_params_and_inputs_raise_typed_errors():
    with pytest.raises(SamplerError, match="outside the vocabulary"):
        Sampler(SamplerParams(logit_bias={10: 1.0}), 10)
    with pytest.raises(SamplerError, match="repeat_last_n"):
        Sampler(SamplerParams(repeat_last_n=-1), 10)
    with pytest.raises(SamplerError, match="mirostat"):
        Sampler(SamplerParams(mirostat=3), 10)
    with pytest.raises(SamplerError, match="DRY needs detokenize"):
        Sampler(SamplerParams(dry_multiplier=0.8), 10)
    with pytest.raises(SamplerError, match="shape"):
        Sampler(SamplerParams(), 10).sample(np.zeros(11, np.float32))
    with pytest.raises(SamplerError, match="outside the vocabulary"):
        Sampler(SamplerParams(), 10).accept(10)
    banned = Sampler(SamplerParams(logit_bias={i: -math.inf for i in range(3)}, top_k=0), 3)
    with pytest.raises(SamplerError, match="every token banned"):
        banned.sample(np.zeros(3, np.float32))


def test_sampler_order_changes_the_result():
    # min-p 0.2 on raw logits keeps 3 tokens; after temperature 0.5 the logits double and keep 2
    first = SamplerParams(temp=0.5, min_p=0.2, samplers="min_p;temperature", seed=3)
    after = SamplerParams(temp=0.5, min_p=0.2, samplers="temperature;min_p", seed=3)
    assert set(np.flatnonzero(draw_counts(first, LOGITS, 1500))) == {0, 1, 2}
    assert set(np.flatnonzero(draw_counts(after, LOGITS, 1500))) == {0, 1}


def test_mirostat_and_xtc_through_the_sampler_are_seeded():
    rng = np.random.default_rng(9)
    rows = [(rng.standard_normal(500) * 3).astype(np.float32) for _ in range(40)]
    for params in (SamplerParams(mirostat=1, seed=5), SamplerParams(mirostat=2, seed=5),
                   SamplerParams(xtc_probability=0.5, xtc_threshold=0.05, seed=5)):
        a, b = Sampler(params, 500), Sampler(params, 500)
        assert [a.sample(r) for r in rows] == [b.sample(r) for r in rows]
    s = Sampler(SamplerParams(mirostat=2, mirostat_ent=3.0, seed=5), 500)
    for r in rows:
        s.sample(r)
    assert s._mu != 6.0   # mu moved from its start 2*tau


# --- each sampler on hand-computed cases ----------------------------------------------------------
def test_top_k_keeps_k_largest_sorted():
    out = filters.top_k(cand_of([1, 5, 3, 4, 2]), 2)
    assert out.ids.tolist() == [1, 3] and out.sorted
    assert filters.top_k(cand_of([1, 5, 3]), 0).ids.tolist() == [0, 1, 2]   # k <= 0: off
    assert filters.top_k(cand_of([1, 5, 3]), 10).ids.tolist() == [1, 2, 0]


def test_top_positions_exact_on_large_inputs_with_ties():
    rng = np.random.default_rng(3)
    for n, k in [(49152, 40), (49152, 1), (5000, 300), (49152, 2000)]:
        x = np.round(rng.standard_normal(n) * 4).astype(np.float32)   # many ties
        assert np.array_equal(top_positions(x, k), np.argsort(-x, kind="stable")[:k])


@pytest.mark.parametrize("p, kept", [(0.7, [0, 1]), (0.85, [0, 1, 2]), (0.4, [0]), (1.0, [0, 1, 2, 3])])
def test_top_p(p, kept):
    assert filters.top_p(probs_cand(), p).ids.tolist() == kept


def test_top_p_unsorted_large_vocab_matches_sorted_reference():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(5000) * 2).astype(np.float32)
    out = filters.top_p(cand_of(x), 0.9)
    p = np.exp(x - x.max()); p /= p.sum()
    order = np.argsort(-x, kind="stable")
    n = int(np.searchsorted(np.cumsum(p[order]), 0.9)) + 1
    assert out.ids.tolist() == order[:n].tolist()


@pytest.mark.parametrize("p, kept", [(0.2, [0, 1, 2]), (0.5, [0, 1]), (0.05, [0, 1, 2, 3]), (0.0, [0, 1, 2, 3])])
def test_min_p(p, kept):
    assert sorted(filters.min_p(probs_cand(), p).ids.tolist()) == kept


def test_typical_keeps_tokens_closest_to_the_entropy():
    # H = 1.1422 nats; |-ln p - H| = 0.449, 0.062, 0.755, 1.854 -> order 1, 0, 2, 3
    assert filters.typical(probs_cand(), 0.5).ids.tolist() == [1, 0]
    assert filters.typical(probs_cand(), 0.2).ids.tolist() == [1]
    assert filters.typical(probs_cand(), 0.85).ids.tolist() == [1, 0, 2]


def test_top_n_sigma():
    # mean 3.25, sigma 3.9608: n=1 keeps logits >= 6.04, n=2.5 keeps logits >= 0.098
    assert filters.top_n_sigma(cand_of([0, 1, 2, 10]), 1.0).logits[1:].tolist() == [-math.inf] * 3
    out = filters.top_n_sigma(cand_of([0, 1, 2, 10]), 2.5)
    assert out.ids.tolist() == [3, 2, 1, 0] and out.logits[-1] == -math.inf and np.isfinite(out.logits[:3]).all()


class FixedRng:
    def __init__(self, u):
        self.u = u

    def uniform_float(self):
        return self.u

    def uniform(self):
        return self.u

    def discrete(self, probs):
        return 0


def test_xtc_removes_top_choices_above_threshold():
    c = cand_of(np.log([0.4, 0.3, 0.2, 0.1]))
    assert filters.xtc(c, 1.0, 0.15, 0, FixedRng(0.5)).ids.tolist() == [2, 3]
    assert filters.xtc(c, 0.3, 0.15, 0, FixedRng(0.5)).ids.tolist() == [0, 1, 2, 3]   # chance missed
    assert filters.xtc(c, 1.0, 0.35, 0, FixedRng(0.5)).ids.tolist() == [0, 1, 2, 3]   # one above: kept
    assert filters.xtc(c, 1.0, 0.15, 3, FixedRng(0.5)).ids.tolist() == [0, 1, 2, 3]   # min_keep


def test_temperature_and_greedy():
    out = filters.temperature(cand_of([1.0, 2.0, 4.0]), 0.5)
    assert out.logits.tolist() == [2.0, 4.0, 8.0]
    g = filters.temperature(cand_of([1.0, 4.0, 2.0, 4.0]), 0.0)
    assert g.logits.tolist() == [-math.inf, 4.0, -math.inf, -math.inf]   # first maximum wins


def test_dynatemp_hand_computed():
    # p = [2/3, 1/3]: H/Hmax = 0.918296; T = 0.5 + 1.0 * 0.918296 = 1.418296
    out = filters.temperature_ext(cand_of([0.0, math.log(2)]), 1.0, 0.5, 1.0)
    assert out.ids.tolist() == [1, 0]
    np.testing.assert_allclose(out.logits, [math.log(2) / 1.418296, 0.0], rtol=1e-5)


def test_penalties_hand_computed():
    counts = {0: 1, 1: 2}
    out = filters.penalties(cand_of([2.0, -1.0, 0.5, 3.0]), counts, 2.0, 0.5, 0.25)
    # id0: 2/2 - (0.5 + 0.25); id1: -1*2 - (2*0.5 + 0.25)
    np.testing.assert_allclose(out.logits, [0.25, -3.25, 0.5, 3.0])
    # the same on a reordered subset (penalties placed after a truncating sampler)
    sub = filters.penalties(cand_of([3.0, -1.0, 2.0], ids=[3, 1, 0]), counts, 2.0, 0.5, 0.25)
    np.testing.assert_allclose(sub.logits, [3.0, -3.25, 0.25])
    full = Candidates(np.arange(4), np.array([2.0, -1.0, 0.5, 3.0], np.float32), identity=True)
    np.testing.assert_allclose(filters.penalties(full, counts, 2.0, 0.5, 0.25).logits, [0.25, -3.25, 0.5, 3.0])
    biased = filters.logit_bias(cand_of([1.0, 1.0], ids=[7, 2]), {2: 1.5, 9: 4.0})
    np.testing.assert_allclose(biased.logits, [1.0, 2.5])


def test_logit_bias_and_ignore_eos():
    s = Sampler(SamplerParams(temp=0.0, logit_bias={0: 5.0}, seed=1), 4)
    assert s.sample(np.array([1.0, 2.0, 3.0, 4.0], np.float32)) == 0
    s = Sampler(SamplerParams(temp=0.0, ignore_eos=True, seed=1), 4, eog_ids={3})
    assert s.sample(np.array([1.0, 2.0, 3.0, 9.0], np.float32)) == 2
    assert "logit-bias" in s.chain_description()


def test_dry_hand_computed():
    breakers = {9: [()]}
    base = cand_of(np.zeros(10))
    # history 1 2 3 4 1 2 3: the repeat "1 2 3" (length 3) would continue with 4
    out = dry(base, [1, 2, 3, 4, 1, 2, 3], breakers, 0.8, 1.75, 2, -1, 1000)
    expected = np.zeros(10, np.float32); expected[4] = -0.8 * 1.75
    np.testing.assert_allclose(out.logits, expected, rtol=1e-6)
    # length exactly allowed_length: multiplier * base^0
    out = dry(base, [1, 2, 3, 1, 2], breakers, 1.0, 2.0, 2, -1, 1000)
    assert out.logits[3] == -1.0 and np.count_nonzero(out.logits) == 1
    # a breaker in between cuts the repetition window; a breaker token itself is never penalised
    out = dry(base, [1, 2, 9, 1, 2], breakers, 1.0, 2.0, 2, -1, 1000)
    assert np.count_nonzero(out.logits) == 0
    # penalty_last_n = 3 only sees "3 1 2": no repeat
    out = dry(base, [1, 2, 3, 1, 2], breakers, 1.0, 2.0, 2, 3, 1000)
    assert np.count_nonzero(out.logits) == 0


def test_dry_breakers_from_detokenize():
    words = ["a", "b:", "c\n", "d", "x*y"]
    got = process_breakers(["\n", ":", "\"", "*"], len(words), lambda i: words[i])
    assert got == {1: [()], 2: [()], 4: [()]}
    # multi-character breaker: a token ending with its start gets the tokenized rest as tail
    words = ["ab", "xa", "b", "q"]
    got = process_breakers(["ab"], len(words), lambda i: words[i], tokenize=lambda s: [2] if s == "b" else [])
    assert got == {0: [()], 1: [(2,)]}


def test_dry_through_the_sampler_sees_prompt_tokens():
    words = [str(i) for i in range(10)]
    p = SamplerParams(temp=0.0, dry_multiplier=5.0, dry_allowed_length=2, samplers="dry;temperature", seed=1)
    s = Sampler(p, 10, detokenize=lambda i: words[i])
    s.accept_all([1, 2, 3, 1, 2])
    logits = np.zeros(10, np.float32); logits[3] = 1.0; logits[5] = 0.5
    assert s.sample(logits) == 5   # 3 would continue "1 2 3": penalised by 5


def test_mirostat_v2_hand_computed():
    # tau 1 -> mu 2: surprises 1, 1.74, 2.74, 4.32 -> keep 2 tokens, renormalised to 0.625/0.375
    pos, cand, mu = filters.mirostat_v2(probs_cand(), 1.0, 0.1, 2.0, FixedRng(0.0))
    assert cand.ids.tolist() == [0, 1]
    np.testing.assert_allclose(cand.probs, [0.625, 0.375], rtol=1e-6)
    assert pos == 0 and mu == pytest.approx(2.0 - 0.1 * (-math.log2(0.625) - 1.0))


def test_mirostat_v1_zipf_estimate_and_update():
    ranks = np.arange(1, 201)
    zipf = 1.0 / ranks ** 1.5   # exact Zipf with s = 1.5: s_hat recovers it
    pos, cand, mu = filters.mirostat_v1(cand_of(np.log(zipf)), 3.0, 0.1, 100, 6.0, 200, FixedRng(0.0))
    eps = 0.5
    k = int(((eps * 2 ** 6.0) / (1 - 200 ** -eps)) ** (1 / 1.5))
    assert len(cand) == k
    assert mu == pytest.approx(6.0 - 0.1 * (-math.log2(cand.probs[0]) - 3.0), rel=1e-6)


# --- RNG, determinism, greedy ---------------------------------------------------------------------
def test_mt19937_matches_the_cpp_standard():
    # the C++ standard requires the 10000th output of a default-seeded std::mt19937 to be 4123659995
    rng = Mt19937(5489)
    assert int(rng.next_u32(10000)[-1]) == 4123659995
    u = Mt19937(1).uniform()
    assert 0.0 <= u < 1.0


def test_fixed_seed_is_deterministic_and_seed_is_exposed():
    rng = np.random.default_rng(5)
    rows = [rng.standard_normal(1000).astype(np.float32) for _ in range(50)]
    a = Sampler(SamplerParams(seed=1234, top_k=0, min_p=0.0, top_p=1.0, temp=1.5), 1000)
    b = Sampler(SamplerParams(seed=1234, top_k=0, min_p=0.0, top_p=1.0, temp=1.5), 1000)
    ta = [a.sample(r) for r in rows]
    assert ta == [b.sample(r) for r in rows] and a.seed == 1234
    a.reset()
    assert [a.sample(r) for r in rows] == ta     # reset reseeds
    c = Sampler(SamplerParams(seed=-1, top_k=0, min_p=0.0, top_p=1.0, temp=1.5), 1000)
    assert 0 <= c.seed < 2 ** 32
    replay = Sampler(SamplerParams(seed=c.seed, top_k=0, min_p=0.0, top_p=1.0, temp=1.5), 1000)
    assert [c.sample(r) for r in rows] == [replay.sample(r) for r in rows]
    other = Sampler(SamplerParams(seed=4321, top_k=0, min_p=0.0, top_p=1.0, temp=1.5), 1000)
    assert [other.sample(r) for r in rows] != ta


def test_greedy_is_argmax_on_a_real_sized_vocabulary():
    rng = np.random.default_rng(6)
    s = Sampler(SamplerParams(temp=0.0), 49152)
    for _ in range(20):
        x = (rng.standard_normal(49152) * 3).astype(np.float32)
        assert s.sample(x) == int(np.argmax(x))
    tie = np.zeros(49152, np.float32); tie[[17, 400, 9000]] = 5.0
    assert s.sample(tie) == 17


def test_greedy_shortcut_equals_the_full_chain():
    rng = np.random.default_rng(10)
    p = SamplerParams(temp=0.0, repeat_penalty=1.3, frequency_penalty=0.2, top_n_sigma=1.0, seed=2)
    fast = Sampler(p, 3000)
    slow = Sampler(p, 3000)
    slow.__class__ = type("NoShortcut", (Sampler,), {"_greedy_shortcut": property(lambda self: False)})
    assert fast._greedy_shortcut
    for _ in range(30):
        x = np.round(rng.standard_normal(3000) * 3).astype(np.float32)   # ties included
        a, b = fast.sample(x), slow.sample(x)
        assert a == b
        fast.accept(a), slow.accept(b)


def test_penalties_include_prompt_tokens_and_respect_the_window():
    p = SamplerParams(temp=0.0, repeat_penalty=4.0, repeat_last_n=2, seed=1)
    logits = np.array([4.0, 3.0, 2.0, 1.0], np.float32)
    s = Sampler(p, 4)
    s.accept_all([0, 2, 3])        # window of 2 keeps [2, 3]: token 0 not penalised
    assert s.sample(logits) == 0
    s.accept(0)                    # window [3, 0]: 0 -> 4/4 = 1
    assert s.sample(logits) == 1
    s.reset()
    assert s.sample(logits) == 0


# --- distributions --------------------------------------------------------------------------------
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}   # 99.9% quantiles


def draw_counts(params: SamplerParams, logits: np.ndarray, n: int) -> np.ndarray:
    s = Sampler(params, len(logits))
    counts = np.zeros(len(logits))
    for _ in range(n):
        counts[s.sample(logits)] += 1
    return counts


def assert_chi2(counts: np.ndarray, expected_p: np.ndarray):
    n = counts.sum()
    live = expected_p > 0
    assert counts[~live].sum() == 0, "drew a token the sampler should have removed"
    exp = expected_p[live] * n
    chi2 = float(((counts[live] - exp) ** 2 / exp).sum())
    assert chi2 < CHI2_999[int(live.sum()) - 1], (chi2, counts, exp)


LOGITS = np.array([2.0, 1.5, 1.0, 0.3, -0.5, -1.0, -3.0], np.float32)
N_DRAWS = 8000


def softmax64(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_distribution_temperature():
    p = SamplerParams(temp=0.7, samplers="temperature", seed=11)
    assert_chi2(draw_counts(p, LOGITS, N_DRAWS), softmax64(LOGITS.astype(np.float64) / 0.7))


def test_distribution_top_k():
    p = SamplerParams(temp=1.0, top_k=3, samplers="top_k;temperature", seed=12)
    expected = softmax64(LOGITS.astype(np.float64)); expected[3:] = 0; expected /= expected.sum()
    assert_chi2(draw_counts(p, LOGITS, N_DRAWS), expected)


def test_distribution_top_p():
    p = SamplerParams(temp=1.0, top_p=0.8, samplers="top_p;temperature", seed=13)
    full = softmax64(LOGITS.astype(np.float64))
    keep = int(np.searchsorted(np.cumsum(full), 0.8)) + 1
    expected = full.copy(); expected[keep:] = 0; expected /= expected.sum()
    assert keep == 3
    assert_chi2(draw_counts(p, LOGITS, N_DRAWS), expected)


def test_distribution_min_p():
    p = SamplerParams(temp=1.0, min_p=0.2, samplers="min_p;temperature", seed=14)
    full = softmax64(LOGITS.astype(np.float64))
    expected = np.where(full >= 0.2 * full.max(), full, 0.0); expected /= expected.sum()
    assert_chi2(draw_counts(p, LOGITS, N_DRAWS), expected)


def test_distribution_default_chain():
    # top-k 40 / top-p 0.95 / min-p 0.05 / temp 0.8 on 7 tokens, computed by hand in float64
    p = SamplerParams(seed=15)
    full = softmax64(LOGITS.astype(np.float64))
    keep = int(np.searchsorted(np.cumsum(full), 0.95)) + 1
    kept = np.zeros_like(full); kept[:keep] = 1
    kept *= full >= 0.05 * full.max()
    expected = np.where(kept > 0, softmax64(LOGITS.astype(np.float64) / 0.8), 0.0); expected /= expected.sum()
    assert_chi2(draw_counts(p, LOGITS, N_DRAWS), expected)


@pytest.mark.parametrize("seed", range(6))
def test_c_top_k_equals_the_numpy_reference(seed):
    from pygguf.sampling.candidates import top_positions, top_positions_numpy
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(49152) * 3).astype(np.float32)
    if seed % 2:                                   # many exact ties
        logits = np.round(logits).astype(np.float32)
    if seed == 4:
        logits[rng.integers(0, logits.size, 50)] = -np.inf
    for k in (1, 2, 40, 100, 1000):
        assert np.array_equal(top_positions(logits, k), top_positions_numpy(logits, k))
    logits[:10] = np.nan                           # NaN never chosen; the same answer either way
    assert np.array_equal(top_positions(logits, 40), top_positions_numpy(logits, 40))
