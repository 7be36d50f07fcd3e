"""A grammar's matcher over a vocabulary, built once and shared.

Building one parses the GBNF text over the vocabulary's byte trie; a batch run gives many records
the same grammar (or JSON schema) and every sequence of a run the same vocabulary, so matchers are
kept, keyed by the grammar's text and the vocabulary's pieces, a few at a time, and the trie of a
vocabulary is built once for all its grammars. A matcher only caches what it learns about the grammar's states; each sequence's own
state is `matcher.start()`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable, Sequence

KEEP = 16           # matchers kept (each holds its grammar and a cache of allowed-token sets)

_lock = threading.Lock()
_matchers: OrderedDict = OrderedDict()
_vocabs: OrderedDict = OrderedDict()      # (id(pieces), eog) -> (pieces, GrammarVocab): one trie per vocabulary


def matcher_for(text: str, pieces: Sequence[bytes], eog_ids: Iterable[int]):
    """The TokenMatcher of GBNF `text` over tokens whose bytes are `pieces` (GrammarError if the
    text is not a grammar)."""
    from pygguf.grammar.gbnf import parse
    from pygguf.grammar.matcher import TokenMatcher

    eog = frozenset(int(t) for t in eog_ids)
    key = (text, id(pieces), eog)
    with _lock:
        hit = _matchers.get(key)
        if hit is not None and hit[0] is pieces:      # the same vocabulary object, not a reused id
            _matchers.move_to_end(key)
            return hit[1]
    matcher = TokenMatcher(parse(text), _vocab_for(pieces, eog))
    with _lock:
        _matchers[key] = (pieces, matcher)
        while len(_matchers) > KEEP:
            _matchers.popitem(last=False)
    return matcher


def _vocab_for(pieces: Sequence[bytes], eog: frozenset):
    """The vocabulary's byte trie, built once and shared by the matchers of every grammar over it"""
    from pygguf.grammar.matcher import GrammarVocab

    key = (id(pieces), eog)
    with _lock:
        hit = _vocabs.get(key)
        if hit is not None and hit[0] is pieces:
            _vocabs.move_to_end(key)
            return hit[1]
    vocab = GrammarVocab(pieces, eog)
    with _lock:
        _vocabs[key] = (pieces, vocab)
        while len(_vocabs) > 4:
            _vocabs.popitem(last=False)
    return vocab
