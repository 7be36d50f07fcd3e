"""JSON Schema -> GBNF: the grammar llama.cpp's `json_schema_to_grammar` gives for a schema.

Two steps, as in llama.cpp (common/json-schema.cpp, then common/json-schema-to-grammar.cpp):

1. `_Builder` reads the schema into a small tree of nodes covering the subset that can be
   converted (type, properties / required / additionalProperties, items / prefixItems /
   minItems / maxItems, minLength / maxLength / pattern / format, minimum / maximum /
   exclusive*, const, enum, anyOf / oneOf / allOf, `$ref` into the same document). It raises
   `SchemaError` on what it cannot read (an unknown type, a `$ref` to another document, ...).
2. `_Converter` walks the tree and writes the rules, with llama.cpp's rule names, so that the
   text is the same as llama.cpp's: the rules sorted by name, one per line, `name ::= body`.

A `pattern` the grammar cannot express (unanchored, lookaround, `\\d`, ...) is not an error in
llama.cpp: the string accepts any text and a warning is printed. Here the warning goes to the
"pygguf.grammar" logger with llama.cpp's text. An invalid pattern (unbalanced parentheses, nothing
to repeat, trailing backslash, unterminated class) is an error.

Every helper here is written from llama.cpp's behaviour (its tests pin the exact text); the one
deliberate difference: a pattern is read by code point, where llama.cpp reads bytes and can split a
multi-byte character before a quantifier.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pygguf.errors import PyggufError

log = logging.getLogger("pygguf.grammar")

__all__ = ["JSON_OBJECT_GRAMMAR", "SchemaError", "format_literal", "response_format_grammar",
           "schema_to_grammar"]


class SchemaError(PyggufError, ValueError):
    """A JSON schema that cannot be turned into a grammar; the message (one line) says where and why."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.splitlines()))


INT_MAX = 2 ** 31 - 1
INT64_MIN = -2 ** 63
INT64_MAX = 2 ** 63 - 1

SPACE_RULE = '| " " | "\\n"{1,2} [ \\t]{0,20}'

# name -> (body, rules it uses)
PRIMITIVE_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "boolean": ('("true" | "false")', ()),
    "decimal-part": ("[0-9]{1,16}", ()),
    "integral-part": ("[0] | [1-9] [0-9]{0,15}", ()),
    "number": ('("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?',
               ("integral-part", "decimal-part")),
    "integer": ('("-"? integral-part)', ("integral-part",)),
    "value": ("object | array | string | number | boolean | null",
              ("object", "array", "string", "number", "boolean", "null")),
    "object": ('"{" space ( string ":" space value ("," space string ":" space value)* )? space "}"',
               ("string", "value")),
    "array": ('"[" space ( value ("," space value)* )? space "]"', ("value",)),
    "uuid": (('"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
              '[0-9a-fA-F]{12} "\\""'), ()),
    "char": ('[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})', ()),
    "string": ('"\\"" char* "\\""', ("char",)),
    "null": ('"null"', ()),
}

STRING_FORMAT_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "date": ('[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )', ()),
    "time": (('([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
              '( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'), ()),
    "date-time": ('date "T" time', ("date", "time")),
    "date-string": ('"\\"" date "\\""', ("date",)),
    "time-string": ('"\\"" time "\\""', ("time",)),
    "date-time-string": ('"\\"" date-time "\\""', ("date-time",)),
}

RESERVED_NAMES = frozenset({"root", *PRIMITIVE_RULES, *STRING_FORMAT_RULES})

_INVALID_RULE_CHARS = re.compile(r"[^a-zA-Z0-9-]+")
_LITERAL_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}
_LITERAL_ESCAPE_RE = re.compile(r'[\r\n"\\]')

_MAX_PATTERN_DEPTH = 100
_NON_LITERAL = frozenset("|.()[]{}*+?^$")
_ESCAPED_IN_REGEX_ONLY = frozenset("^$.[]()|{}*+?")     # "\." in a regex is "." in a GBNF literal
_HEX = frozenset("0123456789abcdefABCDEF")


# ---- JSON text as llama.cpp's json library writes it (compact, UTF-8 kept) -----------------------

def _dump_float(x: float) -> str:
    """A double as nlohmann::json writes it: the shortest round-trip digits, fixed notation for a
    decimal point position in (-4, 15], exponent notation (at least two digits, signed) otherwise."""
    if math.isnan(x) or math.isinf(x):
        return "null"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    digits, exponent = _shortest_digits(abs(x))
    k = len(digits)
    n = k + exponent                     # position of the decimal point relative to the digits
    if k <= n <= 15:
        text = digits + "0" * (n - k) + ".0"
    elif 0 < n <= 15:
        text = digits[:n] + "." + digits[n:]
    elif -4 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = (digits if k == 1 else digits[0] + "." + digits[1:]) + "e" + ("-" if e < 0 else "+") + f"{abs(e):02d}"
    return sign + text


def _shortest_digits(x: float) -> tuple[str, int]:
    """(digits, exponent) with x == int(digits) * 10**exponent, digits the shortest round trip."""
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    exponent = (int(exp) if exp else 0) - len(frac)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return stripped or "0", exponent


def _dump_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20:
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}.get(ch, f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _dump(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _dump_float(value)
    if isinstance(value, str):
        return _dump_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(_dump_string(str(k)) + ":" + _dump(v) for k, v in value.items()) + "}"
    raise SchemaError(f"JSON schema conversion failed: {type(value).__name__} is not a JSON value")


def format_literal(literal: str) -> str:
    """A GBNF string literal matching `literal` exactly (llama.cpp's gbnf_format_literal)."""
    return '"' + _LITERAL_ESCAPE_RE.sub(lambda m: _LITERAL_ESCAPES[m.group()], literal) + '"'


# ---- the schema, read into nodes (llama.cpp's common_chat_schema) --------------------------------

@dataclass(eq=False)
class _Node:
    kind: str       # any ref anyOf allOf const enum null boolean number integer string array tuple object


@dataclass(eq=False)
class _Ref(_Node):
    ref: str = ""
    target: _Node | None = None


@dataclass(eq=False)
class _Children(_Node):          # anyOf (oneOf, a type list) and allOf
    children: list[_Node] = field(default_factory=list)


@dataclass(eq=False)
class _Const(_Node):
    value: Any = None


@dataclass(eq=False)
class _Enum(_Node):
    values: list = field(default_factory=list)


@dataclass(eq=False)
class _Integer(_Node):
    minimum: int = INT64_MIN         # inclusive; INT64_MIN / INT64_MAX mean unbounded
    maximum: int = INT64_MAX


@dataclass(eq=False)
class _String(_Node):
    pattern: str = ""
    format: str = ""                 # "", "uuid", "date", "time", "date-time"
    min_length: int = 0
    max_length: int = -1             # -1: unbounded


@dataclass(eq=False)
class _Array(_Node):
    items: _Node | None = None
    min_items: int = 0
    max_items: int = -1


@dataclass(eq=False)
class _Tuple(_Node):
    items: list[_Node] = field(default_factory=list)


@dataclass(eq=False)
class _Object(_Node):
    properties: list[tuple[str, _Node, bool]] = field(default_factory=list)   # (name, schema, required)
    additional: _Node | None = None                                          # None: not allowed


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int32(v: int) -> int:
    """An integer as a C++ `int` (nlohmann's get<int>) keeps it: modulo 2**32, signed."""
    v &= 0xFFFFFFFF
    return v - 2 ** 32 if v >= 2 ** 31 else v


class _BuildError(Exception):
    pass


class _Builder:
    """Reads a schema (a dict from json.loads) into nodes; the first problem stops it."""

    def __init__(self, root):
        self.root = root
        self.refs: dict[str, _Node | None] = {}
        self.pending: list[_Ref] = []

    @staticmethod
    def fail(path: str, msg: str):
        raise _BuildError(f"JSON schema error at {path}: {msg}")

    def build(self) -> _Node:
        node = self.build_node(self.root, "#")
        for ref in self.pending:
            ref.target = self.refs[ref.ref]
        return node

    def get_count(self, schema: dict, key: str, path: str, default: int) -> int:
        if key not in schema:
            return default
        value = schema[key]
        if not _is_int(value) or _int32(value) < 0:
            self.fail(path, f"{key} must be a non-negative integer")
        return _int32(value)

    def get_bound(self, schema: dict, key: str, path: str, round_up: bool) -> int:
        value = schema[key]
        if _is_int(value):
            return value
        if not isinstance(value, float):
            self.fail(path, f"{key} must be a number")
        if not math.isfinite(value):
            self.fail(path, f"{key} must be a finite number")
        return math.ceil(value) if round_up else math.floor(value)

    def get_format(self, schema: dict, path: str) -> str:
        if "format" not in schema:
            return ""
        fmt = schema["format"]
        if not isinstance(fmt, str):
            self.fail(path, "format must be a string")
        if fmt in ("date", "time", "date-time"):
            return fmt
        if fmt == "uuid" or (len(fmt) == 5 and fmt.startswith("uuid") and "1" <= fmt[4] <= "5"):
            return "uuid"
        return ""

    def resolve_ref(self, ref: str, path: str):
        target = self.root
        for sel in ref[1:].split("/")[1:]:
            if isinstance(target, dict) and sel in target:
                target = target[sel]
            elif isinstance(target, list):
                m = re.match(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)", sel)
                idx = len(target)
                if m and (m.group(1) != "-" or int(m.group(2)) == 0) and int(m.group(2)) < 2 ** 64:
                    idx = int(m.group(2))
                if idx >= len(target):
                    self.fail(path, f"cannot resolve $ref {ref}, {sel} is out of range")
                target = target[idx]
            else:
                self.fail(path, f"cannot resolve $ref {ref}, {sel} not found")
        return target

    def build_ref(self, value, path: str) -> _Node:
        if not isinstance(value, str):
            self.fail(path, "$ref must be a string")
        if not value.startswith("#/"):
            self.fail(path, f"unsupported $ref {value}, only references into the same document are supported")
        if value not in self.refs:
            self.refs[value] = None          # a cycle back to this $ref stops here
            self.refs[value] = self.build_node(self.resolve_ref(value, path), value)
        node = _Ref("ref", ref=value)
        self.pending.append(node)
        return node

    def build_alternatives(self, kind: str, alts, path: str) -> _Node:
        if not isinstance(alts, list):
            self.fail(path, "must be an array of schemas")
        if not alts:
            self.fail(path, "must not be empty")
        return _Children(kind, children=[self.build_node(alt, f"{path}/{i}") for i, alt in enumerate(alts)])

    def build_object(self, schema: dict, path: str) -> _Node:
        required = set()
        if isinstance(schema.get("required"), list):
            required = {name for name in schema["required"] if isinstance(name, str)}
        node = _Object("object")
        if "properties" in schema:
            properties = schema["properties"]
            if not isinstance(properties, dict):
                self.fail(path, "properties must be an object")
            for name, prop in properties.items():
                node.properties.append((name, self.build_node(prop, f"{path}/properties/{name}"), name in required))
        if "additionalProperties" in schema:
            additional = schema["additionalProperties"]
            if isinstance(additional, bool):
                if additional:
                    node.additional = _Node("any")
            elif isinstance(additional, dict):
                node.additional = self.build_node(additional, f"{path}/additionalProperties")
            else:
                self.fail(path, "additionalProperties must be a boolean or a schema")
        elif "properties" not in schema:
            node.additional = _Node("any")           # {"type": "object"} alone: any object
        return node

    def build_array(self, schema: dict, path: str) -> _Node:
        node = _Array("array")
        if "items" in schema or "prefixItems" in schema:
            key = "items" if "items" in schema else "prefixItems"
            items = schema[key]
            if isinstance(items, list):
                return _Tuple("tuple", items=[self.build_node(item, f"{path}/{key}/{i}") for i, item in enumerate(items)])
            node.items = self.build_node(items, f"{path}/{key}")
        else:
            node.items = _Node("any")
        node.min_items = self.get_count(schema, "minItems", path, 0)
        node.max_items = self.get_count(schema, "maxItems", path, -1)
        return node

    def build_string(self, schema: dict, path: str) -> _Node:
        node = _String("string")
        if "pattern" in schema:
            if not isinstance(schema["pattern"], str):
                self.fail(path, "pattern must be a string")
            node.pattern = schema["pattern"]
        node.format = self.get_format(schema, path)
        node.min_length = self.get_count(schema, "minLength", path, 0)
        node.max_length = self.get_count(schema, "maxLength", path, -1)
        return node

    def build_integer(self, schema: dict, path: str) -> _Node:
        node = _Integer("integer")
        if "minimum" in schema:
            node.minimum = self.get_bound(schema, "minimum", path, round_up=True)
        elif "exclusiveMinimum" in schema:
            node.minimum = self.get_bound(schema, "exclusiveMinimum", path, round_up=False) + 1
        if "maximum" in schema:
            node.maximum = self.get_bound(schema, "maximum", path, round_up=False)
        elif "exclusiveMaximum" in schema:
            node.maximum = self.get_bound(schema, "exclusiveMaximum", path, round_up=True) - 1
        return node

    def build_node(self, schema, path: str) -> _Node:
        if not isinstance(schema, dict):
            self.fail(path, "schema must be an object")
        if "$ref" in schema:
            return self.build_ref(schema["$ref"], path)
        if "oneOf" in schema or "anyOf" in schema:
            key = "oneOf" if "oneOf" in schema else "anyOf"
            return self.build_alternatives("anyOf", schema[key], f"{path}/{key}")

        type_ = schema.get("type")
        if isinstance(type_, list):
            # {"type": ["a", "b"], ...} is {"anyOf": [{"type": "a", ...}, {"type": "b", ...}]}
            if not type_:
                self.fail(path, "type must not be empty")
            children = [self.build_node({**schema, "type": t}, f"{path}/type/{i}") for i, t in enumerate(type_)]
            return _Children("anyOf", children=children)
        if "const" in schema:
            return _Const("const", value=schema["const"])
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                self.fail(path, "enum must be a non-empty array")
            return _Enum("enum", values=list(values))
        if type_ is not None and not isinstance(type_, str):
            self.fail(path, "type must be a string or an array of strings")

        type_name = type_ if isinstance(type_, str) else ""
        has_properties = "properties" in schema or (
            "additionalProperties" in schema and schema["additionalProperties"] is not True)

        if not type_name:
            # no type: the structural keywords decide
            if has_properties:
                return self.build_object(schema, path)
            if "allOf" in schema:
                return self.build_alternatives("allOf", schema["allOf"], f"{path}/allOf")
            if "items" in schema or "prefixItems" in schema:
                return self.build_array(schema, path)
            if ("pattern" in schema or "minLength" in schema or "maxLength" in schema
                    or self.get_format(schema, path)):
                return self.build_string(schema, path)
            return _Node("any")
        if type_name == "object":
            if not has_properties and "allOf" in schema:
                return self.build_alternatives("allOf", schema["allOf"], f"{path}/allOf")
            return self.build_object(schema, path)
        if type_name == "string":
            if "allOf" in schema:
                return self.build_alternatives("allOf", schema["allOf"], f"{path}/allOf")
            return self.build_string(schema, path)
        if type_name == "array":
            return self.build_array(schema, path)
        if type_name == "integer":
            return self.build_integer(schema, path)
        if type_name in ("number", "boolean", "null"):
            return _Node(type_name)
        self.fail(path, f"unrecognized type {type_name}")


# ---- grammar text helpers ------------------------------------------------------------------------

def _build_repetition(item: str, min_items: int, max_items: int, separator: str = "") -> str:
    """`item` repeated min..max times (max INT_MAX: unbounded), separated by `separator` if any."""
    has_max = max_items != INT_MAX
    if max_items == 0:
        return ""
    if min_items == 0 and max_items == 1:
        return item + "?"
    if not separator:
        if min_items == 1 and not has_max:
            return item + "+"
        if min_items == 0 and not has_max:
            return item + "*"
        return f"{item}{{{min_items},{max_items if has_max else ''}}}"
    result = item + " " + _build_repetition(f"({separator} {item})", 0 if min_items == 0 else min_items - 1,
                                            max_items - 1 if has_max else max_items)
    return f"({result})?" if min_items == 0 else result


def _min_max_int(min_value: int, max_value: int, out: list[str], decimals_left: int = 16,
                 top_level: bool = True) -> None:
    """Appends to `out` the alternatives of the decimal integers in [min_value, max_value]
    (INT64_MIN / INT64_MAX: unbounded on that side), at most `decimals_left` digits when open."""
    has_min = min_value != INT64_MIN
    has_max = max_value != INT64_MAX

    def digit_range(lo: str, hi: str) -> None:
        out.append(f"[{lo}]" if lo == hi else f"[{lo}-{hi}]")

    def more_digits(min_digits: int, max_digits: int) -> None:
        out.append("[0-9]")
        if min_digits == max_digits == 1:
            return
        out.append("{" + str(min_digits))
        if max_digits != min_digits:
            out.append("," + (str(max_digits) if max_digits != INT_MAX else ""))
        out.append("}")

    def uniform_range(lo: str, hi: str) -> None:
        """Numbers of len(lo) == len(hi) digits from lo to hi."""
        i = 0
        while i < len(lo) and i < len(hi) and lo[i] == hi[i]:
            i += 1
        if i > 0:
            out.append(f'"{lo[:i]}"')
        if i < len(lo) and i < len(hi):
            if i > 0:
                out.append(" ")
            sub_len = len(lo) - i - 1
            if sub_len > 0:
                lo_sub, hi_sub = lo[i + 1:], hi[i + 1:]
                zeros, nines = "0" * sub_len, "9" * sub_len
                to_reached = False
                out.append("(")
                if lo_sub == zeros:
                    digit_range(lo[i], chr(ord(hi[i]) - 1))
                    out.append(" ")
                    more_digits(sub_len, sub_len)
                else:
                    out.append(f"[{lo[i]}] (")
                    uniform_range(lo_sub, nines)
                    out.append(")")
                    if ord(lo[i]) < ord(hi[i]) - 1:
                        out.append(" | ")
                        if hi_sub == nines:
                            digit_range(chr(ord(lo[i]) + 1), hi[i])
                            to_reached = True
                        else:
                            digit_range(chr(ord(lo[i]) + 1), chr(ord(hi[i]) - 1))
                        out.append(" ")
                        more_digits(sub_len, sub_len)
                if not to_reached:
                    out.append(" | ")
                    digit_range(hi[i], hi[i])
                    out.append(" ")
                    uniform_range(zeros, hi_sub)
                out.append(")")
            else:
                out.append(f"[{lo[i]}-{hi[i]}]")

    if has_min and has_max:
        if min_value < 0 and max_value < 0:
            out.append('"-" (')
            _min_max_int(-max_value, -min_value, out, decimals_left, True)
            out.append(")")
            return
        if min_value < 0:
            out.append('"-" (')
            _min_max_int(0, -min_value, out, decimals_left, True)
            out.append(") | ")
            min_value = 0
        min_s, max_s = str(min_value), str(max_value)
        for digits in range(len(min_s), len(max_s)):
            uniform_range(min_s, "9" * digits)
            min_s = "1" + "0" * digits
            out.append(" | ")
        uniform_range(min_s, max_s)
        return

    less_decimals = max(decimals_left - 1, 1)

    if has_min:
        if min_value < 0:
            out.append('"-" (')
            _min_max_int(INT64_MIN, -min_value, out, decimals_left, False)
            out.append(") | [0] | [1-9] ")
            more_digits(0, decimals_left - 1)
        elif min_value == 0:
            if top_level:
                out.append("[0] | [1-9] ")
                more_digits(0, less_decimals)
            else:
                more_digits(1, decimals_left)
        elif min_value <= 9:
            c = str(min_value)
            range_start = "1" if top_level else "0"
            if c > range_start:
                digit_range(range_start, chr(ord(c) - 1))
                out.append(" ")
                more_digits(1, less_decimals)
                out.append(" | ")
            digit_range(c, "9")
            out.append(" ")
            more_digits(0, less_decimals)
        else:
            min_s = str(min_value)
            c = min_s[0]
            if c > "1":
                digit_range("1" if top_level else "0", chr(ord(c) - 1))
                out.append(" ")
                more_digits(len(min_s), less_decimals)
                out.append(" | ")
            digit_range(c, c)
            out.append(" (")
            _min_max_int(int(min_s[1:]), INT64_MAX, out, less_decimals, False)
            out.append(")")
            if c < "9":
                out.append(" | ")
                digit_range(chr(ord(c) + 1), "9")
                out.append(" ")
                more_digits(len(min_s) - 1, less_decimals)
        return

    if has_max:
        if max_value >= 0:
            if top_level:
                out.append('"-" [1-9] ')
                more_digits(0, less_decimals)
                out.append(" | ")
            _min_max_int(0, max_value, out, decimals_left, True)
        else:
            out.append('"-" (')
            _min_max_int(-max_value, INT64_MAX, out, decimals_left, False)
            out.append(")")
        return

    raise AssertionError("an integer range needs a minimum or a maximum")


def _gbnf_escape_length(pattern: str, pos: int) -> int:
    """Length of the GBNF escape at pattern[pos] (a backslash), 0 if GBNF has no such escape."""
    if pos + 1 >= len(pattern) or pattern[pos] != "\\":
        return 0
    c = pattern[pos + 1]
    if c in 'trn\\"[]-':
        return 2
    n_hex = {"x": 2, "u": 4, "U": 8}.get(c)
    if n_hex is None or pos + 2 + n_hex > len(pattern):
        return 0
    if not all(h in _HEX for h in pattern[pos + 2:pos + 2 + n_hex]):
        return 0
    return 2 + n_hex


def _stoi(text: str) -> int:
    """std::stoi: leading whitespace, a sign, digits; the rest ignored; ValueError if none or too big."""
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", text)
    if not m:
        raise ValueError(text)
    value = int(m.group(1))
    if not -2 ** 31 <= value <= INT_MAX:
        raise ValueError(text)
    return value


class _UnsupportedPattern(Exception):
    """A valid regex with no grammar equivalent: the string accepts anything (with a warning)."""


class _InvalidPattern(Exception):
    """Not a valid regex: an error."""


# ---- the converter (llama.cpp's SchemaConverter) -------------------------------------------------

class _Converter:
    def __init__(self, dotall: bool = False):
        self.dotall = dotall
        self.rules: dict[str, str] = {"space": SPACE_RULE}
        self.refs_being_resolved: set[str] = set()
        self.all_of_active: set[int] = set()
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def add_rule(self, name: str, rule: str) -> str:
        """Adds `name ::= rule`; a name taken by another body gets the first free numeric suffix."""
        esc_name = _INVALID_RULE_CHARS.sub("-", name)
        if self.rules.get(esc_name, rule) == rule:
            self.rules[esc_name] = rule
            return esc_name
        i = 0
        while self.rules.get(f"{esc_name}{i}", rule) != rule:
            i += 1
        key = f"{esc_name}{i}"
        self.rules[key] = rule
        return key

    def add_primitive(self, name: str, rule: tuple[str, tuple[str, ...]]) -> str:
        n = self.add_rule(name, rule[0])
        for dep in rule[1]:
            dep_rule = PRIMITIVE_RULES.get(dep) or STRING_FORMAT_RULES.get(dep)
            if dep_rule is None:
                self.errors.append(f"Rule {dep} not known")
                continue
            if dep not in self.rules:
                self.add_primitive(dep, dep_rule)
        return n

    def visit_primitive(self, rule_name: str, type_: str) -> str:
        return self.add_primitive("root" if rule_name == "root" else type_, PRIMITIVE_RULES[type_])

    def generate_union_rule(self, name: str, alternatives: list[_Node]) -> str:
        return " | ".join(self.visit(alt, f"{name}{'-' if name else 'alternative-'}{i}")
                          for i, alt in enumerate(alternatives))

    # -- patterns

    def visit_pattern(self, pattern: str, name: str) -> str:
        snapshot = dict(self.rules)
        try:
            return self.pattern_to_rule(pattern, name)
        except _UnsupportedPattern as err:
            self.rules = snapshot
            self.warnings.append(f"pattern {pattern} is not supported ({err}), accepting any string")
            return self.add_rule(name, self.add_primitive("string", PRIMITIVE_RULES["string"]))
        except _InvalidPattern as err:
            self.rules = snapshot
            self.errors.append(f"Invalid pattern {pattern}: {err}")
            return ""

    def pattern_to_rule(self, pattern: str, name: str) -> str:
        if len(pattern) < 2 or pattern[0] != "^" or pattern[-1] != "$":
            raise _UnsupportedPattern("not anchored with '^' and '$'")
        sub = pattern[1:-1]
        length = len(sub)
        sub_rule_ids: dict[str, str] = {}
        i = 0
        depth = 0

        def to_rule(item: tuple[str, bool]) -> str:
            text, is_literal = item
            return f'"{text}"' if is_literal else text

        def transform() -> tuple[str, bool]:
            nonlocal i, depth
            seq: list[tuple[str, bool]] = []     # (text, is it a literal's content)

            def join_seq() -> tuple[str, bool]:
                # consecutive literals merge into one
                parts: list[tuple[str, bool]] = []
                for text, is_literal in seq:
                    if is_literal and parts and parts[-1][1]:
                        parts[-1] = (parts[-1][0] + text, True)
                    else:
                        parts.append((text, is_literal))
                return " ".join(to_rule(p) for p in parts), False

            while i < length:
                c = sub[i]
                if c == ".":
                    seq.append((self.add_rule("dot", "[\\U00000000-\\U0010FFFF]" if self.dotall else "[^\\x0A\\x0D]"),
                                False))
                    i += 1
                elif c == "(":
                    i += 1
                    if i < length and sub[i] == "?":
                        if i + 1 < length and sub[i + 1] == ":":
                            i += 2               # a non-capturing group is a group
                        else:
                            raise _UnsupportedPattern("unsupported group syntax")
                    depth += 1
                    if depth > _MAX_PATTERN_DEPTH:
                        raise _UnsupportedPattern("pattern nesting too deep")
                    seq.append(("(" + to_rule(transform()) + ")", False))
                elif c == ")":
                    i += 1
                    if depth == 0:
                        raise _InvalidPattern("unbalanced parentheses")
                    depth -= 1
                    return join_seq()
                elif c in "^$":
                    raise _UnsupportedPattern("anchor inside the pattern")
                elif c == "[":
                    text = "["
                    i += 1
                    while i < length and sub[i] != "]":
                        if sub[i] == "\\":
                            n = _gbnf_escape_length(sub, i)
                            if n == 0:
                                raise _UnsupportedPattern("unsupported escape in character class: " + sub[i:i + 2])
                            text += sub[i:i + n]
                            i += n
                        else:
                            text += sub[i]
                            i += 1
                    if i >= length:
                        raise _InvalidPattern("unterminated character class")
                    seq.append((text + "]", False))
                    i += 1
                elif c == "|":
                    seq.append(("|", False))
                    i += 1
                elif c in "*+?":
                    if not seq:
                        raise _InvalidPattern("nothing to repeat")
                    seq[-1] = (to_rule(seq[-1]) + c, False)
                    i += 1
                elif c == "{":
                    i += 1
                    start = i
                    while i < length and sub[i] != "}":
                        i += 1
                    if i >= length:
                        raise _UnsupportedPattern("unterminated curly brackets")
                    nums = sub[start:i].split(",")
                    i += 1
                    if len(nums) not in (1, 2):
                        raise _UnsupportedPattern("wrong number of values in curly brackets")
                    min_times, max_times = 0, INT_MAX
                    try:
                        if len(nums) == 1:
                            min_times = max_times = _stoi(nums[0])
                        else:
                            if nums[0]:
                                min_times = _stoi(nums[0])
                            if nums[1]:
                                max_times = _stoi(nums[1])
                    except ValueError:
                        raise _UnsupportedPattern("invalid number in curly brackets") from None
                    if not seq:
                        raise _InvalidPattern("nothing to repeat")
                    text, is_literal = seq[-1]
                    if not is_literal:
                        if text not in sub_rule_ids:
                            sub_rule_ids[text] = ""
                            sub_rule_ids[text] = self.add_rule(f"{name}-{len(sub_rule_ids)}", text)
                        text = sub_rule_ids[text]
                    seq[-1] = (_build_repetition(f'"{text}"' if is_literal else text, min_times, max_times), False)
                else:
                    literal = ""
                    while i < length:
                        ch = sub[i]
                        if ch == "\\":
                            if i == length - 1:
                                raise _InvalidPattern("trailing backslash")
                            if sub[i + 1] in _ESCAPED_IN_REGEX_ONLY:
                                literal += sub[i + 1]
                                i += 2
                            else:
                                n = _gbnf_escape_length(sub, i)
                                if n == 0:
                                    raise _UnsupportedPattern("unsupported escape: " + sub[i:i + 2])
                                literal += sub[i:i + n]
                                i += n
                        elif ch == '"':
                            literal += '\\"'
                            i += 1
                        elif ch not in _NON_LITERAL and (i == length - 1 or not literal or sub[i + 1] == "."
                                                         or sub[i + 1] not in _NON_LITERAL):
                            # a character before a quantifier starts a literal of its own
                            literal += ch
                            i += 1
                        else:
                            break
                    if not literal:                   # e.g. a stray ']' or '}'
                        raise _UnsupportedPattern("unsupported character: " + c)
                    seq.append((literal, True))
            return join_seq()

        rule = to_rule(transform())
        if depth != 0:
            raise _InvalidPattern("unbalanced parentheses")
        return self.add_rule(name, f'"\\"" ({rule}) "\\""')

    # -- objects

    def not_strings(self, strings: list[str]) -> str:
        """A JSON string that is none of `strings` (a trie walk; llama.cpp's _not_strings)."""
        trie: dict = {}                                 # char -> child; None key: a word ends here
        for word in strings:
            node = trie
            for ch in word:
                node = node.setdefault(ch, {})
            node[None] = True
        char_rule = self.add_primitive("char", PRIMITIVE_RULES["char"])
        out = ['["] ( ']

        def visit(node: dict) -> None:
            children = sorted((k for k in node if k is not None), key=ord)
            for n, ch in enumerate(children):
                if n:
                    out.append(" | ")
                out.append(f"[{ch}]")
                child = node[ch]
                if any(k is not None for k in child):
                    out.append(" (")
                    visit(child)
                    out.append(")")
                else:
                    out.append(f" {char_rule}+")
            if children:
                out.append(f' | [^"{"".join(children)}] {char_rule}*')

        visit(trie)
        out.append(" )")
        if None not in trie:
            out.append("?")
        out.append(' ["]')
        return "".join(out)

    def build_object_rule(self, properties: list[tuple[str, _Node]], required: set[str], name: str,
                          additional: _Node | None) -> str:
        prefix = f"{name}-" if name else ""
        required_props: list[str] = []
        optional_props: list[str] = []
        kv_rule: dict[str, str] = {}
        prop_names: list[str] = []
        for prop_name, prop_schema in properties:
            prop_rule = self.visit(prop_schema, prefix + prop_name)
            kv_rule[prop_name] = self.add_rule(f"{prefix}{prop_name}-kv",
                                               f'{format_literal(_dump_string(prop_name))} space ":" space {prop_rule}')
            (required_props if prop_name in required else optional_props).append(prop_name)
            prop_names.append(prop_name)
        if additional is not None:
            sub_name = prefix + "additional"
            value_rule = (self.visit(additional, sub_name + "-value") if additional.kind != "any"
                          else self.add_primitive("value", PRIMITIVE_RULES["value"]))
            key_rule = (self.add_rule(sub_name + "-k", self.not_strings(prop_names)) if prop_names
                        else self.add_primitive("string", PRIMITIVE_RULES["string"]))
            kv_rule["*"] = self.add_rule(sub_name + "-kv", f'{key_rule} ":" space {value_rule}')
            optional_props.append("*")

        if not required_props and not optional_props:
            return '"{" space "}"'

        rule = '"{" space ' + ' "," space '.join(kv_rule[k] for k in required_props)
        if optional_props:
            rule += " ("
            if required_props:
                rule += ' "," space ( '

            def head(k: str, first_is_optional: bool) -> str:
                comma_ref = f'( "," space {kv_rule[k]} )'
                if first_is_optional:
                    return comma_ref + ("*" if k == "*" else "?")
                return kv_rule[k] + (" " + comma_ref + "*" if k == "*" else "")

            # rest[j]: the rule for the optional properties after the (j-1)th, each optional in
            # turn, named after the (j-1)th; built from the last one back (llama.cpp builds the
            # same rules recursively, deepest first: the same names and bodies in the same order,
            # without a call per property on the stack)
            n_opt = len(optional_props)
            rest: list[str] = [""] * (n_opt + 1)
            for j in range(n_opt - 1, 0, -1):
                body = head(optional_props[j], True) + (" " + rest[j + 1] if j + 1 < n_opt else "")
                rest[j] = self.add_rule(f"{prefix}{optional_props[j - 1]}-rest", body)
            rule += " | ".join(head(optional_props[i], False) + (" " + rest[i + 1] if i + 1 < n_opt else "")
                               for i in range(n_opt))
            if required_props:
                rule += " )"
            rule += " )?"
        return rule + ' space "}"'

    def visit_all_of(self, node: _Children, name: str, rule_name: str) -> str:
        # allOf copies its components' properties in place: one reached again from inside itself
        # (through a $ref) would never end (llama.cpp overflows its stack there)
        if id(node) in self.all_of_active:
            self.errors.append(f"allOf at {name or 'the root'} contains itself through a $ref")
            return ""
        self.all_of_active.add(id(node))
        try:
            return self._visit_all_of(node, name, rule_name)
        finally:
            self.all_of_active.discard(id(node))

    def _visit_all_of(self, node: _Children, name: str, rule_name: str) -> str:
        required: set[str] = set()
        properties: list[tuple[str, _Node]] = []
        enum_counts: dict[str, int] = {}

        following: set[int] = set()       # $ref targets being followed: a cycle adds nothing

        def add_component(comp: _Node, is_required: bool) -> None:
            if isinstance(comp, _Ref):
                if comp.target is not None and id(comp.target) not in following:
                    following.add(id(comp.target))
                    add_component(comp.target, is_required)
                    following.discard(id(comp.target))
            elif isinstance(comp, _Object):
                for prop_name, prop_schema, _ in comp.properties:
                    properties.append((prop_name, prop_schema))
                    if is_required:
                        required.add(prop_name)
            elif isinstance(comp, _Enum):
                for v in comp.values:
                    lit = format_literal(_dump(v))
                    enum_counts[lit] = enum_counts.get(lit, 0) + 1

        for child in node.children:
            if child.kind == "anyOf":
                for alt in child.children:
                    add_component(alt, False)
            else:
                add_component(child, True)
        if enum_counts:
            common = [lit for lit in sorted(enum_counts) if enum_counts[lit] == len(node.children)]
            if common:
                return self.add_rule(rule_name, "(" + " | ".join(common) + ")")
        return self.add_rule(rule_name, self.build_object_rule(properties, required, name, None))

    def resolve_ref(self, node: _Ref) -> str:
        fragment = node.ref.split("#", 1)[1] if "#" in node.ref else node.ref
        ref_name = "ref" + _INVALID_RULE_CHARS.sub("-", fragment)
        if ref_name not in self.rules and node.ref not in self.refs_being_resolved:
            if node.target is None:
                self.errors.append(f"Unresolved $ref {node.ref}")
                return ""
            self.refs_being_resolved.add(node.ref)
            ref_name = self.visit(node.target, ref_name)
            self.refs_being_resolved.discard(node.ref)
        return ref_name

    # -- the walk

    def visit(self, node: _Node, name: str) -> str:
        rule_name = name + "-" if name in RESERVED_NAMES else (name or "root")
        sub_name = f"{name}-" if name else ""
        kind = node.kind
        if kind == "ref":
            return self.add_rule(rule_name, self.resolve_ref(node))
        if kind == "anyOf":
            return self.add_rule(rule_name, self.generate_union_rule(name, node.children))
        if kind == "allOf":
            return self.visit_all_of(node, name, rule_name)
        if kind == "const":
            return self.add_rule(rule_name, format_literal(_dump(node.value)))
        if kind == "enum":
            return self.add_rule(rule_name, "(" + " | ".join(format_literal(_dump(v)) for v in node.values) + ")")
        if kind == "object":
            if not node.properties and node.additional is not None and node.additional.kind == "any":
                return self.add_rule(rule_name, self.add_primitive("object", PRIMITIVE_RULES["object"]))
            required = {n for n, _, req in node.properties if req}
            return self.add_rule(rule_name, self.build_object_rule([(n, s) for n, s, _ in node.properties],
                                                                   required, name, node.additional))
        if kind == "tuple":
            items = ' "," space '.join(self.visit(item, f"{sub_name}tuple-{i}") for i, item in enumerate(node.items))
            return self.add_rule(rule_name, f'"[" space {items} space "]"')
        if kind == "array":
            if node.items.kind == "any" and node.min_items == 0 and node.max_items < 0:
                return self.visit_primitive(rule_name, "array")
            item_rule = self.visit(node.items, sub_name + "item")
            max_items = INT_MAX if node.max_items < 0 else node.max_items
            body = _build_repetition(item_rule, node.min_items, max_items, '"," space')
            return self.add_rule(rule_name, f'"[" space {body} space "]"')
        if kind == "string":
            if node.pattern:
                return self.visit_pattern(node.pattern, rule_name)
            if node.format == "uuid":
                return self.visit_primitive(rule_name, "uuid")
            if node.format:
                prim = node.format + "-string"
                return self.add_rule(rule_name, self.add_primitive(prim, STRING_FORMAT_RULES[prim]))
            if node.min_length > 0 or node.max_length >= 0:
                char_rule = self.add_primitive("char", PRIMITIVE_RULES["char"])
                max_len = INT_MAX if node.max_length < 0 else node.max_length
                return self.add_rule(rule_name,
                                     f'"\\"" {_build_repetition(char_rule, node.min_length, max_len)} "\\""')
            return self.visit_primitive(rule_name, "string")
        if kind == "integer":
            if node.minimum == INT64_MIN and node.maximum == INT64_MAX:
                return self.visit_primitive(rule_name, "integer")
            out = ["("]
            _min_max_int(node.minimum, node.maximum, out)
            out.append(")")
            return self.add_rule(rule_name, "".join(out))
        if kind in ("number", "boolean", "null"):
            return self.visit_primitive(rule_name, kind)
        # any
        return self.add_rule(rule_name, self.add_primitive("value", PRIMITIVE_RULES["value"]))

    def check_errors(self) -> None:
        if self.errors:
            raise SchemaError("JSON schema conversion failed: " + "; ".join(self.errors))
        if self.warnings:
            log.warning("JSON schema conversion was incomplete: %s", "; ".join(self.warnings))

    def format_grammar(self) -> str:
        return "".join(f"{name} ::= {self.rules[name]}\n" for name in sorted(self.rules))


def schema_to_grammar(schema: dict | bool) -> str:
    """The GBNF grammar of the JSON texts valid under `schema` (a JSON Schema as json.loads gives
    it), as llama.cpp's json_schema_to_grammar writes it: same rules, names and order.

    Like llama.cpp, a schema must be an object at every level: a boolean schema (`true`, `false`)
    is a SchemaError. SchemaError also for a malformed or unsupported schema (the message says
    where); a pattern the grammar cannot express accepts any string and logs a warning."""
    try:
        try:
            root = _Builder(schema).build()
        except _BuildError as err:
            raise SchemaError(f"JSON schema conversion failed: {err}") from None
        converter = _Converter()
        converter.visit(root, "")
        converter.check_errors()
        return converter.format_grammar()
    except RecursionError:   # both passes recurse over the schema's nesting
        raise SchemaError("JSON schema conversion failed: the schema is nested too deeply") from None


def response_format_grammar(response_format: dict | None) -> str | None:
    """The grammar for an OpenAI-style `response_format`, as llama.cpp's server reads it:
    {"type": "json_object"} (optionally with "schema"), {"type": "json_schema", "json_schema":
    {"schema": ...}}, {"type": "text"} or none (None: no grammar). An absent or empty schema means
    any JSON object."""
    if not response_format:
        return None
    kind = response_format.get("type") or ""
    if kind == "json_object":
        schema = response_format.get("schema")
    elif kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    elif kind in ("", "text"):
        return None
    else:
        raise SchemaError(f'response_format type must be one of "text" or "json_object", but got: {kind}')
    if schema is None or schema == {}:
        schema = {"type": "object"}
    return schema_to_grammar(schema)


# OpenAI's {"type": "json_object"}: llama.cpp's server turns it into the schema {"type": "object"}
# (tools/server/server-common.cpp: "an absent or empty schema means any object").
JSON_OBJECT_GRAMMAR = schema_to_grammar({"type": "object"})
