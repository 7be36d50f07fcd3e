"""SamplerParams checks its values against llama.cpp's ranges (common/arg.cpp, src/llama-sampler.cpp):
a bad one is a SamplerValueError (a PyggufError and a ValueError) naming the field, whatever its type
or size, and never an OverflowError or a str() of a 5000-digit integer; values llama.cpp clamps or
treats as "off" keep that meaning and say so. A tiny temperature samples like greedy instead of
overflowing float32."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pygguf.errors import PyggufError, SamplerValueError, shown_value
from pygguf.sampling import Sampler, SamplerParams
from pygguf.sampling.params import default

FLOAT_FIELDS = ["temp", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty",
                "dry_multiplier", "dry_base", "xtc_probability", "xtc_threshold", "top_n_sigma", "dynatemp_range",
                "dynatemp_exponent", "mirostat_lr", "mirostat_ent"]
INT_FIELDS = ["repeat_last_n", "dry_allowed_length", "dry_penalty_last_n", "mirostat", "min_keep", "seed"]
HUGE = 10 ** 5000                               # str() of it raises ValueError (4300-digit limit)


def value_id(value) -> str:
    return shown_value(value).replace(" ", "_")


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, HUGE, "0.5", None, True], ids=value_id)
def test_a_float_field_refuses_what_is_not_a_finite_number(name, value):
    with pytest.raises(SamplerValueError) as info:
        SamplerParams(**{name: value})
    assert info.value.field == name and isinstance(info.value, PyggufError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{name} = ") and len(str(info.value)) < 200


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [HUGE, -HUGE, 1e30, -1e30, 2.5, math.nan, math.inf, "3", True], ids=value_id)
def test_an_int_field_refuses_what_is_not_an_integer_in_range(name, value):
    with pytest.raises(SamplerValueError) as info:
        SamplerParams(**{name: value})
    assert info.value.field == name
    assert "digits" in str(info.value) if isinstance(value, int) and abs(value) == HUGE else True


@pytest.mark.parametrize("name, value, problem", [
    ("repeat_penalty", 0.0, "greater than 0"),
    ("repeat_penalty", -1.0, "greater than 0"),
    ("repeat_penalty", 1e-45, "greater than 0"),          # llama.cpp: 1/x must be finite too
    ("top_p", -0.1, "[0, 1]"),
    ("typical_p", -0.1, "[0, 1]"),
    ("xtc_probability", -0.5, "[0, 1]"),
    ("xtc_threshold", -0.5, ">= 0"),
    ("repeat_last_n", -1, "[0, 2147483647]"),
    ("repeat_last_n", 2 ** 31, "[0, 2147483647]"),
    ("dry_penalty_last_n", -2, "[-1, 2147483647]"),
    ("mirostat", 3, "0 (off), 1 or 2"),
    ("min_keep", -1, "[0, 2147483647]"),
    ("dynatemp_exponent", -1.0, ">= 0"),
    ("seed", 2 ** 64, "integer in"),
    ("logit_bias", {1: math.nan}, "below +inf"),
    ("logit_bias", {1: math.inf}, "below +inf"),
    ("logit_bias", {HUGE: 1.0}, "integer in"),
], ids=lambda v: value_id(v) if not isinstance(v, dict) else "bias")
def test_out_of_range_values_are_refused_with_the_accepted_range(name, value, problem):
    with pytest.raises(SamplerValueError) as info:
        SamplerParams(**{name: value})
    assert info.value.field == name and problem in info.value.problem


@pytest.mark.parametrize("name, value, note", [
    ("top_p", 2.0, "top-p off"),
    ("typical_p", 1.5, "typical sampling off"),
    ("xtc_probability", 2.0, "every step"),
    ("seed", 2 ** 40, "modulo 2^32"),
    ("seed", -5, "modulo 2^32"),
])
def test_values_llama_cpp_reads_its_own_way_are_kept_and_noted(name, value, note):
    params = SamplerParams(**{name: value})
    assert getattr(params, name) == value
    assert [(field, text) for field, text in params.notes() if note in text] and params.notes()[0][0] == name


def test_defaults_and_ordinary_values_have_no_notes():
    assert SamplerParams().notes() == []
    assert SamplerParams(temp=-1.0, top_k=-1, top_p=1.0, min_p=1.5, seed=-1, logit_bias={2: -math.inf}).notes() == []


def test_numbers_are_normalised():
    params = SamplerParams(top_k=40.0, temp=1, seed=np.int64(7), top_p=np.float32(0.5))
    assert type(params.top_k) is int and type(params.temp) is float and params.seed == 7 and params.top_p == 0.5
    assert SamplerParams(top_k=HUGE).top_k == 2 ** 31 - 1         # past the vocabulary: every token, as top_k = n
    assert SamplerParams(top_k=-1e30).top_k == -2 ** 31           # <= 0: off


def test_the_sampler_rechecks_fields_set_after_construction():
    params = SamplerParams()
    params.top_p = math.nan
    with pytest.raises(SamplerValueError, match="top_p"):
        Sampler(params, 10)


@pytest.mark.parametrize("temp", [1e-45, 1e-40, 1e-30, 1e-50])
@pytest.mark.parametrize("chain", ["fast", "python"])
def test_a_tiny_temperature_samples_the_best_token(temp, chain):
    rng = np.random.default_rng(1)
    samplers = "top_k;temperature" if chain == "fast" else "typ_p;temperature"   # typical keeps it in Python
    sampler = Sampler(SamplerParams(temp=temp, top_k=0, top_p=1.0, min_p=0.0, typical_p=0.999, samplers=samplers,
                                    seed=3), 500)
    for _ in range(20):
        logits = (rng.standard_normal(500) * 30).astype(np.float32)
        assert sampler.sample(logits) == int(np.argmax(logits))


def test_the_api_hands_bad_values_to_sampler_params():
    from pygguf.api import completion_request
    base = dict(n_predict=4, temperature=default("temp"), top_k=default("top_k"), top_p=default("top_p"),
                min_p=default("min_p"), repeat_penalty=default("repeat_penalty"), stop=None, seed=1, logprobs=None)
    for name, value in [("temperature", math.inf), ("top_k", math.inf), ("seed", HUGE), ("seed", math.nan),
                        ("repeat_penalty", 0), ("top_p", math.nan), ("min_p", "0.1")]:
        with pytest.raises(SamplerValueError):
            completion_request([1, 2], **{**base, name: value})
    assert completion_request([1, 2], **{**base, "top_k": -1e30}).sampling.top_k == -2 ** 31
