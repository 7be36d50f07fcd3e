"""Hypothesis properties of the batch record parser and of a whole run: whatever a line holds
(any JSON value, any bytes), it becomes a Record or a one-line error, never an exception; and a
run on the fake model answers every record with exactly one line."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_fakes import CRASH_PROMPT, NAN_PROMPT, FaultyModel
from pygguf.api import Llama
from pygguf.tools.batch import BadRecord, BatchDefaults, Record, ResultWriter, parse_record, read_records, run_batch

PARAMS = ["n_predict", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed", "stop", "grammar",
          "json_schema", "response_format"]

TEXT = st.text(st.characters(codec=None), max_size=12) | st.sampled_from(["\ud800", "x\udfff", NAN_PROMPT, CRASH_PROMPT])
HUGE = "<an integer of 5,000 digits>"          # raw_json writes it (its repr would fail in Hypothesis' reports)
NUMBERS = (st.integers() | st.floats() | st.sampled_from([1e-45, -1e30, HUGE, 2**63, -(2**64), 1e308])
           | st.integers(-3, 3))
JSON = st.recursive(st.none() | st.booleans() | NUMBERS | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)


def raw_json(value) -> str:
    """JSON text of value (NaN and Infinity included), HUGE as the digits themselves."""
    return json.dumps(value, allow_nan=True).replace(json.dumps(HUGE), "9" * 5000)


def record_objects():
    """Objects shaped like records, their fields often present, each with hostile values."""
    fields = {"id": JSON, "prompt": TEXT | JSON, "messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system"]), "content": TEXT}), max_size=2) | JSON}
    fields.update({name: (NUMBERS if name in ("n_predict", "top_k", "seed", "temperature", "top_p", "min_p",
                                              "repeat_penalty") else JSON) for name in PARAMS})
    return st.fixed_dictionaries({}, optional=fields)


def assert_one_line(record) -> None:
    assert isinstance(record, (Record, BadRecord))
    if isinstance(record, BadRecord):
        assert record.error and "\n" not in record.error and len(record.error) <= 400
        assert record.id is None or isinstance(record.id, (int, str))
        written = []
        ResultWriter(written.append).put(0, {"id": record.id, "line": record.line, "error": record.error})
        assert json.loads(written[0])["error"] == record.error
    else:
        assert (record.prompt is None) != (record.messages is None)


@settings(max_examples=200, deadline=None)
@given(JSON | record_objects())
def test_any_json_value_is_a_record_or_one_error_line(value):
    record = parse_record(0, 7, raw_json(value))
    assert_one_line(record)
    assert record.line == 7


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_line_is_a_record_or_one_error_line(data):
    line = data.decode("utf-8", errors="replace").replace("\n", " ")   # as read_records sees a line
    assert_one_line(parse_record(0, 1, line))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_file_reads_as_records(tmp_path, data):
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    records = list(read_records(str(path)))
    for record in records:
        assert_one_line(record)
    assert [r.index for r in records] == list(range(len(records)))


@settings(max_examples=40, deadline=None)
@given(st.lists(record_objects(), min_size=1, max_size=6), st.sampled_from([1, 3]))
def test_a_run_answers_every_record_exactly_once(objects, parallel):
    lines = [raw_json(obj) for obj in objects]
    records = [parse_record(i, i + 1, line) for i, line in enumerate(lines)]
    out: list[bytes] = []
    llm = Llama("fake.gguf", model=FaultyModel(n_ctx=64, n_seq=parallel), n_seq_max=parallel)
    summary = run_batch(llm, records, ResultWriter(out.append), BatchDefaults(n_predict=4),
                        parallel=parallel)
    got = [json.loads(x) for x in out]
    assert [r.get("line") for r in got if "error" in r] == [r.line for r, x in zip(records, got) if "error" in x]
    assert len(got) == len(records) and summary.ok + summary.failed == len(records)
    assert all("error" in r or "text" in r for r in got)
