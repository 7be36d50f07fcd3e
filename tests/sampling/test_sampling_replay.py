"""Fixed seeds replay the same tokens: sequences recorded from the implementation before the C fast
path (main at 6dce834), over chains the fast path covers (default, penalties, greedy, full-vocabulary
top-p, plain dist, bias with a custom order and min_keep) and chains it leaves to Python (mirostat,
XTC), which share the same RNG."""
import numpy as np
import pytest

from pygguf.sampling import Sampler, SamplerParams


def stream_logits(n_vocab: int, seed: int, steps: int):
    """A peaked head over a Gaussian tail; every third row rounded to halves (exact ties)."""
    rng = np.random.default_rng(seed)
    for i in range(steps):
        x = (rng.standard_normal(n_vocab) * 2.0).astype(np.float32)
        x[rng.integers(0, n_vocab, 12)] += rng.uniform(4, 9, 12).astype(np.float32)
        if i % 3 == 1:
            x = np.round(x * 2) / 2
        yield x.astype(np.float32)


CASES = {
    "default": (49152, SamplerParams(seed=1)),
    "penalties": (49152, SamplerParams(seed=2, repeat_penalty=1.3, frequency_penalty=0.4, presence_penalty=0.5,
                                       repeat_last_n=16)),
    "greedy_penalties": (5000, SamplerParams(seed=3, temp=0.0, repeat_penalty=1.5, presence_penalty=1.0)),
    "full_vocab_top_p": (3000, SamplerParams(seed=4, top_k=0, temp=1.3)),
    "plain_dist": (1000, SamplerParams(seed=5, top_k=0, top_p=1.0, min_p=0.0, temp=1.5)),
    "bias_order_min_keep": (2000, SamplerParams(seed=6, logit_bias={3: 5.0, 7: -float("inf")},
                                                samplers="temperature;min_p;top_k;top_p", top_k=60, min_p=0.2,
                                                top_p=0.7, min_keep=3)),
    "mirostat2": (1000, SamplerParams(seed=7, mirostat=2)),
    "xtc": (1000, SamplerParams(seed=8, xtc_probability=0.5, xtc_threshold=0.05, top_k=0, temp=1.0)),
}

EXPECTED = {
    'default': [31090, 2427, 6618, 37139, 20792, 17892, 13076, 6632, 8470, 8962, 32419, 8657, 34381, 13796, 10888, 35125, 43812, 23308, 36195, 10958, 10777, 41955, 35979, 1300],
    'penalties': [21189, 24418, 46170, 40875, 32883, 25758, 3436, 13474, 6945, 1687, 6242, 859, 40983, 44956, 36472, 49132, 9494, 31574, 186, 28319, 41225, 5740, 37338, 24603],
    'greedy_penalties': [4891, 604, 2886, 2701, 2608, 2407, 4284, 1904, 4849, 191, 2657, 4805, 2715, 4064, 826, 3013, 2194, 2987, 1832, 1872, 2449, 412, 2211, 1574],
    'full_vocab_top_p': [1637, 2488, 2440, 762, 2578, 2879, 1198, 1189, 1041, 1204, 752, 388, 995, 2391, 1232, 2390, 961, 2997, 1343, 289, 2400, 2153, 1908, 2999],
    'plain_dist': [116, 882, 470, 989, 1, 374, 314, 617, 969, 947, 637, 896, 235, 926, 318, 190, 210, 830, 305, 419, 728, 28, 96, 889],
    'bias_order_min_keep': [1958, 345, 170, 1478, 1710, 644, 1527, 899, 1726, 369, 1839, 3, 1177, 113, 518, 557, 792, 1211, 1523, 26, 728, 306, 1879, 1765],
    'mirostat2': [450, 483, 62, 457, 448, 945, 490, 20, 294, 690, 249, 299, 916, 233, 149, 273, 420, 655, 861, 570, 995, 13, 313, 305],
    'xtc': [196, 650, 621, 96, 605, 174, 422, 682, 1, 486, 802, 567, 671, 571, 382, 489, 471, 41, 641, 741, 767, 642, 93, 592],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixed_seed_replays_the_recorded_tokens(name):
    n_vocab, params = CASES[name]
    s = Sampler(params, n_vocab)
    s.accept_all(range(100, 140))              # a "prompt" the penalties see
    got = []
    for x in stream_logits(n_vocab, sum(map(ord, name)), len(EXPECTED[name])):
        token = s.sample(x)
        s.accept(token)
        got.append(token)
    assert got == EXPECTED[name]
