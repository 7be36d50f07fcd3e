"""Thread count never changes a logit: the forward's stages hand their work out in chunks, and a
thread that runs ahead takes chunks from the others (pg_pool_next_chunks), so which thread
computes a value varies from run to run, but every value depends only on its own inputs. Checked
at 1, 2 and 3 threads (more threads than this machine's cores included), on a tiny random model
and on SmolLM2, whose 9 query heads on 3 KV heads get one token's attention cut inside a KV group
at 2 threads."""
import numpy as np
import pytest

from model_factory import encode, missing_kernels, random_weights, tiny_config
from model_runner import Runner
from pygguf_cli import paths
from pygguf.model import Model
from pygguf.model.batch import Batch
from pygguf.gguf.types import by_name

THREADS = (1, 2, 3)


def runs(load, prompts, step_tokens):
    """For each prompt its own sequence: every logit of its prefill, then one batched step of a
    token per sequence; by thread count"""
    out = {}
    for threads in THREADS:
        with load(threads) as m:
            prefill = [m.decode(Batch.of(p, 0, s, "all")).copy() for s, p in enumerate(prompts)]
            step_batch = Batch(len(prompts))
            for s, (token, p) in enumerate(zip(step_tokens, prompts)):
                step_batch.add(token, len(p), s, True)
            step = m.decode(step_batch).copy()
            out[threads] = prefill + [step]
    return out


def assert_same(out, what):
    for threads in THREADS[1:]:
        for i, (a, b) in enumerate(zip(out[1], out[threads])):
            assert np.array_equal(a, b), f"{what}: {threads} threads changed the logits of part {i}"


@pytest.mark.parametrize("name", ["Q4_1", "Q4_K", "F16"])
def test_tiny_model_any_thread_count(name):
    qtype = by_name(name)
    reason = missing_kernels(qtype)
    if reason:
        pytest.skip(reason)
    config = tiny_config(n_embd=768, n_head=12, n_head_kv=4)   # 3 query heads per KV head, as SmolLM2
    tensors, _ = encode(random_weights(config, seed=4), qtype, config)
    prompts = [[5, 17, 250, 3, 99, 42, 7, 8, 9], [1], [299, 0, 8, 8]]
    out = runs(lambda t: Model.from_tensors(config, tensors, n_ctx=32, n_threads=t, n_batch=16, n_seq=3),
               prompts, [11, 12, 13])
    assert_same(out, name)


def test_smollm2_any_thread_count():
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    rng = np.random.default_rng(7)
    prompts = [list(rng.integers(100, 5000, n)) for n in (24, 1, 9, 16)]
    out = runs(lambda t: Model.load(str(path), n_ctx=64, n_threads=t, n_batch=32, n_seq=4),
               prompts, [101, 202, 303, 404])
    assert_same(out, "SmolLM2")
    # a lone token's step too (one token: the attention cut inside a KV group)
    lone = []
    for threads in THREADS:
        with Model.load(str(path), n_ctx=64, n_threads=threads, n_batch=32) as m:
            run = Runner(m)
            run.eval(prompts[0])
            lone.append(run.eval([42]).copy())
    assert all(np.array_equal(lone[0], x) for x in lone[1:])


def test_a_model_pool_running_alone_under_contention_gives_the_same_logits():
    """When another process keeps taking its cores, a model's pool runs tasks on the caller alone
    for a while (csrc/core/threadpool.c): the caller takes every chunk, with nth = 1."""
    from pygguf._native import lib
    config = tiny_config(n_embd=768, n_head=12, n_head_kv=4)
    tensors, _ = encode(random_weights(config, seed=5), by_name("Q4_1"), config)
    prompt = [3, 17, 42, 7, 99, 5]
    m = Model.from_tensors(config, tensors, n_ctx=32, n_threads=2)
    try:
        together = m.decode(Batch.of(prompt, 0, 0, "all")).copy()
        lib.pg_pool_test_run_alone(m._pool.handle, 1)
        alone = m.decode(Batch.of(prompt, 0, 0, "all")).copy()
        again = m.decode(Batch.of(prompt, 0, 0, "all")).copy()    # the threads are back
    finally:
        m.close()
    assert np.array_equal(together, alone) and np.array_equal(together, again)
