"""The single-regex fast paths split exactly like llama.cpp's regex chains they replace."""
from __future__ import annotations

import random

import pytest

from pygguf.tokenizer.pretokenize import PRE_SPECS, SINGLE_REGEX, PreTokenizer, resolve_pre

SAMPLES = [
    "Hello world", " Hello  World!!  ", "a\nb\n\n c\t\td", "x = 12345 + 0.5e10\n",
    "   \n\n   leading and trailing   \n", "I'm you'RE we'll 'd 's", "3 apples, 45 pears\r\n",
    "日本語 中文 한국어 — “quotes” … ½ ¾ ⅞ ٣٤٥", "emoji 🦙🦙 👨‍👩‍👧 ✅  \u00a0nbsp\u2003em",
    "def f(x):\n    return x  # comment\n\n\tif x:\n\t\tpass\n", "a 5", "a  5", "'5", " \n5", "\u0301e\u0301",
]
ALPHABET = list("aZ é1٣ \t\n\r'.,;:!?-_()[]{}<>$+^~|`日🦙\u00a0\u2003\u0301") + ["  ", "123", "'s"]


def random_texts(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 40))) for _ in range(n)]


@pytest.mark.parametrize("family", sorted(SINGLE_REGEX))
def test_single_regex_equals_chain(family):
    fast, reference = PreTokenizer(family), PreTokenizer(family, fast=False)
    for text in SAMPLES + random_texts(400):
        assert fast.split(text) == reference.split_with_chain(text), repr(text)


@pytest.mark.parametrize("family", sorted({spec.family for spec in PRE_SPECS.values()}))
def test_every_chain_covers_the_text(family):
    pre = PreTokenizer(family)
    for text in SAMPLES + random_texts(50):
        words = pre.split(text)
        assert "".join(words) == text and all(words), repr(text)


def test_pre_names_resolve():
    warnings: list[str] = []
    for name in ("smollm", "llama-bpe", "qwen2", "qwen35", "deepseek-coder", "deepseek-llm",
                 "starcoder", "falcon", "mpt", "gpt-2", "refact", "command-r", "phi-2", "default"):
        assert resolve_pre(name, warnings) is PRE_SPECS[name]
    assert warnings == []
    assert resolve_pre("", warnings) is PRE_SPECS["default"] and warnings
