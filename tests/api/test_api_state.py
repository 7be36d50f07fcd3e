"""Llama.save_state / load_state (llama-cpp-python's names) over pygguf's state format, on SmolLM2:
the same text with the same seed after a reload, one prompt token evaluated again (or only the
extension of a longer prompt), other settings refused, files written and checked."""
from __future__ import annotations

import pytest

from pygguf.api import Llama, LlamaState
from pygguf.errors import StateError, StateMismatch
from pygguf_cli import paths

SMOL = paths.default_model_path()
PROMPT = ("The llama is a domesticated South American camelid, widely used as a meat and pack animal "
          "by Andean cultures since the pre-Columbian era. Llamas are social animals and")
KWARGS = dict(max_tokens=12, temperature=0.8, seed=7)

pytestmark = pytest.mark.skipif(not SMOL.is_file(), reason=f"default model absent ({SMOL}); run `make model`")


def llama(**kwargs) -> Llama:
    return Llama(str(SMOL), n_ctx=kwargs.pop("n_ctx", 256), n_threads=2, **kwargs)


def prompt_evaluated(llm: Llama) -> int:
    return llm._last_seq.timings.n_prompt_eval


@pytest.fixture(scope="module")
def reference():
    """the text without any saved state, and the state a run of PROMPT left"""
    with llama() as llm:
        text = llm(PROMPT, **KWARGS)["choices"][0]["text"]
        return text, llm.save_state()


@pytest.mark.parametrize("cache", [None, "q8_0", "q4_0"])
def test_reloaded_state_gives_the_same_text_evaluating_one_token(cache):
    with llama(type_k=cache, type_v=cache) as llm:
        text = llm(PROMPT, **KWARGS)["choices"][0]["text"]
        saved = llm.save_state()
    assert isinstance(saved, LlamaState) and saved.n_tokens == len(saved.input_ids) > len(llm.tokenize(PROMPT))
    assert saved.llama_state_size == len(saved.llama_state) and saved.seed == llm.seed
    with llama(type_k=cache, type_v=cache) as fresh:
        fresh.load_state(saved)
        assert fresh(PROMPT, **KWARGS)["choices"][0]["text"] == text
        assert prompt_evaluated(fresh) == 1
        assert fresh._last_seq.cached_prompt_tokens == len(fresh.tokenize(PROMPT)) - 1


def test_a_longer_prompt_evaluates_only_its_extension():
    with llama() as llm:
        tokens = llm.tokenize(PROMPT)
        llm(tokens, max_tokens=1, seed=1)            # leaves exactly the prompt's cells evaluated
        saved = llm.save_state()
    assert list(saved.input_ids) == tokens
    longer = tokens + llm.tokenize(" they hum to each other.", add_bos=False)
    with llama() as fresh, llama() as scratch:
        fresh.load_state(saved)
        assert fresh(longer, **KWARGS)["choices"][0]["text"] == scratch(longer, **KWARGS)["choices"][0]["text"]
        assert prompt_evaluated(fresh) == len(longer) - len(tokens)


def test_state_of_other_settings_is_refused(reference):
    _, saved = reference
    with llama(n_ctx=128) as other:
        with pytest.raises(StateMismatch, match="context size -c 256, this run has 128"):
            other.load_state(saved)
    with llama(type_k="q8_0") as other:
        with pytest.raises(StateMismatch, match="-ctk f16, this run has q8_0"):
            other.load_state(saved)


def test_state_files_round_trip_and_are_checked(tmp_path, reference):
    text, saved = reference
    path = tmp_path / "state.bin"
    with llama() as llm:
        llm.load_state(saved)
        llm.save_state_file(path)
    assert path.read_bytes() == saved.llama_state
    with llama() as fresh:
        fresh.load_state_file(path)
        assert fresh(PROMPT, **KWARGS)["choices"][0]["text"] == text
        assert prompt_evaluated(fresh) == 1
        path.write_bytes(saved.llama_state[:-7])
        with pytest.raises(StateError, match="state.bin: truncated"):
            fresh.load_state_file(path)
