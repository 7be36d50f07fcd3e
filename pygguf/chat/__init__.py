"""Chat templates: turn a list of {role, content} messages into the prompt text a model expects.

Two kinds of template:
- the Jinja template stored in the GGUF (`tokenizer.chat_template`), rendered in a SANDBOX because
  it comes from an untrusted file (rendering one unsandboxed was a remote-code-execution bug in
  llama-cpp-python): any attempt to reach Python internals raises `ChatTemplateError` before
  anything runs, and sizes and time are limited inside it (pygguf/chat/sandbox.py, limits.py);
- built-in formats selectable by name, with llama.cpp's names and output (`--chat-template NAME`),
  plus llama.cpp's substring heuristics that recognise a built-in from a template's text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from pygguf.chat.limits import TemplateLimitError  # noqa: F401  (re-exported)
from pygguf.chat.sandbox import compile_template, make_environment, render_template  # noqa: F401
from pygguf.errors import ChatTemplateError, TemplateRewritesHistory  # noqa: F401  (re-exported)

Message = Mapping[str, str]


# ---------------------------------------------------------------------------------------------
# Built-in formats (llama.cpp's llm_chat_apply_template, by name). Each takes the messages and
# add_ass (append the opening of an assistant turn) and returns the prompt text.

_C_SPACE = " \t\n\v\f\r"   # C isspace() in the "C" locale


def _strip(text: str) -> str:
    """llama.cpp's trim(): ASCII whitespace only (a no-break space or U+3000 at an edge stays)."""
    return text.strip(_C_SPACE)


def _format_chatml(messages: Sequence[Message], add_ass: bool) -> str:
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" if add_ass else "")


def _llama2_family(with_system: bool, bos_inside: bool, strip: bool):
    """CodeLlama / Llama-2 `[INST]` format; the first `<s>` is the tokenizer's BOS, not text."""
    def render(messages: Sequence[Message], add_ass: bool) -> str:
        out = ["[INST] "]
        inside_turn = True
        for m in messages:
            content = _strip(m["content"]) if strip else m["content"]
            if not inside_turn:
                out.append("<s>[INST] " if bos_inside else "[INST] ")
                inside_turn = True
            if m["role"] == "system":
                out.append(f"<<SYS>>\n{content}\n<</SYS>>\n\n" if with_system else content + "\n")
            elif m["role"] == "user":
                out.append(content + " [/INST]")
            else:
                out.append(content + "</s>")
                inside_turn = False
        return "".join(out)
    return render


def _mistral_v1_v3(leading_space: str, trim_assistant: bool):
    def render(messages: Sequence[Message], add_ass: bool) -> str:
        out = []
        inside_turn = False
        for m in messages:
            if not inside_turn:
                out.append(f"{leading_space}[INST] ")
                inside_turn = True
            if m["role"] == "system":
                out.append(m["content"] + "\n\n")
            elif m["role"] == "user":
                out.append(m["content"] + leading_space + "[/INST]")
            else:
                content = _strip(m["content"]) if trim_assistant else m["content"]
                out.append(f" {content}</s>")
                inside_turn = False
        return "".join(out)
    return render


def _format_mistral_v7(messages: Sequence[Message], add_ass: bool) -> str:
    out = []
    for m in messages:
        if m["role"] == "system":
            out.append(f"[SYSTEM_PROMPT] {m['content']}[/SYSTEM_PROMPT]")
        elif m["role"] == "user":
            out.append(f"[INST] {m['content']}[/INST]")
        else:
            out.append(f" {m['content']}</s>")
    return "".join(out)


def _format_llama3(messages: Sequence[Message], add_ass: bool) -> str:
    out = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{_strip(m['content'])}<|eot_id|>"
                  for m in messages)
    return out + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if add_ass else "")


def _format_phi3(messages: Sequence[Message], add_ass: bool) -> str:
    out = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return out + ("<|assistant|>\n" if add_ass else "")


def _format_zephyr(messages: Sequence[Message], add_ass: bool) -> str:
    out = "".join(f"<|{m['role']}|>\n{m['content']}<|endoftext|>\n" for m in messages)
    return out + ("<|assistant|>\n" if add_ass else "")


def _format_gemma(messages: Sequence[Message], add_ass: bool) -> str:
    # Gemma has no system role: the system text is merged into the next user turn.
    out = []
    pending_system = ""
    for m in messages:
        if m["role"] == "system":
            pending_system += _strip(m["content"])
            continue
        role = "model" if m["role"] == "assistant" else m["role"]
        out.append(f"<start_of_turn>{role}\n")
        if pending_system and role != "model":
            out.append(pending_system + "\n\n")
            pending_system = ""
        out.append(_strip(m["content"]) + "<end_of_turn>\n")
    return "".join(out) + ("<start_of_turn>model\n" if add_ass else "")


def _vicuna(orca: bool):
    def render(messages: Sequence[Message], add_ass: bool) -> str:
        out = []
        for m in messages:
            if m["role"] == "system":
                out.append(f"SYSTEM: {m['content']}\n" if orca else m["content"] + "\n\n")
            elif m["role"] == "user":
                out.append(f"USER: {m['content']}\n")
            elif m["role"] == "assistant":
                out.append(f"ASSISTANT: {m['content']}</s>\n")
        return "".join(out) + ("ASSISTANT:" if add_ass else "")
    return render


def _format_alpaca(messages: Sequence[Message], add_ass: bool) -> str:
    # Not a llama.cpp built-in: the Stanford Alpaca layout, as pygguf's own named format.
    out = []
    for m in messages:
        if m["role"] == "system":
            out.append(m["content"] + "\n\n")
        elif m["role"] == "user":
            out.append(f"### Instruction:\n{m['content']}\n\n")
        else:
            out.append(f"### Response:\n{m['content']}\n\n")
    return "".join(out) + ("### Response:\n" if add_ass else "")


BUILTIN_FORMATS: dict[str, Callable[[Sequence[Message], bool], str]] = {
    "chatml": _format_chatml,
    "llama2": _llama2_family(with_system=False, bos_inside=False, strip=False),
    "llama2-sys": _llama2_family(with_system=True, bos_inside=False, strip=False),
    "llama2-sys-bos": _llama2_family(with_system=True, bos_inside=True, strip=False),
    "llama2-sys-strip": _llama2_family(with_system=True, bos_inside=False, strip=True),
    "mistral-v1": _mistral_v1_v3(leading_space=" ", trim_assistant=False),
    "mistral-v3": _mistral_v1_v3(leading_space="", trim_assistant=True),
    "mistral-v7": _format_mistral_v7,
    "llama3": _format_llama3,
    "phi3": _format_phi3,
    "zephyr": _format_zephyr,
    "gemma": _format_gemma,
    "vicuna": _vicuna(orca=False),
    "vicuna-orca": _vicuna(orca=True),
    "alpaca": _format_alpaca,
}


def detect_builtin(template: str) -> str | None:
    """The built-in a template's text corresponds to, by llama.cpp's substring heuristics (the
    subset of formats pygguf implements), or None."""
    if template in BUILTIN_FORMATS:
        return template
    has = template.__contains__
    if has("<|im_start|>"):
        return None if has("<|im_sep|>") or has("<end_of_utterance>") else "chatml"  # phi4 / smolvlm
    if template.startswith("mistral") or has("[INST]"):
        if has("[SYSTEM_PROMPT]"):
            return "mistral-v7"
        if has("' [INST] ' + system_message") or has("[AVAILABLE_TOOLS]"):
            if has(" [INST]"):
                return "mistral-v1"
            return None if has('"[INST]"') else "mistral-v3"  # v3-tekken is not implemented
        if has("content.strip()"):
            return "llama2-sys-strip"
        if has("bos_token + '[INST]"):
            return "llama2-sys-bos"
        return "llama2-sys" if has("<<SYS>>") else "llama2"
    if has("<|assistant|>") and has("<|end|>"):
        return "phi3"
    if has("<|user|>") and has("<|endoftext|>") and not has("<|assistant|>"):
        return "zephyr"
    if has("<start_of_turn>"):
        return "gemma"
    if has("USER: ") and has("ASSISTANT: "):
        return "vicuna-orca" if has("SYSTEM: ") else "vicuna"
    if has("<|start_header_id|>") and has("<|end_header_id|>"):
        return "llama3"
    if has("### Instruction:") and has("### Response:") and not has("<|EOT|>"):
        return "alpaca"
    return None


# ---------------------------------------------------------------------------------------------

def _token_text(metadata: Mapping[str, object], key: str) -> str:
    tokens = metadata.get("tokenizer.ggml.tokens")
    token_id = metadata.get(key)
    if isinstance(tokens, (list, tuple)) and isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return str(tokens[token_id])
    return ""


def _check_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise ChatTemplateError(f"message {i} must be a mapping with str 'role' and 'content'")
        checked.append({"role": m["role"], "content": m["content"]})
    return checked


@dataclass
class ChatFormatter:
    """Renders conversations with one template. `source` says which: "gguf", "built-in NAME",
    "override", or "fallback chatml"."""
    source: str
    builtin: str | None = None              # name of the built-in used, if any
    template_text: str | None = None        # the Jinja text, if any
    special_tokens: Mapping[str, str] | None = None
    detected_builtin: str | None = None     # llama.cpp's guess for the Jinja text (informational)

    def __post_init__(self):
        self._template = compile_template(self.template_text) if self.template_text is not None else None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, object], override: str | None = None) -> "ChatFormatter":
        """`override` is a built-in name or a Jinja template text (like `--chat-template`);
        otherwise the GGUF's template; otherwise ChatML, as llama.cpp's common_chat_templates_init
        does for a file without tokenizer.chat_template (llama-cli, llama-server; the C API's
        llama_chat_apply_template(NULL) too). Gemma 3 270M's GGUF is such a file: it gets ChatML
        here as in llama.cpp, and `--chat-template gemma` (override="gemma") gives its own format.
        llama-cpp-python's Llama falls back to its own "llama-2" format instead."""
        tokens = {name: _token_text(metadata, f"tokenizer.ggml.{name}_token_id")
                  for name in ("bos", "eos", "unknown", "padding")}
        special = {"bos_token": tokens["bos"], "eos_token": tokens["eos"],
                   "unk_token": tokens["unknown"], "pad_token": tokens["padding"]}
        if override is not None:
            if override in BUILTIN_FORMATS:
                return cls(source=f"built-in {override}", builtin=override, special_tokens=special)
            if "{{" in override or "{%" in override:
                return cls(source="override", template_text=override, special_tokens=special,
                           detected_builtin=detect_builtin(override))
            raise ChatTemplateError(f"unknown chat template {override!r}; built-ins: "
                                    + ", ".join(sorted(BUILTIN_FORMATS)))
        text = metadata.get("tokenizer.chat_template")
        if isinstance(text, str) and text.strip():
            detected = detect_builtin(text)
            try:
                return cls(source="gguf", template_text=text, special_tokens=special, detected_builtin=detected)
            except ChatTemplateError:
                if detected is None:
                    raise
                # Jinja this sandbox cannot compile, but llama.cpp's heuristics know the format.
                return cls(source=f"built-in {detected}", builtin=detected, special_tokens=special,
                           detected_builtin=detected)
        return cls(source="fallback chatml", builtin="chatml", special_tokens=special)

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        checked = _check_messages(messages)
        if self.builtin is not None:
            return BUILTIN_FORMATS[self.builtin](checked, add_generation_prompt)
        context = dict(self.special_tokens or {})
        context.update(messages=checked, add_generation_prompt=add_generation_prompt)
        return render_template(self._template, context)

    def format_single(self, past: Sequence[Message], new: Message, add_generation_prompt: bool = True,
                      generated_end: str | None = None) -> str:
        """Only the text the latest message adds to the conversation (llama.cpp's
        common_chat_format_single): render with and without it and take the difference, so
        the tokens already in the KV cache stay valid.

        A past ending in a generated assistant turn is in the cache only up to the token that
        ended it, so the rest of the template's turn ending goes in front of the new text:
        - generated_end=None: llama.cpp's rule, a newline when the rendering ends in one (right for
          ChatML: the model stops on <|im_end|> and never writes the "\n" after it); applied
          here only after an assistant turn (llama.cpp also applies it after a system-only start,
          doubling that newline);
        - generated_end=TEXT (the text of the token that closed the reply, "" if none): whatever
          of the template's turn ending is not covered by TEXT ("\n\n" for alpaca after </s>)."""
        before = self.render(past, add_generation_prompt=False) if past else ""
        after = self.render(list(past) + [new], add_generation_prompt=add_generation_prompt)
        if not after.startswith(before):
            raise TemplateRewritesHistory("the template renders earlier turns differently once a message "
                                          "is added; the conversation must be re-fed from the start")
        ends_generated = bool(past) and past[-1].get("role") == "assistant"
        if not ends_generated:
            missing = ""
        elif generated_end is None:
            missing = "\n" if add_generation_prompt and before.endswith("\n") else ""
        else:
            ending = self.assistant_turn_ending(past)
            missing = ending[len(generated_end):] if ending.startswith(generated_end) else ending
        return missing + after[len(before):]

    def assistant_turn_ending(self, past: Sequence[Message]) -> str:
        """What the template writes after the content of the last (assistant) message of `past`."""
        marker = "\x00end-of-reply\x00"
        probe = list(past[:-1]) + [{"role": past[-1]["role"], "content": marker}]
        rendered = self.render(probe, add_generation_prompt=False)
        return rendered.split(marker, 1)[1] if marker in rendered else ""
