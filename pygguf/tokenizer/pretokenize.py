"""Pre-tokenizers for byte-level BPE: llama.cpp's table of regex chains per tokenizer.ggml.pre.

The regexes are llama.cpp's (themselves adapted from each model's tokenizer.json). A chain is
applied in order: every regex splits each piece left by the previous one, and the text between
matches is kept as a piece of its own, exactly as llama.cpp's unicode_regex_split does.
"""
from __future__ import annotations

from dataclasses import dataclass

import regex

# Contractions written case-insensitively by hand (llama.cpp's adaptation of (?i:'s|'t|...)).
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN35 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_CJK = "[一-龥ࠀ-一가-퟿]+"
# Canonically-decomposable letters are written as escapes so no editor or normalizer can
# replace them with their NFC equivalents (which would turn ranges around).
_DEEPSEEK_LLM_LETTERS = (
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+")
_GPT4O = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CONTRACTIONS +
          r"?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CONTRACTIONS +
          r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# pre-tokenizer family -> regex chain
REGEX_CHAINS: dict[str, tuple[str, ...]] = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"),
    "llama3": (LLAMA3,),
    "deepseek-llm": (r"[\r\n]", _DEEPSEEK_LLM_LETTERS, r"\s?[!-/:-~！-／：-～‘-‟　-。]+", r"\s+\Z",
                     _CJK, r"\p{N}+"),
    "deepseek-coder": (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"),
    "starcoder": (r"\p{N}", GPT2),
    "gpt2": (GPT2,),
    "qwen2": (QWEN2,),
    "qwen35": (QWEN35,),
    "poro": (r" ?[^(\s|.,!?…。，、।۔،)]+",),
    "viking": (r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"),
    "chatglm4": (LLAMA3,),
    "gpt4o": (_GPT4O,),
    "seed-coder": (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+",),
}


@dataclass(frozen=True)
class PreSpec:
    family: str
    add_bos: bool = False
    clean_spaces: bool = True
    ignore_merges: bool = False


def _specs() -> dict[str, PreSpec]:
    """tokenizer.ggml.pre value -> family and the flags llama.cpp sets with it."""
    table: dict[str, PreSpec] = {"default": PreSpec("default")}
    for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                 "lfm2", "jina-v5-nano"):
        table[name] = PreSpec("llama3", add_bos=True, ignore_merges=True)
    for name in ("dbrx", "smaug-bpe"):
        table[name] = PreSpec("llama3")
    table["deepseek-llm"] = PreSpec("deepseek-llm", clean_spaces=False)
    table["deepseek-coder"] = PreSpec("deepseek-coder", clean_spaces=False)
    table["falcon"] = PreSpec("falcon")
    table["mpt"] = PreSpec("gpt2")
    table["starcoder"] = PreSpec("starcoder")
    for name in ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                 "a.x-4.0", "mellum", "modern-bert", "exaone4", "olmo", "jais", "jina-v1-en",
                 "jina-v2-code", "roberta-bpe"):
        table[name] = PreSpec("gpt2")
    for name in ("trillion", "granite-docling"):
        table[name] = PreSpec("gpt2", clean_spaces=False)
    table["refact"] = PreSpec("starcoder")
    table["command-r"] = PreSpec("starcoder", clean_spaces=False)
    for name in ("smollm", "codeshell", "exaone", "minerva-7b", "mellum2"):
        table[name] = PreSpec("starcoder", clean_spaces=name not in ("smollm",))
    for name in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open"):
        table[name] = PreSpec("qwen2", clean_spaces=False)
    table["stablelm2"] = PreSpec("qwen2")
    table["megrez"] = PreSpec("qwen2")
    table["qwen35"] = PreSpec("qwen35", clean_spaces=False)
    table["poro-chat"] = PreSpec("poro", clean_spaces=False)
    table["bloom"] = PreSpec("poro")
    table["gpt3-finnish"] = PreSpec("poro")
    table["viking"] = PreSpec("viking", clean_spaces=False)
    table["glm4"] = PreSpec("chatglm4")
    table["chatglm-bpe"] = PreSpec("chatglm4")
    for name in ("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"):
        table[name] = PreSpec("gpt4o", clean_spaces=False)
    table["seed-coder"] = PreSpec("seed-coder", clean_spaces=False)
    return table


PRE_SPECS = _specs()


def resolve_pre(pre: str, warnings: list[str]) -> PreSpec:
    """The spec for a pre name. Missing or unknown names fall back to llama.cpp's 'default'
    chain with a warning (llama.cpp itself refuses an unknown name; we degrade instead)."""
    if not pre:
        warnings.append("missing tokenizer.ggml.pre, using 'default' "
                        "(generation quality will be degraded; consider regenerating the model)")
        return PRE_SPECS["default"]
    spec = PRE_SPECS.get(pre)
    if spec is None:
        warnings.append(f"unknown pre-tokenizer type {pre!r}, using 'default'")
        return PRE_SPECS["default"]
    return spec


def pre_flags(pre: str, warnings: list[str]) -> dict[str, bool]:
    spec = resolve_pre(pre, warnings)
    return {"add_bos": spec.add_bos, "add_eos": False, "clean_spaces": spec.clean_spaces,
            "ignore_merges": spec.ignore_merges}


class PreTokenizer:
    """Splits text into words with a compiled regex chain."""

    def __init__(self, family: str):
        self.family = family
        self._chain = tuple(regex.compile(expr) for expr in REGEX_CHAINS[family])

    def split(self, text: str) -> list[str]:
        if len(self._chain) == 1:
            return self._split_one(self._chain[0], text)
        spans = [(0, len(text))]
        for expr in self._chain:
            spans = self._split_spans(expr, text, spans)
        return [text[s:e] for s, e in spans]

    @staticmethod
    def _split_one(expr: "regex.Pattern", text: str) -> list[str]:
        words: list[str] = []
        append = words.append
        last = 0
        for m in expr.finditer(text):
            start, end = m.span()
            if start > last:
                append(text[last:start])      # text no alternative matched stays a word
            if end > start:
                append(m.group())
            last = end
        if last < len(text):
            append(text[last:])
        return words

    @staticmethod
    def _split_spans(expr: "regex.Pattern", text: str,
                     spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        append = out.append
        for lo, hi in spans:
            last = lo
            # endpos makes the piece end look like the end of the string, as a sub-range does in C++
            for m in expr.finditer(text, lo, hi):
                start, end = m.span()
                if start > last:
                    append((last, start))
                if end > start:
                    append((start, end))
                last = end
            if last < hi:
                append((last, hi))
        return out
