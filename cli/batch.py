"""`pygguf-batch`: run every prompt of a file through a model, one JSONL result per prompt.

    pygguf-batch -m model.gguf -i prompts.jsonl -o results.jsonl [--resume] [--parallel N] ...

The output holds only results and error records, one line per input record (the schema:
pygguf/tools/batch_output.py): without -o they go to stdout. A progress bar goes to stderr when
it is a terminal, nothing otherwise but one-line notices and errors. Exit status: 0 when every
record in the output succeeded, 1 when any failed (kept error lines of --resume --no-retry-errors
count) or the run could not start or could not write its output, 130 after Ctrl+C / 143 after
SIGTERM (every finished record is in the output: --resume goes on).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click

from pygguf.sampling.params import BATCH_N_PREDICT, default
from pygguf_cli.options import CACHE_TYPES, grammar_from_options

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so finished records are written before we leave."""


def _on_sigterm(_signum, _frame):
    raise Terminated()


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class Progress:
    """A rich progress bar on stderr (records, generated tokens/s, ETA), or nothing when stderr
    is not a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.t0 = time.perf_counter()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress
        self.bar = RichProgress(TextColumn("records"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task("batch", total=total, rate="")
        self.bar.start()

    def advance(self, n_records: int, generated_tokens: int) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, advance=n_records, rate=f"{generated_tokens / elapsed:6.1f} tok/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _load_llm(options):
    return options.load()


def _run_on_ray(address, workers, records, writer, defaults, skip, skip_lines, progress, options):
    from pygguf.tools.distributed import run_on_ray
    return run_on_ray(address, records, writer, defaults, options, workers=workers, skip=skip, skip_lines=skip_lines,
                      on_progress=progress.advance, ray_init=dict(log_to_driver=False, include_dashboard=False))




@click.command("pygguf-batch", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="GGUF model file.")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Prompts: JSONL records {id, prompt | messages, ...} or plain text, one prompt per line.")
@click.option("-o", "--output", "output_path", default="-", show_default=True,
              help="Results (JSONL); '-' is stdout.")
@click.option("--format", "input_format", type=click.Choice(["auto", "jsonl", "text"]), default="auto",
              show_default=True, help="Input format (auto: .jsonl/.json or a first line starting with '{').")
@click.option("--parallel", "-np", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sequences decoded together, one forward pass per token (each with its own -c context).")
@click.option("-t", "--threads", "n_threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("-c", "--ctx-size", "n_ctx", type=click.IntRange(min=0), default=2048, show_default=True,
              help="Context size of each sequence (0: the model's default).")
@click.option("-b", "--batch-size", "n_batch", type=click.IntRange(min=1), default=512, show_default=True,
              help="Prompt tokens per forward pass.")
@click.option("-ctk", "--cache-type-k", "cache_type_k", type=click.Choice(CACHE_TYPES, case_sensitive=False),
              default="f16", show_default=True, help="KV cache type for K, for every record.")
@click.option("-ctv", "--cache-type-v", "cache_type_v", type=click.Choice(CACHE_TYPES, case_sensitive=False),
              default="f16", show_default=True, help="KV cache type for V, for every record.")
@click.option("-n", "--n-predict", type=click.IntRange(min=-1), default=None,
              help=f"Tokens to generate per record (-1: until end of generation or a full context) [default: "
                   f"{BATCH_N_PREDICT}].")
@click.option("--temp", type=float, default=None, help=f"[default: {default('temp')}]")
@click.option("--top-k", type=int, default=None, help=f"[default: {default('top_k')}]")
@click.option("--top-p", type=click.FloatRange(0.0, 1.0), default=None, help=f"[default: {default('top_p')}]")
@click.option("--min-p", type=click.FloatRange(0.0, 1.0), default=None, help=f"[default: {default('min_p')}]")
@click.option("--repeat-penalty", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help=f"[default: {default('repeat_penalty')}]")
@click.option("-s", "--seed", type=click.IntRange(-1, 2**32 - 1), default=None,
              help="Seed for every record without its own (-1: random per record; each result says its seed) "
                   f"[default: {default('seed')}].")
@click.option("--stop", "stop", multiple=True, help="Stop string (repeatable); records may set their own.")
@click.option("--logprobs", type=click.IntRange(min=0), default=None,
              help="Write each generated token's log-probability and the top N alternatives.")
@click.option("--resume", is_flag=True,
              help="Go on with an existing output: skip the records it holds results for, run its error records "
                   "again, move damaged lines to OUTPUT.damaged.")
@click.option("--no-retry-errors", is_flag=True, help="With --resume: keep the error records instead of retrying them.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Spread the records over a Ray cluster ('auto', 'ray://host:10001', or 'local' to start one "
                   "here); the model file must be at the same path on every machine.")
@click.option("--ray-workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray workers, each loading the model once (one per machine, each with -t threads).")
@click.option("--unordered", is_flag=True, help="Write results as they finish, not in input order.")
@click.option("--grammar", default=None, help="GBNF grammar for records without grammar/json_schema/response_format.")
@click.option("--grammar-file", type=click.Path(path_type=Path), default=None, help="Read that grammar from a file.")
@click.option("-j", "--json-schema", default=None, help="JSON schema for records without their own constraint.")
@click.option("-jf", "--json-schema-file", type=click.Path(path_type=Path), default=None,
              help="Read that JSON schema from a file.")
@click.pass_context
def main(ctx, model_path, input_path, output_path, input_format, parallel, n_threads, n_ctx, n_batch, cache_type_k,
         cache_type_v, n_predict, temp, top_k, top_p, min_p, repeat_penalty, seed, stop, logprobs, resume, no_retry_errors,
         unordered, ray_address, ray_workers, grammar, grammar_file, json_schema, json_schema_file):
    from pygguf.errors import PyggufError
    from pygguf.tools.batch import BatchDefaults, BatchWriteError, ResultWriter, count_records, read_records, run_batch
    from pygguf.tools.distributed import ModelOptions, RayUnavailable, WorkerFailed

    if resume and output_path == "-":
        raise click.UsageError("--resume needs an output file (-o FILE)")
    if no_retry_errors and not resume:
        raise click.UsageError("--no-retry-errors goes with --resume")
    run_grammar = grammar_from_options(grammar, grammar_file, json_schema, json_schema_file)
    if not ray_address:                  # with --ray, each worker loads the model on its machine
        n_threads = _usable_threads(n_threads)
    options = ModelOptions(model_path, n_ctx, n_threads, n_batch, parallel, cache_type_k.lower(), cache_type_v.lower())
    llm = None
    if not ray_address:
        load = (ctx.obj or {}).get("load_llm", _load_llm)
        try:
            llm = load(options)
        except (PyggufError, OSError) as e:
            log(f"error: cannot load {model_path}: {e}")
            ctx.exit(EXIT_FAILED)
    try:
        write, out, state = _open_output(output_path, resume, retry_errors=not no_retry_errors)
    except PyggufError as e:
        log(f"error: {e}")
        ctx.exit(EXIT_FAILED)
    if resume:
        log(state.summary(output_path))

    skip, skip_lines = state.done, state.kept_lines
    progress = Progress(count_records(input_path) - len(skip) - len(skip_lines), enabled=sys.stderr.isatty())
    writer = ResultWriter(write, ordered=not unordered)
    given = dict(n_predict=n_predict, temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p,
                 repeat_penalty=repeat_penalty, seed=seed)
    defaults = BatchDefaults(**{k: v for k, v in given.items() if v is not None}, stop=tuple(stop), logprobs=logprobs,
                             grammar=run_grammar)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        records = read_records(input_path, input_format)
        if ray_address:
            summary = _run_on_ray(ray_address, ray_workers, records, writer, defaults, skip, skip_lines, progress,
                                  options)
        else:
            summary = run_batch(llm, records, writer, defaults, skip=skip, skip_lines=skip_lines, parallel=parallel,
                                on_progress=progress.advance)
        terminated = isinstance(summary.interruption, Terminated)
        if out is not None:
            out.close()                             # fsync: the lines are on the disk before we say so
            out = None
    except (RayUnavailable, WorkerFailed, BatchWriteError) as e:
        resumable = not isinstance(e, RayUnavailable) and output_path != "-"
        log(f"error: {e}" + (f" ({writer.written} records written; rerun with --resume to go on)" if resumable else ""))
        ctx.exit(EXIT_FAILED)
    except (PyggufError, OSError) as e:             # the input file, say, unreadable half-way
        log(f"error: {e}")
        ctx.exit(EXIT_FAILED)
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
        if out is not None:
            _close_quietly(out)
    ctx.exit(_report(summary, terminated, state.kept_errors))


def _usable_threads(n_threads: int) -> int:
    """The pool's barriers spin: more threads than CPUs only waits."""
    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_threads > n_cpus:
        log(f"warning: -t {n_threads} is more than the {n_cpus} CPUs available; using {n_cpus} threads")
        return n_cpus
    return n_threads


def _open_output(output_path: str, resume: bool, retry_errors: bool):
    """(write one line, the LineFile to close or None, what --resume found): --resume first
    repairs the output (batch_output.prepare_resume), then appends to it."""
    from pygguf.tools.batch import LineFile, ResumeState, prepare_resume, stream_writer
    state = prepare_resume(output_path, retry_errors) if resume else ResumeState()
    if output_path == "-":
        sys.stdout.flush()
        try:
            out = LineFile(sys.stdout.fileno(), "stdout")     # unbuffered: nothing left to flush at exit
        except (AttributeError, OSError, ValueError):         # a captured stdout (tests)
            return stream_writer(getattr(sys.stdout, "buffer", sys.stdout)), None, state
    else:
        out = LineFile.open(output_path, append=resume)
    return out.write_line, out, state


def _close_quietly(out) -> None:
    try:
        out.close()
    except OSError:
        pass


def _report(summary, terminated: bool, kept_errors: int = 0) -> int:
    """The closing line on stderr and the exit status (non-zero while errors remain in the output)."""
    if summary.interrupted:
        log(f"interrupted: {summary.ok + summary.failed} records written; rerun with --resume to go on")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    if summary.failed or kept_errors:
        kept = f"; {kept_errors} error records kept from before" if kept_errors else ""
        log(f"{summary.failed} of {summary.ok + summary.failed} records failed (see their \"error\" field){kept}")
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    main()
