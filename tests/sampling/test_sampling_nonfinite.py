"""NaN and infinite logits (a corrupt weight, an overflowing RoPE setting) never crash a sampler:
whatever the chain, the Sampler refuses them with NonFiniteLogits, and the filters themselves
stay well-defined on NaN."""
import numpy as np
import pytest

from pygguf.errors import NonFiniteLogits, PyggufError, SamplerError
from pygguf.sampling import Sampler, SamplerParams, filters
from pygguf.sampling.candidates import Candidates, top_positions, top_positions_numpy

N_VOCAB = 49152          # SmolLM2's: large enough for the C top-k and the strided threshold paths

CHAINS = {
    "default (C chain)": SamplerParams(seed=1),
    "greedy": SamplerParams(seed=1, temp=0.0),
    "top-k only": SamplerParams(seed=1, top_k=40, top_p=1.0, min_p=0.0),
    "mirostat 1": SamplerParams(seed=1, mirostat=1),
    "mirostat 2": SamplerParams(seed=1, mirostat=2),
    "typical": SamplerParams(seed=1, typical_p=0.5),
    "top-n-sigma": SamplerParams(seed=1, top_n_sigma=1.0),
    "xtc": SamplerParams(seed=1, xtc_probability=0.5, xtc_threshold=0.1),
    "dynatemp": SamplerParams(seed=1, dynatemp_range=0.5),
}


def poisoned(kind: str) -> np.ndarray:
    logits = np.random.default_rng(0).standard_normal(N_VOCAB).astype(np.float32)
    if kind == "one NaN":
        logits[123] = np.nan
    elif kind == "all NaN":
        logits[:] = np.nan
    elif kind == "one +inf":
        logits[77] = np.inf
    elif kind == "all -inf":
        logits[:] = -np.inf
    return logits


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("kind", ["one NaN", "all NaN", "one +inf"])
def test_non_finite_logits_are_refused_by_every_chain(chain, kind):
    # main: IndexError from top-k's threshold (all NaN), ValueError from mirostat, or a token drawn from NaNs
    sampler = Sampler(CHAINS[chain], N_VOCAB)
    with pytest.raises(NonFiniteLogits) as e:
        sampler.sample(poisoned(kind))
    assert isinstance(e.value, PyggufError) and "\n" not in str(e.value)


@pytest.mark.parametrize("chain", CHAINS)
def test_all_minus_inf_is_every_token_banned(chain):
    # main: "math domain error" (ValueError) from mirostat; greedy takes the first maximum, as llama.cpp's
    sampler = Sampler(CHAINS[chain], N_VOCAB)
    if chain == "greedy":
        assert sampler.sample(poisoned("all -inf")) == 0
        return
    with pytest.raises(SamplerError, match="every token banned"):
        sampler.sample(poisoned("all -inf"))


@pytest.mark.parametrize("chain", CHAINS)
def test_a_single_minus_inf_is_a_banned_token_not_an_error(chain):
    logits = poisoned("none")
    logits[5] = -np.inf
    token = Sampler(CHAINS[chain], N_VOCAB).sample(logits)
    assert 0 <= token < N_VOCAB and token != 5


@pytest.mark.parametrize("k", [1, 40, 1000])
def test_top_positions_with_nan_return_k_positions(k):
    logits = poisoned("all NaN")
    logits[:10] = np.arange(10, dtype=np.float32)
    for positions in (top_positions(logits, k), top_positions_numpy(logits, k)):
        assert positions.shape == (k,)
    assert list(top_positions_numpy(logits, 3)) == [9, 8, 7]


def test_top_k_filter_on_all_nan_keeps_k_candidates():
    cand = Candidates(np.arange(N_VOCAB, dtype=np.int64), poisoned("all NaN"), identity=True)
    assert len(filters.top_k(cand, 40)) == 40      # main: IndexError
