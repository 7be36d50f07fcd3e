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
