"""Constrained output end to end on SmolLM2: the CLI's -j / --grammar / --print-grammar, a batch
run whose every schema-constrained result parses and validates against its schema (bad grammars
and schemas are that record's error only), the API's grammar= and response_format, and the same
text for the same seed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pygguf_cli import paths

jsonschema = pytest.importorskip("jsonschema")

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                   "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 2}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
LABEL = {"enum": ["positive", "negative", "neutral"]}
NUMBER = {"type": "number"}


def smol_path() -> str:
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    return str(path)


def pygguf(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pygguf_cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def test_cli_json_schema_output_validates():
    prompt = chat("Describe a person as JSON.")
    proc = pygguf("-m", smol_path(), "--temp", "0", "-n", "96", "-c", "256", "--no-display-prompt", "-e",
                  "-j", json.dumps(PERSON), "-p", prompt)
    assert proc.returncode == 0, proc.stderr
    jsonschema.validate(json.loads(proc.stdout), PERSON)


def test_cli_grammar_file_and_print_grammar(tmp_path):
    gbnf = tmp_path / "yesno.gbnf"
    gbnf.write_text('root ::= ("yes" | "no") "."\n', encoding="utf-8")
    proc = pygguf("-m", smol_path(), "--temp", "0", "-n", "8", "-c", "128", "--no-display-prompt", "-e",
                  "--grammar-file", gbnf, "-p", chat("Is the sky blue? Answer yes or no."))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("yes.", "no.")
    printed = pygguf("--print-grammar", "-j", json.dumps(LABEL))
    assert printed.returncode == 0 and "root ::=" in printed.stdout and '"\\"positive\\""' in printed.stdout


@pytest.mark.parametrize("flag, value, words", [
    ("--grammar", "root ::= foo", "Undefined rule"),
    ("--grammar", 'root ::= "a" (', "expecting"),
    ("-j", "{not json", "JSON"),
])
def test_cli_bad_grammar_or_schema_is_one_line_exit_1(flag, value, words):
    proc = pygguf("-m", "/nonexistent.gguf", flag, value, "-p", "x")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_batch_every_schema_result_validates_and_bad_records_fail_alone(tmp_path):
    records = [
        {"id": "p1", "prompt": chat("A person as JSON."), "json_schema": PERSON, "temperature": 0.7, "seed": 1},
        {"id": "p2", "prompt": chat("Another person as JSON."), "json_schema": PERSON, "temperature": 0.7, "seed": 2},
        {"id": "l1", "prompt": chat("Sentiment of 'I love it'?"), "json_schema": LABEL, "seed": 3},
        {"id": "n1", "prompt": chat("How tall is a door in metres?"), "json_schema": NUMBER, "seed": 4},
        {"id": "o1", "prompt": chat('Reply with the JSON object {"ok": true} and nothing else.'),
         "response_format": {"type": "json_object", "schema": {
             "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
             "additionalProperties": False}}, "seed": 5},
        {"id": "bad-grammar", "prompt": "x", "grammar": "root ::= missing"},
        {"id": "bad-schema", "prompt": "x", "json_schema": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}},
        {"id": "plain", "prompt": "The capital of France is", "seed": 6},
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pygguf_cli.batch", "-m", smol_path(), "-i", inp, "-o", out,
                           "-n", "96", "-c", "256", "--parallel", "2"], capture_output=True, text=True, timeout=600)
    results = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert set(results) == {r["id"] for r in records}, proc.stderr
    for record in records:
        result = results[record["id"]]
        if record["id"].startswith("bad"):
            assert "error" in result and "\n" not in result["error"]
            continue
        assert "error" not in result, result
        if "json_schema" in record or "response_format" in record:
            assert result["finish_reason"] == "eos", result     # the grammar ended it, not the budget
        if "json_schema" in record:
            jsonschema.validate(json.loads(result["text"]), record["json_schema"])
        if "response_format" in record:
            jsonschema.validate(json.loads(result["text"]), record["response_format"]["schema"])


@pytest.fixture(scope="module")
def llm():
    from pygguf import Llama
    with Llama(smol_path(), n_ctx=256) as model:
        yield model


def test_api_response_format_and_grammar(llm):
    messages = [{"role": "user", "content": "Describe a person as JSON."}]
    out = llm.create_chat_completion(messages, max_tokens=96, temperature=0,
                                     response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
    jsonschema.validate(json.loads(out["choices"][0]["message"]["content"]), PERSON)
    obj = llm.create_chat_completion(messages, max_tokens=96, temperature=0, response_format={"type": "json_object"})
    assert isinstance(json.loads(obj["choices"][0]["message"]["content"]), dict)
    text = llm("The answer is", max_tokens=8, temperature=0, grammar='root ::= [0-9]+ "."')["choices"][0]["text"]
    assert text[:-1].isdigit() and text.endswith(".")


def test_same_seed_same_constrained_text(llm):
    runs = [llm.create_chat_completion([{"role": "user", "content": "A person, JSON."}], max_tokens=64, temperature=0.9,
                                       seed=11, response_format={"type": "json_schema", "json_schema": {"schema": PERSON}})
            for _ in range(2)]
    assert runs[0]["choices"][0]["message"]["content"] == runs[1]["choices"][0]["message"]["content"]
