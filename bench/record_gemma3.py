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
  32 greedy tokens and at every greedy step llama.cpp's top-10 (id, logit) and top-1/top-2 margin,
  flash attention off; and how far llama.cpp moves from that with flash attention on, or with
  n_ubatch 8 (its own spread, for choosing tolerances);
- ppl.json: the perplexity of llama.cpp on ppl_text.txt, with pygguf's perplexity method
  (pygguf/tools/perplexity.py: chunks of n_ctx tokens from an empty cache, BOS swapped into the
  first position, the second half of each chunk scored), flash attention off (the reference), on,
  and with n_ubatch 16.
Two threads throughout; the greedy step takes ~2 minutes on a 2-core machine, the others seconds.
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


# --- greedy decoding ---------------------------------------------------------------------------
N_GREEDY = 32
TOP_K = 10
GREEDY_CTX = 256
EOG_IDS = (1, 106, 212)        # <eos>, <end_of_turn>, </s>: llama_vocab_is_eog (checked below)
PROMPTS = [
    {"name": "plain_colors", "text": "The three primary colors are", "chat": None},
    {"name": "plain_story", "text": "Once upon a time, in a small village by the sea, there lived", "chat": None},
    {"name": "code_python", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", "chat": None},
    {"name": "chat_sky", "text": None,
     "chat": [msg("user", "Explain in three sentences why the sky is blue.")]},
    {"name": "chat_system_poem", "text": None,
     "chat": [msg("system", "You are a helpful assistant who writes short poems."),
              msg("user", "Write a four-line poem about the moon.")]},
]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def last_logits(llm) -> np.ndarray:
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def top(logits: np.ndarray, k: int) -> list[list]:
    order = np.argsort(-logits, kind="stable")[:k]          # ties: the lower id first
    return [[int(i), round(float(logits[i]), 5)] for i in order]


def greedy_run(model: Path, prompts: list[dict], flash_attn: bool, n_ubatch: int) -> list[dict]:
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=GREEDY_CTX, n_batch=GREEDY_CTX, n_ubatch=n_ubatch,
                          n_threads=THREADS, n_threads_batch=THREADS, flash_attn=flash_attn, verbose=False)
    vocab = llm._model.vocab
    assert [i for i in EOG_IDS if llama_cpp.llama_vocab_is_eog(vocab, i)] == list(EOG_IDS)
    out = []
    for p in prompts:
        llm.reset()
        ids = p["prompt_ids"]
        llm.eval(ids)
        logits = last_logits(llm)
        steps, generated = [], []
        for _ in range(N_GREEDY):
            t = top(logits, TOP_K)
            steps.append({"top10": t, "margin": round(t[0][1] - t[1][1], 5)})
            nxt = int(np.argmax(logits))                     # greedy, lowest id on ties
            generated.append(nxt)
            if nxt in EOG_IDS:
                break
            llm.eval([nxt])
            logits = last_logits(llm)
        out.append({"generated_ids": generated, "steps": steps})
    return out


def spread(prompts: list[dict], a: list[dict], b: list[dict]) -> dict:
    """How far two llama.cpp runs are apart on the same prompts: top-10 logits of run a's top ids
    at the steps both runs share (the same tokens so far), and the first step they pick apart."""
    diffs, departures = [], []
    for p, ra, rb in zip(prompts, a, b):
        n = 0
        for sa, sb, ta, tb in zip(ra["steps"], rb["steps"], ra["generated_ids"], rb["generated_ids"]):
            got = dict((i, v) for i, v in sb["top10"])
            diffs += [abs(v - got[i]) for i, v in sa["top10"] if i in got]
            n += 1
            if ta != tb:
                departures.append({"prompt": p["name"], "step": n - 1, "margin_in_a": sa["margin"]})
                break
    d = np.asarray(diffs)
    return {"top10_max_abs": round(float(d.max()), 4), "top10_rms": round(float(np.sqrt((d ** 2).mean())), 4),
            "n_compared": int(d.size), "departures": departures}


def record_greedy(model: Path, out: Path) -> None:
    tok = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    prompts = []
    for p in PROMPTS:
        p = dict(p)
        if p["chat"] is not None:
            p["text"] = apply_template(b"gemma", p["chat"], True)
        p["tokenize"] = {"add_special": True, "parse_special": p["chat"] is not None}
        p["prompt_ids"] = tokenize(tok._model.vocab, p["text"], True, p["chat"] is not None)
        prompts.append(p)
    reference = greedy_run(model, prompts, flash_attn=False, n_ubatch=GREEDY_CTX)
    flash = greedy_run(model, prompts, flash_attn=True, n_ubatch=GREEDY_CTX)
    small_ubatch = greedy_run(model, prompts, flash_attn=False, n_ubatch=8)
    for p, r, f in zip(prompts, reference, flash):
        p.update(r)
        p["flash_attn_on"] = f       # llama.cpp's default (flash attention "auto" resolves to on for the CPU)
        p["generated_text"] = detokenize(tok._model.vocab, r["generated_ids"], True)
        p["min_margin"] = min(s["margin"] for s in r["steps"])
        p["first_step_below_0.5"] = next((i for i, s in enumerate(r["steps"]) if s["margin"] < 0.5), None)
    data = {
        "tool": "llama-cpp-python 0.3.36 (llama.cpp vendored in it), CPU",
        "model_file": model.name,
        "settings": {"n_ctx": GREEDY_CTX, "n_batch": GREEDY_CTX, "n_ubatch": GREEDY_CTX, "n_threads": THREADS,
                     "flash_attn": False, "type_k": "f16", "type_v": "f16", "logits": "llama_get_logits_ith(-1)",
                     "machine": cpu_name()},
        "method": (f"prompt_ids evaluated in one batch from an empty cache, then {N_GREEDY} greedy steps "
                   "(argmax of the logits, the lower id on ties) one token at a time, stopping after an "
                   "end-of-generation token; steps[i] holds the logits that chose generated_ids[i]: "
                   "steps[0] those at the last prompt position. margin = top-1 minus top-2 logit."),
        "eog_ids": list(EOG_IDS),
        "llama_cpp_self_spread": {
            "flash_attn_on_vs_off": spread(prompts, reference, flash),
            "n_ubatch_8_vs_256": spread(prompts, reference, small_ubatch),
        },
        "prompts": prompts,
    }
    write_json(out / "greedy.json", data)


# --- perplexity ---------------------------------------------------------------------------------
PPL_CTX = 128


def ppl_run(model: Path, tokens: list[int], add_bos: bool, bos: int, flash_attn: bool, n_ubatch: int = PPL_CTX) -> dict:
    """pygguf/tools/perplexity.py's method with llama.cpp's logits: chunks of PPL_CTX tokens, each
    from an empty cache with BOS in its first position, positions n_ctx/2 .. n_ctx-2 scored."""
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=PPL_CTX, n_batch=PPL_CTX, n_ubatch=n_ubatch,
                          n_threads=THREADS, n_threads_batch=THREADS, logits_all=True, flash_attn=flash_attn,
                          verbose=False)
    n_chunk = len(tokens) // PPL_CTX
    first, last = PPL_CTX // 2, PPL_CTX - 1
    nll, nll2, count, estimates = 0.0, 0.0, 0, []
    for c in range(n_chunk):
        chunk = list(tokens[c * PPL_CTX:(c + 1) * PPL_CTX])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[first:last], dtype=np.float32)
        top_ = logits.max(axis=1, keepdims=True)
        log_z = top_[:, 0].astype(np.float64) + np.log(np.exp(logits - top_, dtype=np.float32).sum(axis=1, dtype=np.float64))
        x = log_z - logits[np.arange(last - first), chunk[first + 1:last + 1]].astype(np.float64)
        nll += float(x.sum())
        nll2 += float((x * x).sum())
        count += x.shape[0]
        estimates.append(round(float(np.exp(nll / count)), 6))
    mean = nll / count
    ppl = float(np.exp(mean))
    err = ppl * float(np.sqrt(max(nll2 / count - mean * mean, 0.0) / (count - 1)))
    return {"ppl": round(ppl, 6), "uncertainty": round(err, 6), "n_chunk": n_chunk, "n_scored": count,
            "mean_nll": round(mean, 8), "chunk_estimates": estimates}


def record_ppl(model: Path, out: Path) -> None:
    text = (out / "ppl_text.txt").read_text(encoding="utf-8")
    text = text[:-1] if text.endswith("\n") else text       # llama.cpp drops one trailing newline
    tok = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    tokens = tokenize(tok._model.vocab, text, True, False)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(tok._model.vocab))
    reference = ppl_run(model, tokens, add_bos, tok.token_bos(), flash_attn=False)
    flash = ppl_run(model, tokens, add_bos, tok.token_bos(), flash_attn=True)
    small_ubatch = ppl_run(model, tokens, add_bos, tok.token_bos(), flash_attn=False, n_ubatch=16)
    data = {
        "tool": "llama-cpp-python 0.3.36 (llama.cpp vendored in it), CPU",
        "model_file": model.name,
        "text_file": ("ppl_text.txt: an original text written for pygguf's tests, dedicated to the public "
                      "domain. Famous public-domain texts are memorized by the model (the Gettysburg Address "
                      "with the Preamble and the Declaration's opening: PPL 1.93, where llama.cpp with flash "
                      "attention on is 1.5% away), so they say little about a forward's numerics."),
        "method": ("pygguf/tools/perplexity.py's (llama-perplexity's): the text without one trailing newline, "
                   "tokenized with BOS (add_special=true, parse_special=false); chunks of n_ctx tokens, each "
                   "evaluated from an empty cache with BOS in its first position; the logits at positions "
                   "n_ctx/2 .. n_ctx-2 scored against the next token; NLL = log(sum(exp(l - max))) + max - "
                   "l[next] (float32 exp, float64 sums); PPL = exp(mean NLL)"),
        "settings": {"n_ctx": PPL_CTX, "n_batch": PPL_CTX, "n_ubatch": PPL_CTX, "n_threads": THREADS,
                     "flash_attn": False, "type_k": "f16", "type_v": "f16", "machine": cpu_name()},
        "tokens": tokens,
        "llama_cpp": reference,
        "llama_cpp_flash_attn_on": flash,
        "llama_cpp_n_ubatch_16": small_ubatch,
    }
    write_json(out / "ppl.json", data)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


STEPS = {"tokenizer": record_tokenizer, "chat": record_chat, "greedy": record_greedy, "ppl": record_ppl}


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
