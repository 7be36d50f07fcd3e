"""A model whose logits are not finite ends the generation with NonFiniteLogits (a PyggufError,
one line): NaN and +inf as the sampler refuses them, and -inf too, which a model never computes
(a -inf scale in its weights does) though a caller may set it to ban a token (ignore_eos)."""
from __future__ import annotations

import numpy as np
import pytest

from batch_fakes import FakeContextModel
from pygguf.api import Llama
from pygguf.errors import NonFiniteLogits


class PoisonedModel(FakeContextModel):
    """The fake model, with one logit of its second decode's rows replaced."""

    def __init__(self, value: float):
        super().__init__({}, n_ctx=64)
        self.value = value

    def logits_for(self, context, call):
        row = np.array(super().logits_for(context, call), dtype=np.float32)
        if call >= 1:
            row[3] = self.value
        return row


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_model_logits_end_the_generation(value):
    llm = Llama("fake.gguf", model=PoisonedModel(value))
    with pytest.raises(NonFiniteLogits) as e:
        llm("free text", max_tokens=4, temperature=0.8, seed=1)
    assert "\n" not in str(e.value)


def test_ignore_eos_bans_with_minus_inf_after_the_check():
    from pygguf.generation.sequence import Request
    from pygguf.sampling import SamplerParams
    llm = Llama("fake.gguf", model=FakeContextModel({}, n_ctx=64))
    tok = llm.tokenizer
    seq = llm.engine.new_sequence(Request(tok.encode("free text"), n_predict=3, ignore_eos=True,
                                          sampling=SamplerParams(seed=1)))
    llm.engine.admit(seq)
    assert list(llm.engine.generate(seq)) is not None and not set(seq.tokens) & set(tok.eog_ids)
