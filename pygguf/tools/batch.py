"""Batch runs: many prompts from a file, one JSONL result per prompt, never losing finished work.

    records  = read_records(path)                    # Record (or a BadRecord that becomes an error line)
    writer   = ResultWriter(out, ordered=True)        # each line written and flushed as soon as it may be
    run_batch(llm, records, writer, defaults)        # -> BatchSummary

The pieces, one concern each:
- read_records / parse_record: JSONL (`{"id", "prompt" | "messages", per-record parameters}`) or a
  plain text file (one prompt per line, id = line number). A bad record is not an exception: it
  becomes a BadRecord and, in the output, `{"id": ..., "error": "..."}`.
- Scheduler: admits records into the slots of the Llama's pygguf.generation.Engine (up to `--parallel`
  sequences of the model's KV cache) and advances them together, one forward pass per `step()`,
  which returns the records that finished; a finished slot takes the next record at once
  (continuous batching), and a prompt prefix another slot holds is copied, not recomputed. Each
  record's Sequence (sampling, stop strings, UTF-8, logprobs) is its own, so the text does not
  depend on what it was batched with.
- ResultWriter: one whole line per write() on an unbuffered file, so a kill leaves at worst a torn
  last line (which --resume cuts off); input order kept by holding early finishers until every
  record before them is written (`ordered=False` writes them at once).
- completed_ids: what --resume skips.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from pygguf.api import completion_request
from pygguf.grammar.constraint import grammar_of
from pygguf.chat import ChatTemplateError
from pygguf.errors import PyggufError
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import Request, Sequence
from pygguf.sampling.params import BATCH_N_PREDICT, default

__all__ = ["BatchDefaults", "Record", "BadRecord", "RecordError", "read_records", "parse_record",
           "Scheduler", "ResultWriter", "completed_ids", "run_batch", "BatchSummary", "result_record"]


class RecordError(PyggufError, ValueError):
    """A record that cannot be run (bad JSON, missing prompt, bad parameter, prompt too long)."""


@dataclass(frozen=True)
class BatchDefaults:
    """Parameters for records that do not set their own."""
    n_predict: int = BATCH_N_PREDICT
    temperature: float = default("temp")
    top_k: int = default("top_k")
    top_p: float = default("top_p")
    min_p: float = default("min_p")
    repeat_penalty: float = default("repeat_penalty")
    seed: int = default("seed")     # -1: a random seed per record (written in its result, to replay it)
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    grammar: str = ""               # GBNF text for records without grammar / json_schema / response_format


@dataclass
class Record:
    index: int                      # position in the input (0-based), for ordering
    id: object                      # str or int, as given (or the line number)
    prompt: str | None = None
    messages: list | None = None
    params: dict = field(default_factory=dict)


@dataclass
class BadRecord:
    index: int
    id: object
    error: str


# ---- reading -------------------------------------------------------------------------------

# per-record parameter -> (check, description for the error)
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


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


def parse_record(index: int, line_number: int, line: str) -> Record | BadRecord:
    """One JSONL line -> a Record, or a BadRecord saying what is wrong (id = line number if unknown)."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        return BadRecord(index, line_number, f"line {line_number}: invalid JSON: {e}")
    if not isinstance(obj, dict):
        return BadRecord(index, line_number, f"line {line_number}: a record must be a JSON object")
    rid = obj.get("id", line_number)
    if not (_is_int(rid) or isinstance(rid, str)):
        return BadRecord(index, line_number, f"line {line_number}: id must be a string or an integer")
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if (prompt is None) == (messages is None):
        return BadRecord(index, rid, "a record needs exactly one of 'prompt' or 'messages'")
    if prompt is not None and not isinstance(prompt, str):
        return BadRecord(index, rid, "'prompt' must be a string")
    if messages is not None and not isinstance(messages, list):
        return BadRecord(index, rid, "'messages' must be a list of {role, content}")
    params = {}
    for name, (ok, what) in PARAMS.items():
        if name in obj:
            if not ok(obj[name]):
                return BadRecord(index, rid, f"bad parameter {name}={obj[name]!r}: must be {what}")
            params[name] = obj[name]
    return Record(index, rid, prompt=prompt, messages=messages, params=params)


def looks_like_jsonl(path: str) -> bool:
    if path.endswith((".jsonl", ".ndjson", ".json")):
        return True
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def read_records(path: str, fmt: str = "auto") -> Iterator[Record | BadRecord]:
    """Records in input order; blank lines are skipped (ids stay line numbers)."""
    jsonl = looks_like_jsonl(path) if fmt == "auto" else fmt == "jsonl"
    index = 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            yield parse_record(index, line_number, line) if jsonl else Record(index, line_number, prompt=line)
            index += 1


def count_records(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def id_key(rid) -> str:
    """Ids compare as JSON values: 7 and "7" are different records."""
    return json.dumps(rid)


def completed_ids(path: str) -> set[str]:
    """Ids (as id_key) already in an output file, for --resume. A torn last line (a run killed
    mid-write) is cut off the file so appended records start on a fresh line."""
    done: set[str] = set()
    if not os.path.exists(path):
        return done
    with open(path, "r+b") as f:
        data = f.read()
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break                                   # no newline: torn
            line = data[pos:nl]
            pos = nl + 1
            if not line.strip():
                good_end = pos
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                if pos >= len(data):
                    break                               # an unparsable last line: torn too
                continue                                # a damaged line inside: its record reruns
            if isinstance(obj, dict) and "id" in obj:
                done.add(id_key(obj["id"]))
            good_end = pos
        if good_end < len(data):
            f.truncate(good_end)
    return done


# ---- writing -------------------------------------------------------------------------------

class ResultWriter:
    """Writes result lines as soon as allowed. Ordered: a result waits until every record before
    it (by input index) was written or skipped. `write_bytes` gets one whole line at a time and
    must not return before it is out of the process (see fd_writer, stream_writer)."""

    def __init__(self, write_bytes: Callable[[bytes], None], ordered: bool = True,
                 on_line: Callable[[dict], None] | None = None):
        self.write_bytes = write_bytes
        self.ordered = ordered
        self.next_index = 0
        self.pending: dict[int, dict | None] = {}       # index -> record (None: skipped)
        self.on_line = on_line

    def _write(self, record: dict) -> None:
        self.write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        if self.on_line is not None:
            self.on_line(record)

    def put(self, index: int, record: dict | None) -> None:
        """A finished record (None: nothing to write, e.g. skipped by --resume)."""
        if not self.ordered:
            if record is not None:
                self._write(record)
            return
        self.pending[index] = record
        while self.next_index in self.pending:
            ready = self.pending.pop(self.next_index)
            if ready is not None:
                self._write(ready)
            self.next_index += 1

    def flush_pending(self) -> None:
        """On interruption: write whatever finished out of order too (finished work is never dropped)."""
        for index in sorted(self.pending):
            ready = self.pending.pop(index)
            if ready is not None:
                self._write(ready)


def fd_writer(fd: int) -> Callable[[bytes], None]:
    """Unbuffered: a line is in the kernel when write returns, so a kill cannot lose it."""
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write


def stream_writer(stream) -> Callable[[bytes], None]:
    """For stdout (or any binary stream): write the line and flush it."""
    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()
    return write


# ---- results -------------------------------------------------------------------------------

def result_record(rid, seq: Sequence, tokenizer, logprobs: int | None) -> dict:
    t = seq.timings.as_dict()
    record = {
        "id": rid,
        "text": seq.text,
        "tokens": list(seq.tokens),
        "finish_reason": seq.finish_reason.value,
        "prompt_tokens": len(seq.request.prompt_tokens),
        "completion_tokens": len(seq.tokens),
        "cached_prompt_tokens": seq.cached_prompt_tokens,
        "seed": seq.seed,
        "timings": {k: t[k] for k in ("prompt_eval_ms", "eval_ms", "sample_ms", "total_ms",
                                       "prompt_tokens_per_second", "eval_tokens_per_second")},
    }
    if seq.stop_string is not None:
        record["stop"] = seq.stop_string
    if logprobs is not None:
        def piece(tok: int) -> str:
            return tokenizer.token_to_bytes(tok).decode("utf-8", errors="replace")
        record["logprobs"] = [
            {"token": lp.token, "text": piece(lp.token), "logprob": lp.logprob,
             "top": [{"token": t, "text": piece(t), "logprob": v} for t, v in lp.top]}
            for lp in seq.logprobs]
    return record


def error_record(rid, error: str) -> dict:
    return {"id": rid, "error": error}


# ---- scheduling ----------------------------------------------------------------------------

@dataclass
class Job:
    index: int
    id: object
    request: Request
    sequence: Sequence | None = None        # made on the first try to admit it


@dataclass
class Finished:
    index: int
    id: object
    record: dict
    ok: bool


class Scheduler:
    """Admits jobs into the batched engine's slots and advances every admitted one by one forward
    pass per `step()`, which returns the jobs that finished (continuous batching: a finished slot
    takes the next queued job on the following step). A job refused before decoding (empty or too
    long prompt, bad sampler parameters) finishes at once with an error record."""

    def __init__(self, engine: Engine, parallel: int):
        self.engine = engine
        self.slots = engine.slots[:parallel]
        self.queue: list[Job] = []
        self._jobs: dict[int, Job] = {}        # id(its Sequence) -> each admitted job
        self._generated_before = engine.generated_tokens

    @property
    def parallel(self) -> int:
        return len(self.slots)

    @property
    def generated_tokens(self) -> int:
        return self.engine.generated_tokens - self._generated_before

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    @property
    def busy(self) -> bool:
        return self.engine.running > 0 or bool(self.queue)

    def _admit(self, done: list[Finished]) -> None:
        while self.queue and any(s.free for s in self.slots):
            job = self.queue[0]
            if job.sequence is None:
                try:
                    job.sequence = self.engine.new_sequence(job.request)
                except PyggufError as e:        # a bad grammar among them: this record's error only
                    self.queue.pop(0)
                    done.append(Finished(job.index, job.id, error_record(job.id, str(e)), ok=False))
                    continue
            if self.engine.admit(job.sequence, self.slots) is None:
                return                          # waits for a prefix another slot is computing
            self.queue.pop(0)
            self._jobs[id(job.sequence)] = job

    def step(self) -> list[Finished]:
        done: list[Finished] = []
        self._admit(done)
        try:
            finished = self.engine.step()
        except KeyboardInterrupt:
            self.engine.abandon()
            self._jobs.clear()
            raise
        for seq in finished:
            job = self._jobs.pop(id(seq))
            done.append(Finished(job.index, job.id, result_record(job.id, seq, self.engine.tokenizer, job.request.logprobs),
                                 ok=True))
        return done


# ---- the run -------------------------------------------------------------------------------

@dataclass
class BatchSummary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    interruption: KeyboardInterrupt | None = None   # what stopped the run early (Ctrl+C, or SIGTERM as one)

    @property
    def interrupted(self) -> bool:
        return self.interruption is not None


def build_request(llm, record: Record, defaults: BatchDefaults) -> Request:
    """A record's prompt tokens and parameters (its own, else the defaults)."""
    p = record.params
    try:
        if record.messages is not None:
            tokens = llm.chat_prompt_tokens(record.messages)
        else:
            tokens = llm.tokenize(record.prompt, add_bos=True, special=True)
    except ChatTemplateError as e:
        raise RecordError(f"messages: {e}") from None
    try:
        grammar = grammar_of(p.get("grammar"), p.get("json_schema"), p.get("response_format")) or defaults.grammar
    except PyggufError as e:
        raise RecordError(str(e)) from None
    return completion_request(tokens, n_predict=int(p.get("n_predict", defaults.n_predict)),
                              temperature=p.get("temperature", defaults.temperature),
                              top_k=p.get("top_k", defaults.top_k), top_p=p.get("top_p", defaults.top_p),
                              min_p=p.get("min_p", defaults.min_p),
                              repeat_penalty=p.get("repeat_penalty", defaults.repeat_penalty),
                              stop=p.get("stop", defaults.stop), seed=p.get("seed", defaults.seed),
                              logprobs=defaults.logprobs, grammar=grammar)


def records_to_run(records: Iterable[Record | BadRecord], writer: ResultWriter, skip: set[str],
                   summary: BatchSummary) -> Iterator[Record | BadRecord]:
    """The records a run must answer: --resume's ids are passed to the writer as done (and
    counted as skipped), a repeated id becomes a BadRecord."""
    seen: set[str] = set()
    for record in records:
        key = id_key(record.id)
        if key in skip:
            writer.put(record.index, None)
            summary.skipped += 1
            continue
        if key in seen and not isinstance(record, BadRecord):
            record = BadRecord(record.index, record.id, f"duplicate id {record.id!r}")
        seen.add(key)
        yield record


def run_batch(llm, records: Iterable[Record | BadRecord], writer: ResultWriter, defaults: BatchDefaults, *,
              skip: set[str] = frozenset(), parallel: int = 1,
              on_progress: Callable[[int, int], None] | None = None) -> BatchSummary:
    """Run every record; results go to the writer as soon as they may. KeyboardInterrupt stops the
    run after writing every finished record (summary.interrupted). on_progress(records just
    finished, tokens generated so far) is called after every decoding step and every finished record."""
    scheduler = Scheduler(llm.engine, llm.parallel(parallel))
    summary = BatchSummary()

    def finish(f: Finished) -> None:
        writer.put(f.index, f.record)
        if f.ok:
            summary.ok += 1
        else:
            summary.failed += 1
        if on_progress is not None:
            on_progress(1, scheduler.generated_tokens)

    def step() -> None:
        for f in scheduler.step():
            finish(f)
        if on_progress is not None:
            on_progress(0, scheduler.generated_tokens)

    try:
        for record in records_to_run(records, writer, skip, summary):
            if isinstance(record, BadRecord):
                finish(Finished(record.index, record.id, error_record(record.id, record.error), ok=False))
                continue
            try:
                request = build_request(llm, record, defaults)
            except RecordError as e:
                finish(Finished(record.index, record.id, error_record(record.id, str(e)), ok=False))
                continue
            scheduler.submit(Job(record.index, record.id, request))
            while len(scheduler.queue) >= scheduler.parallel:   # read ahead no further than needed
                step()
        while scheduler.busy:
            step()
    except KeyboardInterrupt as e:
        summary.interruption = e
        writer.flush_pending()
    return summary
