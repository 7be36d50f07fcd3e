"""Weights repacked at load (csrc/model/weights.c): a model whose Q4_0 / Q4_1 / Q8_0 (8-row) or Q4_K / Q5_K (sliced) matrices are
repacked gives the same logits, bit for bit, as the same model multiplying by the mapped GGUF rows,
at one token (decode), a few (the register tiles) and many (the panels), at any thread count; and
after the ISA is switched to one without a repacked kernel, the GGUF rows serve."""
import numpy as np
import pytest

from model_factory import encode, missing_kernels, random_weights, tiny_config
from model_runner import Runner
from pygguf.model import kernels
from pygguf.model import Model
from pygguf_cli.paths import default_model_path
from pygguf.gguf.types import by_name

R8_TYPES = ["Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K"]


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    return config, random_weights(config, seed=11)


def logits(tensors, config, tokens, repack, n_threads, n_batch):
    with Model.from_tensors(config, tensors, n_ctx=64, n_threads=n_threads, n_batch=n_batch, repack=repack) as m:
        run = Runner(m)
        out = run.eval_all(tokens)
        one = [run.eval([t]).copy() for t in (7, 8, 9)]   # decode steps after the prompt
    return np.vstack([out] + one)


@pytest.mark.skipif(not kernels.isa_supported("avx2"), reason="repacked kernels are x86 (AVX2) only")
@pytest.mark.parametrize("name", R8_TYPES)
def test_repacked_model_equals_gguf_layout(tiny, name):
    qtype = by_name(name)
    if missing_kernels(qtype):
        pytest.skip(missing_kernels(qtype))
    config, weights = tiny
    tensors = encode(weights, qtype, config)[0]
    tokens = list(np.random.default_rng(2).integers(0, config.n_vocab, 40))
    want = logits(tensors, config, tokens, repack=False, n_threads=1, n_batch=64)
    for n_threads, n_batch in ((1, 64), (2, 3), (3, 20), (2, 64)):   # 40 in one batch, 3s, 20s
        got = logits(tensors, config, tokens, repack=True, n_threads=n_threads, n_batch=n_batch)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (name, n_threads, n_batch)


def eval_scalar(m, tokens):
    before = kernels.active_isa()
    kernels.set_isa("scalar")
    try:
        return Runner(m).eval_all(tokens)
    finally:
        kernels.set_isa(before)


@pytest.mark.skipif(not kernels.isa_supported("avx2"), reason="repacked kernels are x86 (AVX2) only")
def test_scalar_isa_uses_the_gguf_rows(tiny):
    config, weights = tiny
    tensors = encode(weights, by_name("Q4_1"), config)[0]
    tokens = [3, 1, 4, 1, 5]
    with Model.from_tensors(config, tensors, n_ctx=16, n_threads=1, repack=False) as m:
        want = eval_scalar(m, tokens)
    with Model.from_tensors(config, tensors, n_ctx=16, n_threads=1, repack=True) as m:
        got = eval_scalar(m, tokens)
    assert np.array_equal(got, want)


def test_smollm2_repacked_equals_gguf_layout():
    path = default_model_path()
    if not path.exists():
        pytest.skip(f"{path} not fetched (make model)")
    tokens = [1, 504, 3458, 282, 253, 1345, 314, 28, 216, 1052]
    out = {}
    for repack in (True, False):
        with Model.load(path, n_ctx=32, n_threads=2, repack=repack) as m:
            run = Runner(m)
            out[repack] = np.vstack([run.eval_all(tokens), run.eval([42])[None]])
    assert np.array_equal(out[True].view(np.uint32), out[False].view(np.uint32))
