"""pygguf.grammar.gbnf: error messages and positions, tokens, bytes, printing, and the limits where
llama.cpp would crash, hang or exhaust memory (what llama.cpp gives for each value checked here was
read off its parser through bench/llama_cpp_grammar_oracle.cpp)."""
from __future__ import annotations

import sys
import time

import pytest

from pygguf.errors import PyggufError
from pygguf.grammar import (
    ALT,
    CHAR,
    CHAR_ALT,
    CHAR_NOT,
    CHAR_RNG_UPPER,
    END,
    RULE_REF,
    TOKEN,
    TOKEN_NOT,
    GrammarError,
    ParsedGrammar,
    gbnf,
    parse,
    to_text,
)


def error_of(text, **kw) -> GrammarError:
    with pytest.raises(GrammarError) as info:
        parse(text, **kw)
    return info.value


# ---- errors ---------------------------------------------------------------------------------------

def test_error_is_one_line_with_llama_cpp_reason_then_position():
    err = error_of('root ::= "a"\nitem := "b"\n')
    assert isinstance(err, PyggufError) and isinstance(err, ValueError)
    assert err.reason == "expecting ::="
    assert (err.line, err.column, err.offset) == (2, 6, 18)
    assert str(err) == "expecting ::= at line 2, column 6: ':= \"b\"\\n'"


def test_error_column_counts_characters():
    err = error_of('root ::= "é日😀" )')
    assert err.reason == "expecting newline or end"
    assert (err.line, err.column) == (1, 16)
    assert err.offset == len('root ::= "é日😀" '.encode())


def test_error_at_end_of_input():
    err = error_of("root ::= (\"a\"")
    assert str(err) == "expecting ')' at line 1, column 14 (end of input)"


def test_undefined_rule_points_at_first_reference():
    err = error_of('root ::= "a" item\n')
    assert str(err).startswith("Undefined rule identifier 'item' at line 1, column 14")
    # llama.cpp's bare "Undefined rule": a slot below a generated rule's id that no rule filled
    err = error_of("root ::= item*")
    assert err.reason == "Undefined rule 'item'"


def test_no_root_and_no_rules():
    assert str(error_of('item ::= "a"')) == "grammar does not contain a 'root' symbol"
    assert str(error_of('item ::= "a"', root="start")) == "grammar does not contain a 'start' symbol"
    assert str(error_of("  # nothing\n")).startswith("failed to parse grammar")
    assert parse('item ::= "a"', root="item").root == 0


def test_left_recursion_names_rule_and_cycle():
    err = error_of('root ::= expr\nexpr ::= "a" | term "b"\nterm ::= "c" | expr "d"\n')
    # llama.cpp reports the first index a cycle is reachable from: root
    assert str(err).startswith("unsupported grammar, left recursion detected for nonterminal at index 0 "
                               "('root': expr -> term -> expr) at line 1, column 1")


def test_left_recursion_through_empty_alternative():
    err = error_of('root ::= opt root "x" | "y"\nopt ::= "o" | \n')
    assert "left recursion" in str(err)


def test_indirectly_nullable_left_recursion():
    """llama.cpp's check sees only literally empty alternatives; `c ::= d*` is nullable through a
    generated rule. With more after the recursive reference llama.cpp's matcher grows its stack until
    memory runs out: refused. In tail position llama.cpp's seen-stack set ends the loop: accepted."""
    err = error_of('root ::= x\nx ::= c x "r" | "q"\nc ::= d*\nd ::= "d"\n')
    assert "index 1 ('x': x -> x, through rules that match the empty string" in str(err)
    assert (err.line, err.column) == (2, 1)
    parse('root ::= x\nx ::= c x | "q"\nc ::= d*\nd ::= "d"\n')
    parse('root ::= "a"+? ("c"?)*')
    # an unreachable rule is never expanded, by llama.cpp either
    parse('root ::= "q"\nx ::= c x "r" | "q"\nc ::= d*\nd ::= "d"\n')


def test_repetition_maximum_below_minimum():
    """llama.cpp computes max - min unsigned and generates rules until memory runs out."""
    start = time.perf_counter()
    err = error_of('root ::= "a"{5,3}')
    assert time.perf_counter() - start < 1
    assert err.reason.startswith("repetition {5,3} has a maximum below its minimum")
    assert err.column == 13


def test_repetition_threshold():
    assert "number of repetitions exceeds sane defaults" in str(error_of('root ::= "a"{2001}'))
    # a maximum past the threshold means no maximum, as in llama.cpp
    assert parse('root ::= "a"{1,2001}').rules == parse('root ::= "a"{1,}').rules
    assert "multiplied by the new repetition" in str(error_of('root ::= ("a"{0,40}){50}'))


def test_out_of_range_numbers_are_grammar_errors():
    assert error_of('root ::= "a"{99999999999999999999}').reason == "stoull"
    assert error_of("root ::= <[99999999999999999999]>").reason == "stoul"
    assert error_of("root ::= <[4294967296]>").reason == "parsed token id is too big"
    assert error_of('root ::= "a"{' + "9" * 5000 + "}").reason == "stoull"
    assert parse('root ::= "a"{' + "0" * 5000 + "2}").rules == parse('root ::= "a"{2}').rules


# ---- pygguf's limits --------------------------------------------------------------------------------

def test_deep_nesting_is_an_error_not_a_crash():
    start = time.perf_counter()
    err = error_of("root ::= " + "(" * 100_000 + '"a"' + ")" * 100_000)
    assert "nested too deeply" in str(err)
    assert time.perf_counter() - start < 2
    depth = gbnf.MAX_NESTING
    g = parse("root ::= " + "(" * depth + '"a"' + ")" * depth)
    assert len(g.rules) == depth + 1


def test_parse_deep_in_the_callers_stack():
    """With little stack left, a nesting within the limit still ends in GrammarError, not RecursionError."""
    text = "root ::= " + "(" * 150 + '"a"' + ")" * 150

    def at_depth(n):
        if n == 0:
            return parse(text)
        return at_depth(n - 1)
    with pytest.raises(GrammarError, match="nested too deeply"):
        at_depth(sys.getrecursionlimit() - 200)


def test_huge_expansion_is_an_error():
    start = time.perf_counter()
    err = error_of('root ::= "' + "a" * 5000 + '"{2000}')
    assert "grammar too large" in str(err)
    assert time.perf_counter() - start < 2


def test_long_rule_chain():
    n = 5000
    lines = ["root ::= r0"] + [f"r{i} ::= r{i + 1}" for i in range(n)] + [f'r{n} ::= "x"']
    g = parse("\n".join(lines))
    assert len(g.rules) == n + 2
    lines[-1] = f"r{n} ::= r0 \"x\""
    assert "left recursion" in str(error_of("\n".join(lines)))


def test_long_optional_chains():
    g = parse('root ::= ("a" | ""){0,2000}')      # 2000 chained optional rules
    assert len(g.rules) == 2002
    parse('root ::= ("b" [c]?){0,1000} "x"')


# ---- tokens -------------------------------------------------------------------------------------

def test_token_ids():
    g = parse("root ::= <[1000]> !<[1001]> <[1001]>")
    assert g.rules == (((TOKEN, 1000), (TOKEN_NOT, 1001), (TOKEN, 1001), (END, 0)),)
    assert to_text(g) == "root ::= <[1000]> !<[1001]> <[1001]> \n"


def test_token_text_needs_a_vocabulary():
    assert error_of("root ::= <think>").reason == "no vocab to parse token"
    seen = []

    def tokenize(piece: bytes):
        seen.append(piece)
        return {b"<think>": [42], b"</think>": [43]}.get(piece, [1, 2])
    g = parse("root ::= <think> !</think>* </think>", tokenize=tokenize)
    assert g.rules[0] == ((TOKEN, 42), (RULE_REF, 1), (TOKEN, 43), (END, 0))
    assert g.rules[1] == ((TOKEN_NOT, 43), (RULE_REF, 1), (ALT, 0), (END, 0))
    assert seen == [b"<think>", b"</think>", b"</think>"]
    err = error_of("root ::= <two tokens>", tokenize=tokenize)
    assert err.reason == "invalid token '<two tokens>'"


# ---- text and bytes -----------------------------------------------------------------------------

def test_bytes_decode_as_llama_cpp_does():
    """Malformed UTF-8 as llama.cpp's decode_utf8 reads it: a stray continuation byte 0x80 is 0."""
    g = parse(b'root ::= "\xc3\xa9\x80x" [\xe6\x97\xa5-\xf0\x9f\x98\x80]\n')
    assert g.rules == (((CHAR, 0xE9), (CHAR, 0), (CHAR, 0x78), (CHAR, 0x65E5), (CHAR_RNG_UPPER, 0x1F600), (END, 0)),)
    assert to_text(g) == "root ::= [<U+00E9>] [<U+0000>] [x] [<U+65E5>-<U+1F600>] \n"


def test_nul_ends_the_grammar():
    assert parse('root ::= "a"\0 garbage (').rules == (((CHAR, 97), (END, 0)),)


def test_lone_surrogate_in_str():
    assert parse('root ::= "\udc80"').rules == (((CHAR, 0xDC80), (END, 0)),)


def test_classes():
    g = parse(r'root ::= [^a-c\]x-] [-]')
    assert g.rules[0] == ((CHAR_NOT, 97), (CHAR_RNG_UPPER, 99), (CHAR_ALT, 93), (CHAR_ALT, 120), (CHAR_ALT, 45),
                          (CHAR, 45), (END, 0))


# ---- the result ---------------------------------------------------------------------------------

def test_parsed_grammar_is_frozen_and_hashable():
    g = parse('root ::= item+\nitem ::= "a"')
    assert isinstance(g, ParsedGrammar)
    assert g == parse('root ::= item+\nitem ::= "a"')
    assert hash(g) == hash(parse('root ::= item+\nitem ::= "a"'))
    with pytest.raises(AttributeError):
        g.root = 1
    assert g.name(2) == "root_2"
    assert g.text == 'root ::= item+\nitem ::= "a"'


def test_to_text_like_print_grammar():
    g = parse('root ::= ("a" | [b-d]) item* .\nitem ::= [^\\n]')
    assert to_text(g) == ("root ::= root_1 root_3 .] \n"
                          "root_1 ::= [a] | [b-d] \n"
                          "item ::= [^<U+000A>] \n"
                          "root_3 ::= item root_3 | \n")
