"""Chat templates: the GGUF's Jinja template in a sandbox, llama.cpp's built-ins, format_single."""
from __future__ import annotations

import functools
import os

import pytest

from pygguf.chat import (BUILTIN_FORMATS, ChatFormatter, ChatTemplateError, detect_builtin)
from pygguf.gguf import GGUFReader
from pygguf_cli.paths import default_model_path

SYS = {"role": "system", "content": "You are terse."}
U1 = {"role": "user", "content": "Hello"}
A1 = {"role": "assistant", "content": "Hi there"}
U2 = {"role": "user", "content": "Who are you?"}
CONV = [SYS, U1, A1, U2]

# Hand-written from llama.cpp's llm_chat_apply_template output for CONV, add_ass=True.
EXPECTED = {
    "chatml": ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
               "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n"
               "<|im_start|>assistant\n"),
    "llama2": "[INST] You are terse.\nHello [/INST]Hi there</s>[INST] Who are you? [/INST]",
    "llama2-sys": ("[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello [/INST]Hi there</s>"
                   "[INST] Who are you? [/INST]"),
    "llama2-sys-bos": ("[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello [/INST]Hi there</s>"
                       "<s>[INST] Who are you? [/INST]"),
    "llama2-sys-strip": ("[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello [/INST]Hi there</s>"
                         "[INST] Who are you? [/INST]"),
    "mistral-v1": " [INST] You are terse.\n\nHello [/INST] Hi there</s> [INST] Who are you? [/INST]",
    "mistral-v3": "[INST] You are terse.\n\nHello[/INST] Hi there</s>[INST] Who are you?[/INST]",
    "mistral-v7": ("[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>"
                   "[INST] Who are you?[/INST]"),
    "llama3": ("<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "phi3": ("<|system|>\nYou are terse.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
             "<|user|>\nWho are you?<|end|>\n<|assistant|>\n"),
    "zephyr": ("<|system|>\nYou are terse.<|endoftext|>\n<|user|>\nHello<|endoftext|>\n"
               "<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you?<|endoftext|>\n<|assistant|>\n"),
    "gemma": ("<start_of_turn>user\nYou are terse.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there"
              "<end_of_turn>\n<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model\n"),
    "vicuna": "You are terse.\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you?\nASSISTANT:",
    "vicuna-orca": ("SYSTEM: You are terse.\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you?\n"
                    "ASSISTANT:"),
    "alpaca": ("You are terse.\n\n### Instruction:\nHello\n\n### Response:\nHi there\n\n"
               "### Instruction:\nWho are you?\n\n### Response:\n"),
}

SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_every_builtin_has_an_expected_string():
    assert set(EXPECTED) == set(BUILTIN_FORMATS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_renders_llama_cpp_layout(name):
    fmt = ChatFormatter.from_metadata({}, override=name)
    assert fmt.source == f"built-in {name}"
    assert fmt.render(CONV) == EXPECTED[name]


def test_builtin_strip_variant_trims_content():
    fmt = ChatFormatter.from_metadata({}, override="llama2-sys-strip")
    assert fmt.render([{"role": "user", "content": "  hi \n"}]) == "[INST] hi [/INST]"


def test_generation_prompt_off():
    fmt = ChatFormatter.from_metadata({}, override="chatml")
    assert fmt.render([U1], add_generation_prompt=False) == "<|im_start|>user\nHello<|im_end|>\n"


def test_unknown_builtin_name_is_an_error():
    with pytest.raises(ChatTemplateError, match="unknown chat template 'nope'"):
        ChatFormatter.from_metadata({}, override="nope")


def test_no_template_falls_back_to_chatml():
    fmt = ChatFormatter.from_metadata({"general.architecture": "llama"})
    assert fmt.source == "fallback chatml"
    assert fmt.render([U1]) == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"


# --- detection (llama.cpp's heuristics) ------------------------------------------------------

CODELLAMA_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}")


@pytest.mark.parametrize("text,name", [
    ("{{ '<|im_start|>' + m }}", "chatml"),
    ("{{ '<|im_start|>' }}<|im_sep|>", None),
    ("[INST] <<SYS>> content.strip()", "llama2-sys-strip"),
    ("{{ bos_token + '[INST] ' }} <<SYS>>", "llama2-sys-bos"),
    ("[INST] <<SYS>>", "llama2-sys"),
    ("[INST] no system", "llama2"),
    ("[SYSTEM_PROMPT] [INST]", "mistral-v7"),
    ("{{ ' [INST] ' + system_message }}", "mistral-v1"),
    ("[AVAILABLE_TOOLS][INST]", "mistral-v3"),
    ("<|start_header_id|>x<|end_header_id|>", "llama3"),
    ("<|user|> <|assistant|> <|end|>", "phi3"),
    ("<|user|>{{ x }}<|endoftext|>", "zephyr"),
    ("<start_of_turn>", "gemma"),
    ("USER: x ASSISTANT: y", "vicuna"),
    ("SYSTEM: USER: x ASSISTANT: y", "vicuna-orca"),
    ("llama3", "llama3"),
    ("{{ nothing known }}", None),
])
def test_detect_builtin(text, name):
    assert detect_builtin(text) == name


def test_codellama_jinja_matches_its_detected_builtin():
    meta = {"tokenizer.chat_template": CODELLAMA_TEMPLATE, "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>"],
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    fmt = ChatFormatter.from_metadata(meta)
    assert fmt.source == "gguf" and fmt.detected_builtin == "llama2-sys-bos"
    text = fmt.render([SYS, U1, A1, U2])
    assert text == ("<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello [/INST] Hi there </s>"
                    "<s>[INST] Who are you? [/INST]")
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        fmt.render([U1, U2])


# --- the GGUF's own Jinja template ------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _smollm2_metadata():
    path = default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not fetched ({path}): run `make model`")
    with GGUFReader(path) as reader:
        return dict(reader.metadata)


def test_smollm2_template_renders_chatml_with_default_system():
    fmt = ChatFormatter.from_metadata(_smollm2_metadata())
    assert fmt.source == "gguf" and fmt.detected_builtin == "chatml"
    assert fmt.special_tokens["bos_token"] == "<|im_start|>"
    assert fmt.render([U1]) == (f"<|im_start|>system\n{SMOL_SYSTEM}<|im_end|>\n"
                                "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    # An explicit system message replaces the default one: then it is exactly the chatml built-in.
    assert fmt.render(CONV) == EXPECTED["chatml"]


def test_smollm2_format_single_keeps_cache_prefix():
    fmt = ChatFormatter.from_metadata(_smollm2_metadata())
    first = fmt.format_single([], U1)
    assert first == fmt.render([U1])
    second = fmt.format_single([U1, A1], U2)
    # The model's reply stopped on <|im_end|>: the template's newline after it is fed now.
    assert second == "\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n"
    assert first + "Hi there<|im_end|>" + second == fmt.render([U1, A1, U2])


def test_format_single_assistant_turn_has_no_generation_prompt():
    fmt = ChatFormatter.from_metadata({}, override="chatml")
    assert fmt.format_single([U1], A1, add_generation_prompt=False) == \
        "<|im_start|>assistant\nHi there<|im_end|>\n"


def test_format_single_refuses_a_template_that_rewrites_history():
    fmt = _jinja("{{ messages | length }}:{% for m in messages %}{{ m.content }}{% endfor %}")
    with pytest.raises(ChatTemplateError, match="re-fed"):
        fmt.format_single([U1], U2)   # the count at the front changes with every message


# --- Jinja features HF templates use -------------------------------------------------------------

def _jinja(text):
    return ChatFormatter.from_metadata({"tokenizer.chat_template": text})


def test_hf_globals_and_filters():
    fmt = _jinja("{{ strftime_now('%Y') | length }}|{{ {'a': 'é'} | tojson }}|"
                 "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}"
                 "{% endfor %}|{% generation %}G{% endgeneration %}|{{ add_generation_prompt }}")
    assert fmt.render([U1, U2]) == '4|{"a": "é"}|Hello|G|True'


def test_trim_and_lstrip_blocks_like_hf():
    fmt = _jinja("{% for m in messages %}\n    {% if true %}{{ m.content }}{% endif %}\n{% endfor %}")
    assert fmt.render([U1, U2]) == "HelloWho are you?"


def test_compile_error_is_typed():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        _jinja("{% for m in messages %}")


def test_bad_messages_are_typed():
    fmt = ChatFormatter.from_metadata({}, override="chatml")
    with pytest.raises(ChatTemplateError, match="message 0"):
        fmt.render([{"role": "user"}])


# --- the sandbox ---------------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% if ''.__class__ %}leak{% endif %}",
    "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "{{ joiner.__init__.__globals__['os'].system('touch {marker}') }}",
    "{{ namespace.__init__.__globals__.os.system('touch {marker}') }}",
    "{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}",
    "{{ raise_exception.__globals__['os'].system('touch {marker}') }}",
    "{{ strftime_now.__globals__.datetime }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{{ '{0.__class__}'.format(messages) }}",
    "{{ self._TemplateReference__context }}",
    "{{ request.application.__globals__ }}",
    "{% set x = messages.append({'role': 'x', 'content': 'y'}) %}{{ messages | length }}",
    "{{ range.__globals__ }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_escape_fails_cleanly_and_runs_nothing(payload, tmp_path):
    marker = tmp_path / "pwned"
    text = payload.replace("{marker}", str(marker))
    with pytest.raises(ChatTemplateError) as info:
        _jinja(text).render([U1])
    assert "sandbox" in str(info.value) or "render" in str(info.value)
    assert not marker.exists()
    assert not os.path.exists("pwned")


def test_output_bomb_is_stopped(monkeypatch):
    import pygguf.chat as chat
    monkeypatch.setattr(chat.limits, "MAX_TEXT", 10_000)
    bomb = "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxx{% endfor %}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="exceeds"):
        _jinja(bomb).render([U1])


def test_gguf_template_that_does_not_compile_falls_back_to_detected_builtin():
    fmt = ChatFormatter.from_metadata({"tokenizer.chat_template": "{% weird %}<|im_start|>"})
    assert fmt.source == "built-in chatml"
    assert fmt.render([U1]) == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"


def test_format_single_owes_the_rest_of_the_turn_ending():
    chatml = ChatFormatter.from_metadata({}, override="chatml")
    assert chatml.format_single([U1, A1], U2, generated_end="<|im_end|>").startswith("\n<|im_start|>user")
    alpaca = ChatFormatter.from_metadata({}, override="alpaca")
    assert alpaca.format_single([U1, A1], U2, generated_end="</s>") == \
        "\n\n### Instruction:\nWho are you?\n\n### Response:\n"
    llama3 = ChatFormatter.from_metadata({}, override="llama3")
    assert llama3.format_single([U1, A1], U2, generated_end="<|eot_id|>").startswith("<|start_header_id|>user")
    assert chatml.assistant_turn_ending([U1, A1]) == "<|im_end|>\n"


# ---- the templates other families ship ---------------------------------------------------------

FAMILY_TEMPLATES = {   # llama.cpp's tokenizer test file -> the built-in its heuristics pick
    "ggml-vocab-qwen2.gguf": "chatml",
    "ggml-vocab-phi-3.gguf": "phi3",
}


@pytest.mark.parametrize("fname", sorted(FAMILY_TEMPLATES))
def test_family_gguf_templates_render_in_the_sandbox_like_their_builtin(fname):
    """Qwen2's and Phi-3's own Jinja templates (from llama.cpp's vocab files) render through the
    sandbox, are recognised as llama.cpp's built-in, and agree with it where the template adds
    nothing of its own (Qwen2's default system turn, Phi-3's leading BOS text)"""
    from pygguf.gguf import GGUFReader
    from pygguf_cli.paths import vocab_dir

    path = vocab_dir() / fname
    if not path.exists():
        pytest.skip(f"{fname} not fetched (make vocab)")
    with GGUFReader(path) as r:
        metadata = dict(r.metadata)
    formatter = ChatFormatter.from_metadata(metadata)
    assert formatter.source == "gguf" and formatter.detected_builtin == FAMILY_TEMPLATES[fname]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a colour."}]
    builtin = ChatFormatter.from_metadata(metadata, override=FAMILY_TEMPLATES[fname])
    if fname == "ggml-vocab-phi-3.gguf":          # its template drops system turns and starts with bos_token
        chat = messages[1:]
        assert formatter.render(chat) == metadata_bos(metadata) + builtin.render(chat)
    else:
        assert formatter.render(messages) == builtin.render(messages)


def metadata_bos(metadata) -> str:
    return metadata["tokenizer.ggml.tokens"][metadata["tokenizer.ggml.bos_token_id"]]
