"""Batched decoding in the C forward pass: one batch mixing several sequences of the KV cache gives
each token the same logits, bit for bit, as its sequence run alone; a prefix copied from another
sequence serves as well as one computed in place; a shift touches only its own sequence; and bad
batches are refused with a clear error. Batches are pygguf.model.batch.Batch, like llama_batch."""
import numpy as np
import pytest

from model_factory import encode, missing_kernels, random_weights, tiny_config
from model_runner import Runner, read_kv
from pygguf.errors import ModelError
from pygguf.gguf.types import by_name
from pygguf.model import Model
from pygguf.model.batch import Batch

PROMPTS = [[5, 17, 250, 3, 99, 42, 7], [1, 2, 3], [299, 0, 8, 8, 8, 140, 77, 31, 64], [11, 12]]
# types with different gemm paths: float, a 32-value format with and without a min, a K-quant
TYPES = ["F32", "Q4_1", "Q8_0", "Q4_K"]


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    return config, random_weights(config, seed=3)


def model(tensors, config, **kwargs):
    kwargs.setdefault("n_ctx", 32)
    return Model.from_tensors(config, tensors, **kwargs)


def alone(tensors, config, tokens) -> np.ndarray:
    with model(tensors, config, n_threads=1, n_batch=4) as m:
        return Runner(m).eval_all(tokens)


def decode(m, tokens, pos, seq, want) -> np.ndarray:
    """One batch: token i at position pos[i] of sequence seq[i], logits where want[i]."""
    batch = Batch(max(len(tokens), 1))
    for t, p, s, w in zip(tokens, pos, seq, want):
        batch.add(t, p, s, bool(w))
    return m.decode(batch)


def encoded(tiny, name):
    qtype = by_name(name)
    reason = missing_kernels(qtype)
    if reason:
        pytest.skip(reason)
    config, weights = tiny
    return encode(weights, qtype, config)[0], config


@pytest.mark.parametrize("name", TYPES)
def test_mixed_batches_match_each_sequence_alone(tiny, name):
    tensors, config = encoded(tiny, name)
    want = [alone(tensors, config, p) for p in PROMPTS]
    # steps of (sequence, how many of its next tokens); every token's logits asked for
    schedule = [[(0, 3), (1, 1)], [(0, 1), (1, 2), (2, 4)], [(2, 1), (3, 2), (0, 3)], [(2, 4)]]
    with model(tensors, config, n_threads=2, n_batch=16, n_seq=4) as m:
        done = [0] * len(PROMPTS)
        for step in schedule:
            toks, pos, seq, who = [], [], [], []
            for s, k in step:
                for i in range(done[s], done[s] + k):
                    toks.append(PROMPTS[s][i]), pos.append(i), seq.append(s), who.append((s, i))
                done[s] += k
            rows = decode(m, toks, pos, seq, np.ones(len(toks)))
            for row, (s, i) in zip(rows, who):
                assert np.array_equal(row, want[s][i]), f"{name}: sequence {s} position {i} differs from alone"
    assert done == [len(p) for p in PROMPTS]


def test_only_wanted_rows_come_back_in_batch_order(tiny):
    tensors, config = encoded(tiny, "Q8_0")
    want = [alone(tensors, config, p) for p in PROMPTS[:2]]
    with model(tensors, config, n_seq=2) as m:
        a, b = PROMPTS[0], PROMPTS[1]
        toks = a + b
        pos = list(range(len(a))) + list(range(len(b)))
        seq = [0] * len(a) + [1] * len(b)
        flags = [0] * len(toks)
        flags[len(a) - 1] = flags[-1] = 1
        rows = decode(m, toks, pos, seq, flags)
        assert rows.shape == (2, config.n_vocab)
        assert np.array_equal(rows[0], want[0][-1]) and np.array_equal(rows[1], want[1][-1])
        assert decode(m, [a[0]], [0], [0], [0]).shape == (0, config.n_vocab)


def test_copied_prefix_serves_like_one_computed_in_place(tiny):
    tensors, config = encoded(tiny, "Q4_1")
    shared, tail = [5, 17, 250, 3, 99], [42, 7, 9]
    want = alone(tensors, config, shared + tail)
    with model(tensors, config, n_seq=3) as m:
        decode(m, shared, range(5), [2] * 5, [0] * 5)
        m.kv_copy(2, 0, len(shared))
        rows = decode(m, tail, range(5, 8), [0] * 3, [1] * 3)
        assert np.array_equal(rows, want[5:])
        k0, v0 = read_kv(m, 1, 0, 5, seq=0)
        k2, v2 = read_kv(m, 1, 0, 5, seq=2)
        assert np.array_equal(k0, k2) and np.array_equal(v0, v2)


def test_shift_moves_only_its_own_sequence(tiny):
    tensors, config = encoded(tiny, "F32")
    tokens = list(range(20, 32))
    with model(tensors, config, n_seq=2) as single:
        runner = Runner(single)
        runner.eval(tokens)
        runner.shift(2, 4)
        want_k, want_v = runner.kv_cache(0)
    with model(tensors, config, n_seq=2) as m:
        decode(m, tokens + tokens, list(range(12)) * 2, [0] * 12 + [1] * 12, [0] * 24)
        before_k, before_v = read_kv(m, 0, 0, 12, seq=0)
        m.kv_shift(1, 12, 2, 4)
        k1, v1 = read_kv(m, 0, 0, 8, seq=1)
        assert np.array_equal(k1, want_k) and np.array_equal(v1, want_v)
        k0, v0 = read_kv(m, 0, 0, 12, seq=0)
        assert np.array_equal(k0, before_k) and np.array_equal(v0, before_v)


def test_bad_batches_are_refused(tiny):
    tensors, config = encoded(tiny, "F32")
    with model(tensors, config, n_seq=2, n_batch=4) as m:
        cases = [
            (([1, 2], [0, 1], [0, 2], [1, 1]), "sequence id"),
            (([1, 2], [0, 32], [0, 0], [1, 1]), "position outside"),
            (([1, 2], [0, -1], [0, 0], [1, 1]), "position outside"),
            (([1, config.n_vocab], [0, 1], [0, 0], [1, 1]), "outside the vocabulary"),
            (([1] * 5, range(5), [0] * 5, [1] * 5), "n_batch"),
            (([], [], [], []), "n_batch"),
        ]
        for args, message in cases:
            with pytest.raises(ModelError, match=message):
                decode(m, *args)
        with pytest.raises(ModelError, match="sequence id"):
            m.kv_copy(0, 2, 4)
        with pytest.raises(ModelError, match="needs its length"):
            m.kv_shift(1, 33, 1, 2)
    with pytest.raises(ValueError, match="do not fit the batch"):     # a batch holds what it was made for
        Batch(2).add_run([1, 2, 3], 0, 0)
    with pytest.raises(ModelError, match="n_seq"):
        model(tensors, config, n_seq=0)
