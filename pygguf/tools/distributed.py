"""A batch run spread over the machines of a Ray cluster (`pygguf-batch --ray ADDRESS`).

    summary = run_on_ray("auto", records, writer, defaults, ModelOptions(path, ...), workers=4)

One Ray actor per worker loads the model once (the GGUF file must be at the same path on every
machine) and runs chunks of records through pygguf.tools.batch.run_batch, batched decoding included.
This process reads the input, drops what --resume skips, turns duplicate ids into error records,
and hands out chunks as workers free up (a slow machine simply takes fewer chunks). Each chunk's
results are written, in input order, as soon as it comes back, so an interrupted or failed run
keeps every finished chunk and `--resume` goes on from there. Ray is an optional dependency
(`pip install 'pygguf[ray]'`); nothing else here needs it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from pygguf.errors import PyggufError
from pygguf.tools.batch import (BadRecord, BatchDefaults, BatchSummary, BatchWriteError, Record, ResultWriter,
                                records_to_run, run_batch)

__all__ = ["ModelOptions", "run_on_ray", "RayUnavailable", "WorkerFailed", "CHUNK_RECORDS"]

CHUNK_RECORDS = 16          # records per task: small enough that little is redone after a failure


class RayUnavailable(PyggufError, RuntimeError):
    pass


class WorkerFailed(PyggufError, RuntimeError):
    """A chunk's task failed (its machine died, the model would not load there, ...)."""


@dataclass(frozen=True)
class ModelOptions:
    """How every worker (or the one process without Ray) loads the model: the run-wide flags."""
    path: str
    n_ctx: int = 2048
    n_threads: int = 2
    n_batch: int = 512
    parallel: int = 1
    type_k: str = "f16"         # KV cache types (-ctk/-ctv): f16, q8_0, q4_0
    type_v: str = "f16"

    def load(self):
        """The Llama these options describe (n_ctx 0: the model's own, capped to fit memory)."""
        from pygguf.api import Llama
        return Llama(self.path, n_ctx=self.n_ctx or 0, n_threads=self.n_threads, n_batch=self.n_batch,
                     n_seq_max=self.parallel, type_k=self.type_k, type_v=self.type_v)


class _Collect:
    """run_batch's writer on a worker: keeps (index, record) pairs for the driver."""

    def __init__(self):
        self.results: list[tuple[int, dict]] = []

    def put(self, index: int, record: dict | None) -> None:
        if record is not None:
            self.results.append((index, record))

    def flush_pending(self) -> None:
        pass


class BatchWorker:
    """Runs on one machine: the model, loaded once, and chunk after chunk of records."""

    def __init__(self, options: ModelOptions, defaults: BatchDefaults):
        self.llm = options.load()
        self.defaults, self.parallel = defaults, options.parallel

    def run(self, records: list) -> list[tuple[int, dict]]:
        out = _Collect()
        run_batch(self.llm, records, out, self.defaults, parallel=self.parallel)
        return out.results


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--ray needs Ray: pip install 'pygguf[ray]' (or pip install ray)") from None
    return ray


def chunks(records: Iterable[Record | BadRecord], writer: ResultWriter, skip: set[str], summary: BatchSummary,
           size: int = CHUNK_RECORDS, skip_lines: set[int] = frozenset()) -> Iterable[list]:
    """Lists of the records to run, as run_batch would see them on one machine (records_to_run)."""
    chunk: list = []
    for record in records_to_run(records, writer, skip, summary, skip_lines):
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_on_ray(address: str, records: Iterable[Record | BadRecord], writer: ResultWriter, defaults: BatchDefaults,
               options: ModelOptions, *, workers: int = 1, skip: set[str] = frozenset(),
               skip_lines: set[int] = frozenset(),
               on_progress: Callable[[int, int], None] | None = None, chunk_records: int = CHUNK_RECORDS,
               ray_init: dict | None = None) -> BatchSummary:
    """address: a Ray cluster ("auto", "ray://host:10001") or "local" (start one in this process)."""
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, **(ray_init or {}))
    actor = ray.remote(num_cpus=options.n_threads)(BatchWorker)
    pool = [actor.remote(options, defaults) for _ in range(max(1, workers))]
    summary = BatchSummary()
    todo = chunks(records, writer, skip, summary, chunk_records, skip_lines)
    running: dict = {}                      # future -> the worker running it
    idle = deque(pool)
    generated = 0
    try:
        while True:
            while idle and (chunk := next(todo, None)) is not None:
                worker = idle.popleft()
                running[worker.run.remote(chunk)] = worker
            if not running:
                break
            (done,), _ = ray.wait(list(running), num_returns=1)
            idle.append(running.pop(done))
            try:
                results = ray.get(done)
            except ray.exceptions.RayError as e:
                raise WorkerFailed(f"a Ray worker failed: {e}") from e
            for index, record in results:
                writer.put(index, record)
                summary.failed += "error" in record
                summary.ok += "error" not in record
                generated += record.get("completion_tokens", 0)
            if on_progress is not None:
                on_progress(len(results), generated)
    except BatchWriteError:                 # the output is full: nothing more can be kept
        for future in running:
            ray.cancel(future, force=True)
        raise
    except (KeyboardInterrupt, WorkerFailed) as e:
        writer.flush_pending()              # every chunk that came back is written, even out of order
        for future in running:
            ray.cancel(future, force=True)
        if isinstance(e, WorkerFailed):
            raise
        summary.interruption = e
    return summary
