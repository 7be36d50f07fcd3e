"""Hostile hyper-parameters in a GGUF file's metadata give a ModelError (review of the family switches)."""
import math

import pytest

from pygguf.errors import ModelError
from pygguf.model.config import Config


def _md(arch, **keys):
    md = {"general.architecture": arch, f"{arch}.embedding_length": 64, f"{arch}.attention.head_count": 4,
          f"{arch}.block_count": 2, f"{arch}.feed_forward_length": 128, f"{arch}.vocab_size": 320}
    if arch == "qwen3moe":
        md.update({f"{arch}.expert_count": 8, f"{arch}.expert_used_count": 2})
    md.update({f"{arch}.{k.replace('__', '.')}": v for k, v in keys.items()})
    return md


@pytest.mark.parametrize("arch", ["gemma2", "gemma3", "qwen3moe", "llama"])
@pytest.mark.parametrize("keys", [
    {"attention__head_count": 0},            # ZeroDivisionError in family_switches
    {"attention__head_count": -1},           # math domain error (Gemma's attention scale)
    {"embedding_length": -64},
    {"embedding_length": 2},                 # head_dim 0: 1 / sqrt(0)
    {"attention__key_length": -4},
    {"block_count": 10**12},                 # a swa pattern / tensor table of 10^12 layers
    {"block_count": 2**70},
    {"embedding_length": 2**70},             # OverflowError on its way to C
    {"expert_feed_forward_length": 2**40},
    {"attention__sliding_window": 2**40},
    {"context_length": 2**40},
])
def test_bad_metadata_is_a_model_error(arch, keys):
    try:
        Config.from_metadata(_md(arch, **keys))
    except ModelError:
        return
    if arch in ("llama", "qwen3moe") and set(keys) <= {"attention__sliding_window"}:
        return                                # no sliding window in these families: the key is unread
    if arch != "qwen3moe" and set(keys) <= {"expert_feed_forward_length"}:
        return
    pytest.fail(f"{arch} {keys}: accepted")


def test_good_metadata_still_loads():
    c = Config.from_metadata(_md("gemma2"))
    assert c.n_layer == 2 and math.isclose(c.attn_scale, 1 / 4)


# issue 18: values of the wrong type (vocab_size as a string: ValueError on main), or not finite
def _llama_md(**changes):
    md = {"general.architecture": "llama", "llama.embedding_length": 64, "llama.attention.head_count": 4,
          "llama.block_count": 2, "llama.feed_forward_length": 128, "llama.vocab_size": 320}
    md.update({k.replace("__", "."): v for k, v in changes.items()})
    return md


@pytest.mark.parametrize("change", [
    {"llama__vocab_size": "\udcff\udcfe"},         # main: ValueError from int()
    {"llama__vocab_size": "320"},                  # a number spelled as a string is still the wrong type
    {"llama__vocab_size": [320]},                  # main: TypeError
    {"llama__vocab_size": 2.5},
    {"llama__vocab_size": True},
    {"llama__block_count": "2"},
    {"llama__rope__freq_base": "1e4"},
    {"llama__attention__layer_norm_rms_epsilon": float("nan")},
    {"llama__rope__freq_base": float("inf")},
    {"llama__vocab_size": "x" * 10**6},
])
def test_mistyped_hyper_parameters_are_a_model_error(change):
    with pytest.raises(ModelError) as e:
        Config.from_metadata(_llama_md(**change))
    assert len(str(e.value)) < 300


@pytest.mark.parametrize("value", [2**31, 2**32 - 1, 2**63])
def test_a_context_length_past_int32_names_the_key(value):
    # issue 18: OverflowError on its way to C, shown as "BufferError: cannot close exported pointers exist"
    with pytest.raises(ModelError, match=r"llama\.context_length .* is outside 0\.\.2147483647"):
        Config.from_metadata(_llama_md(llama__context_length=value))


@pytest.mark.parametrize("arch", [["llama"], 7, None, b"llama", "x" * 10**6])
def test_an_architecture_that_is_not_a_known_name(arch):
    # main: TypeError (unhashable list) for an array
    with pytest.raises(ModelError, match="unsupported architecture") as e:
        Config.from_metadata({**_llama_md(), "general.architecture": arch})
    assert len(str(e.value)) < 300
