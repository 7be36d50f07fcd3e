"""GBNF grammars, parsed exactly as llama.cpp parses them (src/llama-grammar.cpp, llama-cpp-python
0.3.36): the same element encoding, the same rule ids in the same order (rules generated for groups
and repetitions included, named like llama.cpp's: `root_1`, `expr_5`), the same errors.

A grammar is a list of rules; rule i is a sequence of (type, value) elements, alternatives separated
by (ALT, 0) and ended by (END, 0). Groups `( ... )` and repetitions become generated rules:

    S{m,n}  ->  S ... S (m times) S'(n-m)      S'(k) ::= S S'(k-1) |     S'(1) ::= S |
    S{m,}   ->  S ... S (m times) S'           S'    ::= S S' |
    S*  = S{0,}    S+ = S{1,}    S? = S{0,1}

The parser works on the UTF-8 bytes, with a NUL byte as the end, the way llama.cpp reads its C
string: a NUL in the text ends the grammar there, and malformed UTF-8 decodes the way llama.cpp's
decode_utf8 decodes it. Where llama.cpp would crash, hang or exhaust memory this parser raises
GrammarError instead: a {m,n} with n < m, very deep nesting, a huge expansion, and left recursion
through rules that match the empty string only indirectly, which llama.cpp's own check misses (see
_check_left_recursion). Those are the only places it departs from llama.cpp.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pygguf.errors import GrammarError

# Element types: llama.cpp's enum llama_gretype (src/llama-grammar.h), same values.
END = 0             # end of a rule
ALT = 1             # start of another alternative of the rule
RULE_REF = 2        # reference to rule `value`
CHAR = 3            # code point `value` (also starts a character class)
CHAR_NOT = 4        # starts a negated class [^...]
CHAR_RNG_UPPER = 5  # makes the preceding CHAR / CHAR_ALT the lower end of the range up to `value`
CHAR_ALT = 6        # another code point (or range start) of the same class
CHAR_ANY = 7        # `.`: any code point
TOKEN = 8           # the token with id `value` (<[id]> or <name>)
TOKEN_NOT = 9       # any token but `value` (!<[id]> or !<name>)

ELEMENT_NAMES = ("END", "ALT", "RULE_REF", "CHAR", "CHAR_NOT", "CHAR_RNG_UPPER", "CHAR_ALT", "CHAR_ANY",
                 "TOKEN", "TOKEN_NOT")

# llama.cpp's MAX_REPETITION_THRESHOLD: a {m,n} with m above it is an error, an n above it means
# "no maximum", and the rules a repetition copies may not multiply past it.
MAX_REPETITION_THRESHOLD = 2000
UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1

# pygguf's own limits (llama.cpp has none: it overflows its C stack or runs out of memory).
MAX_NESTING = 200              # nested ( ... ); three Python frames each
MAX_ELEMENTS = 1 << 22         # rule elements created in all, copies made by repetitions included

Element = tuple[int, int]
Tokenize = Callable[[bytes], list[int]]


@dataclass(frozen=True)
class ParsedGrammar:
    rules: tuple[tuple[Element, ...], ...]  # rules[i]: llama_grammar_parser.rules[i], ends with (END, 0)
    symbol_ids: dict[str, int]              # rule name -> index (llama.cpp's symbol_ids)
    root: int                               # symbol_ids[<root name>]
    text: str                               # the source

    def __hash__(self):                     # symbol_ids (a dict) follows from the rest
        return hash((self.rules, self.root, self.text))

    def name(self, rule: int) -> str:
        """The rule's name as llama.cpp's print_grammar shows it."""
        return _rule_names(self.symbol_ids).get(rule, f"<{rule}>")


def parse(text: str | bytes, root: str = "root", tokenize: Tokenize | None = None) -> ParsedGrammar:
    """Parse a GBNF grammar as llama.cpp does: llama_grammar_parser::parse, then llama_grammar_init_impl's
    checks (a `root` rule exists, no left recursion). GrammarError on any bad input.

    `tokenize(b"<name>")` resolves a token reference written as text, `<name>`: it must give exactly
    one token id (llama.cpp tokenizes with parse_special=True, add_special=False). Without it such a
    reference is an error, as in llama.cpp without a vocabulary; `<[id]>` needs no vocabulary."""
    if isinstance(text, str):
        data = text.encode("utf-8", "surrogatepass")
    else:
        data = bytes(text)
        text = data.decode("utf-8", "replace")
    data = data.split(b"\0", 1)[0]          # a C string ends at the first NUL
    parser = _Parser(data, tokenize)
    try:
        parser.parse_grammar()
    except RecursionError:                  # a caller already deep in its stack: same as too deep a nesting
        raise parser.error("grammar nested too deeply", None) from None
    if not parser.rules:
        raise parser.error("failed to parse grammar: it defines no rules", None)
    if root not in parser.symbol_ids:
        raise parser.error(f"grammar does not contain a '{root}' symbol", None)
    rules = tuple(tuple(rule) for rule in parser.rules)
    _check_left_recursion(rules, parser, parser.symbol_ids[root])
    return ParsedGrammar(rules, dict(parser.symbol_ids), parser.symbol_ids[root], text)


# ---- the parser -----------------------------------------------------------------------------------

def _is_digit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _is_word_char(c: int) -> bool:
    # llama.cpp's names: letters, digits and '-' (no '_', so no name collides with a generated one)
    return 0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A or c == 0x2D or _is_digit(c)


_SIMPLE_ESCAPES = {ord("t"): 0x09, ord("r"): 0x0D, ord("n"): 0x0A,
                   ord("\\"): 0x5C, ord('"'): 0x22, ord("["): 0x5B, ord("]"): 0x5D, ord("-"): 0x2D}
_HEX_ESCAPES = {ord("x"): 2, ord("u"): 4, ord("U"): 8}
_UTF8_LENGTH = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)   # by the first byte's high nibble


class _Parser:
    """llama.cpp's llama_grammar_parser. Positions are byte offsets into `src`, which ends with one NUL
    (the only one), so `src[pos]` is 0 at the end exactly where llama.cpp reads '\\0'."""

    def __init__(self, data: bytes, tokenize: Tokenize | None):
        self.src = data + b"\0"
        self.tokenize = tokenize
        self.symbol_ids: dict[str, int] = {}
        self.rules: list[list[Element]] = []       # [] = not defined (yet)
        self.first_mention: dict[int, int] = {}    # symbol id -> offset of its first mention (errors)
        self.defined_at: dict[int, int] = {}       # rule id -> offset of its definition (errors)
        self.depth = 0
        self.n_elements = 0

    # -- errors

    def error(self, reason: str, pos: int | None) -> GrammarError:
        """llama.cpp's message, then where: line and column (1-based, in characters)."""
        if pos is None:
            err = GrammarError(reason)
            err.reason = reason
            return err
        before = self.src[:pos].decode("utf-8", "replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        rest = self.src[pos:-1].decode("utf-8", "replace")
        near = f": {rest[:24]!r}" if rest else " (end of input)"
        err = GrammarError(f"{reason} at line {line}, column {column}{near}")
        err.reason, err.offset, err.line, err.column = reason, pos, line, column
        return err

    # -- symbols and rules

    def get_symbol_id(self, name: str, pos: int) -> int:
        """The id of a named rule; a new name gets the next id (llama.cpp's get_symbol_id)."""
        if name not in self.symbol_ids:
            self.symbol_ids[name] = len(self.symbol_ids)
            self.first_mention[self.symbol_ids[name]] = pos
        return self.symbol_ids[name]

    def generate_symbol_id(self, base_name: str, pos: int) -> int:
        """A new rule for a group or repetition: `<rule>_<id>` (llama.cpp's generate_symbol_id)."""
        next_id = len(self.symbol_ids)
        self.symbol_ids[f"{base_name}_{next_id}"] = next_id
        self.first_mention[next_id] = pos
        return next_id

    def add_rule(self, rule_id: int, rule: list[Element], pos: int) -> None:
        if len(self.rules) <= rule_id:
            self.rules.extend([] for _ in range(rule_id + 1 - len(self.rules)))
        self.rules[rule_id] = rule
        self.defined_at[rule_id] = pos

    def count_elements(self, n: int, pos: int) -> None:
        """Bound the memory a grammar can claim (llama.cpp would just allocate)."""
        self.n_elements += n
        if self.n_elements > MAX_ELEMENTS:
            raise self.error(f"grammar too large: more than {MAX_ELEMENTS} rule elements (pygguf's limit)", pos)

    # -- lexical pieces

    def parse_space(self, pos: int, newline_ok: bool) -> int:
        """Skip blanks and # comments; newlines only where newline_ok (inside groups, after | and ::=)."""
        src = self.src
        while True:
            c = src[pos]
            if c == 0x23:                                  # '#': to the end of the line
                while src[pos] not in (0, 0x0D, 0x0A):
                    pos += 1
            elif c in (0x20, 0x09) or (newline_ok and c in (0x0D, 0x0A)):
                pos += 1
            else:
                return pos

    def parse_name(self, pos: int) -> int:
        end = pos
        while _is_word_char(self.src[end]):
            end += 1
        if end == pos:
            raise self.error("expecting name", pos)
        return end

    def parse_int(self, pos: int) -> int:
        end = pos
        while _is_digit(self.src[end]):
            end += 1
        if end == pos:
            raise self.error("expecting integer", pos)
        return end

    def parse_uint64(self, pos: int, end: int, function: str = "stoull") -> int:
        """std::stoull (std::stoul for token ids): digits past 2**64 - 1 are out of range; llama.cpp's
        message is then just the function's name."""
        digits = self.src[pos:end].lstrip(b"0") or b"0"
        if len(digits) > 20 or int(digits) > UINT64_MAX:   # (and no 5000-digit int() for Python to refuse)
            raise self.error(function, pos)
        return int(digits)

    def decode_utf8(self, pos: int) -> tuple[int, int]:
        """One code point, decoded as llama.cpp's decode_utf8 does: the first byte gives the length,
        continuation bytes are not checked, a NUL stops early."""
        src = self.src
        first = src[pos]
        length = _UTF8_LENGTH[first >> 4]
        value = first & ((1 << (8 - length)) - 1)
        end = pos + length
        pos += 1
        while pos < end and src[pos]:
            value = (value << 6) + (src[pos] & 0x3F)
            pos += 1
        return value, pos

    def parse_hex(self, pos: int, size: int) -> tuple[int, int]:
        """Exactly `size` hex digits."""
        value, end = 0, pos
        while end < pos + size and self.src[end]:
            digit = self.src[end:end + 1]
            if digit not in b"0123456789abcdefABCDEF":
                break
            value = (value << 4) + int(digit, 16)
            end += 1
        if end != pos + size:
            raise self.error(f"expecting {size} hex chars", pos)
        return value, end

    def parse_char(self, pos: int) -> tuple[int, int]:
        """One character of a literal or class: an escape or a UTF-8 sequence."""
        c = self.src[pos]
        if c == 0x5C:                                      # backslash
            kind = self.src[pos + 1]
            if kind in _HEX_ESCAPES:
                return self.parse_hex(pos + 2, _HEX_ESCAPES[kind])
            if kind in _SIMPLE_ESCAPES:
                return _SIMPLE_ESCAPES[kind], pos + 2
            raise self.error("unknown escape", pos)
        if c:
            return self.decode_utf8(pos)
        raise self.error("unexpected end of input", pos)

    def parse_token(self, pos: int) -> tuple[int, int]:
        """<[id]> (a token id) or <text> (text the vocabulary has as one token)."""
        src, start = self.src, pos
        if src[pos] != 0x3C:
            raise self.error("expecting '<'", pos)
        pos += 1
        if src[pos] == 0x5B:                               # <[id]>
            pos += 1
            end = self.parse_int(pos)
            token_id = self.parse_uint64(pos, end, "stoul")
            if token_id > UINT32_MAX:
                raise self.error("parsed token id is too big", pos)
            pos = end
            if src[pos] != 0x5D:
                raise self.error("expecting ']'", pos)
            pos += 1
            if src[pos] != 0x3E:
                raise self.error("expecting '>'", pos)
            return token_id, pos + 1
        if self.tokenize is None:
            raise self.error("no vocab to parse token", start)
        while src[pos] not in (0, 0x3E):
            pos += 1
        if src[pos] != 0x3E:
            raise self.error("expecting '>'", pos)
        pos += 1
        piece = src[start:pos]
        ids = list(self.tokenize(piece))
        if len(ids) != 1:
            raise self.error(f"invalid token '{piece.decode('utf-8', 'replace')}'", start)
        return ids[0], pos

    # -- grammar structure

    def parse_grammar(self) -> None:
        """rule*, then every referenced rule must be defined (llama.cpp's parse)."""
        pos = self.parse_space(0, True)
        while self.src[pos]:
            pos = self.parse_rule(pos)
        self.check_defined()

    def parse_rule(self, pos: int) -> int:
        """name ::= alternates, ended by a newline or the end of the input."""
        name_end = self.parse_name(pos)
        name = self.src[pos:name_end].decode("ascii")
        rule_id = self.get_symbol_id(name, pos)
        after = self.parse_space(name_end, False)
        if self.src[after:after + 3] != b"::=":
            raise self.error("expecting ::=", after)
        end = self.parse_alternates(self.parse_space(after + 3, True), name, rule_id, False, pos)
        c = self.src[end]
        if c == 0x0D:
            end += 2 if self.src[end + 1] == 0x0A else 1
        elif c == 0x0A:
            end += 1
        elif c:
            raise self.error("expecting newline or end", end)
        return self.parse_space(end, True)

    def parse_alternates(self, pos: int, rule_name: str, rule_id: int, is_nested: bool, start: int) -> int:
        """sequence ('|' sequence)* into rule `rule_id`; `start` is where it is written (for errors)."""
        rule: list[Element] = []
        pos = self.parse_sequence(pos, rule_name, rule, is_nested)
        while self.src[pos] == 0x7C:                       # '|'
            rule.append((ALT, 0))
            pos = self.parse_sequence(self.parse_space(pos + 1, True), rule_name, rule, is_nested)
        rule.append((END, 0))
        self.add_rule(rule_id, rule, start)
        return pos

    def parse_sequence(self, pos: int, rule_name: str, rule: list[Element], is_nested: bool) -> int:
        """Items appended to `rule`, each possibly followed by repetition operators. Inside a group
        (is_nested) newlines are blanks; at the top level a newline ends the rule."""
        seq = _Sequence(start=len(rule))
        src = self.src
        while True:
            c = src[pos]
            if c == 0x22:                                  # "literal"
                pos = self.parse_literal(pos, rule, seq)
            elif c == 0x5B:                                # [class]
                pos = self.parse_class(pos, rule, seq)
            elif c in (0x3C, 0x21):                        # <token> or !<token>
                pos = self.parse_token_ref(pos, rule, seq)
            elif _is_word_char(c):                         # rule reference
                pos = self.parse_rule_ref(pos, rule, seq)
            elif c == 0x28:                                # ( group )
                pos = self.parse_group(pos, rule_name, rule, seq)
            elif c == 0x2E:                                # . any character
                seq.item(rule, 1)
                rule.append((CHAR_ANY, 0))
                pos += 1
            elif c in (0x2A, 0x2B, 0x3F):                  # * + ?
                after = self.parse_space(pos + 1, is_nested)
                low, high = {0x2A: (0, None), 0x2B: (1, None), 0x3F: (0, 1)}[c]
                self.repeat(rule, rule_name, seq, low, high, after, pos)
                pos = after
                continue                                   # parse_space already done
            elif c == 0x7B:                                # {m}, {m,}, {m,n}
                pos = self.parse_braces(pos, rule_name, rule, seq, is_nested)
                continue
            else:
                return pos
            pos = self.parse_space(pos, is_nested)

    def parse_literal(self, pos: int, rule: list[Element], seq: _Sequence) -> int:
        """"abc": one CHAR per character; a repetition after it repeats the whole literal."""
        pos += 1
        seq.item(rule, 1)
        start = pos
        while self.src[pos] != 0x22:
            if not self.src[pos]:
                raise self.error("unexpected end of input", pos)
            value, pos = self.parse_char(pos)
            rule.append((CHAR, value))
        self.count_elements(len(rule) - seq.last_sym_start, start)
        return pos + 1

    def parse_class(self, pos: int, rule: list[Element], seq: _Sequence) -> int:
        """[abc], [a-z0-9_], [^"\\]: a CHAR (or CHAR_NOT) then CHAR_ALT per further character, each
        followed by CHAR_RNG_UPPER when it starts a range. A '-' first, last or after a range is
        itself."""
        src = self.src
        pos += 1
        start_type = CHAR
        if src[pos] == 0x5E:                               # '^'
            pos += 1
            start_type = CHAR_NOT
        seq.item(rule, 1)
        start = pos
        while src[pos] != 0x5D:                            # ']'
            if not src[pos]:
                raise self.error("unexpected end of input", pos)
            value, pos = self.parse_char(pos)
            rule.append((CHAR_ALT if seq.last_sym_start < len(rule) else start_type, value))
            if src[pos] == 0x2D and src[pos + 1] != 0x5D:  # '-' not before ']': a range
                if not src[pos + 1]:
                    raise self.error("unexpected end of input", pos + 1)
                upper, pos = self.parse_char(pos + 1)
                rule.append((CHAR_RNG_UPPER, upper))
        self.count_elements(len(rule) - seq.last_sym_start, start)
        return pos + 1

    def parse_token_ref(self, pos: int, rule: list[Element], seq: _Sequence) -> int:
        kind = TOKEN
        if self.src[pos] == 0x21:                          # '!': any token but this one
            kind = TOKEN_NOT
            pos += 1
        token_id, pos = self.parse_token(pos)
        seq.item(rule, 1)
        rule.append((kind, token_id))
        self.count_elements(1, pos)
        return pos

    def parse_rule_ref(self, pos: int, rule: list[Element], seq: _Sequence) -> int:
        end = self.parse_name(pos)
        ref = self.get_symbol_id(self.src[pos:end].decode("ascii"), pos)
        seq.item(rule, 1)
        rule.append((RULE_REF, ref))
        self.count_elements(1, pos)
        return end

    def parse_group(self, pos: int, rule_name: str, rule: list[Element], seq: _Sequence) -> int:
        """( alternates ) becomes a generated rule, referenced here. Its id is taken before its
        contents are parsed, so it comes before any rule generated inside it."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"grammar nested too deeply: more than {MAX_NESTING} levels of '(' (pygguf's limit)", pos)
        open_pos = pos
        pos = self.parse_space(pos + 1, True)
        n_symbols_before = len(self.symbol_ids)
        sub_rule_id = self.generate_symbol_id(rule_name, open_pos)
        pos = self.parse_alternates(pos, rule_name, sub_rule_id, True, open_pos)
        # a repetition of the group copies every rule created inside it: count them
        seq.item(rule, max(1, len(self.symbol_ids) - n_symbols_before))
        rule.append((RULE_REF, sub_rule_id))
        if self.src[pos] != 0x29:                          # ')'
            raise self.error("expecting ')'", pos)
        self.depth -= 1
        return pos + 1

    def parse_braces(self, pos: int, rule_name: str, rule: list[Element], seq: _Sequence, is_nested: bool) -> int:
        """{m}, {m,} or {m,n}, blanks allowed inside; returns the position after the '}' and blanks."""
        op_pos = pos
        pos = self.parse_space(pos + 1, is_nested)
        if not _is_digit(self.src[pos]):
            raise self.error("expecting an int", pos)
        end = self.parse_int(pos)
        min_times = self.parse_uint64(pos, end)
        pos = self.parse_space(end, is_nested)
        max_times: int | None = None                       # no maximum
        if self.src[pos] == 0x7D:                          # '}'
            max_times = min_times
            pos = self.parse_space(pos + 1, is_nested)
        elif self.src[pos] == 0x2C:                        # ','
            pos = self.parse_space(pos + 1, is_nested)
            if _is_digit(self.src[pos]):
                end = self.parse_int(pos)
                max_times = self.parse_uint64(pos, end)
                pos = self.parse_space(end, is_nested)
            if self.src[pos] != 0x7D:
                raise self.error("expecting '}'", pos)
            pos = self.parse_space(pos + 1, is_nested)
        else:
            raise self.error("expecting ','", pos)
        if min_times > MAX_REPETITION_THRESHOLD:
            raise self.error("number of repetitions exceeds sane defaults, please reduce the number of repetitions",
                             op_pos)
        if max_times is not None and max_times > MAX_REPETITION_THRESHOLD:
            max_times = None                               # llama.cpp: a maximum past the threshold means none
        self.repeat(rule, rule_name, seq, min_times, max_times, pos, op_pos)
        return pos

    def repeat(self, rule: list[Element], rule_name: str, seq: _Sequence, min_times: int, max_times: int | None,
               pos: int, op_pos: int) -> None:
        """Rewrite the last item (rule[seq.last_sym_start:]) as min_times copies followed by a chain
        of generated optional rules (the module docstring has the scheme). `pos` is where llama.cpp
        reports a missing item (after the operator), `op_pos` the operator itself."""
        if seq.last_sym_start == len(rule):
            raise self.error("expecting preceding item to */+/?/{", pos)
        if max_times is not None and max_times < min_times:
            # llama.cpp computes max - min in unsigned arithmetic and generates rules until memory runs out
            raise self.error(f"repetition {{{min_times},{max_times}}} has a maximum below its minimum "
                             "(llama.cpp does not terminate on it)", op_pos)
        prev = rule[seq.last_sym_start:]
        # how many copies of the item's rules this makes (llama.cpp's total_rules)
        if max_times is not None and max_times > 0:
            total = max_times
        elif min_times > 0:
            total = min_times
        else:
            total = 1
        if seq.n_prev_rules * total > MAX_REPETITION_THRESHOLD:
            raise self.error("number of rules that are going to be repeated multiplied by the new repetition "
                             "exceeds sane defaults, please reduce the number of repetitions or rule complexity",
                             op_pos)
        n_opt = 1 if max_times is None else max_times - min_times
        self.count_elements(len(prev) * max(min_times - 1, 0) + n_opt * (len(prev) + 3) + 1, op_pos)

        if min_times == 0:
            del rule[seq.last_sym_start:]
        else:
            rule.extend(prev * (min_times - 1))
        last_rec_rule_id = 0
        for i in range(n_opt):
            rec_rule_id = self.generate_symbol_id(rule_name, op_pos)
            rec_rule = list(prev)
            if max_times is None:
                rec_rule.append((RULE_REF, rec_rule_id))       # S' ::= S S' |
            elif i > 0:
                rec_rule.append((RULE_REF, last_rec_rule_id))  # S'(k) ::= S S'(k-1) |
            rec_rule += [(ALT, 0), (END, 0)]                   # ... or nothing
            self.add_rule(rec_rule_id, rec_rule, op_pos)
            last_rec_rule_id = rec_rule_id
        if n_opt > 0:
            rule.append((RULE_REF, last_rec_rule_id))
        seq.n_prev_rules *= total

    # -- after parsing

    def check_defined(self) -> None:
        """Every rule slot filled and every reference to a defined rule, in llama.cpp's order."""
        names = {i: name for name, i in self.symbol_ids.items()}
        for index, rule in enumerate(self.rules):
            if not rule:
                raise self.error(f"Undefined rule '{names.get(index, index)}'", self.first_mention.get(index))
            for kind, value in rule:
                if kind == RULE_REF and (value >= len(self.rules) or not self.rules[value]):
                    raise self.error(f"Undefined rule identifier '{names[value]}'", self.first_mention.get(value))


class _Sequence:
    """What parse_sequence tracks about its last item, as llama.cpp does: where it starts in the rule
    (what a repetition repeats) and how many rules a repetition of it multiplies."""

    def __init__(self, start: int):
        self.last_sym_start = start
        self.n_prev_rules = 1

    def item(self, rule: list[Element], n_rules: int) -> None:
        self.last_sym_start = len(rule)
        self.n_prev_rules = n_rules


# ---- left recursion -----------------------------------------------------------------------------

def _check_left_recursion(rules: tuple[tuple[Element, ...], ...], parser: _Parser, root: int) -> None:
    """No rule may reach itself through leftmost references in a way that makes a matcher loop.

    First llama.cpp's check (llama_grammar_detect_left_recursion): a reference stays leftmost past
    references to rules with a literally empty alternative; llama.cpp reports the first rule index
    from which such a cycle can be reached.

    llama.cpp's check misses cycles through rules that match the empty string only indirectly
    (`b ::= c b "x"` with `c ::= d*`). Its matcher survives those where every reference of the cycle
    ends its alternative (its llama_grammar_advance_stack skips a stack it has seen, and such a
    cycle comes back to the same stack), but where one is followed by more (`b "x"`) every turn adds
    to the stack and llama.cpp expands it until memory runs out. pygguf refuses those, among the
    rules the root can reach (an unreachable one is never expanded)."""
    names = _rule_names(parser.symbol_ids)
    literally_empty = [any(_alternatives_empty(rule)) for rule in rules]
    edges = [[target for target, _ in _leftmost_refs(rule, literally_empty)] for rule in rules]
    found = _first_cycle(edges, range(len(rules)))
    if found is not None:
        start, cycle = found
        via = " -> ".join(names[i] for i in cycle)
        raise parser.error(f"unsupported grammar, left recursion detected for nonterminal at index {start} "
                           f"('{names[start]}': {via})", parser.defined_at.get(start))
    cycle = _growing_cycle(rules, _nullable(rules), root)
    if cycle is not None:
        via = " -> ".join(names[i] for i in cycle)
        raise parser.error(f"unsupported grammar, left recursion detected for nonterminal at index {cycle[0]} "
                           f"('{names[cycle[0]]}': {via}, through rules that match the empty string; llama.cpp "
                           "runs out of memory on it)", parser.defined_at.get(cycle[0]))


def _growing_cycle(rules: tuple[tuple[Element, ...], ...], nullable: list[bool], root: int) -> list[int] | None:
    """A cycle of leftmost references (past rules that may match the empty string), reachable from
    the root, in which some reference is followed by more of its alternative; or None."""
    left = [_leftmost_refs(rule, nullable) for rule in rules]
    reachable = _reachable(rules, root)
    component = _strongly_connected([[t for t, _ in refs] for refs in left], reachable)
    for u in reachable:
        for v, grows in left[u]:
            if grows and component[u] == component[v]:
                return [u, *_path(left, v, u)]
    return None


def _reachable(rules: tuple[tuple[Element, ...], ...], root: int) -> list[int]:
    """The rules a matcher can enter from the root, in order of discovery."""
    seen, order, todo = {root}, [root], [root]
    while todo:
        for kind, value in rules[todo.pop()]:
            if kind == RULE_REF and value not in seen:
                seen.add(value)
                order.append(value)
                todo.append(value)
    return order


def _strongly_connected(edges: list[list[int]], nodes: list[int]) -> list[int]:
    """Tarjan's strongly connected components (iterative): a component number per node (-1: not
    reached from `nodes`)."""
    n = len(edges)
    index, low, component = [-1] * n, [0] * n, [-1] * n
    on_stack, stack, counter, n_components = [False] * n, [], 0, 0
    for s in nodes:
        if index[s] >= 0:
            continue
        index[s] = low[s] = counter
        counter += 1
        stack.append(s)
        on_stack[s] = True
        work = [(s, iter(edges[s]))]
        while work:
            v, targets = work[-1]
            w = next(targets, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:                 # v roots a component: pop it
                    while True:
                        x = stack.pop()
                        on_stack[x] = False
                        component[x] = n_components
                        if x == v:
                            break
                    n_components += 1
            elif index[w] < 0:
                index[w] = low[w] = counter
                counter += 1
                stack.append(w)
                on_stack[w] = True
                work.append((w, iter(edges[w])))
            elif on_stack[w]:
                low[v] = min(low[v], index[w])
    return component


def _path(left: list[list[tuple[int, bool]]], start: int, goal: int) -> list[int]:
    """Shortest chain of leftmost references from start to goal (breadth-first), both included."""
    previous = {start: None}
    todo = [start]
    for node in todo:
        if node == goal:
            break
        for target, _ in left[node]:
            if target not in previous:
                previous[target] = node
                todo.append(target)
    path = [goal]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])
    return path[::-1]


def _first_cycle(edges: list[list[int]], starts) -> tuple[int, list[int]] | None:
    """The first start from which a cycle of `edges` can be reached, and that cycle; depth-first,
    iterative (long chains of rules must not overflow the stack), each rule explored once."""
    done = [False] * len(edges)
    on_path = [False] * len(edges)
    for start in starts:
        if done[start]:
            continue
        path, pending = [start], [iter(edges[start])]
        on_path[start] = True
        while path:
            nxt = next(pending[-1], None)
            if nxt is None:                            # every edge of path[-1] explored
                node = path.pop()
                pending.pop()
                on_path[node], done[node] = False, True
            elif on_path[nxt]:
                return start, path[path.index(nxt):] + [nxt]
            elif not done[nxt]:
                path.append(nxt)
                pending.append(iter(edges[nxt]))
                on_path[nxt] = True
    return None


def _alternatives_empty(rule: tuple[Element, ...]):
    """For each alternative of the rule: whether it is empty."""
    at_start = True
    for kind, _ in rule:
        if kind in (ALT, END):
            yield at_start
            at_start = True
        else:
            at_start = False


def _nullable(rules: tuple[tuple[Element, ...], ...]) -> list[bool]:
    """Which rules can match the empty string: some alternative made only of references to such rules
    (computed to a fixed point)."""
    nullable = [False] * len(rules)
    changed = True
    while changed:
        changed = False
        for i, rule in enumerate(rules):
            if nullable[i]:
                continue
            alt_ok = True
            for kind, value in rule:
                if kind in (ALT, END):
                    if alt_ok:
                        nullable[i] = changed = True
                        break
                    alt_ok = True
                elif kind != RULE_REF or not nullable[value]:
                    alt_ok = False
    return nullable


def _leftmost_refs(rule: tuple[Element, ...], may_be_empty: list[bool]) -> list[tuple[int, bool]]:
    """The rules referenced at the start of an alternative, or only after references to rules that
    may be empty; with each, whether more of the alternative follows it."""
    refs, leftmost = [], True
    for i, (kind, value) in enumerate(rule):
        if kind == RULE_REF and leftmost:
            refs.append((value, rule[i + 1][0] not in (ALT, END)))
            leftmost = may_be_empty[value]
        elif kind in (ALT, END):
            leftmost = True
        else:
            leftmost = False
    return refs


# ---- printing -----------------------------------------------------------------------------------

def _rule_names(symbol_ids: dict[str, int]) -> dict[int, str]:
    # llama.cpp inverts its std::map in name order, so for a shared id the greatest name wins
    return {i: name for name, i in sorted(symbol_ids.items())}


def _print_char(c: int) -> str:
    return chr(c) if 0x20 <= c <= 0x7F else f"<U+{c:04X}>"


_CHAR_ELEMENTS = (CHAR, CHAR_NOT, CHAR_ALT, CHAR_RNG_UPPER, CHAR_ANY)


def to_text(g: ParsedGrammar) -> str:
    """The rules as llama.cpp's print_grammar prints them (one line per rule, generated rules
    included; non-ASCII characters as <U+XXXX>), for debugging."""
    names = _rule_names(g.symbol_ids)
    lines = []
    for rule_id, rule in enumerate(g.rules):
        out = [f"{names[rule_id]} ::= "]
        for i, (kind, value) in enumerate(rule[:-1]):
            if kind == ALT:
                out.append("| ")
            elif kind == RULE_REF:
                out.append(f"{names[value]} ")
            elif kind == CHAR:
                out.append("[" + _print_char(value))
            elif kind == CHAR_NOT:
                out.append("[^" + _print_char(value))
            elif kind == CHAR_RNG_UPPER:
                out.append("-" + _print_char(value))
            elif kind == CHAR_ALT:
                out.append(_print_char(value))
            elif kind == CHAR_ANY:
                out.append(".")
            elif kind == TOKEN:
                out.append(f"<[{value}]> ")
            elif kind == TOKEN_NOT:
                out.append(f"!<[{value}]> ")
            # a class closes unless the next element continues it (llama.cpp counts '.' as continuing)
            if kind in _CHAR_ELEMENTS and rule[i + 1][0] not in (CHAR_ALT, CHAR_RNG_UPPER, CHAR_ANY):
                out.append("] ")
        lines.append("".join(out) + "\n")
    return "".join(lines)


__all__ = ["ALT", "CHAR", "CHAR_ALT", "CHAR_ANY", "CHAR_NOT", "CHAR_RNG_UPPER", "ELEMENT_NAMES", "END",
           "MAX_REPETITION_THRESHOLD", "RULE_REF", "TOKEN", "TOKEN_NOT", "GrammarError", "ParsedGrammar", "parse",
           "to_text"]