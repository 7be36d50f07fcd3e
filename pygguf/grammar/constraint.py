"""What a request asks its output to match, as one GBNF text: the one place the CLI's
--grammar / -j, the API's grammar= / response_format and a batch record's grammar / json_schema
fields are turned into the sampler's `grammar` (llama.cpp's params.sampling.grammar)."""
from __future__ import annotations

import json
from typing import Any, Mapping

from pygguf.errors import PyggufError


class ConstraintError(PyggufError, ValueError):
    """A request's grammar, schema or response_format cannot be used (one line saying why)."""


def grammar_of(grammar: Any = None, json_schema: Any = None, response_format: Mapping | None = None) -> str:
    """The GBNF text for at most one of: `grammar` (GBNF text, or an object holding it as
    llama-cpp-python's LlamaGrammar does), `json_schema` (a schema as a dict, bool or JSON text),
    `response_format` (OpenAI's: {"type": "text" | "json_object" | "json_schema", ...}). "" when
    none constrains the output. The text is checked when the sampler parses it (GrammarError)."""
    given = [name for name, value in (("grammar", grammar), ("json_schema", json_schema),
                                      ("response_format", response_format)) if value is not None]
    if len(given) > 1:
        raise ConstraintError(f"give one of {', '.join(given)}, not several")
    if grammar is not None:
        return _grammar_text(grammar)
    if json_schema is not None:
        return schema_grammar(json_schema)
    if response_format is not None:
        return _response_format_grammar(response_format)
    return ""


def schema_grammar(schema: Any) -> str:
    """A JSON schema (dict, bool, or its JSON text) as llama.cpp's json_schema_to_grammar writes it"""
    from pygguf.grammar.json_schema import schema_to_grammar
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise ConstraintError(f"JSON schema is not valid JSON: {e}") from None
    if not isinstance(schema, (dict, bool)):
        raise ConstraintError(f"a JSON schema is an object or a boolean, not {type(schema).__name__}")
    return schema_to_grammar(schema)


def _grammar_text(grammar: Any) -> str:
    text = grammar if isinstance(grammar, str) else getattr(grammar, "_grammar", None)
    if not isinstance(text, str):
        raise ConstraintError(f"grammar must be GBNF text, not {type(grammar).__name__}")
    if not text.strip():
        raise ConstraintError("grammar is empty")
    return text


def _response_format_grammar(response_format: Mapping) -> str:
    """OpenAI's response_format, with llama-cpp-python's extension of a schema on json_object"""
    if not isinstance(response_format, Mapping):
        raise ConstraintError(f"response_format must be an object, not {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return ""
    if kind == "json_object":
        schema = response_format.get("schema")
        if schema is not None:
            return schema_grammar(schema)
        from pygguf.grammar.json_schema import json_object_grammar
        return json_object_grammar()
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or "schema" not in spec:
            raise ConstraintError('response_format type "json_schema" needs "json_schema": {"schema": {...}}')
        return schema_grammar(spec["schema"])
    raise ConstraintError(f"response_format type {kind!r}: expected \"text\", \"json_object\" or \"json_schema\"")
