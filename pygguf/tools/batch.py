"""Batch runs: many prompts from a file, one JSONL result per prompt, never losing a record.

    records  = read_records(path)                    # Record (or a BadRecord that becomes an error line)
    writer   = ResultWriter(out.write_line)           # each line written whole as soon as it may be
    run_batch(llm, records, writer, defaults)        # -> BatchSummary

The pieces, one concern each:
- batch_records.py: JSONL (`{"id", "prompt" | "messages", per-record parameters}`) or a plain
  text file (one prompt per line, id = line number). A bad line is not an exception: it becomes a
  BadRecord and, in the output, `{"id"?, "line", "error"}`.
- Scheduler (here): admits records into the slots of the Llama's pygguf.generation.Engine (up to
  `--parallel` sequences of the model's KV cache) and advances them together, one forward pass
  per `step()`, which returns the records that finished; a finished slot takes the next record at
  once (continuous batching), and a prompt prefix another slot holds is copied, not recomputed.
  Each record's Sequence (sampling, stop strings, UTF-8, logprobs) is its own, so the text does
  not depend on what it was batched with.
- Containment (here): whatever one record does (a chat template that raises, a prompt that cannot
  be tokenized, sampler parameters that overflow, logits that turn NaN, a forward pass that fails
  while it is decoded with others) becomes that record's error line; the run goes on.
- batch_output.py: the output schema, ResultWriter (input order kept by holding early finishers),
  whole-line writes that a full disk cannot tear, and what --resume keeps, retries and repairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from pygguf.api import completion_request
from pygguf.errors import PyggufError
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import Request, Sequence
from pygguf.grammar.constraint import grammar_of
from pygguf.sampling.params import BATCH_N_PREDICT, default
from pygguf.tools.batch_output import (BatchWriteError, LineFile, ResultWriter, ResumeState, completed_ids,
                                       prepare_resume, stream_writer)
from pygguf.tools.batch_records import (BadRecord, Record, RecordError, count_records, id_key, one_line,
                                        parse_record, read_records)

__all__ = ["BatchDefaults", "Record", "BadRecord", "RecordError", "read_records", "parse_record", "count_records",
           "Scheduler", "ResultWriter", "LineFile", "stream_writer", "BatchWriteError", "ResumeState",
           "prepare_resume", "completed_ids", "run_batch", "BatchSummary", "result_record", "error_record",
           "describe"]


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


def error_record(rid, error: str, line: int | None = None) -> dict:
    """`{"id"?, "line", "error"}`: the id only when the record has one (never a line number in its place)."""
    record: dict = {} if rid is None else {"id": rid}
    if line is not None:
        record["line"] = line
    record["error"] = error
    return record


def describe(e: BaseException, stage: str) -> str:
    """An exception as one line: pygguf's own errors say it all; any other names the stage that
    failed and its type (a bug or a hostile input we did not foresee, still only this record's)."""
    if isinstance(e, PyggufError):
        return one_line(str(e))
    return one_line(f"{stage}: {type(e).__name__}: {e}" if str(e) else f"{stage}: {type(e).__name__}")


# ---- scheduling ----------------------------------------------------------------------------

@dataclass
class Job:
    index: int
    id: object
    line: int | None
    request: Request
    sequence: Sequence | None = None        # made on the first try to admit it

    def error(self, message: str) -> Finished:
        return Finished(self.index, error_record(self.id, message, self.line), ok=False)


@dataclass
class Finished:
    index: int
    record: dict
    ok: bool


class Scheduler:
    """Admits jobs into the batched engine's slots and advances every admitted one by one forward
    pass per `step()`, which returns the jobs that finished (continuous batching: a finished slot
    takes the next queued job on the following step). Any failure is one job's error record:
    refused before decoding (empty or too long prompt, bad sampler parameters), ended by its own
    sampling (the engine's FinishReason.ERROR), or its slot's share of a forward pass that raised
    (found by stepping each running slot alone)."""

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
            try:
                if job.sequence is None:
                    job.sequence = self.engine.new_sequence(job.request)
                slot = self.engine.admit(job.sequence, self.slots)
            except Exception as e:              # noqa: BLE001 - a bad grammar, sampler, ...: this record's error
                self.queue.pop(0)
                done.append(job.error(describe(e, "starting")))
                continue
            if slot is None:
                return                          # waits for a prefix another slot is computing
            self.queue.pop(0)
            self._jobs[id(job.sequence)] = job

    def step(self) -> list[Finished]:
        done: list[Finished] = []
        self._admit(done)
        try:
            finished = self.engine.step()
        except KeyboardInterrupt:
            self._abandon()
            raise
        except Exception as e:                  # noqa: BLE001 - the forward pass: whose record was it?
            finished = self._step_each_alone(e, done)
        done += [self._result(self._jobs.pop(id(seq)), seq) for seq in finished]
        return done

    def _step_each_alone(self, error: Exception, done: list[Finished]) -> list[Sequence]:
        """A forward pass over several records raised: step each running slot alone (the step left
        every slot as it was), so only the record that fails alone gets the error."""
        running = [s for s in self.slots if not s.free]
        if len(running) == 1:
            self._drop(running[0], error, done)
            return []
        finished = []
        for slot in running:
            try:
                finished += self.engine.step([slot])
            except KeyboardInterrupt:
                self._abandon()
                raise
            except Exception as e:              # noqa: BLE001
                self._drop(slot, e, done)
        return finished

    def _drop(self, slot, error: Exception, done: list[Finished]) -> None:
        seq = slot.seq
        job = self._jobs.pop(id(seq))
        self.engine.forget(seq)                 # its cells may hold part of the failed pass
        self.engine.release(seq)
        done.append(job.error(describe(error, "decoding")))

    def _result(self, job: Job, seq: Sequence) -> Finished:
        if seq.error is not None:
            return job.error(describe(seq.error, "sampling"))
        try:
            return Finished(job.index, result_record(job.id, seq, self.engine.tokenizer, job.request.logprobs), ok=True)
        except Exception as e:                  # noqa: BLE001
            return job.error(describe(e, "writing the result"))

    def _abandon(self) -> None:
        self.engine.abandon()
        self._jobs.clear()


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


def _stage(what: str, make):
    """make(), any failure turned into this record's RecordError naming what failed."""
    try:
        return make()
    except Exception as e:                      # noqa: BLE001 - a hostile template, a lone surrogate, ...
        raise RecordError(one_line(f"{what}: {e}") if isinstance(e, PyggufError) else describe(e, what)) from None


def build_request(llm, record: Record, defaults: BatchDefaults) -> Request:
    """A record's prompt tokens and parameters (its own, else the defaults); RecordError if any
    step fails (templating, tokenizing, the grammar, the sampler's parameters)."""
    p = record.params
    if record.messages is not None:
        tokens = _stage("messages", lambda: llm.chat_prompt_tokens(record.messages))
    else:
        tokens = _stage("prompt", lambda: llm.tokenize(record.prompt, add_bos=True, special=True))
    grammar = _stage("grammar", lambda: grammar_of(p.get("grammar"), p.get("json_schema"), p.get("response_format"))
                     or defaults.grammar)
    return _stage("parameters", lambda: completion_request(
        tokens, n_predict=int(p.get("n_predict", defaults.n_predict)), temperature=p.get("temperature", defaults.temperature),
        top_k=p.get("top_k", defaults.top_k), top_p=p.get("top_p", defaults.top_p), min_p=p.get("min_p", defaults.min_p),
        repeat_penalty=p.get("repeat_penalty", defaults.repeat_penalty), stop=p.get("stop", defaults.stop),
        seed=p.get("seed", defaults.seed), logprobs=defaults.logprobs, grammar=grammar))


def records_to_run(records: Iterable[Record | BadRecord], writer: ResultWriter, skip: set[str],
                   summary: BatchSummary, skip_lines: set[int] = frozenset()) -> Iterator[Record | BadRecord]:
    """The records a run must answer. --resume's done ids (`skip`, results only: a bad line is
    never done) and kept error lines (`skip_lines`) are passed to the writer as done and counted
    as skipped. A repeated id becomes a BadRecord, also when the first one is done already."""
    first_line: dict[str, int | None] = {}
    for record in records:
        key = None if record.id is None else id_key(record.id)
        if key in first_line and not isinstance(record, BadRecord):
            at = first_line[key]
            record = BadRecord(record.index, record.id, one_line(
                f"duplicate id {key[:60]}" + (f" (first on line {at})" if at is not None else "")), record.line)
        if key is not None:
            first_line.setdefault(key, record.line)
        if (record.line is not None and record.line in skip_lines) or (isinstance(record, Record) and key in skip):
            writer.put(record.index, None)
            summary.skipped += 1
            continue
        yield record


def run_batch(llm, records: Iterable[Record | BadRecord], writer: ResultWriter, defaults: BatchDefaults, *,
              skip: set[str] = frozenset(), skip_lines: set[int] = frozenset(), parallel: int = 1,
              on_progress: Callable[[int, int], None] | None = None) -> BatchSummary:
    """Run every record; results go to the writer as soon as they may, one line per record,
    whatever the record does. KeyboardInterrupt stops the run after writing every finished
    record (summary.interrupted); a BatchWriteError (the output cannot take a line) propagates.
    on_progress(records just finished, tokens generated so far) is called after every decoding
    step and every finished record."""
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
        for record in records_to_run(records, writer, skip, summary, skip_lines):
            if isinstance(record, BadRecord):
                finish(Finished(record.index, error_record(record.id, record.error, record.line), ok=False))
                continue
            try:
                request = build_request(llm, record, defaults)
            except RecordError as e:
                finish(Finished(record.index, error_record(record.id, str(e), record.line), ok=False))
                continue
            scheduler.submit(Job(record.index, record.id, record.line, request))
            while len(scheduler.queue) >= scheduler.parallel:   # read ahead no further than needed
                step()
        while scheduler.busy:
            step()
    except KeyboardInterrupt as e:
        summary.interruption = e
        writer.flush_pending()
    return summary
