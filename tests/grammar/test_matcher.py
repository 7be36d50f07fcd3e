"""The C grammar matcher (pygguf.grammar.matcher) on hand-built rules: each element type, the
checks on malformed rules, the limits, the partial UTF-8 rules, and the C state against the
pure-Python reference of llama.cpp (oracle.py) on each."""
from __future__ import annotations

import numpy as np
import pytest

from handbuilt import (ALT, CHAR, CHAR_ALT, CHAR_ANY, CHAR_NOT, CHAR_RNG_UPPER, END, RULE_REF, TOKEN,
                       Alt, Any, Builder, Lit, Opt, Plus, Ref, Seq, Star, Tok, chars, json_grammar, raw)
from oracle import OracleGrammar
from pygguf.errors import GrammarError
from pygguf.grammar.matcher import GrammarVocab, TokenMatcher

PIECES = [b"a", b"b", b"ab", b"abc", b"c", b"x", b"0", b"9", b"z", b" ", b"\n", b"", b"\0a", b"<eos>",
          "é".encode(), "é".encode()[:1], "é".encode()[1:], "€".encode(), "€".encode()[:2], "€".encode()[2:],
          "😀".encode(), "😀".encode()[:1], "😀".encode()[1:3], b"\x80", b"\xc0\x80", b"\xff\x80\x80\x80",
          b"a\0b", b"<[10]>", b"<[11]>", b"ab\xe2"]
EOG = [13]
OVERLONG_NUL = PIECES.index(b"\xc0\x80")     # decodes to code point 0: llama.cpp allows it almost anywhere


def matcher(rules, pieces=PIECES, eog=EOG, **kw):
    return TokenMatcher(rules, pieces, eog, **kw)


def allowed_set(state) -> set[int]:
    return set(np.flatnonzero(state.allowed()).tolist())


def oracle_set(o: OracleGrammar) -> set[int]:
    return {t for t, ok in o.allowed().items() if ok}


def check_against_oracle(rules, inputs, pieces=PIECES, eog=EOG):
    """Accept each token in turn in the C state and the oracle; after each, the same stacks,
    partial UTF-8 and allowed tokens, and allows() agreeing with the mask."""
    m = matcher(rules, pieces, eog)
    st = m.start()
    o = OracleGrammar(rules.rules, rules.root, pieces, eog)
    for token in [None, *inputs]:
        if token is not None:
            st.accept(token)
            o.accept(token)
        assert st.stacks == frozenset(o.stacks)
        assert st.partial_utf8 == o.partial
        got = allowed_set(st)
        assert got == oracle_set(o)
        assert {t for t in range(len(pieces)) if st.allows(t)} == got
        assert st.can_end == o.can_end
    return st


# ---- element types -------------------------------------------------------------------------

def test_char_and_sequence():
    rules = raw([[(CHAR, ord("a")), (CHAR, ord("b")), (END, 0)]])
    st = check_against_oracle(rules, [0])
    assert allowed_set(st) == {1, OVERLONG_NUL}      # "b" (and nothing else) after "a"
    st.accept(1)
    assert st.can_end and st.finished


def test_alternatives_and_empty_alternative():
    rules = raw([[(CHAR, ord("a")), (ALT, 0), (CHAR, ord("b")), (ALT, 0), (END, 0)]])
    st = matcher(rules).start()
    assert st.can_end                        # the empty alternative
    assert allowed_set(st) == {0, 1, EOG[0], OVERLONG_NUL, PIECES.index(b"a\0b")}
    check_against_oracle(rules, [1])


def test_char_not_range_alt():
    # [^a-cx] then [0-9z]
    rules = raw([[(CHAR_NOT, ord("a")), (CHAR_RNG_UPPER, ord("c")), (CHAR_ALT, ord("x")),
                  (CHAR, ord("0")), (CHAR_RNG_UPPER, ord("9")), (CHAR_ALT, ord("z")), (END, 0)]])
    st = matcher(rules).start()
    got = allowed_set(st)
    assert 0 not in got and 5 not in got and 8 in got and 9 in got     # a, x refused; z, " " allowed
    assert 14 in got and 15 in got                                     # é, and its first byte alone
    check_against_oracle(rules, [8, 6])
    check_against_oracle(rules, [14, 7])


def test_char_any_counts_code_points():
    rules = raw([[(CHAR_ANY, 0), (CHAR_ANY, 0), (END, 0)]])
    st = check_against_oracle(rules, [20])   # one emoji is one character
    assert 2 not in allowed_set(st)         # "ab" would be two more
    check_against_oracle(rules, [21, 22])    # the emoji in two pieces: still one character


def test_rule_ref_and_recursion_on_the_right():
    b = Builder()
    b.define("root", Seq(Lit("a"), Opt(Ref("root")), Lit("b")))     # a^n b^n
    rules = b.build()
    st = check_against_oracle(rules, [0, 0, 0, 1, 1])
    assert not st.can_end
    st.accept(1)
    assert st.can_end and st.finished


def test_tokens_and_not_tokens():
    # root ::= <[10]>-piece-token "x" !<[11]>*  with the token ids of PIECES' "<[10]>", "<[11]>"
    t10, t11 = PIECES.index(b"<[10]>"), PIECES.index(b"<[11]>")
    b = Builder()
    b.define("root", Seq(Tok(t10), Lit("x"), Star(Tok(t11, negate=True)), Tok(t11)))
    rules = b.build()
    st = matcher(rules).start()
    assert allowed_set(st) == {t10, OVERLONG_NUL}    # a token element looks at the id only (or at no code point)
    check_against_oracle(rules, [t10, 5, 0, 3, 14, t10, t11])


def test_token_element_after_characters_looks_at_the_id():
    # llama.cpp: once a stack's top is a token element, any code points left in the piece are
    # judged by the id alone, so a piece "ab..." may pass "a" <[id]> when its id is id
    ab = PIECES.index(b"ab")
    rules = raw([[(CHAR, ord("a")), (TOKEN, ab), (END, 0)]])
    st = matcher(rules).start()
    assert st.allows(ab) and not st.allows(3)
    check_against_oracle(rules, [0])


def test_every_element_type_in_one_grammar_against_the_oracle():
    b = Builder()
    b.define("root", Seq(Ref("word"), Star(Seq(Lit(" "), Ref("word"))), Opt(Alt(Lit("\n"), Tok(13)))))
    b.define("word", Alt(Plus(chars("a-c")), Seq(Any(), chars("0-9", negate=True)), Lit("é€")))
    rules = b.build()
    for seq in ([0, 1, 9, 3], [14, 18, 19, 9, 4], [5, 0, 9, 2, 10], [20, 8, 9, 15, 16, 17]):
        check_against_oracle(rules, seq)


# ---- vocabulary rules ----------------------------------------------------------------------

def test_eog_only_when_a_stack_is_empty_and_accepting_it_changes_nothing():
    rules = raw([[(CHAR, ord("a")), (END, 0)]])
    st = matcher(rules).start()
    assert not st.allows(EOG[0])
    with pytest.raises(GrammarError):
        st.accept(EOG[0])
    st.accept(0)
    assert st.allows(EOG[0]) and st.finished
    before = st.stacks
    st.accept(EOG[0])
    assert st.stacks == before


def test_empty_and_nul_first_pieces_are_refused():
    st = matcher(raw([[(CHAR_ANY, 0), (ALT, 0), (END, 0)]])).start()
    assert not st.allows(PIECES.index(b"")) and not st.allows(PIECES.index(b"\0a"))
    assert st.allows(PIECES.index(b"a\0b"))      # read up to the NUL: "a"


def test_invalid_utf8_is_refused():
    st = matcher(raw([[(CHAR_ANY, 0), (CHAR_ANY, 0), (END, 0)]])).start()
    assert not st.allows(PIECES.index(b"\x80"))           # a stray continuation byte
    assert st.allows(PIECES.index(b"\xff\x80\x80\x80"))   # llama.cpp reads 0xF8..0xFF as 4-byte leads


def test_partial_utf8_across_tokens():
    # "€" only: its first two bytes are allowed (match_partial_char), then only its last byte
    rules = raw([[(CHAR, ord("€")), (END, 0)]])
    lead, tail = PIECES.index("€".encode()[:2]), PIECES.index("€".encode()[2:])
    st = check_against_oracle(rules, [lead])
    assert st.partial_utf8 == (0x82 | (0xE2 & 0x0F) << 6, 1)
    assert allowed_set(st) == {tail}         # (\xc0\x80 is invalid after a lead byte)
    st.accept(tail)
    assert st.finished


def test_a_partial_sequence_that_cannot_match_is_refused():
    rules = raw([[(CHAR, ord("é")), (END, 0)]])           # é is 2 bytes: a 3-byte lead cannot be it
    st = matcher(rules).start()
    assert st.allows(PIECES.index("é".encode()[:1]))
    assert not st.allows(PIECES.index("€".encode()[:2]))
    assert not st.allows(PIECES.index("😀".encode()[:1]))


def test_overlong_nul_ends_the_candidate_like_llama_cpp():
    # b"\xc0\x80" decodes to code point 0, which llama.cpp's candidate walk reads as its end: the
    # token is allowed wherever a non-empty piece with nothing left would be
    st = matcher(raw([[(CHAR, ord("q")), (END, 0)]])).start()
    assert st.allows(PIECES.index(b"\xc0\x80"))
    check_against_oracle(raw([[(CHAR, ord("q")), (END, 0)]]), [])


# ---- accept_text / accept_piece ------------------------------------------------------------

def test_accept_text_and_piece():
    g = json_grammar()
    st = matcher(g).start()
    assert st.accept_text(b'{"k": [1, 2.5e3, true, "\\u00e9 }"')
    assert not st.accept_text(b"}")             # the array is open: rejected, state unchanged
    assert st.accept_text(b"]}")
    assert st.can_end
    assert st.accept_text("") and st.can_end
    st2 = matcher(g).start()
    assert st2.accept_text(b'{"a":"\xe2\x82')    # a partial UTF-8 sequence is kept
    assert st2.partial_utf8[1] == 1
    assert st2.accept_text(b'\xac"}') and st2.can_end


def test_copy_is_independent():
    st = matcher(json_grammar()).start()
    st.accept_text(b'{"a":')
    c = st.copy()
    c.accept_text(b"1}")
    assert c.can_end and not st.can_end
    assert st.accept_text(b'"x"}') and st.can_end


# ---- malformed rules -----------------------------------------------------------------------

@pytest.mark.parametrize("rules, where", [
    ([[(CHAR, 97)]], "rule 0, element 0"),                                    # no END
    ([[(CHAR, 97), (END, 0), (CHAR, 98), (END, 0)]], "rule 0, element 1"),    # END inside
    ([[(RULE_REF, 5), (END, 0)]], "rule 0, element 0"),                       # undefined rule
    ([[(CHAR_RNG_UPPER, 97), (END, 0)]], "rule 0, element 0"),                # range with no start
    ([[(CHAR, 97), (CHAR_RNG_UPPER, 98), (CHAR_RNG_UPPER, 99), (END, 0)]], "rule 0, element 2"),
    ([[(CHAR_ALT, 97), (END, 0)]], "rule 0, element 0"),
    ([[(CHAR, 97), (END, 0)], [(12, 0), (END, 0)]], "rule 1, element 0"),     # no such type
    ([[(CHAR, 97), (END, 0)], []], "rule 1 is empty"),
])
def test_malformed_rules_are_refused(rules, where):
    with pytest.raises(GrammarError, match=where):
        matcher(raw(rules))


def test_bad_root_and_values_are_refused():
    with pytest.raises(GrammarError):
        matcher(raw([[(CHAR, 97), (END, 0)]], root=3))
    with pytest.raises(GrammarError):
        matcher(raw([[(CHAR, -1), (END, 0)]]))
    with pytest.raises(GrammarError):
        matcher(raw([]))


def test_left_recursion_is_refused():
    # root ::= "a" | root "a"   (llama.cpp's own check refuses it too)
    with pytest.raises(GrammarError, match="left recursion"):
        matcher(raw([[(CHAR, 97), (ALT, 0), (RULE_REF, 0), (CHAR, 97), (END, 0)]]))


def test_left_recursion_through_an_indirectly_nullable_rule_is_refused():
    # root ::= e root "a" | "b";  e ::= f;  f ::= "" | "c"
    # llama.cpp's check misses it (e is not literally empty) and its expansion never ends
    b = Builder()
    b.define("root", Alt(Seq(Ref("e"), Ref("root"), Lit("a")), Lit("b")))
    b.define("e", Ref("f"))
    b.define("f", Alt(Seq(), Lit("c")))
    with pytest.raises(GrammarError, match=r"rule 0 \(root\)"):
        matcher(b.build())


def test_cycles_at_the_end_of_alternatives_are_fine():
    # ( [x]* )*: llama.cpp's "segfault" test grammar; the cycle only replaces the top of the stack
    b = Builder()
    b.define("root", Star(Seq(Star(chars("x")))))
    rules = b.build()
    st = check_against_oracle(rules, [5, 5])
    assert st.can_end


def test_a_root_that_reaches_no_terminal_is_refused():
    with pytest.raises(GrammarError, match="matches no input"):
        matcher(raw([[(RULE_REF, 0), (END, 0)]]))


# ---- limits --------------------------------------------------------------------------------

def ambiguous_grammar():
    # s ::= "a" s "b" | "a" s "c" | ""  : after n a's, 2^n distinct stacks
    b = Builder()
    b.define("root", Ref("s"))
    b.define("s", Alt(Seq(Lit("a"), Ref("s"), Lit("b")), Seq(Lit("a"), Ref("s"), Lit("c")), Seq()))
    return b.build()


def test_exponential_stacks_hit_the_cap_with_a_clear_error():
    m = matcher(ambiguous_grammar(), max_stacks=1000)
    st = m.start()
    with pytest.raises(GrammarError, match="too many grammar stacks"):
        for _ in range(20):
            st.accept(0)
    assert len(st.stacks) <= 1000                 # the state is the last one that fit


def test_nested_stars_stay_bounded():
    # root ::= ((("x")*)*)*  and alternations of them: many paths, few distinct stacks
    b = Builder()
    b.define("root", Star(Alt(Star(Alt(Star(Lit("x")), Star(Lit("y")))), Star(Lit("x")))))
    rules = b.build()
    m = matcher(rules, pieces=[b"x", b"y", b"xy", b"xx"], eog=[])
    st = m.start()
    for _ in range(50):
        st.accept(2)
    assert len(st.stacks) < 50
    check_against_oracle(rules, [0, 1, 2, 3], pieces=[b"x", b"y", b"xy", b"xx"], eog=[])


def test_caches_are_bounded_and_flushing_keeps_states():
    g = json_grammar()
    m = matcher(g, cache_bytes=1, mask_cache=2)   # drop the caches before every call
    st = m.start()
    o = OracleGrammar(g.rules, g.root, PIECES, EOG)
    for text in (b"{", b'"', b"a", b"b", b'"', b":", b" ", b"1", b"}"):
        t = PIECES.index(text) if text in PIECES else None
        if t is None:
            assert st.accept_text(text)
            o.accept_str(text)
        else:
            st.accept(t)
            o.accept(t)
        assert allowed_set(st) == oracle_set(o)
        assert st.stacks == frozenset(o.stacks)
    assert m.stats()["flushes"] > 5


def test_mask_sets_minus_inf_where_not_allowed():
    m = matcher(json_grammar())
    st = m.start()
    st.accept_text(b'{"a": ')
    logits = np.arange(len(PIECES), dtype=np.float32)
    st.mask(logits)
    ok = st.allowed()
    assert np.all(np.isneginf(logits[~ok])) and np.array_equal(logits[ok], np.flatnonzero(ok).astype(np.float32))
    with pytest.raises(GrammarError):
        st.mask(np.zeros(len(PIECES), dtype=np.float64))
    with pytest.raises(GrammarError):
        st.mask(np.zeros(len(PIECES) + 1, dtype=np.float32))


def test_token_out_of_range():
    st = matcher(json_grammar()).start()
    with pytest.raises(GrammarError, match="out of range"):
        st.allows(len(PIECES))
    with pytest.raises(GrammarError, match="out of range"):
        st.accept(-1)
    with pytest.raises(GrammarError, match="out of range"):
        st.allows(2**40)


def test_states_of_one_matcher_in_threads():
    # the C calls run without the GIL: the grammar's lock keeps its shared caches whole
    import threading
    g = json_grammar()
    m = matcher(g, cache_bytes=1 << 14, mask_cache=2)       # small caches: flushes while others run
    texts = [b'{"a": [1, 2, {"b": "c\xc3\xa9"}], "d": true}', b'{"x":-1.5e3}', b'{ "k" : null }']
    expected = []
    for text in texts:
        st, seq = m.start(), []
        for k in range(len(text)):
            st.accept_text(text[k:k + 1])
            seq.append(st.allowed().copy())
        expected.append(seq)
    errors = []

    def run(i):
        try:
            for _ in range(20):
                st = m.start()
                text = texts[i % len(texts)]
                for k in range(len(text)):
                    assert st.accept_text(text[k:k + 1])
                    assert np.array_equal(st.allowed(), expected[i % len(texts)][k])
                    assert all(st.allows(t) == expected[i % len(texts)][k][t] for t in range(len(PIECES)))
        except Exception as e:       # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_a_vocab_is_shared_between_matchers():
    vocab = GrammarVocab(PIECES, EOG)
    a = TokenMatcher(raw([[(CHAR, ord("b")), (END, 0)]]), vocab)
    b = TokenMatcher(raw([[(CHAR, ord("a")), (END, 0)]]), vocab)
    assert a.start().allows(1) and not a.start().allows(0) and b.start().allows(0)
    info = vocab.info()
    assert info["tokens"] == len(PIECES) - 1 - 2     # less the EOG, the empty and the NUL-first pieces
