"""The chat template of Gemma 3 270M's GGUF, which has no tokenizer.chat_template, against what
llama.cpp does (tests/data/gemma3/chat.json, recorded by bench/record_gemma3.py through
llama-cpp-python 0.3.36): its built-in "gemma" and "chatml" texts (llm_chat_apply_template) on a
few conversations, and ChatML for a file without a template (common_chat_templates_init)."""
from __future__ import annotations

import functools
import json

import pytest

from pygguf.chat import ChatFormatter
from pygguf.gguf import GGUFReader
from pygguf_cli import paths
from pygguf_cli.interactive import InteractiveParams, plan_session
from testpaths import TESTS

DATA = json.loads((TESTS / "data" / "gemma3" / "chat.json").read_text(encoding="utf-8"))
RENDERS = DATA["renders"]


def case_id(render):
    return f"{render['conversation']}-{'add_ass' if render['add_ass'] else 'no_ass'}"


@pytest.mark.parametrize("render", RENDERS, ids=[case_id(r) for r in RENDERS])
@pytest.mark.parametrize("name", ["gemma", "chatml"])
def test_builtin_equals_llama_cpp(name, render):
    fmt = ChatFormatter.from_metadata({}, override=name)
    messages = DATA["conversations"][render["conversation"]]
    assert fmt.render(messages, add_generation_prompt=render["add_ass"]) == render[name]


def test_gemma_trims_ascii_whitespace_only():
    # llama.cpp's trim() is C isspace(): a no-break space, U+3000 or U+001F at an edge stays
    render = next(r for r in RENDERS if r["conversation"] == "whitespace_edges" and r["add_ass"])
    assert "\nBe brief.\n\nLine one\n  line two<end_of_turn>" in render["gemma"]
    assert "\u00a0reply with a no-break space\u3000<end_of_turn>" in render["gemma"]
    assert "\x1fcontrol edges\x1f<end_of_turn>" in render["gemma"]


def test_without_a_template_llama_cpp_uses_chatml():
    assert not DATA["gguf_has_tokenizer_chat_template"] and DATA["llama_model_chat_template"] is None
    fmt = ChatFormatter.from_metadata({})
    assert fmt.source == "fallback chatml"
    for render in RENDERS:
        assert render["null_template"] == render["chatml"]
        messages = DATA["conversations"][render["conversation"]]
        assert fmt.render(messages, add_generation_prompt=render["add_ass"]) == render["null_template"]
    # llama-cpp-python's Llama picks its own format instead (not llama.cpp's: recorded, not followed)
    assert DATA["llama_cpp_python_chat_format"] == "llama-2"


@functools.lru_cache(maxsize=1)
def gemma3_metadata():
    path = paths.gemma3_model_path()
    if not path.exists():
        pytest.skip(f"{path} is absent: run `{paths.FETCH_GEMMA3_COMMAND}`")
    with GGUFReader(path) as reader:
        return {k: v for k, v in reader.metadata.items()}


def test_gemma3_file_gets_what_llama_cpp_gives_it():
    metadata = gemma3_metadata()
    assert "tokenizer.chat_template" not in metadata
    fmt = ChatFormatter.from_metadata(metadata)
    assert fmt.source == "fallback chatml"
    assert fmt.special_tokens["bos_token"] == "<bos>" and fmt.special_tokens["eos_token"] == "<eos>"
    first = RENDERS[0]
    assert fmt.render(DATA["conversations"][first["conversation"]]) == first["null_template"]
    assert ChatFormatter.from_metadata(metadata, override="gemma").render(
        DATA["conversations"][first["conversation"]]) == first["gemma"]


def test_conversation_mode_follows_llama_completion():
    """No template: conversation mode stays off unless -cnv, which then warns as llama.cpp does;
    --chat-template counts as an explicit template (common_chat_templates_was_explicit)."""
    metadata = {"tokenizer.ggml.model": "llama"}            # like Gemma 3's: no tokenizer.chat_template
    assert not plan_session(InteractiveParams(), metadata, stdin_is_tty=True).conversation
    forced = plan_session(InteractiveParams(conversation=True), metadata, stdin_is_tty=True)
    assert forced.conversation
    assert any(n.startswith("chat template is not available or is not supported") for n in forced.notes)
    named = plan_session(InteractiveParams(chat_template="gemma"), metadata, stdin_is_tty=True)
    assert named.conversation and not any("not available" in n for n in named.notes)
    with_file_template = plan_session(InteractiveParams(), {"tokenizer.chat_template": "x"}, stdin_is_tty=True)
    assert with_file_template.conversation and not any("not available" in n for n in with_file_template.notes)
