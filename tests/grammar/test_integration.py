"""llama.cpp's tests/test-grammar-integration.cpp, transcribed in tests/data/grammar/integration.json:
each grammar's passing strings must match and its failing strings must not, fed as that test's
match_string feeds them (text one code point at a time as token 0, token ids with the piece
"<[id]>", through llama_grammar_accept_token; a match is an empty stack at the end).

Two ways: the grammar text through the GBNF parser (pygguf.grammar.gbnf, skipped until it is
merged), and the same grammars built by hand here (HANDBUILT), so the matcher is checked now.
Each string is also run through the Python reference (oracle.py), which must agree. The schema
cases need a JSON-schema converter and are not run here."""
from __future__ import annotations

import json

import pytest

from handbuilt import Alt, Any, Builder, Lit, Opt, Plus, Ref, Rep, Seq, Star, Tok, chars
from oracle import OracleGrammar, match_string as oracle_match, split_input
from pygguf.errors import GrammarError
from pygguf.grammar.matcher import TokenMatcher
from testpaths import TESTS

DATA = json.loads((TESTS / "data" / "grammar" / "integration.json").read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in DATA["grammar_cases"]}
VOCAB = [b"<[0]>"]      # match_string never asks for a vocabulary piece


def parse_or_skip():
    try:
        from pygguf.grammar.gbnf import parse
    except ImportError:
        pytest.skip("parser not merged yet")
    return parse


def _g(define) -> object:
    b = Builder()
    define(b)
    return b.build()


ws_arith = Ref("ws")
HANDBUILT = {
    "simple grammar": lambda b: (
        b.define("root", Ref("expr")),
        b.define("expr", Seq(Ref("term"), Star(Seq(Lit("+"), Ref("term"))))),
        b.define("term", Ref("number")),
        b.define("number", Plus(chars("0-9")))),
    "simple grammar with tokens": lambda b: (
        b.define("root", Seq(Tok(10), Ref("content"), Tok(11))),
        b.define("content", Star(Alt(Tok(11, negate=True))))),
    "medium complexity grammar": lambda b: (
        b.define("root", Ref("expression")),
        b.define("expression", Seq(Ref("term"), ws_arith, Star(Seq(Alt(Lit("+"), Lit("-")), ws_arith, Ref("term"))))),
        b.define("term", Seq(Ref("factor"), ws_arith, Star(Seq(Alt(Lit("*"), Lit("/")), ws_arith, Ref("factor"))))),
        b.define("factor", Alt(Ref("number"), Ref("variable"), Seq(Lit("("), Ref("expression"), Lit(")")),
                               Ref("function-call"))),
        b.define("number", Plus(chars("0-9"))),
        b.define("variable", Seq(chars("a-zA-Z_"), Star(chars("a-zA-Z0-9_")))),
        b.define("function-call", Seq(Ref("variable"), ws_arith, Lit("("),
                                      Opt(Seq(Ref("expression"), Star(Seq(Lit(","), ws_arith, Ref("expression"))))),
                                      Lit(")"))),
        b.define("ws", Opt(chars(" \t\n\r")))),
    "complex grammar with tokens": lambda b: (
        b.define("root", Seq(Plus(Ref("reasoning")), Ref("content"), Star(Ref("tool-call")))),
        b.define("reasoning", Seq(Tok(10), Star(Alt(Tok(11, negate=True))), Tok(11))),
        b.define("content", Seq(Tok(20), Star(Alt(Tok(21, negate=True))), Tok(21))),
        b.define("tool-call", Seq(Tok(12), Ref("name"), Tok(13), Ref("args"), Tok(14))),
        b.define("name", Plus(Alt(Tok(13, negate=True)))),
        b.define("args", Star(Alt(Tok(14, negate=True))))),
    "special characters": lambda b: b.define("root", Seq(Any(), Any(), Any(), Lit("abc"), Any(), Any(), Any())),
    "* quantifier": lambda b: b.define("root", Star(Lit("a"))),
    "+ quantifier": lambda b: b.define("root", Plus(Lit("a"))),
    "? quantifier": lambda b: b.define("root", Opt(Lit("a"))),
    "mixed quantifiers": lambda b: (
        b.define("root", Seq(Plus(Ref("cons")), Star(Ref("vowel")), Opt(Ref("cons")),
                             Star(Seq(Ref("vowel"), Ref("cons"))))),
        b.define("vowel", chars("aeiouy")),
        b.define("cons", chars("bcdfghjklmnpqrstvwxyz"))),
    "simple exact repetition": lambda b: b.define("root", Rep(chars("ab"), 4, 4)),
    "simple min repetition": lambda b: b.define("root", Rep(chars("ab"), 4, None)),
    "simple max repetition": lambda b: b.define("root", Rep(chars("ab"), 0, 4)),
    "min / max repetition": lambda b: b.define("root", Rep(Seq(Lit("0x"), Rep(chars("A-F0-9"), 2, 2), Opt(Lit(" "))), 3, 5)),
    "segfault": lambda b: b.define("root", Star(Seq(Star(chars("x"))))),
}


def test_every_grammar_case_has_a_hand_built_grammar():
    assert set(HANDBUILT) == set(CASES)


def matches(matcher: TokenMatcher, parts) -> bool:
    state = matcher.start()
    for token, piece in split_input(parts):
        if not state.accept_piece(token, piece):
            return False
    return state.can_end


def run_case(rules, case):
    m = TokenMatcher(rules, VOCAB, [])
    for s in case["passing"]:
        assert oracle_match(OracleGrammar(rules.rules, rules.root), s), f"oracle: {s!r} should match"
        assert matches(m, s), f"{s!r} should match"
    for s in case["failing"]:
        assert not oracle_match(OracleGrammar(rules.rules, rules.root), s), f"oracle: {s!r} should not match"
        assert not matches(m, s), f"{s!r} should not match"


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_built(name):
    run_case(_g(HANDBUILT[name]), CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_parsed(name):
    parse = parse_or_skip()
    run_case(parse(CASES[name]["grammar"]), CASES[name])


@pytest.mark.parametrize("case", DATA["build_fails"], ids=[c["name"] for c in DATA["build_fails"]])
def test_refused(case):
    parse = parse_or_skip()
    with pytest.raises(GrammarError):
        TokenMatcher(parse(case["grammar"]), VOCAB, [])
