"""JSON Schema -> GBNF (pygguf/grammar/json_schema.py) against llama.cpp's own expectations.

tests/data/grammar/json_schema_cases.json holds every case of llama.cpp's
tests/test-json-schema-to-grammar.cpp (extracted by extract_json_schema_cases.py beside it): the
schema, whether the conversion succeeds, and the exact grammar text. llama.cpp compares after a
trim (outer whitespace, each line's indentation); here the text must be identical outright.
"""
from __future__ import annotations

import json
import logging

import pytest
from testpaths import TESTS

from pygguf.errors import PyggufError
from pygguf.grammar.json_schema import (
    JSON_OBJECT_GRAMMAR,
    SchemaError,
    _Builder,
    _Converter,
    _dump,
    format_literal,
    response_format_grammar,
    schema_to_grammar,
)

CASES = json.loads((TESTS / "data" / "grammar" / "json_schema_cases.json").read_text(encoding="utf-8"))["cases"]
SPACE = 'space ::= | " " | "\\n"{1,2} [ \\t]{0,20}'


def test_every_llama_cpp_case_is_here():
    assert len(CASES) == 81
    assert sum(c["status"] == "failure" for c in CASES) == 3


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_llama_cpp_case(case):
    if case["status"] == "failure":
        with pytest.raises(SchemaError):
            schema_to_grammar(case["schema"])
        return
    assert schema_to_grammar(case["schema"]) == case["grammar"] + "\n"


def test_sub_schema_ref():
    """llama.cpp's "sub-schema $ref" check (build_grammar on one property of a document): a node
    keeps its $ref target, so converting it alone names the ref rule."""
    parameters = {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/item"}},
        "$defs": {"item": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                           "additionalProperties": False}},
    }
    item = _Builder(parameters).build().properties[0][1]
    converter = _Converter()
    converter.visit(item, "")
    assert converter.format_grammar() == "".join(line + "\n" for line in [
        'char ::= [^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})',
        'ref-defs-item ::= "{" space ref-defs-item-a-kv space "}"',
        'ref-defs-item-a-kv ::= "\\"a\\"" space ":" space string',
        "root ::= ref-defs-item",
        SPACE,
        'string ::= "\\"" char* "\\""',
    ])


def test_recursive_ref():
    schema = {"$ref": "#/$defs/node", "$defs": {"node": {
        "type": "object", "properties": {"next": {"$ref": "#/$defs/node"}, "leaf": {}}, "additionalProperties": False}}}
    grammar = schema_to_grammar(schema)
    assert "root ::= ref-defs-node\n" in grammar
    assert "ref-defs-node-next ::= ref-defs-node\n" in grammar          # the cycle closes on the ref rule


# ---- what cannot be converted -------------------------------------------------------------------

@pytest.mark.parametrize("schema, message", [
    ({"type": "kaboom"}, "JSON schema error at #: unrecognized type kaboom"),
    ({"type": 123}, "JSON schema error at #: type must be a string or an array of strings"),
    ({"type": []}, "JSON schema error at #: type must not be empty"),
    (True, "JSON schema error at #: schema must be an object"),
    ({"properties": {"a": True}}, "JSON schema error at #/properties/a: schema must be an object"),
    ({"$ref": "https://example.com/s.json"},
     ("JSON schema error at #: unsupported $ref https://example.com/s.json, only references into the same document "
      "are supported")),
    ({"$ref": "#/$defs/nope", "$defs": {}}, "JSON schema error at #: cannot resolve $ref #/$defs/nope, nope not found"),
    ({"$ref": "#/x/3", "x": [{}]}, "JSON schema error at #: cannot resolve $ref #/x/3, 3 is out of range"),
    ({"$ref": 5}, "JSON schema error at #: $ref must be a string"),
    ({"anyOf": []}, "JSON schema error at #/anyOf: must not be empty"),
    ({"oneOf": {}}, "JSON schema error at #/oneOf: must be an array of schemas"),
    ({"enum": []}, "JSON schema error at #: enum must be a non-empty array"),
    ({"type": "array", "minItems": -1}, "JSON schema error at #: minItems must be a non-negative integer"),
    ({"type": "string", "maxLength": 2.5}, "JSON schema error at #: maxLength must be a non-negative integer"),
    ({"type": "string", "format": 7}, "JSON schema error at #: format must be a string"),
    ({"type": "string", "pattern": 7}, "JSON schema error at #: pattern must be a string"),
    ({"type": "integer", "minimum": "0"}, "JSON schema error at #: minimum must be a number"),
    ({"type": "object", "properties": []}, "JSON schema error at #: properties must be an object"),
    ({"type": "object", "additionalProperties": 1},
     "JSON schema error at #: additionalProperties must be a boolean or a schema"),
    ({"type": "string", "pattern": "^(a$"}, "Invalid pattern ^(a$: unbalanced parentheses"),
    ({"type": "string", "pattern": "^a)$"}, "Invalid pattern ^a)$: unbalanced parentheses"),
    ({"type": "string", "pattern": "^*a$"}, "Invalid pattern ^*a$: nothing to repeat"),
    ({"type": "string", "pattern": "^[ab$"}, "Invalid pattern ^[ab$: unterminated character class"),
])
def test_schema_errors(schema, message):
    with pytest.raises(SchemaError) as info:
        schema_to_grammar(schema)
    assert str(info.value) == "JSON schema conversion failed: " + message
    assert isinstance(info.value, PyggufError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_several_converter_errors_are_one_line():
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(x$"},
                                               "b": {"type": "string", "pattern": "^y\\$"}}}
    with pytest.raises(SchemaError) as info:
        schema_to_grammar(schema)
    assert str(info.value) == ("JSON schema conversion failed: Invalid pattern ^(x$: unbalanced parentheses; "
                               "Invalid pattern ^y\\$: trailing backslash")


@pytest.mark.parametrize("pattern, reason", [
    ("[0-9]+", "not anchored with '^' and '$'"),
    ("^(?=a)a$", "unsupported group syntax"),
    ("^\\d+$", "unsupported escape: \\d"),
    ("^[\\w]$", "unsupported escape in character class: \\w"),
    ("^a^b$", "anchor inside the pattern"),
    ("^a{x}$", "invalid number in curly brackets"),
    ("^a{1,2,3}$", "wrong number of values in curly brackets"),
    ("^a{1$", "unterminated curly brackets"),
    ("^]$", "unsupported character: ]"),
])
def test_unsupported_pattern_accepts_any_string(pattern, reason, caplog):
    with caplog.at_level(logging.WARNING, logger="pygguf.grammar"):
        grammar = schema_to_grammar({"type": "string", "pattern": pattern})
    assert "root ::= string\n" in grammar and "root-1" not in grammar
    assert caplog.messages == [(f"JSON schema conversion was incomplete: pattern {pattern} is not supported "
                                f"({reason}), accepting any string")]


# ---- details llama.cpp's tests do not pin ---------------------------------------------------------

def test_pattern_is_read_by_code_point():
    # llama.cpp reads bytes, so it splits "é" before a quantifier; pygguf keeps the character whole
    assert 'root ::= "\\"" ("ab" "é"+) "\\""\n' in schema_to_grammar({"type": "string", "pattern": "^abé+$"})


@pytest.mark.parametrize("value, text", [
    (1e15, "1e+15"), (1e16, "1e+16"), (123456789012345.0, "123456789012345.0"), (0.0001, "0.0001"),
    (1e-05, "1e-05"), (-0.0, "-0.0"), (0.0, "0.0"), (3.0, "3.0"), (1.5e300, "1.5e+300"), (-2.5e-07, "-2.5e-07"),
    (0.1, "0.1"), (12345678.9, "12345678.9"), (2 ** 64, "18446744073709551616"),
    ("tab\t\x01\x7f\"\\é", '"tab\\t\\u0001\x7f\\"\\\\é"'), ([1, {"a": None}], '[1,{"a":null}]'),
])
def test_json_text_as_llama_cpp_writes_it(value, text):
    assert _dump(value) == text


def test_format_literal():
    assert format_literal('a"b\\c\r\n') == '"a\\"b\\\\c\\r\\n"'


def test_integer_bounds_fractional_and_exclusive():
    assert schema_to_grammar({"type": "integer", "minimum": 2.5, "maximum": 7.5}) == \
        schema_to_grammar({"type": "integer", "minimum": 3, "maximum": 7})
    assert schema_to_grammar({"type": "integer", "exclusiveMinimum": 2, "exclusiveMaximum": 8}) == \
        schema_to_grammar({"type": "integer", "minimum": 3, "maximum": 7})


def test_all_of_ref_cycle_does_not_recurse_forever():
    # llama.cpp overflows its stack here; pygguf skips the cycle
    schema = {"allOf": [{"$ref": "#/$defs/a"}], "type": "object", "$defs": {"a": {"$ref": "#/$defs/a"}}}
    assert 'root ::= "{" space "}"\n' in schema_to_grammar(schema)


def test_all_of_containing_itself_is_an_error():
    # llama.cpp overflows its stack here too: allOf copies the properties of its $ref in place
    schema = {"$ref": "#/$defs/a", "$defs": {"a": {"type": "object", "properties": {
        "x": {"allOf": [{"$ref": "#/$defs/a"}], "type": "string"}}}}}
    with pytest.raises(SchemaError, match="allOf at ref-defs-a-x-x contains itself through a \\$ref"):
        schema_to_grammar(schema)


# ---- OpenAI response_format ------------------------------------------------------------------------

def test_json_object_grammar_is_the_object_schema():
    assert JSON_OBJECT_GRAMMAR == schema_to_grammar({"type": "object"})
    assert "root ::= object\n" in JSON_OBJECT_GRAMMAR
    assert JSON_OBJECT_GRAMMAR == next(c["grammar"] for c in CASES if c["name"] == "additional props (implicit)") + "\n"


def test_response_format():
    assert response_format_grammar(None) is None
    assert response_format_grammar({"type": "text"}) is None
    assert response_format_grammar({"type": "json_object"}) == JSON_OBJECT_GRAMMAR
    assert response_format_grammar({"type": "json_object", "schema": {}}) == JSON_OBJECT_GRAMMAR
    schema = {"type": "array", "items": {"type": "integer"}}
    assert response_format_grammar({"type": "json_object", "schema": schema}) == schema_to_grammar(schema)
    assert response_format_grammar({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}) == \
        schema_to_grammar(schema)
    assert response_format_grammar({"type": "json_schema", "json_schema": {"name": "x"}}) == JSON_OBJECT_GRAMMAR
    with pytest.raises(SchemaError, match='must be one of "text" or "json_object", but got: xml'):
        response_format_grammar({"type": "xml"})


def test_hostile_nesting_is_a_schema_error():
    """Review: deep nesting raised RecursionError, not SchemaError; 3000 flat optional properties
    (a legitimate schema) did too, and now convert: their rules are built in a loop."""
    import pytest
    from pygguf.errors import PyggufError
    from pygguf.grammar.constraint import schema_grammar
    from pygguf.grammar.json_schema import schema_to_grammar
    deep = {}
    for _ in range(3000):
        deep = {"type": "array", "items": deep}
    many = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(3000)}}
    for schema in (deep, {"anyOf": [deep]}):
        with pytest.raises(PyggufError):
            schema_to_grammar(schema)
    grammar = schema_to_grammar(many)
    assert "p0-rest ::=" in grammar and "p2998-rest ::=" in grammar
    with pytest.raises(PyggufError):
        schema_grammar("[" * 100000 + "]" * 100000)
