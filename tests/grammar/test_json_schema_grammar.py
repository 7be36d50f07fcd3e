"""The grammars schema_to_grammar writes, against the schemas they come from (property tests).

Both directions, for a handful of schemas:
- soundness of the grammar's coverage: JSON instances valid under the schema (drawn by
  `instances`, hypothesis strategies for the keywords these schemas use), written the way the grammar expects them (see `grammar_json`), are
  accepted by the grammar (parsed by pygguf.grammar.gbnf, run by pygguf.grammar.matcher);
- soundness of the grammar itself: texts drawn from the grammar (a random walk over the parsed
  rules, `GrammarWalker`) are JSON (json.loads) and valid under the schema (jsonschema).

The grammar is llama.cpp's, so its known narrowings are kept out of the first direction on purpose
(each `assume` below says which); `test_known_narrowing_*` pins them.
"""
from __future__ import annotations

import json
import math
import random

import pytest

hypothesis = pytest.importorskip("hypothesis")
jsonschema = pytest.importorskip("jsonschema")

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pygguf.grammar.json_schema import JSON_OBJECT_GRAMMAR, schema_to_grammar

NOT_MERGED = "grammar parser/matcher not merged yet"
try:
    from pygguf.grammar import gbnf
    from pygguf.grammar.gbnf import parse
except ImportError:
    pytest.skip(NOT_MERGED, allow_module_level=True)
try:
    from pygguf.grammar.matcher import TokenMatcher
except ImportError:
    TokenMatcher = None
needs_matcher = pytest.mark.skipif(TokenMatcher is None, reason=NOT_MERGED)

PROPERTY = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])

# ---- the schemas --------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,5}$"}, "maxItems": 3},
        "kind": {"enum": ["cat", "dog", None, 3, "q\"uote\\"]},
        "score": {"type": "number"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
RANGES = {
    "type": "array",
    "items": [
        {"type": "integer", "minimum": -1234, "maximum": 56789},
        {"type": "integer", "exclusiveMinimum": 7},
        {"type": "integer", "maximum": -17},
        {"type": "integer", "minimum": -5},
        {"type": "integer", "minimum": 25, "maximum": 300},
    ],
    "minItems": 5,
    "additionalItems": False,
}
POINTS = {
    "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "number"}},
                     "required": ["x", "y"], "additionalProperties": False}},
    "type": "array",
    "items": {"anyOf": [{"$ref": "#/$defs/pt"}, {"type": "null"}]},
    "minItems": 1,
    "maxItems": 4,
}
OPEN_RECORD = {
    "type": "object",
    "properties": {"id": {"type": "string", "format": "uuid"}, "when": {"type": "string", "format": "date"},
                   "note": {"type": "string", "minLength": 2}},
    "required": ["id"],
    "additionalProperties": {"type": "boolean"},
}
TUPLE = {
    "type": "array",
    "items": [{"type": "string", "minLength": 2, "maxLength": 4}, {"type": "boolean"},
              {"const": {"k": [1, 2.5, "x\ny"]}}, {"type": ["string", "null"], "maxLength": 1}],
    "minItems": 4,
    "additionalItems": False,
}
PHONE = {"type": "string", "pattern": "^(\\([0-9]{3}\\) )?[0-9]{3}-[0-9]{4}( x[0-9]{1,4})?$"}
ANY_OBJECT = {"type": "object"}

# the same schemas, for the converse, plus what hypothesis-jsonschema cannot draw from (recursion)
# or what the grammar narrows (allOf makes every property required)
LINKED = {
    "$ref": "#/definitions/node",
    "definitions": {"node": {"type": "object",
                             "properties": {"v": {"type": "integer", "minimum": -3, "maximum": 3},
                                            "next": {"anyOf": [{"$ref": "#/definitions/node"}, {"type": "null"}]}},
                             "required": ["v", "next"], "additionalProperties": False}},
}
MERGED = {
    "allOf": [{"$ref": "#/definitions/a"}, {"$ref": "#/definitions/b"}],
    "definitions": {"a": {"properties": {"p": {"type": "integer"}}},
                    "b": {"properties": {"q": {"type": "string", "maxLength": 3}}}},
}
ANYTHING = {}

ACCEPT = {"person": PERSON, "ranges": RANGES, "points": POINTS, "open_record": OPEN_RECORD, "tuple": TUPLE,
          "phone": PHONE, "any_object": ANY_OBJECT}
GENERATE = {**ACCEPT, "linked": LINKED, "merged": MERGED, "anything": ANYTHING}


def validator(schema):
    """Draft 7 for the tuple form of "items" (llama.cpp reads it as prefixItems), else 2020-12."""
    if isinstance(schema.get("items"), list):
        return jsonschema.Draft7Validator(schema)
    return jsonschema.Draft202012Validator(schema)


_grammars: dict[str, object] = {}


def grammar_of(name: str, schema):
    if name not in _grammars:
        _grammars[name] = parse(schema_to_grammar(schema))
    return _grammars[name]


# ---- instances of a schema ----------------------------------------------------------------------

ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8)


def instances(schema, root=None):
    """A strategy for JSON values valid under `schema` (the keywords the schemas here use)."""
    root = schema if root is None else root
    schema = resolve(schema, root)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([instances(alt, root) for alt in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([instances({**schema, "type": t}, root) for t in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        lo = schema.get("minimum", schema.get("exclusiveMinimum", -math.inf) + 1)
        hi = schema.get("maximum", schema.get("exclusiveMaximum", math.inf) - 1)
        return st.integers(None if lo == -math.inf else lo, None if hi == math.inf else hi)
    if kind == "number":
        return st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        if schema.get("format") == "uuid":
            return st.uuids().map(str)
        if schema.get("format") == "date":
            return st.dates().map(lambda d: d.isoformat())
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength"))
    if kind == "array":
        items = schema.get("items", {})
        if isinstance(items, list):
            return st.tuples(*[instances(item, root) for item in items]).map(list)
        return st.lists(instances(items, root), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems", 4))
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", [])
        fixed = st.fixed_dictionaries({n: instances(s, root) for n, s in props.items() if n in required},
                                      optional={n: instances(s, root) for n, s in props.items() if n not in required})
        extra = schema.get("additionalProperties", not props)
        if extra is False:
            return fixed
        values = ANY_JSON if extra is True else instances(extra, root)
        more = st.dictionaries(st.text().filter(lambda k: k not in props), values, max_size=3)
        return st.tuples(fixed, more).map(lambda both: {**both[0], **both[1]})
    return ANY_JSON


# ---- instances written the way the grammar expects them -----------------------------------------

def grammar_number(x) -> str:
    """A JSON number the grammar's `number` / `integer` rules take: at most 16 digits before and
    after the point, an exponent without leading zeros (json.dumps writes 1e-05, which they do not)."""
    if isinstance(x, int):
        text = str(x)
        assume(len(text.lstrip("-")) <= 16)          # llama.cpp: integral-part is at most 16 digits
        return text
    assert math.isfinite(x)
    text = repr(x)
    if "e" not in text and len(text.partition(".")[2]) > 16:
        text = f"{x:.16e}"
    mantissa, _, exponent = text.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".") if "e" in text else mantissa
    return mantissa + (f"e{int(exponent)}" if exponent else "")


SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def grammar_string(s: str) -> str:
    """The grammar's `char`: anything but '"', '\\', DEL and controls, which go escaped."""
    out = ['"']
    for ch in s:
        if ch in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def resolve(schema, root):
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    return schema


def grammar_json(value, schema, root) -> str:
    """`value` as compact JSON, its objects' keys in the order the grammar wants: the required
    properties in schema order, then the optional ones in schema order, then the others."""
    schema = resolve(schema, root) if isinstance(schema, dict) else {}
    if "const" in schema or "enum" in schema:       # the grammar has the value's text, as llama.cpp writes it
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            alt = next(a for a in schema[key] if jsonschema.Draft202012Validator(
                {**resolve(a, root), **({"$defs": root["$defs"]} if "$defs" in root else {})}).is_valid(value))
            return grammar_json(value, alt, root)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return grammar_number(value)
    if isinstance(value, str):
        return grammar_string(value)
    if isinstance(value, list):
        items = schema.get("items", {})
        subs = items if isinstance(items, list) else [items] * len(value)
        return "[" + ",".join(grammar_json(v, s, root) for v, s in zip(value, subs)) + "]"
    props = schema.get("properties", {})
    required = [n for n in props if n in schema.get("required", [])]
    order = {n: i for i, n in enumerate(required + [n for n in props if n not in required])}
    extra = schema.get("additionalProperties", {})
    keys = sorted(value, key=lambda k: order.get(k, len(order)))
    return "{" + ",".join(grammar_string(k) + ":" + grammar_json(value[k], props.get(k, extra), root)
                          for k in keys) + "}"


def accepts(grammar, text: str) -> bool:
    pieces = [bytes([b]) for b in range(256)] + [b""]
    state = TokenMatcher(grammar, pieces, [256]).start()
    return state.accept_text(text.encode("utf-8")) and state.can_end


def check_accepted(name: str, schema, value):
    validator(schema).validate(value)
    text = grammar_json(value, schema, schema)
    assert accepts(grammar_of(name, schema), text), f"{name}: grammar rejects {text!r}"


# ---- grammar -> text ----------------------------------------------------------------------------

# characters for negated classes and huge ranges; no '"' or '\\': in llama.cpp's additional-key
# rule a negated class stands where a JSON escape could start (test_known_unsound_additional_key_backslash)
SAMPLE_CHARS = [ord(c) for c in " !#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~éß€中😀\u00a0"]


class GrammarWalker:
    """Random texts of a parsed grammar: each rule picks a random alternative; past `max_depth`
    nested rules it takes the alternative of least derivation height, so every walk ends."""

    def __init__(self, grammar, max_depth: int = 40):
        self.g = grammar
        self.max_depth = max_depth
        self.alts = [self._split(rule) for rule in grammar.rules]
        self.height = self._heights()

    @staticmethod
    def _split(rule):
        """A rule's alternatives, each a list of ("ref", id) / ("chars", negated, ranges) items."""
        alts, seq, i = [], [], 0
        while True:
            t, v = rule[i]
            if t in (gbnf.END, gbnf.ALT):
                alts.append(seq)
                seq = []
                if t == gbnf.END:
                    return alts
                i += 1
            elif t == gbnf.RULE_REF:
                seq.append(("ref", v))
                i += 1
            elif t == gbnf.CHAR_ANY:
                seq.append(("chars", True, []))
                i += 1
            else:                                   # CHAR / CHAR_NOT, then CHAR_RNG_UPPER / CHAR_ALT
                negated, ranges = t == gbnf.CHAR_NOT, []
                while True:
                    lo = hi = rule[i][1]
                    i += 1
                    if rule[i][0] == gbnf.CHAR_RNG_UPPER:
                        hi = rule[i][1]
                        i += 1
                    ranges.append((lo, hi))
                    if rule[i][0] != gbnf.CHAR_ALT:
                        break
                seq.append(("chars", negated, ranges))

    def _heights(self):
        inf = math.inf
        height = [inf] * len(self.alts)
        changed = True
        while changed:
            changed = False
            for r, alts in enumerate(self.alts):
                h = min(1 + max([height[item[1]] for item in alt if item[0] == "ref"], default=0) for alt in alts)
                if h < height[r]:
                    height[r], changed = h, True
        return height

    def _alt_height(self, alt):
        return 1 + max([self.height[item[1]] for item in alt if item[0] == "ref"], default=0)

    def text(self, rng: random.Random) -> str:
        out: list[str] = []
        self._walk(self.g.root, rng, 0, out)
        return "".join(out)

    def _walk(self, rule, rng, depth, out):
        alts = self.alts[rule]
        if depth < self.max_depth:
            alt = rng.choice(alts)
        else:
            alt = min(alts, key=self._alt_height)
        for item in alt:
            if item[0] == "ref":
                self._walk(item[1], rng, depth + 1, out)
            else:
                out.append(chr(self._char(item[1], item[2], rng)))

    @staticmethod
    def _char(negated, ranges, rng):
        def inside(c):
            return any(lo <= c <= hi for lo, hi in ranges)
        if not negated:
            lo, hi = rng.choice(ranges)
            if hi - lo > 0x10000:                   # a huge range: a sample character in it
                pool = [c for c in SAMPLE_CHARS if lo <= c <= hi]
                if pool:
                    return rng.choice(pool)
            c = rng.randint(lo, hi)
            return c if not 0xD800 <= c <= 0xDFFF else lo
        return rng.choice([c for c in SAMPLE_CHARS if not inside(c)])


# ---- schema instances -> grammar ----------------------------------------------------------------

def needs_escape(c: str) -> bool:
    return c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F


def no_control(s: str) -> bool:
    return all(ord(c) >= 0x20 for c in s)


@needs_matcher
@PROPERTY
@given(instances(PERSON))
def test_person_instances_are_accepted(value):
    check_accepted("person", PERSON, value)


@needs_matcher
@PROPERTY
@given(instances(RANGES))
def test_integer_range_instances_are_accepted(value):
    check_accepted("ranges", RANGES, value)


@needs_matcher
@PROPERTY
@given(instances(POINTS))
def test_points_instances_are_accepted(value):
    check_accepted("points", POINTS, value)


@needs_matcher
@PROPERTY
@given(instances(OPEN_RECORD))
def test_open_record_instances_are_accepted(value):
    # llama.cpp's key rule for additional properties also refuses proper prefixes of the declared
    # names ("i", "no", ...) and keys with an escaped character where it reads raw characters
    # ('"\\"'): see test_known_narrowing_additional_keys
    extra = [k for k in value if k not in OPEN_RECORD["properties"]]
    assume(not any(p.startswith(k) for k in extra for p in OPEN_RECORD["properties"]))
    assume(all(not needs_escape(c) for k in extra for c in k))
    check_accepted("open_record", OPEN_RECORD, value)


@needs_matcher
@PROPERTY
@given(instances(TUPLE))
def test_tuple_instances_are_accepted(value):
    check_accepted("tuple", TUPLE, value)


@needs_matcher
@PROPERTY
@given(instances(PHONE))
def test_pattern_instances_are_accepted(value):
    assume(no_control(value))      # Python's "$" also matches before a final newline; the grammar does not
    check_accepted("phone", PHONE, value)


@needs_matcher
@PROPERTY
@given(instances(ANY_OBJECT))
def test_any_object_instances_are_accepted_by_json_object_grammar(value):
    assert schema_to_grammar(ANY_OBJECT) == JSON_OBJECT_GRAMMAR
    check_accepted("any_object", ANY_OBJECT, value)


@needs_matcher
def test_known_narrowing_additional_keys():
    """llama.cpp's grammar refuses an additional key that is a proper prefix of a declared property
    ("i" for "id"), or that starts with an escaped character, though the schema allows both. Kept,
    as the grammar is llama.cpp's."""
    grammar = grammar_of("open_record", OPEN_RECORD)
    ok = '{"id":"12345678-1234-1234-1234-123456789abc"'
    assert accepts(grammar, ok + ',"x":true}')
    for key in ('"i"', '"\\\\"', '"\\"x"'):
        assert not accepts(grammar, ok + "," + key + ":true}")
        validator(OPEN_RECORD).validate(json.loads(ok + "," + key + ":true}"))


@needs_matcher
def test_known_unsound_additional_key_backslash():
    """The same key rule takes its first character (and each one along a declared name) raw, so a
    lone backslash there starts no escape: the grammar accepts '"\\x"', which is not JSON. Kept,
    as the grammar is llama.cpp's; GrammarWalker leaves '\\' and '"' out of negated classes."""
    text = '{"id":"12345678-1234-1234-1234-123456789abc","\\x":true}'
    assert accepts(grammar_of("open_record", OPEN_RECORD), text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@needs_matcher
def test_known_narrowing_numbers():
    """The number rules take at most 16 digits per part and no zero-padded exponent."""
    grammar = parse(schema_to_grammar({"type": "number"}))
    assert accepts(grammar, "1.5e-5") and accepts(grammar, "-0.25")
    assert not accepts(grammar, json.dumps(1e-05))                 # "1e-05"
    assert not accepts(grammar, "12345678901234567")


# ---- grammar -> JSON valid under the schema -----------------------------------------------------

@pytest.mark.parametrize("name", list(GENERATE))
@PROPERTY
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_grammar_texts_are_valid_instances(name, seed):
    schema = GENERATE[name]
    text = GrammarWalker(grammar_of(name, schema)).text(random.Random(seed))
    value = json.loads(text)
    validator(schema).validate(value)
