"""Which tokens a GBNF grammar allows next: llama.cpp's grammar matching (src/llama-grammar.cpp)
over a vocabulary, in C (csrc/grammar/, see csrc/api/grammar.h).

    vocab = GrammarVocab.from_tokenizer(tokenizer)        # once per vocabulary: a byte trie
    matcher = TokenMatcher(parse(text), vocab)            # once per grammar (and vocabulary)
    state = matcher.start()                               # one per sequence
    if not state.allows(token):                           # the sampler's first, cheap check
        state.mask(logits)                                # -inf where llama.cpp's would put it
        token = ... sample again ...
    state.accept(token)

The grammar is anything with `rules` (llama.cpp's element encoding: rules[i] a tuple of
(type, value) pairs ending with (END, 0)) and `root` (the start rule's index), as
pygguf.grammar.gbnf.ParsedGrammar; `symbol_ids` (name -> index), when present, names rules in
errors. The C side checks the rules (nothing there trusts an index) and refuses a grammar whose
expansion would not terminate. `pieces[t]` are the bytes llama.cpp's grammar sees for token t:
token_to_piece(t, special=True); EOG tokens are allowed exactly when some stack is empty.

A TokenMatcher's caches (stacks, sets of stacks, their steps, the last allowed sets) are shared
by its states and bounded (cache_bytes; past it they are dropped, states keep their own stacks).
The C calls of one TokenMatcher are serialized by a lock; a MatchState belongs to one thread.
"""
from __future__ import annotations

import bisect
from typing import Iterable, Sequence

import numpy as np

from pygguf._native import ffi as _ffi
from pygguf._native import lib as _lib
from pygguf.errors import GrammarError, c_status_message

_REJECTED = _lib.PG_EGRAMMAR_REJECTED


class GrammarVocab:
    """A vocabulary as the grammar sees it: every token's piece and the EOG tokens, as a byte trie
    in C. Build it once and give it to every TokenMatcher of that vocabulary."""

    def __init__(self, pieces: Sequence[bytes], eog_ids: Iterable[int] = ()):
        pieces = [bytes(p) for p in pieces]
        n = len(pieces)
        eog = sorted({int(t) for t in eog_ids})
        if eog and not (0 <= eog[0] and eog[-1] < n):
            raise GrammarError(f"EOG token ids must be in [0, {n})")
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter((len(p) for p in pieces), dtype=np.int64, count=n), out=offsets[1:])
        data = b"".join(pieces) + b"\0"      # the trie keeps its own copy
        out = _ffi.new("pg_token_trie **")
        eog_arr = _ffi.new("int32_t[]", eog or [0])
        rc = _lib.pg_token_trie_new(data, _ffi.from_buffer("int64_t[]", offsets), n, eog_arr, len(eog), out)
        if rc < 0:
            raise GrammarError(f"vocabulary for the grammar: {c_status_message(rc)}")
        self._trie = _ffi.gc(out[0], _lib.pg_token_trie_free)
        self.n_vocab = n
        self.eog_ids = frozenset(eog)
        self._pieces = pieces

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "GrammarVocab":
        """pygguf.tokenizer.Tokenizer's pieces (special=True, as llama.cpp's grammar reads them)."""
        return cls(tokenizer.grammar_pieces(), tokenizer.eog_ids)

    def piece(self, token: int) -> bytes:
        return self._pieces[token]

    def info(self) -> dict:
        """Trie nodes, tokens in the trie, the longest piece, and the bytes the trie holds."""
        info = _ffi.new("pg_token_trie_info *")
        _lib.pg_token_trie_get_info(self._trie, info)
        return {"n_vocab": info.n_vocab, "nodes": info.n_nodes, "tokens": info.n_tokens,
                "max_depth": info.max_depth, "bytes": info.bytes}


class TokenMatcher:
    """One grammar over one vocabulary: the C grammar with its caches. `pieces` is a list of bytes
    (then eog_ids says the EOG tokens) or a GrammarVocab (shared; eog_ids then ignored).

    Limits (None: the C defaults): max_stacks stacks in one state (4096), max_expansions rule
    expansions in one step (1 << 20), cache_bytes of caches before they are dropped (32 MiB),
    hard_bytes that one step may use (256 MiB), mask_cache allowed sets kept (32). Passing one is
    a GrammarError naming it, never a hang."""

    def __init__(self, grammar, pieces: Sequence[bytes] | GrammarVocab, eog_ids: Iterable[int] = (), *,
                 max_stacks: int | None = None, max_expansions: int | None = None,
                 cache_bytes: int | None = None, hard_bytes: int | None = None, mask_cache: int | None = None):
        self.vocab = pieces if isinstance(pieces, GrammarVocab) else GrammarVocab(pieces, eog_ids)
        self.grammar = grammar
        rules = grammar.rules
        root = int(grammar.root)
        self._names = {int(i): name for name, i in getattr(grammar, "symbol_ids", {}).items()}
        self._rule_offsets = [0]
        types, values = [], []
        for i, rule in enumerate(rules):
            if not rule:
                raise GrammarError(f"malformed grammar rules: {self._rule_name(i)} is empty")
            for element in rule:
                t, v = element
                types.append(int(t))
                values.append(int(v))
            self._rule_offsets.append(len(types))
        try:
            c_types = _ffi.new("uint32_t[]", types or [0])
            c_values = _ffi.new("uint32_t[]", values or [0])
        except OverflowError:
            raise GrammarError("grammar element types and values must be in [0, 2**32)") from None
        if not rules or not types:
            raise GrammarError("the grammar has no rules")
        if not 0 <= root < len(rules):
            raise GrammarError(f"root rule {root} out of range [0, {len(rules)})")
        limits = _ffi.new("pg_grammar_limits *")
        limits.max_stacks = max_stacks or 0
        limits.max_expansions = max_expansions or 0
        limits.soft_bytes = cache_bytes or 0
        limits.hard_bytes = hard_bytes or 0
        limits.mask_cache = mask_cache or 0
        out = _ffi.new("pg_grammar **")
        where = _ffi.new("int64_t *")
        rc = _lib.pg_grammar_new(c_types, c_values, len(types), _ffi.new("int64_t[]", self._rule_offsets),
                                 len(rules), root, self.vocab._trie, limits, out, where)
        if rc < 0:
            raise GrammarError(self._error_message(rc, where[0]))
        self._g = _ffi.gc(out[0], _lib.pg_grammar_free)

    def _rule_name(self, rule: int) -> str:
        name = self._names.get(rule)
        return f"rule {rule} ({name})" if name else f"rule {rule}"

    def position(self, pos: int) -> tuple[int, int]:
        """A flat element position -> (rule, index in the rule)."""
        rule = bisect.bisect_right(self._rule_offsets, pos) - 1
        return rule, pos - self._rule_offsets[rule]

    def _error_message(self, rc: int, where: int) -> str:
        message = c_status_message(rc)
        if rc == _lib.PG_EGRAMMAR_RULES and where >= 0:
            rule, index = self.position(where)
            return f"{message}: {self._rule_name(rule)}, element {index}"
        if rc in (_lib.PG_EGRAMMAR_RECURSION, _lib.PG_EGRAMMAR_EMPTY) and where >= 0:
            return f"{message}: {self._rule_name(where)}"
        return message

    def start(self) -> "MatchState":
        out = _ffi.new("pg_grammar_state **")
        rc = _lib.pg_grammar_state_new(self._g, out)
        if rc < 0:
            raise GrammarError(c_status_message(rc))
        return MatchState(self, _ffi.gc(out[0], _lib.pg_grammar_state_free))

    def stats(self) -> dict:
        """The caches now (bytes, stack nodes, stack sets, memoized steps) and counters so far
        (trie walks and the nodes they visited, allowed sets found cached, flushes)."""
        s = _ffi.new("pg_grammar_stats *")
        _lib.pg_grammar_get_stats(self._g, s)
        return {"bytes": s.bytes, "stack_nodes": s.stack_nodes, "stack_sets": s.stack_sets,
                "transitions": s.transitions, "walks": s.walks, "walk_nodes": s.walk_nodes,
                "mask_hits": s.mask_hits, "flushes": s.flushes}

    def flush(self, masks_only: bool = False) -> None:
        """Drop every cache, or only the allowed sets (states stay valid): for tests and
        measurements."""
        (_lib.pg_grammar_flush_masks if masks_only else _lib.pg_grammar_flush)(self._g)


class MatchState:
    """One sequence's grammar state: llama.cpp's stacks and partial UTF-8 sequence."""

    __slots__ = ("matcher", "_st")

    def __init__(self, matcher: TokenMatcher, st):
        self.matcher = matcher
        self._st = st

    def _raise(self, rc: int, what: str):
        raise GrammarError(f"{what}: {c_status_message(rc)}")

    def allows(self, token: int) -> bool:
        """Whether llama.cpp's grammar sampler would leave this token's logit alone."""
        try:
            rc = _lib.pg_grammar_allows(self._st, token)
        except (OverflowError, TypeError):
            rc = _lib.PG_EBADARG
        if rc < 0:
            self._bad_token(token, rc)
        return rc == 1

    def _bad_token(self, token, rc):
        n = self.matcher.vocab.n_vocab
        if rc == _lib.PG_EBADARG:
            raise GrammarError(f"token id {token!r} out of range [0, {n})")
        self._raise(rc, f"token {token}")

    def mask(self, logits: np.ndarray) -> None:
        """logits[t] = -inf for every token t not allowed (in place; float32, one per token)."""
        n = self.matcher.vocab.n_vocab
        if (not isinstance(logits, np.ndarray) or logits.dtype != np.float32 or logits.ndim != 1
                or logits.shape[0] != n or not logits.flags.c_contiguous or not logits.flags.writeable):
            raise GrammarError(f"mask needs a writeable contiguous float32 array of {n} logits")
        rc = _lib.pg_grammar_mask(self._st, _ffi.from_buffer("float[]", logits), n, _ffi.NULL)
        if rc < 0:
            self._raise(rc, "grammar mask")

    def allowed(self) -> np.ndarray:
        """A bool per token: what mask() leaves alone."""
        n = self.matcher.vocab.n_vocab
        out = np.zeros(n, dtype=np.uint8)
        rc = _lib.pg_grammar_allowed(self._st, _ffi.from_buffer("uint8_t[]", out), n, _ffi.NULL)
        if rc < 0:
            self._raise(rc, "grammar mask")
        return out.view(np.bool_)

    def accept(self, token: int) -> None:
        """Advance over a token (llama.cpp's llama_grammar_accept_impl): an EOG token leaves the
        state as it is where some stack is empty; GrammarError where llama.cpp would throw or
        abort (no stack left), and the state is then unchanged."""
        try:
            rc = _lib.pg_grammar_accept(self._st, token)
        except (OverflowError, TypeError):
            rc = _lib.PG_EBADARG
        if rc < 0:
            if rc == _REJECTED:
                raise GrammarError(f"token {token} ({self.matcher.vocab.piece(token)!r}) is not accepted "
                                   f"by the grammar here")
            self._bad_token(token, rc)

    def accept_piece(self, token: int, piece: bytes) -> bool:
        """llama.cpp's llama_grammar_accept_token(token, piece): token elements see the id,
        characters the piece. False (state unchanged) where no stack is left."""
        rc = _lib.pg_grammar_accept_piece(self._st, token, piece, len(piece))
        if rc == _REJECTED:
            return False
        if rc < 0:
            self._raise(rc, "grammar accept")
        return True

    def accept_text(self, text: bytes | str) -> bool:
        """llama.cpp's llama_grammar_accept_str: every code point through every stack (a stack
        with a token element on top drops). False (state unchanged) where no stack is left."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        rc = _lib.pg_grammar_accept_text(self._st, text, len(text))
        if rc == _REJECTED:
            return False
        if rc < 0:
            self._raise(rc, "grammar accept")
        return True

    def _info(self):
        info = _ffi.new("pg_grammar_state_info *")
        _lib.pg_grammar_state_get_info(self._st, info)
        return info

    @property
    def can_end(self) -> bool:
        """An end-of-generation token is allowed now (some stack is empty)."""
        return bool(self._info().can_end)

    @property
    def finished(self) -> bool:
        """No token but an EOG one is allowed: generation should stop."""
        info = self._info()
        if not info.can_end:
            return False
        if info.n_positions == 0:
            return True      # every stack is empty
        n_not_eog = _ffi.new("int64_t *")
        rc = _lib.pg_grammar_allowed(self._st, _ffi.NULL, 0, n_not_eog)
        if rc < 0:
            self._raise(rc, "grammar mask")
        return n_not_eog[0] == 0

    @property
    def partial_utf8(self) -> tuple[int, int]:
        """llama.cpp's llama_partial_utf8: (value so far, bytes still to come; -1 = invalid)."""
        info = self._info()
        return info.partial_value, info.partial_remain

    @property
    def stacks(self) -> frozenset[tuple[tuple[int, int], ...]]:
        """The stacks, each bottom to top as (rule, index in the rule) positions."""
        info = self._info()
        lens = _ffi.new("uint32_t[]", max(info.n_stacks, 1))
        pos = _ffi.new("uint32_t[]", max(info.n_positions, 1))
        n = _lib.pg_grammar_state_stacks(self._st, pos, info.n_positions, lens, info.n_stacks)
        if n < 0:
            self._raise(n, "grammar stacks")
        out, at = [], 0
        position = self.matcher.position
        for i in range(n):
            out.append(tuple(position(pos[at + k]) for k in range(lens[i])))
            at += lens[i]
        return frozenset(out)

    def copy(self) -> "MatchState":
        out = _ffi.new("pg_grammar_state **")
        rc = _lib.pg_grammar_state_copy(self._st, out)
        if rc < 0:
            self._raise(rc, "grammar state copy")
        return MatchState(self.matcher, _ffi.gc(out[0], _lib.pg_grammar_state_free))
