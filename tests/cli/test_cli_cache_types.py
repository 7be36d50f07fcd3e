"""-ctk/--cache-type-k and -ctv/--cache-type-v: pygguf and pygguf-perplexity hand them to the
model loader; the choices are the model's cache types."""
from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from test_cli import Harness, invoke
from pygguf_cli.options import CACHE_TYPES
from pygguf.model import kv_cache


def test_the_choices_are_the_models_cache_types():
    assert CACHE_TYPES == kv_cache.CACHE_TYPES


def test_cache_types_reach_the_loader(tmp_path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    result, h = invoke(["-m", model, "-p", "Hi", "-n", "2", "-ctk", "q8_0", "--cache-type-v", "Q4_0"])
    assert result.exit_code == 0, result.output
    assert (h.load_calls[0][1]["type_k"], h.load_calls[0][1]["type_v"]) == ("q8_0", "q4_0")
    result, h = invoke(["-m", model, "-p", "Hi", "-n", "2", "--cache_type_k", "q4_0"])
    assert (h.load_calls[0][1]["type_k"], h.load_calls[0][1]["type_v"]) == ("q4_0", "f16")
    result, h = invoke(["-m", model, "-p", "Hi", "-n", "2"])
    assert (h.load_calls[0][1]["type_k"], h.load_calls[0][1]["type_v"]) == ("f16", "f16")


def test_an_unknown_cache_type_is_a_usage_error(tmp_path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    result, h = invoke(["-m", model, "-p", "Hi", "-ctv", "q5_1"], Harness())
    assert result.exit_code != 0 and not h.load_calls
    assert "error: invalid value for -ctv: " in result.stderr and "'f16', 'q8_0', 'q4_0'" in result.stderr


def test_perplexity_passes_the_cache_types(tmp_path, monkeypatch):
    from pygguf_cli import perplexity as cli
    from tools.test_perplexity import BigramModel, FakeTokenizer
    text = tmp_path / "t.txt"
    text.write_text("anything\n")
    calls = []

    def load(*args):
        calls.append(args)
        return BigramModel(np.zeros((4, 4)), FakeTokenizer([0, 1, 2, 3] * 6))

    monkeypatch.setattr(cli, "load_model", load)
    result = CliRunner().invoke(cli.main, ["-m", "x.gguf", "-f", str(text), "-c", "8", "-ctk", "q8_0", "-ctv", "q8_0"])
    assert result.exit_code == 0, result.output
    assert calls[-1][-1] == ("q8_0", "q8_0")
    CliRunner().invoke(cli.main, ["-m", "x.gguf", "-f", str(text), "-c", "8"])
    assert calls[-1][-1] == ("f16", "f16")
