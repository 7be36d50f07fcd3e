"""pygguf's GBNF parser against llama.cpp's: the cases of llama.cpp's own tests
(tests/data/grammar/parser_cases.json, read out of test-grammar-parser.cpp and
test-grammar-integration.cpp) and what llama.cpp's parser made of more grammars, of bad grammars and
of its grammars/*.gbnf (tests/data/grammar/llama_cpp_parses.json, recorded through
bench/record_gbnf_parses.py). tests/data/grammar/README.md says how both were made."""
from __future__ import annotations

import hashlib
import json

import pytest
from testpaths import TESTS

from pygguf.grammar import END, GrammarError, parse, to_text
from pygguf_cli import paths

DATA = TESTS / "data" / "grammar"
CASES = json.loads((DATA / "parser_cases.json").read_text(encoding="utf-8"))
RECORDED = json.loads((DATA / "llama_cpp_parses.json").read_text(encoding="utf-8"))


def as_lists(rules) -> list:
    return [[list(e) for e in rule] for rule in rules]


def canonical(g) -> str:
    """bench/record_gbnf_parses.py's canonical form of symbol ids and rules, which it hashes."""
    return json.dumps({"symbols": dict(sorted(g.symbol_ids.items())), "rules": as_lists(g.rules)},
                      separators=(",", ":"))


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def short(text: str) -> str:
    return " ".join(text.split())[:60]


# ---- test-grammar-parser.cpp ------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES["parser"]["parsing"], ids=lambda c: short(c["grammar"]))
def test_parser_cpp_case(case):
    """verify_parsing: the same symbol ids, and the rules' elements in order, element by element."""
    g = parse(case["grammar"])
    assert g.symbol_ids == case["symbol_ids"]
    flat = [list(e) for rule in g.rules for e in rule]
    assert flat == case["elements"]
    assert all(rule[-1] == (END, 0) for rule in g.rules)


@pytest.mark.parametrize("grammar", CASES["parser"]["failures"], ids=short)
def test_parser_cpp_failure(grammar):
    with pytest.raises(GrammarError):
        parse(grammar)


def test_parser_cpp_case_counts():
    assert len(CASES["parser"]["parsing"]) == 17
    assert len(CASES["parser"]["failures"]) == 6


# ---- test-grammar-integration.cpp -------------------------------------------------------------

EXPECTED_MESSAGE = {
    "parses, but has no root rule": "grammar does not contain a 'root' symbol",
    "parse fails: undefined rule": "Undefined rule identifier 'numero'",
    "build fails: left recursion": "unsupported grammar, left recursion detected for nonterminal at index",
    "build fails: no such root": "grammar does not contain a '",
}


@pytest.mark.parametrize("case", CASES["integration"]["failures"], ids=lambda c: c["test"] + ": " + short(c["grammar"]))
def test_integration_failure(case):
    with pytest.raises(GrammarError) as info:
        parse(case["grammar"], root=case["root"])
    assert str(info.value).startswith(EXPECTED_MESSAGE[case["expect"]])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", CASES["integration"]["successes"], ids=lambda c: c["test"])
def test_integration_custom_root(case):
    g = parse(case["grammar"], root=case["root"])
    assert g.root == g.symbol_ids[case["root"]]


@pytest.mark.parametrize("case", CASES["integration"]["grammars"], ids=lambda c: c["test"])
def test_integration_grammar_parses(case):
    parse(case["grammar"])


# ---- recorded with llama.cpp's own parser -----------------------------------------------------

@pytest.mark.parametrize("case", RECORDED["grammars"], ids=lambda c: short(c["grammar"]))
def test_recorded_grammar(case):
    """Symbol ids, rules and print_grammar output exactly as llama.cpp's."""
    g = parse(case["grammar"], root=case["root"])
    if "rules" in case:
        assert g.symbol_ids == case["symbol_ids"]
        assert as_lists(g.rules) == case["rules"]
        assert to_text(g) == case["print"]
    else:           # big expansions are recorded as hashes
        assert sha256(canonical(g)) == case["rules_sha256"]
        assert sha256(to_text(g)) == case["print_sha256"]


@pytest.mark.parametrize("case", RECORDED["errors"], ids=lambda c: short(c["grammar"]) or "(empty)")
def test_recorded_error(case):
    """llama.cpp's message first (pygguf may add a name), the position where llama.cpp names one
    (as a byte offset: its message ends with the rest of the grammar from there)."""
    with pytest.raises(GrammarError) as info:
        parse(case["grammar"])
    err = info.value
    if case["stage"] == "parse":
        assert err.reason.startswith(case["message"]), (err.reason, case["message"])
        if case["offset"] is not None:
            assert err.offset == case["offset"]
            assert str(err).startswith(f"{err.reason} at line {err.line}, column {err.column}")
    else:
        assert str(err).startswith(case["message"]), (str(err), case["message"])


def gbnf_file(name: str):
    path = paths.grammars_dir() / name
    if not path.is_file():
        pytest.skip(f"{path} missing: make vocab")
    return path


@pytest.mark.parametrize("name", sorted(RECORDED["files"]))
def test_gbnf_file_as_llama_cpp(name):
    """Each of llama.cpp's grammars/*.gbnf: the rules and print output llama.cpp gives (hashes)."""
    data = gbnf_file(name).read_bytes()
    expected = RECORDED["files"][name]
    if sha256(data) != expected["sha256"]:
        pytest.skip(f"{name} is not the file recorded (another llama.cpp version?)")
    assert expected["parsed"]
    g = parse(data)
    assert len(g.rules) == expected["n_rules"]
    assert sum(map(len, g.rules)) == expected["n_elements"]
    assert sha256(canonical(g)) == expected["rules_sha256"]
    assert sha256(to_text(g)) == expected["print_sha256"]


def test_every_gbnf_file_parses():
    if not paths.grammars_dir().is_dir():
        pytest.skip(f"{paths.grammars_dir()} missing: make vocab")
    files = sorted(paths.grammars_dir().glob("*.gbnf"))
    assert len(files) >= 8
    for path in files:
        g = parse(path.read_text(encoding="utf-8"))
        assert g.symbol_ids["root"] == g.root
