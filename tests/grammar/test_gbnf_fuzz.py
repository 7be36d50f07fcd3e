"""Fuzzing pygguf's GBNF parser: whatever the input, it returns a well-formed grammar or raises
GrammarError, quickly. (bench/record_gbnf_parses.py --fuzz runs the same inputs through llama.cpp's
parser too and compares the results: 20000 inputs agreed when this was written.)"""
from __future__ import annotations

import json
import random
import time

import grammar_fuzz
import pytest
from testpaths import TESTS

from pygguf.grammar import (
                            ALT,
                            CHAR,
                            CHAR_ALT,
                            CHAR_ANY,
                            CHAR_NOT,
                            CHAR_RNG_UPPER,
                            END,
                            RULE_REF,
                            TOKEN,
                            TOKEN_NOT,
                            GrammarError,
                            parse,
                            to_text,
)
from pygguf_cli import paths

RECORDED = json.loads((TESTS / "data" / "grammar" / "llama_cpp_parses.json").read_text(encoding="utf-8"))


def corpus() -> list[bytes]:
    texts = [case["grammar"].encode() for case in RECORDED["grammars"]]
    if paths.grammars_dir().is_dir():
        texts += [p.read_bytes() for p in sorted(paths.grammars_dir().glob("*.gbnf"))]
    return texts


def check_well_formed(g) -> None:
    """What a matcher relies on: rules end with END, references in range, range and alternate
    characters follow a character element."""
    assert g.rules and g.root == g.symbol_ids.get("root")
    for rule in g.rules:
        assert rule and rule[-1] == (END, 0)
        assert all(kind != END for kind, _ in rule[:-1])
        for i, (kind, value) in enumerate(rule):
            assert kind in (END, ALT, RULE_REF, CHAR, CHAR_NOT, CHAR_RNG_UPPER, CHAR_ALT, CHAR_ANY, TOKEN, TOKEN_NOT)
            if kind == RULE_REF:
                assert 0 <= value < len(g.rules)
            if kind in (CHAR_RNG_UPPER, CHAR_ALT):
                assert i > 0 and rule[i - 1][0] in (CHAR, CHAR_NOT, CHAR_ALT, CHAR_RNG_UPPER)
            assert 0 <= value < 1 << 32
    to_text(g)


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_only_grammar_errors(seed):
    n_ok = n_err = 0
    start = time.perf_counter()
    for data in grammar_fuzz.cases(seed, 2500, corpus()):
        t0 = time.perf_counter()
        try:
            g = parse(data)
        except GrammarError as e:
            assert "\n" not in str(e)
            n_err += 1
        else:
            check_well_formed(g)
            n_ok += 1
        assert time.perf_counter() - t0 < 2, data
    assert n_ok > 50 and n_err > 50
    assert time.perf_counter() - start < 60


def test_fuzz_str_input():
    """Text (str) input, including characters UTF-8 cannot encode (lone surrogates)."""
    rng = random.Random(7)
    alphabet = 'root::=()[]{}"\\|*+?.-^<>!# \n0123456789abxuéß\udc80\U0001F600'
    for _ in range(2000):
        text = "root ::= " + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        try:
            check_well_formed(parse(text))
        except GrammarError:
            pass


# --- Hypothesis: the same property, inputs it draws and shrinks -------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings   # noqa: E402
from hypothesis import strategies as st               # noqa: E402

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
GBNF_PIECES = ["root", " ::= ", "::=", "a", "b", " ", "\n", "|", "(", ")", "[", "]", "[^", "-", "*", "+", "?",
               "{", "}", ",", "0", "2", "9", "{2,3}", "{0,}", '"', '"x"', "\\", "\\x", "\\u00", "\\U0001F600",
               "\\n", ".", "#", "<[0]>", "!<[1]>", "<", ">", "!", "é", "😀", "\udc80", "\0"]


def parses_or_refuses(data) -> None:
    try:
        g = parse(data)
    except GrammarError as e:
        assert str(e) and "\n" not in str(e)
    else:
        check_well_formed(g)


@PROPERTY
@given(st.lists(st.sampled_from(GBNF_PIECES), max_size=40).map("".join))
def test_property_gbnf_pieces(text):
    parses_or_refuses("root ::= " + text)


@PROPERTY
@given(st.text(max_size=120))
def test_property_any_text(text):
    parses_or_refuses(text)


@PROPERTY
@given(st.binary(max_size=120))
def test_property_any_bytes(data):
    parses_or_refuses(data)


@PROPERTY
@given(st.randoms(use_true_random=False))
def test_property_random_grammars(rng):
    # grammar_fuzz's generator, driven (and shrunk) by Hypothesis
    parses_or_refuses(grammar_fuzz.random_grammar(rng))
