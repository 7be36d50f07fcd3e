"""The C sampling chain (pygguf.sampling.fast) against the Python chain it replaces, token for token.

Each case runs two Samplers with the same parameters and seed over the same logits, one with the
C chain and one without (the reference: the functions of pygguf.sampling.filters in turn), and
accepts each chosen token so the penalty windows move. They must choose the same tokens, the C
chain must have answered itself (not handed the call back to Python), and afterwards the two RNGs
must be in the same state (the same number of draws). Logits include exact ties, -0.0 beside
+0.0, -inf, all-equal rows and NaN; parameters include top_p = 1, min_p = 0, temp <= 0, top_k = 0
or above the vocabulary, min_keep, custom orders and logit bias.
"""
import math

import numpy as np
import pytest

from pygguf.errors import NonFiniteLogits
from pygguf._native import ffi, lib
from pygguf.sampling.fast import plan_steps
from pygguf.sampling.rng import Mt19937
from pygguf.sampling import DEFAULT_SAMPLERS, Sampler, SamplerError, SamplerParams, parse_samplers

COVERED = ["penalties", "top_k", "top_p", "min_p", "temperature"]


class CountingChain:
    """Wraps a Sampler's FastChain and counts the calls it answered and declined."""

    def __init__(self, chain):
        self.chain, self.answered, self.declined = chain, 0, 0

    def sample(self, *args):
        token = self.chain.sample(*args)
        if token is None:
            self.declined += 1
        else:
            self.answered += 1
        return token


def pair(params: SamplerParams, n_vocab: int, prompt=()):
    fast = Sampler(params, n_vocab)
    ref = Sampler(params, n_vocab)
    assert fast._fast is not None, "this configuration should be covered by the C chain"
    fast._fast = CountingChain(fast._fast)
    ref._fast = None
    fast.accept_all(prompt)
    ref.accept_all(prompt)
    return fast, ref


def same_rng_state(a: Sampler, b: Sampler) -> bool:
    return np.array_equal(a._rng_dist.next_u32(4), b._rng_dist.next_u32(4))


def run_pair(params, rows, prompt=(), *, expect_answered=True):
    fast, ref = pair(params, rows[0].shape[0], prompt)
    for x in rows:
        a, b = fast.sample(x), ref.sample(x)
        assert a == b, (params, fast._fast.answered)
        fast.accept(a)
        ref.accept(b)
    if expect_answered:
        assert fast._fast.answered == len(rows) and fast._fast.declined == 0
    assert same_rng_state(fast, ref), "the C chain drew a different number of times"
    return fast


# --- logits -----------------------------------------------------------------------------------------
def logits_rows(rng, n_vocab, n_rows, kind):
    rows = []
    for _ in range(n_rows):
        x = (rng.standard_normal(n_vocab) * rng.uniform(0.5, 4.0)).astype(np.float32)
        x[rng.integers(0, n_vocab, max(1, n_vocab // 500))] += np.float32(rng.uniform(3, 10))
        if kind == "ties":
            x = np.round(x).astype(np.float32)
        elif kind == "signed_zeros":          # -0.0 and +0.0 must tie, as in numpy's stable sort
            x = np.round(x / 4).astype(np.float32)
            zeros = np.flatnonzero(x == 0)
            x[zeros[::2]] = np.float32(-0.0)
        elif kind == "equal":
            x[:] = np.float32(rng.uniform(-3, 3))
        elif kind == "neg_inf":
            x[rng.random(n_vocab) < 0.3] = -np.inf
        elif kind == "huge":
            x *= np.float32(1e4)
        rows.append(x)
    return rows


KINDS = ["gauss", "ties", "signed_zeros", "equal", "neg_inf", "huge"]


# --- the RNG ----------------------------------------------------------------------------------------
def test_mt19937_matches_numpys_generator_and_the_standard():
    assert int(Mt19937(5489).next_u32(10000)[-1]) == 4123659995   # the C++ standard's check value
    for seed in (0, 1, 5489, 2 ** 32 - 2, 123456789):
        oracle = np.random.MT19937(0)
        oracle._legacy_seeding(seed)                                  # init_genrand, as std::mt19937
        ours = Mt19937(seed)
        assert np.array_equal(ours.next_u32(1500).astype(np.uint64), oracle.random_raw(1500))


def test_uniform_draws_are_libstdcxx_generate_canonical():
    a, b = Mt19937(77), Mt19937(77)
    for _ in range(200):
        lo, hi = (float(w) for w in b.next_u32(2))
        assert a.uniform() == (lo + hi * 2.0 ** 32) / 2.0 ** 64
        word = b.next_u32(1)[0]
        assert a.uniform_float() == float(np.float32(float(word)) / np.float32(2.0 ** 32))


# --- covered configurations, token for token --------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_default_chain_on_a_real_sized_vocabulary(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    rows = logits_rows(rng, 49152, 12, kind)
    run_pair(SamplerParams(seed=11), rows, prompt=range(64))
    run_pair(SamplerParams(seed=12, repeat_penalty=1.3, frequency_penalty=0.2, presence_penalty=0.4),
             rows, prompt=rng.integers(0, 49152, 80).tolist())
    run_pair(SamplerParams(seed=13, temp=0.0, repeat_penalty=1.5, presence_penalty=0.5), rows,
             prompt=rng.integers(0, 100, 80).tolist())
    run_pair(SamplerParams(seed=14, repeat_last_n=300, repeat_penalty=1.2, frequency_penalty=0.05), rows,
             prompt=[int(i) for i in np.argsort(-rows[0])[:400]])   # a window past its first growth


def random_params(rng, n_vocab) -> SamplerParams:
    if rng.random() < 0.6:
        order = DEFAULT_SAMPLERS
    else:
        names = list(rng.permutation(COVERED)[:rng.integers(1, len(COVERED) + 1)])
        order = ";".join(str(n) for n in names)
    bias = {}
    if rng.random() < 0.4:
        for t in rng.integers(0, n_vocab, rng.integers(1, 6)):
            bias[int(t)] = float(rng.choice([-np.inf, -2.0, 0.5, 3.0, 8.0]))
    penalties = rng.random() < 0.5
    return SamplerParams(
        temp=float(rng.choice([0.0, -1.0, 0.3, 0.8, 1.0, 1.7])),
        top_k=int(rng.choice([0, -1, 1, 2, 5, 40, n_vocab - 1, n_vocab, n_vocab + 5])),
        top_p=float(rng.choice([1.0, 0.99, 0.95, 0.6, 0.1, 0.0])),
        min_p=float(rng.choice([0.0, 0.01, 0.05, 0.3, 1.0, 1.5])),
        min_keep=int(rng.choice([0, 0, 1, 3, 50])),
        repeat_penalty=float(rng.choice([1.0, 1.1, 1.8, 0.7])) if penalties else 1.0,
        frequency_penalty=float(rng.choice([0.0, 0.3, -0.5])) if penalties else 0.0,
        presence_penalty=float(rng.choice([0.0, 0.5, 2.0])) if penalties else 0.0,
        repeat_last_n=int(rng.choice([0, 1, 8, 64])),
        logit_bias=bias,
        samplers=order,
        seed=int(rng.integers(0, 2 ** 32 - 1)))


@pytest.mark.parametrize("block", range(8))
def test_random_chains_and_parameters(block):
    rng = np.random.default_rng(1000 + block)
    for case in range(25):
        n_vocab = int(rng.choice([1, 2, 3, 8, 50, 300, 1500, 5000]))
        params = random_params(rng, n_vocab)
        kind = KINDS[(block + case) % len(KINDS)]
        rows = logits_rows(rng, n_vocab, 6, kind)
        prompt = rng.integers(0, n_vocab, 20).tolist()
        if all(math.isinf(params.logit_bias.get(t, 0.0)) for t in range(n_vocab)) or kind == "neg_inf":
            run_pair_or_both_raise(params, rows, prompt)
        else:
            run_pair(params, rows, prompt)


def run_pair_or_both_raise(params, rows, prompt):
    """Rows where every token may be banned: the same token, or the same error from both."""
    fast, ref = pair(params, rows[0].shape[0], prompt)
    for x in rows:
        outcomes = []
        for s in (fast, ref):
            try:
                outcomes.append(s.sample(x))
            except SamplerError as e:
                outcomes.append(type(e))
        assert outcomes[0] == outcomes[1], (params, outcomes)
        if isinstance(outcomes[0], int):
            fast.accept(outcomes[0])
            ref.accept(outcomes[0])
    assert same_rng_state(fast, ref)


def test_top_k_above_the_vocabulary_and_zero_sort_the_whole_vocabulary():
    rng = np.random.default_rng(3)
    rows = logits_rows(rng, 4000, 6, "ties") + logits_rows(rng, 4000, 6, "signed_zeros")
    for top_k in (0, 4000, 10 ** 12):
        run_pair(SamplerParams(top_k=top_k, top_p=0.9, min_p=0.0, seed=5), rows)
        run_pair(SamplerParams(top_k=top_k, top_p=1.0, min_p=0.0, temp=1.3, seed=6), rows)
        run_pair(SamplerParams(top_k=top_k, top_p=1.0, min_p=0.02, seed=7), rows)


def test_top_p_over_the_whole_vocabulary_past_the_first_256():
    # a flat distribution: the top 256 cannot reach p, so the whole vocabulary is sorted
    rng = np.random.default_rng(4)
    rows = [(rng.standard_normal(5000) * 0.1).astype(np.float32) for _ in range(5)]
    run_pair(SamplerParams(top_k=0, top_p=0.5, min_p=0.0, seed=8), rows)
    run_pair(SamplerParams(top_k=0, top_p=0.5, min_p=0.0, min_keep=400, seed=8), rows)


def test_min_p_above_one_falls_back_to_min_keep():
    rng = np.random.default_rng(5)
    rows = logits_rows(rng, 3000, 5, "ties")
    for min_keep in (0, 1, 7, 5000):
        run_pair(SamplerParams(top_k=0, top_p=1.0, min_p=2.0, min_keep=min_keep, seed=9), rows)
        run_pair(SamplerParams(samplers="min_p;top_p", min_p=2.0, min_keep=min_keep, top_p=0.8, seed=9), rows)


def test_all_equal_logits_pick_uniformly_like_the_reference():
    x = np.zeros(1000, np.float32)
    fast = run_pair(SamplerParams(top_k=0, top_p=1.0, min_p=0.0, seed=10), [x] * 40)
    assert fast._fast.answered == 40


def test_greedy_first_maximum_with_bias_and_penalties():
    x = np.zeros(49152, np.float32)
    x[[5, 900, 40000]] = 3.0
    params = SamplerParams(temp=0.0, logit_bias={5: -1.0, 7: 3.0}, repeat_penalty=2.0, seed=1)
    fast, ref = pair(params, 49152, prompt=[900])
    assert fast.sample(x) == ref.sample(x) == 7             # 7 ties 40000 at 3.0 and comes first
    params = SamplerParams(temp=0.0, logit_bias={7: 3.0}, seed=1)
    fast, ref = pair(params, 49152, prompt=[])
    assert fast.sample(x) == ref.sample(x) == 5


# --- the C chain declines (NaN, nothing finite) and Python decides ----------------------------------
def test_nan_logits_are_refused_before_either_chain():
    # (main sampled around the NaNs in the Python chain; now a NaN is a NonFiniteLogits)
    rng = np.random.default_rng(6)
    for n_vocab, params in ((49152, SamplerParams(seed=3)), (500, SamplerParams(top_k=0, seed=3)),
                            (500, SamplerParams(temp=0.0, seed=3))):
        x = logits_rows(rng, n_vocab, 1, "gauss")[0]
        x[rng.integers(0, n_vocab, 3)] = np.nan
        fast, ref = pair(params, n_vocab)
        for s in (fast, ref):
            with pytest.raises(NonFiniteLogits):
                s.sample(x)
        assert fast._fast.declined == 0 and fast._fast.answered == 0
        assert same_rng_state(fast, ref)


def test_everything_banned_raises_the_reference_error():
    params = SamplerParams(logit_bias={0: -math.inf, 1: -math.inf, 2: -math.inf}, seed=1)
    fast, ref = pair(params, 3)
    x = np.array([1.0, 2.0, 3.0], np.float32)
    for s in (fast, ref):
        with pytest.raises(SamplerError, match="every token banned"):
            s.sample(x)
    assert fast._fast.declined == 1


# --- what the C chain covers, and its checks -------------------------------------------------------
def unchecked(**values) -> SamplerParams:
    """Params with fields set after construction, past SamplerParams' checks (plan_steps guards
    against NaN on its own)."""
    params = SamplerParams()
    for name, value in values.items():
        setattr(params, name, value)
    return params


@pytest.mark.parametrize("params", [
    SamplerParams(dry_multiplier=0.8), SamplerParams(typical_p=0.9), SamplerParams(xtc_probability=0.5),
    SamplerParams(top_n_sigma=1.0), SamplerParams(dynatemp_range=0.5), SamplerParams(mirostat=2),
    unchecked(temp=float("nan")), unchecked(top_p=float("nan")),
])
def test_uncovered_configurations_stay_in_python(params):
    order = parse_samplers(params.samplers)
    assert plan_steps(params, order, 100, greedy=False, dry_enabled=params.dry_multiplier > 0) is None


def test_covered_configurations():
    assert plan_steps(SamplerParams(), parse_samplers(DEFAULT_SAMPLERS), 100, greedy=False,
                      dry_enabled=False) is not None
    # greedy keeps only the penalties and ignores top-n-sigma (as Sampler._sample_greedy)
    greedy = SamplerParams(temp=0.0, top_n_sigma=1.0, repeat_penalty=1.2)
    steps = plan_steps(greedy, parse_samplers(greedy.samplers), 100, greedy=True, dry_enabled=False)
    assert steps == [(lib.PG_CHAIN_PENALTIES, 0, 1.2, 0.0, 0.0)]


def test_chain_refuses_bad_arguments():
    out = ffi.new("pg_chain **")
    steps = ffi.new("pg_chain_step[]", 1)
    steps[0].kind = 99
    assert lib.pg_chain_new(100, steps, 1, 0, ffi.NULL, ffi.NULL, 0, out) == lib.PG_EBADARG
    steps[0].kind = lib.PG_CHAIN_TOP_K
    ids = ffi.new("int32_t[]", [3, 3])
    values = ffi.new("float[]", [1.0, 2.0])
    assert lib.pg_chain_new(100, steps, 1, 0, ids, values, 2, out) == lib.PG_EBADARG   # repeated id
    ids[1] = 100
    assert lib.pg_chain_new(100, steps, 1, 0, ids, values, 2, out) == lib.PG_EBADARG   # out of range
    assert lib.pg_chain_new(0, steps, 1, 0, ffi.NULL, ffi.NULL, 0, out) == lib.PG_EBADARG
    assert lib.pg_chain_new(100, steps, 1, 0, ffi.NULL, ffi.NULL, 0, out) == 0
    chain = ffi.gc(out[0], lib.pg_chain_free)
    x = np.zeros(100, np.float32)
    rng = Mt19937(1)
    window = ffi.new("int32_t[]", [5, 500, 7, 1])
    logits = ffi.from_buffer("float[]", x)
    assert lib.pg_chain_sample(chain, logits, 99, window, 0, rng.state) == lib.PG_EBADARG      # wrong size
    assert lib.pg_chain_sample(chain, logits, 100, window, -1, rng.state) == lib.PG_EBADARG     # negative window
    assert lib.pg_chain_sample(chain, logits, 100, window, 4, rng.state) >= 0                  # (top-k only: window unused)
    steps[0].kind, steps[0].value = lib.PG_CHAIN_PENALTIES, 1.5
    assert lib.pg_chain_new(100, steps, 1, 0, ffi.NULL, ffi.NULL, 0, out) == 0
    chain = ffi.gc(out[0], lib.pg_chain_free)
    assert lib.pg_chain_sample(chain, logits, 100, window, 4, rng.state) == lib.PG_EBADARG      # token 500 > vocab
    assert lib.pg_chain_sample(chain, logits, 100, window, 1, rng.state) >= 0


@pytest.mark.parametrize("repeat_last_n", [1, 3, 256, 257, 1000])
def test_penalty_window_keeps_exactly_the_last_tokens_as_it_grows(repeat_last_n):
    from collections import Counter
    rng = np.random.default_rng(repeat_last_n)
    s = Sampler(SamplerParams(repeat_last_n=repeat_last_n, repeat_penalty=1.2), 5000)
    accepted = []
    for n in (0, 1, 2, 255, 256, 257, 600, 1500):
        new = rng.integers(0, 5000, n - len(accepted)).tolist()
        s.accept_all(new)
        accepted += new
        window = s._window[:s._window_len].tolist()
        assert Counter(window) == Counter(accepted[-repeat_last_n:] if accepted else [])


# --- boundaries: where one rounding step of difference would change the token ------------------------
def test_penalties_after_top_k_unsort_the_candidates():
    # the penalties push the best tokens down after top-k sorted them; top-p, min-p and dist must
    # then see the new order (a sorted flag left on would read the wrong maximum and prefix)
    rng = np.random.default_rng(7)
    base = logits_rows(rng, 2000, 1, "gauss")[0]
    rows = [base + (rng.standard_normal(2000) * 0.05).astype(np.float32) for _ in range(20)]
    for order in ("top_k;penalties;top_p;min_p;temperature", "top_k;penalties;top_k;temperature",
                  "top_p;penalties;min_p;temperature", "top_k;penalties;min_p"):
        params = SamplerParams(samplers=order, top_k=30, top_p=0.7, min_p=0.5, repeat_penalty=1.5,
                               presence_penalty=1.0, repeat_last_n=64, seed=3)
        prompt = [int(i) for i in np.argsort(-base)[:8]]
        run_pair(params, rows, prompt)


def test_top_p_exactly_at_a_cumulative_probability():
    # p set to the reference's own float32 running sum at some rank: cum >= p keeps exactly that
    # rank, so the C chain must produce the same float32 probabilities, sum and division
    from pygguf.sampling.candidates import softmax_probs
    rng = np.random.default_rng(8)
    for _ in range(60):
        n = int(rng.integers(2, 60))
        x = (rng.standard_normal(n) * 2).astype(np.float32)
        order = np.argsort(-x, kind="stable")
        cum = np.cumsum(softmax_probs(x)[order], dtype=np.float32)
        j = int(rng.integers(0, n))
        params = SamplerParams(top_k=0, top_p=float(cum[j]), min_p=0.0, temp=1.0, seed=int(rng.integers(1000)))
        run_pair(params, [x] * 3)
        # after a temperature: the float32 division must be the reference's too
        t = float(rng.uniform(0.3, 2.0))
        cum = np.cumsum(softmax_probs(x / np.float32(t))[order], dtype=np.float32)
        params = SamplerParams(samplers="temperature;top_p", top_p=float(cum[j]), temp=t, seed=1)
        run_pair(params, [x] * 3)


def test_min_p_exactly_at_a_logit():
    # some logits placed exactly on the reference's float32 threshold max + log(p): >= keeps them
    rng = np.random.default_rng(9)
    for _ in range(80):
        x = (rng.standard_normal(40) * 2).astype(np.float32)
        p = float(rng.uniform(0.001, 0.9))
        threshold = np.float32(x.max() + np.float32(math.log(p)))
        x[rng.integers(0, 40, 3)] = threshold
        x[rng.integers(0, 40)] = np.nextafter(threshold, np.float32(-np.inf))
        run_pair(SamplerParams(top_k=0, top_p=1.0, min_p=p, temp=1.0, seed=1), [x] * 2)
        run_pair(SamplerParams(top_k=40, top_p=1.0, min_p=p, temp=1.0, seed=1), [x] * 2)


def test_penalized_logits_tie_exactly_like_the_reference():
    # a competitor whose logit equals the reference's float32 penalized logit: ties go to the lower
    # id, so a result one ulp off either way picks another token (A lowest, then A highest id)
    rng = np.random.default_rng(10)
    for _ in range(150):
        x = np.float32(rng.uniform(-8, 8))
        repeat, freq, present = (float(rng.uniform(0.5, 2)), float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)))
        count = int(rng.integers(1, 5))
        y = np.where(x <= 0, x * np.float32(repeat), x / np.float32(repeat))
        y = np.float32(y - (np.float32(count) * np.float32(freq) + np.float32(present)))
        for a, b in ((0, 1), (1, 0)):
            logits = np.full(4, -20.0, np.float32)
            logits[a], logits[b] = x, y
            params = SamplerParams(temp=0.0, repeat_penalty=repeat, frequency_penalty=freq,
                                   presence_penalty=present, seed=1)
            fast, ref = pair(params, 4, prompt=[a] * count)
            assert fast.sample(logits) == ref.sample(logits) == min(a, b)
