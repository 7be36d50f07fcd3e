"""The matcher on SmolLM2's real vocabulary (49152 byte-level BPE tokens, EOG 0, 2, 4) with the
hand-built JSON grammar: a JSON document's own tokens are allowed one after the other; at several
states (the start, inside a string, after a key, in the middle of a multi-byte character, at the
end) the whole-vocabulary mask equals the pure-Python reference of llama.cpp (oracle.py) token
for token; allows() agrees with the mask everywhere; the EOG tokens only where the document may
end. The pieces are what llama.cpp's grammar reads: token_to_piece(t, special=True)."""
from __future__ import annotations

import numpy as np
import pytest

from handbuilt import json_grammar
from oracle import OracleGrammar
from pygguf.gguf import GGUFReader
from pygguf.grammar.matcher import GrammarVocab, TokenMatcher
from pygguf.tokenizer import Tokenizer
from pygguf_cli import paths

DOC = '{"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poésie ✓"], "ok": true, "x": -1.5e3}'


@pytest.fixture(scope="module")
def tok():
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"{path} not found (run `make model`)")
    with GGUFReader(path) as reader:
        return Tokenizer.from_metadata(reader.metadata)


@pytest.fixture(scope="module")
def vocab(tok):
    return GrammarVocab.from_tokenizer(tok)


@pytest.fixture(scope="module")
def oracle_pieces(vocab):
    return [vocab.piece(t) for t in range(vocab.n_vocab)]


def check_mask(state, oracle: OracleGrammar):
    got = state.allowed()
    ref = oracle.allowed()
    expected = np.fromiter((ref[t] for t in range(len(got))), dtype=bool, count=len(got))
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, f"{bad.size} tokens differ, e.g. {[(int(t), oracle.pieces[t]) for t in bad[:5]]}"
    return got


def test_vocab(tok, vocab):
    info = vocab.info()
    assert info["n_vocab"] == 49152 and vocab.eog_ids == {0, 2, 4}
    assert vocab.piece(2) == b"<|im_end|>"                  # special=True: control tokens spelled out
    assert vocab.piece(190) == b"\0"                        # the NUL byte token: never allowed
    assert info["tokens"] == 49152 - 3 - 1                  # every other piece is in the trie
    assert info["bytes"] < 8 << 20


def test_json_document(tok, vocab, oracle_pieces):
    m = TokenMatcher(json_grammar(), vocab)
    st = m.start()
    o = OracleGrammar(json_grammar().rules, json_grammar().root, oracle_pieces, vocab.eog_ids)
    ids = tok.encode(DOC, add_special=False)
    assert tok.decode(ids) == DOC
    check_at = {0, 1, 3, 5, len(ids) // 2, len(ids)}
    rng = np.random.default_rng(0)
    for k, t in enumerate([*ids, None]):
        if k in check_at:
            mask = check_mask(st, o)
        else:
            mask = st.allowed()
        sample = rng.choice(vocab.n_vocab, 500, replace=False)
        assert all(st.allows(int(s)) == mask[s] for s in sample)
        assert mask[[0, 2, 4]].tolist() == [st.can_end] * 3
        if t is None:
            break
        assert st.allows(t), f"token {k} {vocab.piece(t)!r} of the document refused"
        st.accept(t)
        o.accept(t)
        assert st.stacks == frozenset(o.stacks) and st.partial_utf8 == o.partial
    assert st.can_end and st.allows(2) and not st.finished     # trailing whitespace may follow


def test_inside_a_multibyte_character(tok, vocab, oracle_pieces):
    m = TokenMatcher(json_grammar(), vocab)
    st = m.start()
    o = OracleGrammar(json_grammar().rules, json_grammar().root, oracle_pieces, vocab.eog_ids)
    for t in tok.encode('{"k": "', add_special=False):
        st.accept(t)
        o.accept(t)
    lead = oracle_pieces.index(b"\xe2")                     # byte-level BPE: every byte is a token
    st.accept(lead)
    o.accept(lead)
    assert st.partial_utf8 == (2, 2)
    mask = check_mask(st, o)
    assert 0 < mask.sum() < 200                             # only pieces continuing a 3-byte character
    assert not mask[oracle_pieces.index(b"a")]
