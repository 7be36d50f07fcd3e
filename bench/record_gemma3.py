"""Records llama.cpp's reference data for Gemma 3 270M Q4_K_M into tests/data/gemma3/.

Run by the compare venv's Python (llama-cpp-python 0.3.36, which compiles llama.cpp); it imports
nothing from pygguf, so it runs where pygguf is not installed:

    .venv-compare/bin/python bench/record_gemma3.py [tokenizer|chat|greedy|ppl|all] \
        [--model ~/.cache/pygguf/models/gemma-3-270m-q4_k_m.gguf] [--out tests/data/gemma3]

(`make gemma3` fetches the model file.) What each step writes:
- tokenizer.json: llama.cpp's token ids for a broad set of texts (vocab only), with and without
  BOS and special-token parsing, and its detokenized text with and without special pieces;
- chat.json: llm_chat_apply_template (the C API behind llama.cpp's built-in templates) with
  "gemma" and "chatml" on a few conversations, and what llama.cpp and llama-cpp-python pick for a
  file without tokenizer.chat_template;
- greedy.json: for a few prompts (plain text, code, gemma-templated chat), the prompt ids,
  32 greedy tokens and at every greedy step llama.cpp's top-10 (id, logit) and top-1/top-2 margin;
- ppl.json: the perplexity of llama.cpp on ppl_text.txt, with pygguf's perplexity method
  (pygguf/tools/perplexity.py: chunks of n_ctx tokens from an empty cache, BOS swapped into the
  first position, the second half of each chunk scored), flash attention off (the reference) and
  on (llama.cpp's own spread).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np

import llama_cpp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = REPO / "tests" / "data" / "gemma3"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
THREADS = 2


def default_model() -> Path:
    base = os.environ.get("PYGGUF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pygguf")
    return Path(base) / "models" / MODEL_FILE


# --- tokenizer -------------------------------------------------------------------------------
# Named texts: each exercises something SentencePiece with Gemma's vocabulary can get wrong.
TEXTS = {
    "empty": "",
    "space": " ",
    "two_spaces": "  ",
    "newline": "\n",
    "two_newlines": "\n\n",
    "tab": "\t",
    "hello": "Hello world",
    "hello_leading_space": " Hello world",
    "hello_spaces_around": "  Hello  world  ",
    "hello_newline": "Hello\nworld",
    "sentence": "The quick brown fox jumps over the lazy dog.",
    "leading_spaces_3": "   three leading spaces",
    "trailing_spaces": "trailing spaces   ",
    "mixed_whitespace": " \t \n \r\n \v\f x",
    "many_spaces": "a" + " " * 40 + "b",
    "only_spaces_70": " " * 70,
    "many_newlines": "\n" * 12 + "x" + "\n" * 3,
    "digits": "1234567890",
    "numbers": "3.14159 and 2,718,281 and -42 and 1e-5 and 0x1F",
    "year_count": "In 2024, 1,000,000 people spent $12.50 each (about 99.9%).",
    "long_digits": "123456789012345678901234567890",
    "python": ("def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\n"
               "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n"),
    "c_code": ("int main(void) {\n\tfor (int i = 0; i < 10; i++) {\n\t\tprintf(\"%d\\n\", i);\n\t}\n"
               "\treturn 0;\n}\n"),
    "indented_deep": "        if (x) {\n            y = {'a': [1, 2, 3]};\n        }\n",
    "json": '{"name": "gemma", "values": [1, 2.5, null, true], "nested": {"k": "v"}}',
    "html": '<div class="card"><b>bold</b> &amp; <i>italic</i></div>',
    "markdown": "# Title\n\n* item one\n* item two\n\n```python\nprint('hi')\n```\n",
    "punctuation": "Wait... what?! (Really) -- yes; no: maybe. 'quoted' \"double\" `tick`",
    "url_email": "See https://example.com/path?q=1&r=2#frag or mail me@example.org.",
    "accents": "café naïve résumé Grüße aus München, señor, Ångström",
    "cyrillic": "Привет, мир! Как дела?",
    "greek": "Καλημέρα κόσμε",
    "japanese": "日本語のテキストです。東京は大きい。",
    "chinese": "你好，世界！我爱编程。",
    "korean": "한국어 텍스트입니다",
    "arabic": "مرحبا بالعالم",
    "hindi": "नमस्ते दुनिया",
    "thai": "สวัสดีชาวโลก",
    "emoji": "emoji 😀👍🏽🇫🇷 👨‍👩‍👧‍👦 🦙",
    "math_symbols": "∑∫√∞ ≤ ≥ ≠ ± × ÷ → ⇒ ∀x∃y",
    "fraktur": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕦𝕟𝕚𝕔𝕠𝕕𝕖",
    "rare_chars": "\U0001F9FF \U0001FAE0 \u2E3B \U00010348 \uA9C1",
    "zero_width": "zero\u200bwidth\u200djoiner\ufeffbom",
    "control_chars": "a\x00b\x01c\x1fd\x7f",
    "private_use": "\ue000\uf8ff",
    "replacement_char": "\ufffd",
    "u2581": "\u2581already\u2581spaced \u2581",
    "special_chat": "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "special_bos_eos": "<bos>text<eos>",
    "special_pad_unk_mask": "<pad><unk><mask>",
    "special_glued": "a<start_of_turn>b<end_of_turn>c",
    "special_spaced": " <start_of_turn> spaced <end_of_turn> ",
    "special_image": "<start_of_image> and <end_of_image>",
    "special_partial": "<start_of_turn <end_of_turn> <start_of_turn>> <<bos>",
    "special_unused": "<unused0> <unused99>",
    "special_repeated": "<end_of_turn><end_of_turn>\n\n<end_of_turn>",
    "tag_like_text": "<b> <br/> <tr> <h1> </s> <s> [INST] <|im_start|>",
    "mixed_script": "GPU加速 and naïve 日本 text 😀 with 3.14",
    "repeated_chars": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!!!????...",
    "long_word": "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "camel_snake": "getHTTPResponseCode parse_json_file XMLHttpRequest __init__",
}


def random_texts(n: int, seed: int = 1234) -> dict[str, str]:
    """Shuffled mixtures of pieces of the texts above, with random spacing (fixed seed)."""
    rng = random.Random(seed)
    pieces = [t for t in TEXTS.values() if t]
    words = [w for t in pieces for w in t.replace("\n", " ").split(" ") if w]
    glue = [" ", "  ", "\n", "\t", "", "   ", "\n\n", " \n"]
    out = {}
    for i in range(n):
        parts = []
        for _ in range(rng.randint(3, 14)):
            parts.append(rng.choice(words) if rng.random() < 0.8 else rng.choice(pieces)[:rng.randint(1, 30)])
            parts.append(rng.choice(glue))
        out[f"random_{i}"] = "".join(parts)
    return out


def tokenize(vocab, text: str, add_special: bool, parse_special: bool) -> list[int]:
    data = text.encode("utf-8")
    cap = len(data) + 16
    buf = (llama_cpp.llama_token * cap)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        raise RuntimeError(f"llama_tokenize needs {-n} tokens for {text!r}")
    return list(buf[:n])


def detokenize(vocab, ids: list[int], unparse_special: bool) -> str:
    arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    cap = 64 * len(ids) + 64
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, unparse_special)
    if n < 0:
        raise RuntimeError("llama_detokenize: buffer too small")
    return buf.raw[:n].decode("utf-8", errors="strict")


def record_tokenizer(model: Path, out: Path) -> None:
    llm = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    texts = dict(TEXTS)
    texts.update(random_texts(12))
    cases = []
    for name, text in texts.items():
        plain = tokenize(vocab, text, False, False)
        special = tokenize(vocab, text, True, True)
        case = {"name": name, "text": text, "ids": plain, "ids_bos_parse_special": special}
        # the other two combinations only where they say something the two above do not
        bos_plain = tokenize(vocab, text, True, False)
        if bos_plain != [llm.token_bos()] + plain:
            case["ids_bos"] = bos_plain
        nobos_special = tokenize(vocab, text, False, True)
        if nobos_special != special[1:]:
            case["ids_parse_special"] = nobos_special
        case["detok"] = detokenize(vocab, plain, False)
        detok_special = detokenize(vocab, special, True)
        if detok_special != case["detok"]:
            case["detok_special"] = detok_special
        cases.append(case)
    data = {
        "vocab": vocab_facts(vocab),
        "tool": ("llama-cpp-python 0.3.36 (llama.cpp vendored in it), vocab_only: llama_tokenize(add_special, "
                 "parse_special) and llama_detokenize(remove_special=false, unparse_special)"),
        "model_file": model.name,
        "fields": {
            "ids": "add_special=false, parse_special=false",
            "ids_bos_parse_special": "add_special=true, parse_special=true",
            "ids_bos": "add_special=true, parse_special=false; only where it is not [BOS] + ids",
            "ids_parse_special": "add_special=false, parse_special=true; only where it is not ids_bos_parse_special[1:]",
            "detok": "llama_detokenize(ids, unparse_special=false)",
            "detok_special": "llama_detokenize(ids_bos_parse_special, unparse_special=true); only where it differs from detok",
        },
        "n_vocab": llm.n_vocab(),
        "bos": llm.token_bos(),
        "eos": llm.token_eos(),
        "cases": cases,
    }
    write_json(out / "tokenizer.json", data)


def vocab_facts(vocab) -> dict:
    """What llama.cpp derives for every token, in a few lines: sha256 of all token attributes and of
    all pieces, the attribute counts, the control / user-defined ids, the end-of-generation set."""
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    attrs = np.array([llama_cpp.llama_vocab_get_attr(vocab, i) for i in range(n)], dtype="<i4")
    buf = ctypes.create_string_buffer(1024)
    pieces = {}
    for special in (False, True):
        h = hashlib.sha256()
        for i in range(n):
            k = llama_cpp.llama_token_to_piece(vocab, i, buf, len(buf), 0, special)
            if k < 0:
                raise RuntimeError(f"token {i}: piece longer than {len(buf)} bytes")
            h.update(len(buf.raw[:k]).to_bytes(4, "little") + buf.raw[:k])
        pieces["special" if special else "plain"] = h.hexdigest()
    values, counts = np.unique(attrs, return_counts=True)
    CONTROL, USER_DEFINED, UNUSED = 8, 16, 2
    marked = [i for i in range(n) if attrs[i] & (CONTROL | USER_DEFINED) and not attrs[i] & UNUSED]
    return {
        "n_tokens": n,
        "attrs_sha256": hashlib.sha256(attrs.tobytes()).hexdigest(),
        "attrs_sha256_of": "llama_vocab_get_attr of every id, as little-endian int32",
        "attr_counts": {str(int(v)): int(c) for v, c in zip(values, counts)},
        "control_or_user_defined_not_unused": {str(i): int(attrs[i]) for i in marked},
        "pieces_sha256": pieces,
        "pieces_sha256_of": ("llama_token_to_piece(id, lstrip=0, special) of every id, each as a "
                             "little-endian uint32 length then its bytes"),
        "eog_ids": [i for i in range(n) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        "special_ids": {name: int(getattr(llama_cpp, f"llama_vocab_{name}")(vocab))
                        for name in ("bos", "eos", "eot", "pad", "sep", "nl")},
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
    }


# --- chat templates ----------------------------------------------------------------------------
def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


CONVERSATIONS = {
    "system_user_assistant_user": [
        msg("system", "You are a concise assistant. Answer in one sentence."),
        msg("user", "What is the capital of France?"),
        msg("assistant", "The capital of France is Paris."),
        msg("user", "And of Italy?"),
    ],
    "user_only": [msg("user", "Write a haiku about the sea.")],
    "multi_turn_no_system": [
        msg("user", "Hi!"), msg("assistant", "Hello! How can I help?"),
        msg("user", "Count to three."), msg("assistant", "1, 2, 3."), msg("user", "Now backwards."),
    ],
    # gemma trims each content with C isspace (ASCII whitespace only): a no-break space, an
    # ideographic space or U+001F at the edges stay
    "whitespace_edges": [
        msg("system", "  \tBe brief.\n\n"),
        msg("user", "\n  Line one\n  line two  \n"),
        msg("assistant", "\u00a0reply with a no-break space\u3000"),
        msg("user", "\x1fcontrol edges\x1f \r\n"),
    ],
    # two system messages concatenate (no separator) into the next user turn; a system message
    # later in the conversation waits for the next user turn too
    "several_systems": [
        msg("system", "Rule one."), msg("system", "Rule two."), msg("user", "Go."),
        msg("assistant", "Done."), msg("system", "Rule three."), msg("user", "Again."),
    ],
    "system_then_assistant": [msg("system", "Be kind."), msg("assistant", "Hello."), msg("user", "Hi.")],
    "unicode": [msg("user", "Traduis « bonjour » en 日本語 🙂"), msg("assistant", "こんにちは"), msg("user", "Merci !")],
}
TEMPLATES = ("gemma", "chatml")


def apply_template(tmpl: bytes | None, messages: list[dict], add_ass: bool) -> str:
    arr = (llama_cpp.llama_chat_message * len(messages))()
    keep = []
    for m, c in zip(messages, arr):
        keep += [m["role"].encode(), m["content"].encode()]
        c.role, c.content = keep[-2], keep[-1]
    n = llama_cpp.llama_chat_apply_template(tmpl, arr, len(messages), add_ass, None, 0)
    if n < 0:
        raise RuntimeError(f"llama_chat_apply_template({tmpl!r}) failed: {n}")
    buf = ctypes.create_string_buffer(n + 1)
    llama_cpp.llama_chat_apply_template(tmpl, arr, len(messages), add_ass, buf, n + 1)
    return buf.raw[:n].decode("utf-8")


def record_chat(model: Path, out: Path) -> None:
    llm = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    default = llama_cpp.llama_model_chat_template(llm._model.model, None)
    renders = []
    for name, messages in CONVERSATIONS.items():
        for add_ass in (True, False):
            renders.append({
                "conversation": name, "add_ass": add_ass,
                **{t: apply_template(t.encode(), messages, add_ass) for t in TEMPLATES},
                "null_template": apply_template(None, messages, add_ass),
            })
    data = {
        "tool": "llama-cpp-python 0.3.36: llama_chat_apply_template (llama.cpp's llm_chat_apply_template), "
                "llama_model_chat_template, and Llama(vocab_only=True).chat_format",
        "model_file": model.name,
        "gguf_has_tokenizer_chat_template": "tokenizer.chat_template" in llm.metadata,
        "llama_model_chat_template": default.decode() if default else None,
        "llama_cpp_python_chat_format": llm.chat_format,
        "what_llama_cpp_uses": (
            "common_chat_templates_init (llama-cli, llama-completion -cnv, llama-server): no template in the "
            "file -> CHATML_TEMPLATE_SRC, and has_explicit_template=false, so llama-completion leaves "
            "conversation mode off unless -cnv, then warns 'chat template is not available or is not "
            "supported'; llama_chat_apply_template(NULL) -> 'chatml'. llama-cpp-python's Llama falls back "
            "to its own 'llama-2' chat format instead."),
        "conversations": CONVERSATIONS,
        "renders": renders,
    }
    write_json(out / "chat.json", data)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


STEPS = {"tokenizer": record_tokenizer, "chat": record_chat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=[*STEPS, "all"])
    ap.add_argument("--model", type=Path, default=default_model())
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if not args.model.exists():
        sys.exit(f"{args.model} is absent: run `make gemma3`")
    for name, step in STEPS.items():
        if args.what in (name, "all"):
            step(args.model, args.out)


if __name__ == "__main__":
    main()
