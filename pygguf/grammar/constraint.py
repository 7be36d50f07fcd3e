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
        except RecursionError:
            raise ConstraintError("JSON schema is nested too deeply") from None
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
    """OpenAI's response_format as llama.cpp's server reads it (json_schema.response_format_grammar)"""
    if not isinstance(response_format, Mapping):
        raise ConstraintError(f"response_format must be an object, not {type(response_format).__name__}")
    from pygguf.grammar.json_schema import response_format_grammar
    return response_format_grammar(dict(response_format)) or ""
