"""Batch input: one line of a prompts file -> a Record to run, or a BadRecord that becomes an error line.

    for record in read_records("prompts.jsonl"): ...     # Record | BadRecord, in input order

JSONL records are `{"id", "prompt" | "messages", per-record parameters}`; a plain text file holds one
prompt per line (its id is the line number). Nothing a line holds raises here: bad JSON, a number
of 5,000 digits, nesting deep enough to exhaust the parser, a lone surrogate, a parameter out of
range all come back as a BadRecord saying why, on one line.

Every record (good or bad) knows its `line` (1-based) in the input. A bad line's error names that
line in its own field, never as an id: only a line that gives a usable id has one, so an error line
can never be mistaken for the result of another record (see batch_output.py's --resume rules).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

from pygguf.errors import PyggufError

__all__ = ["Record", "BadRecord", "RecordError", "PARAMS", "parse_record", "read_records", "looks_like_jsonl",
           "count_records", "id_key", "one_line"]

MAX_MESSAGE_CHARS = 400     # an error line quotes at most this much of what went wrong
MAX_SHOWN_VALUE = 60        # ... and this much of a bad parameter's value


class RecordError(PyggufError, ValueError):
    """A record that cannot be run (bad JSON, missing prompt, bad parameter, prompt too long)."""


@dataclass
class Record:
    index: int                      # position among the input's records (0-based), for ordering
    id: object                      # str or int, as given (or, for a good record without one, its line number)
    prompt: str | None = None
    messages: list | None = None
    params: dict = field(default_factory=dict)
    line: int | None = None         # 1-based line of the input


@dataclass
class BadRecord:
    index: int
    id: object                      # the id the line gave, or None when it gave no usable one
    error: str
    line: int | None = None


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message fit for one output/stderr line: no newlines, bounded length."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown(value) -> str:
    """A parameter's value as the error quotes it (JSON, cut short)."""
    try:
        text = json.dumps(value)
    except (ValueError, TypeError):             # 4,300+ digits and the like
        text = type(value).__name__
    return one_line(text, MAX_SHOWN_VALUE)


# ---- checks ------------------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


# per-record parameter -> (check, description for the error); the ranges are the sampler's own
# (SamplerParams refuses the rest again), so that a record fails here, naming its field
PARAMS: dict[str, tuple[Callable[[object], bool], str]] = {
    "n_predict": (lambda v: _is_int(v) and v >= -1, "an integer >= -1"),
    "temperature": (lambda v: _is_number(v), "a number"),
    "top_k": (lambda v: _is_int(v), "an integer"),
    "top_p": (lambda v: _is_number(v) and 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "min_p": (lambda v: _is_number(v) and 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "repeat_penalty": (lambda v: _is_number(v) and v > 0.0, "a number > 0"),
    "seed": (lambda v: _is_int(v) and -1 <= v < 2**32, "an integer in [-1, 2^32)"),
    "stop": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
             "a string or a list of strings"),
    "grammar": (lambda v: isinstance(v, str) and bool(v.strip()), "GBNF text"),
    "json_schema": (lambda v: isinstance(v, (dict, bool, str)), "a JSON schema (an object, a boolean or its JSON text)"),
    "response_format": (lambda v: isinstance(v, dict), "an object like OpenAI's {\"type\": \"json_object\"}"),
}


def lone_surrogate(value, where: str) -> str | None:
    """Where a lone surrogate ("\\ud800", legal in JSON, not in UTF-8) hides in a string or in a
    list/object of them; None when there is none. Iterative: the nesting may be deep."""
    todo = [(value, where)]
    while todo:
        v, at = todo.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                return f"{at}: not valid Unicode text (a lone surrogate U+{ord(v[e.start]):04X} at character {e.start})"
        elif isinstance(v, list):
            todo += [(x, f"{at}[{i}]") for i, x in enumerate(v)]
        elif isinstance(v, dict):
            todo += [(x, f"{at}.{k}") for k, x in v.items()]
    return None


# ---- one line ----------------------------------------------------------------------------------

def parse_record(index: int, line_number: int, line: str) -> Record | BadRecord:
    """One JSONL line -> a Record, or a BadRecord saying what is wrong; never raises."""
    try:
        return _parse(index, line_number, line)
    except Exception as e:                      # noqa: BLE001 - whatever a line does, it is that line's error
        return BadRecord(index, None, one_line(f"line {line_number}: cannot read the record: "
                                               f"{type(e).__name__}: {e}"), line_number)


def _parse(index: int, n: int, line: str) -> Record | BadRecord:
    def bad(error: str, rid=None) -> BadRecord:
        return BadRecord(index, rid, one_line(error), n)
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:   # JSONDecodeError, 4,300+ digit integers, deep nesting
        return bad(f"line {n}: invalid JSON: {e}")
    if not isinstance(obj, dict):
        return bad(f"line {n}: a record must be a JSON object")
    rid = obj.get("id")                         # a bad line has no id unless it gave one
    if "id" in obj and not (_is_int(rid) or isinstance(rid, str)):
        return bad(f"line {n}: id must be a string or an integer")
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if (prompt is None) == (messages is None):
        return bad("a record needs exactly one of 'prompt' or 'messages'", rid)
    if prompt is not None and not isinstance(prompt, str):
        return bad("'prompt' must be a string", rid)
    if messages is not None and not isinstance(messages, list):
        return bad("'messages' must be a list of {role, content}", rid)
    surrogate = lone_surrogate(prompt, "prompt") or lone_surrogate(messages, "messages")
    if surrogate:
        return bad(surrogate, rid)
    params = {}
    for name, (ok, what) in PARAMS.items():
        if name in obj:
            if not ok(obj[name]):
                return bad(f"bad parameter {name}={shown(obj[name])}: must be {what}", rid)
            surrogate = lone_surrogate(obj[name], name)
            if surrogate:
                return bad(surrogate, rid)
            params[name] = obj[name]
    return Record(index, n if rid is None else rid, prompt=prompt, messages=messages, params=params, line=n)


# ---- files -------------------------------------------------------------------------------------

def looks_like_jsonl(path: str) -> bool:
    if path.endswith((".jsonl", ".ndjson", ".json")):
        return True
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def read_records(path: str, fmt: str = "auto") -> Iterator[Record | BadRecord]:
    """Records in input order; blank lines are skipped (ids stay line numbers). Bytes that are
    not UTF-8 read as U+FFFD."""
    jsonl = looks_like_jsonl(path) if fmt == "auto" else fmt == "jsonl"
    index = 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            yield (parse_record(index, line_number, line) if jsonl
                   else Record(index, line_number, prompt=line, line=line_number))
            index += 1


def count_records(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def id_key(rid) -> str:
    """Ids compare as JSON values: 7 and "7" are different records."""
    return json.dumps(rid)
