"""A slow, plain reference of llama.cpp's grammar matching, the oracle of the C matcher's tests:
src/llama-grammar.cpp's functions written out one for one (decode_utf8, match_char,
match_partial_char, match_token, advance_stack, reject_candidates(_for_stack), apply_impl,
accept_chr / accept / accept_token / accept_str / accept_impl), on the same rule encoding.

A position is (rule, index); a stack is a tuple of positions, bottom first; a state is
llama.cpp's `stacks` (a list, duplicates removed) and `partial_utf8` (value, n_remain).

One departure: where llama.cpp would GGML_ASSERT (reject_candidates on an empty list of stacks,
which only a grammar whose expansion reaches no terminal produces), every candidate is rejected.
"""
from __future__ import annotations

from handbuilt import ALT, CHAR, CHAR_ALT, CHAR_ANY, CHAR_NOT, CHAR_RNG_UPPER, END, RULE_REF, TOKEN, TOKEN_NOT

_LOOKUP = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4]


def c_string(piece: bytes) -> bytes:
    """What a std::string's c_str() loop sees: up to the first NUL."""
    z = piece.find(b"\0")
    return piece if z < 0 else piece[:z]


def decode_utf8(piece: bytes, partial: tuple[int, int]) -> tuple[list[int], tuple[int, int]]:
    """llama.cpp's decode_utf8(std::string, partial): code points ending with a 0 terminator."""
    src = c_string(piece)
    pos = 0
    cps: list[int] = []
    value, n_remain = partial
    while pos < len(src) and n_remain > 0:
        b = src[pos]
        if b >> 6 != 2:
            return [0], (0, -1)
        value = ((value << 6) + (b & 0x3F)) & 0xFFFFFFFF
        pos += 1
        n_remain -= 1
    if partial[1] > 0 and n_remain == 0:
        cps.append(value)
    while pos < len(src):
        b = src[pos]
        n_remain = _LOOKUP[b >> 4] - 1
        if n_remain < 0:
            return [0], (0, n_remain)
        mask = (1 << (7 - n_remain)) - 1
        value = b & mask
        pos += 1
        while pos < len(src) and n_remain > 0:
            value = ((value << 6) + (src[pos] & 0x3F)) & 0xFFFFFFFF
            pos += 1
            n_remain -= 1
        if n_remain == 0:
            cps.append(value)
    cps.append(0)
    return cps, (value, n_remain)


def is_end_of_sequence(element) -> bool:
    return element[0] in (END, ALT)


def match_char(rule, i: int, chr_: int) -> tuple[bool, int]:
    found = False
    is_positive = rule[i][0] in (CHAR, CHAR_ANY)
    assert is_positive or rule[i][0] == CHAR_NOT
    while True:
        if rule[i + 1][0] == CHAR_RNG_UPPER:
            found = found or (rule[i][1] <= chr_ <= rule[i + 1][1])
            i += 2
        elif rule[i][0] == CHAR_ANY:
            found = True
            i += 1
        else:
            found = found or rule[i][1] == chr_
            i += 1
        if rule[i][0] != CHAR_ALT:
            break
    return found == is_positive, i


def match_partial_char(rule, i: int, partial: tuple[int, int]) -> bool:
    is_positive = rule[i][0] in (CHAR, CHAR_ANY)
    value, n_remain = partial
    if n_remain < 0 or (n_remain == 1 and value < 2):
        return False
    low = (value << (n_remain * 6)) & 0xFFFFFFFF
    high = low | ((1 << (n_remain * 6)) - 1)
    if low == 0:
        if n_remain == 2:
            low = 1 << 11
        elif n_remain == 3:
            low = 1 << 16
    while True:
        if rule[i + 1][0] == CHAR_RNG_UPPER:
            if rule[i][1] <= high and low <= rule[i + 1][1]:
                return is_positive
            i += 2
        elif rule[i][0] == CHAR_ANY:
            return True
        else:
            if low <= rule[i][1] <= high:
                return is_positive
            i += 1
        if rule[i][0] != CHAR_ALT:
            break
    return not is_positive


def match_token(element, token: int) -> bool:
    if element[0] == TOKEN:
        return element[1] == token
    return element[1] != token


def advance_stack(rules, stack: tuple, new_stacks: list) -> None:
    todo = [stack]
    seen = set()
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        if not cur:
            if cur not in new_stacks:
                new_stacks.append(cur)
            continue
        r, i = cur[-1]
        kind, value = rules[r][i]
        if kind == RULE_REF:
            sub = rules[value]
            j = 0
            while True:
                nxt = cur[:-1]
                if not is_end_of_sequence(rules[r][i + 1]):
                    nxt = nxt + ((r, i + 1),)
                if not is_end_of_sequence(sub[j]):
                    nxt = nxt + ((value, j),)
                todo.append(nxt)
                while not is_end_of_sequence(sub[j]):
                    j += 1
                if sub[j][0] == ALT:
                    j += 1
                else:
                    break
        elif kind in (CHAR, CHAR_NOT, CHAR_ANY, TOKEN, TOKEN_NOT):
            if cur not in new_stacks:
                new_stacks.append(cur)
        else:
            raise AssertionError("llama.cpp aborts: a stack left on " + repr((kind, value)))


class Candidate:
    __slots__ = ("id", "cps", "at", "partial")

    def __init__(self, id_, cps, at, partial):
        self.id, self.cps, self.at, self.partial = id_, cps, at, partial


def reject_candidates(rules, stacks, candidates):
    if not candidates:
        return []
    if not stacks:
        return list(candidates)      # llama.cpp: GGML_ASSERT(!stacks.empty())
    rejects = reject_candidates_for_stack(rules, stacks[0], candidates)
    for stack in stacks[1:]:
        rejects = reject_candidates_for_stack(rules, stack, rejects)
    return rejects


def reject_candidates_for_stack(rules, stack, candidates):
    rejects = []
    if not stack:
        for tok in candidates:
            if tok.cps[tok.at] != 0 or tok.partial[1] != 0:
                rejects.append(tok)
        return rejects
    r, i = stack[-1]
    rule = rules[r]
    if rule[i][0] in (TOKEN, TOKEN_NOT):
        for tok in candidates:
            if tok.cps[tok.at] == 0:
                if tok.partial[1] != 0:
                    rejects.append(tok)
            elif not match_token(rule[i], tok.id):
                rejects.append(tok)
        return rejects
    next_candidates = []
    for tok in candidates:
        if tok.cps[tok.at] == 0:
            if tok.partial[1] != 0 and not match_partial_char(rule, i, tok.partial):
                rejects.append(tok)
        elif match_char(rule, i, tok.cps[tok.at])[0]:
            next_candidates.append(Candidate(tok.id, tok.cps, tok.at + 1, tok.partial))
        else:
            rejects.append(tok)
    after = match_char(rule, i, 0)[1]
    stack_after = stack[:-1]
    if not is_end_of_sequence(rule[after]):
        stack_after = stack_after + ((r, after),)
    next_stacks: list = []
    advance_stack(rules, stack_after, next_stacks)
    for tok in reject_candidates(rules, next_stacks, next_candidates):
        rejects.append(Candidate(tok.id, tok.cps, tok.at - 1, tok.partial))
    return rejects


class OracleGrammar:
    """llama_grammar: rules, stacks, partial_utf8, and the vocabulary's pieces / EOG ids."""

    def __init__(self, rules, root: int, pieces=(), eog_ids=()):
        self.rules = [list(r) for r in rules]
        self.pieces = list(pieces)
        self.eog = set(eog_ids)
        self.partial = (0, 0)
        self.stacks: list = []
        rule = self.rules[root]
        j = 0
        while True:           # llama_grammar_init_impl: the root's alternatives
            stack = () if is_end_of_sequence(rule[j]) else ((root, j),)
            advance_stack(self.rules, stack, self.stacks)
            while not is_end_of_sequence(rule[j]):
                j += 1
            if rule[j][0] == ALT:
                j += 1
            else:
                break

    def copy(self) -> "OracleGrammar":
        other = object.__new__(OracleGrammar)
        other.rules, other.pieces, other.eog = self.rules, self.pieces, self.eog
        other.partial = self.partial
        other.stacks = list(self.stacks)
        return other

    @property
    def can_end(self) -> bool:
        return any(not s for s in self.stacks)

    def allowed(self, tokens=None) -> dict[int, bool]:
        """llama_grammar_apply_impl over the tokens (default: all): token -> kept?"""
        tokens = range(len(self.pieces)) if tokens is None else tokens
        allow_eog = self.can_end
        result, candidates = {}, []
        for t in tokens:
            piece = self.pieces[t]
            if t in self.eog:
                result[t] = allow_eog
            elif not piece or piece[0] == 0:
                result[t] = False
            else:
                cps, partial = decode_utf8(piece, self.partial)
                candidates.append(Candidate(t, cps, 0, partial))
                result[t] = True
        for tok in reject_candidates(self.rules, self.stacks, candidates):
            result[tok.id] = False
        return result

    # accepting (each raises RuntimeError where llama.cpp throws, with the state then as llama.cpp
    # leaves it: callers copy first)
    def _accept_chr(self, stack, chr_, new_stacks):
        if not stack:
            return
        r, i = stack[-1]
        if self.rules[r][i][0] in (TOKEN, TOKEN_NOT):
            return
        ok, after = match_char(self.rules[r], i, chr_)
        if ok:
            new_stack = stack[:-1]
            if not is_end_of_sequence(self.rules[r][after]):
                new_stack = new_stack + ((r, after),)
            advance_stack(self.rules, new_stack, new_stacks)

    def accept_chr(self, chr_: int) -> None:
        """llama_grammar_accept"""
        new_stacks: list = []
        for stack in self.stacks:
            self._accept_chr(stack, chr_, new_stacks)
        self.stacks = new_stacks

    def accept_str(self, text: bytes) -> None:
        cps, partial = decode_utf8(text, self.partial)
        for c in cps[:-1]:
            self.accept_chr(c)
        self.partial = partial
        if not self.stacks:
            raise RuntimeError("Unexpected empty grammar stack after accepting piece")

    def accept_token(self, token: int, piece: bytes) -> None:
        cps, partial = decode_utf8(piece, self.partial)
        stacks_new: list = []
        for stack in self.stacks:
            if not stack:
                continue
            r, i = stack[-1]
            element = self.rules[r][i]
            if element[0] in (TOKEN, TOKEN_NOT):
                if match_token(element, token):
                    new_stack = stack[:-1]
                    if not is_end_of_sequence(self.rules[r][i + 1]):
                        new_stack = new_stack + ((r, i + 1),)
                    advance_stack(self.rules, new_stack, stacks_new)
            else:
                current = [stack]
                for c in cps[:-1]:
                    next_stacks: list = []
                    for cur in current:
                        self._accept_chr(cur, c, next_stacks)
                    current = next_stacks
                    if not current:
                        break
                for s in current:
                    if s not in stacks_new:
                        stacks_new.append(s)
        self.stacks = stacks_new
        self.partial = partial
        if not self.stacks:
            raise RuntimeError("Unexpected empty grammar stack after accepting piece")

    def accept(self, token: int) -> None:
        """llama_grammar_accept_impl (no lazy trigger)"""
        if token in self.eog:
            if self.can_end:
                return
            raise RuntimeError("llama.cpp aborts: EOG with no empty stack")
        self.accept_token(token, self.pieces[token])


def match_string(grammar: OracleGrammar, parts) -> bool:
    """tests/test-grammar-integration.cpp's match_string: text one code point at a time as token
    0, token ids as their own pieces "<[id]>"."""
    for token, piece in split_input(parts):
        try:
            grammar.accept_token(token, piece)
        except RuntimeError:
            return False
        if not grammar.stacks:
            return False
    return grammar.can_end


def split_input(parts) -> list[tuple[int, bytes]]:
    """integration.json's input (a string, or a list of strings and token ids) as
    test-grammar-integration.cpp's parse_tokens gives it: (token, piece) pairs."""
    if isinstance(parts, str):
        parts = [parts]
    out = []
    for p in parts:
        if isinstance(p, int):
            out.append((p, f"<[{p}]>".encode()))
        else:
            out.extend((0, ch.encode("utf-8")) for ch in p)
    return out
