"""pygguf-bench: llama-bench's table for pygguf, and what the run reached of the machine.

    pygguf-bench -m FILE [-m FILE ...] -p 512 -n 128 -t 1,2 -r 5 [-ctk q8_0] [-o md|csv|json]
    pygguf-bench --synthetic codellama-13b:Q4_K_M      # built on first use (pygguf.tools.synthetic)

Rows are printed as they finish (md), or all at the end (csv, json). Two columns beyond
llama-bench's: for a generation test, the GB/s of weights it streamed next to the machine's
streaming-read rate measured at the start of the run with the same thread count; for a prompt
test, GMAC/s. Progress and notices go to stderr; errors are one line and exit status 1.
"""
from __future__ import annotations

import csv
import json
import sys

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from pygguf.errors import PyggufError
from pygguf.tools import synthetic
from pygguf.tools.benchmark import BenchTest, Result, bench_model, stream_read_gbps
from pygguf_cli.paths import cache_dir, vocab_dir
from pygguf_cli.system import physical_cores, usable_cpus

GIB, MIB = 1 << 30, 1 << 20
CACHE_TYPES = ["f16", "q8_0", "q4_0"]
MD_COLUMNS = [("model", 28, "<"), ("size", 10, ">"), ("params", 10, ">"), ("backend", 7, "<"),
              ("threads", 7, ">"), ("test", 8, ">"), ("t/s", 18, ">"), ("reached", 26, ">")]
CACHE_COLUMNS = [("type_k", 6, ">"), ("type_v", 6, ">")]   # shown, as llama-bench does, when not f16


def int_list(ctx, param, values) -> list[int]:
    """llama-bench's list values: -t 1,2 or -t 1 -t 2; each a non-negative integer."""
    out = []
    for value in values:
        for part in str(value).split(","):
            try:
                n = int(part)
            except ValueError:
                raise click.BadParameter(f"{part!r} is not an integer") from None
            if n < 0:
                raise click.BadParameter(f"{n} is negative")
            out.append(n)
    return out


def tests_of(prompts: list[int], gens: list[int]) -> list[BenchTest]:
    """llama-bench's order: every prompt test, then every generation test; 0 turns a test off."""
    return [BenchTest("pp", n) for n in prompts if n > 0] + [BenchTest("tg", n) for n in gens if n > 0]


def human_size(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.2f} MiB"


def human_params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def reached(r: Result) -> str:
    """What the test reached of the machine."""
    if r.test.kind == "pp":
        return f"{r.gmacs:.1f} GMAC/s"
    if r.read_gbps:
        return f"{r.weights_gbps:.1f} GB/s = {100 * r.weights_gbps / r.read_gbps:.0f}% of {r.read_gbps:.1f}"
    return f"{r.weights_gbps:.1f} GB/s"


def columns(show_cache: bool) -> list[tuple[str, int, str]]:
    return MD_COLUMNS[:5] + (CACHE_COLUMNS if show_cache else []) + MD_COLUMNS[5:]


def md_cells(r: Result, show_cache: bool = False) -> list[str]:
    cache = [r.type_k, r.type_v] if show_cache else []
    return [r.model.description, human_size(r.model.size), human_params(r.model.params), "CPU", str(r.threads),
            *cache, r.test.name, f"{r.mean:.2f} ± {r.std:.2f}", reached(r)]


def md_line(cells: list[str], cols: list[tuple[str, int, str]]) -> str:
    return "| " + " | ".join(f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, cols)) + " |"


def md_header(cols: list[tuple[str, int, str]]) -> str:
    names = md_line([name for name, _, _ in cols], cols)
    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == ">" else "-" * w for _, w, a in cols) + " |"
    return names + "\n" + rule


def record(r: Result) -> dict:
    """One result as llama-bench's csv/json fields (the ones that apply), plus the machine's."""
    return {
        "model_filename": str(r.model.path), "model_type": r.model.description, "model_size": r.model.size,
        "model_n_params": r.model.params, "n_threads": r.threads, "type_k": r.type_k, "type_v": r.type_v,
        "n_prompt": r.test.n if r.test.kind == "pp" else 0, "n_gen": r.test.n if r.test.kind == "tg" else 0,
        "avg_ts": r.mean, "stddev_ts": r.std, "samples_ts": r.samples,
        "weights_bytes_per_token": r.model.step_bytes, "weights_gbps": r.weights_gbps if r.test.kind == "tg" else None,
        "stream_read_gbps": r.read_gbps, "gmacs": r.gmacs if r.test.kind == "pp" else None,
    }


def write_csv(results: list[Result], out) -> None:
    rows = [record(r) for r in results]
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})


def synthetic_paths(specs: list[str], console: Console) -> list[str]:
    """Each SHAPE:TYPE's cached file, built (with a progress bar) on first use."""
    return [str(synthetic_path(spec, console)) for spec in specs]


def synthetic_path(spec: str, console: Console):
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                        console=console, transient=True)
    task = progress.add_task("", total=None, visible=False)

    def on_build(path) -> None:
        console.print(f"building {path} (synthetic weights, once)")
        progress.update(task, description=f"writing {path.name}", visible=True)
        progress.start()

    try:
        return synthetic.cached(spec, cache_dir() / "synthetic", vocab_dir(),
                                lambda name, nbytes: progress.update(task, advance=nbytes), on_build)
    finally:
        progress.stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", "models", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="GGUF file to benchmark (repeatable).")
@click.option("--synthetic", "synthetic_specs", multiple=True, metavar="SHAPE:TYPE",
              help=f"A synthetic model with a released model's shapes and types, e.g. codellama-13b:Q4_K_M "
                   f"(shapes: {', '.join(synthetic.SHAPES)}; any pygguf-quantize file type). Repeatable.")
@click.option("-p", "--n-prompt", "prompts", multiple=True, callback=int_list, default=["512"], metavar="N[,N...]",
              help="Prompt tokens per prompt test (comma list; 0 = none).", show_default=True)
@click.option("-n", "--n-gen", "gens", multiple=True, callback=int_list, default=["128"], metavar="N[,N...]",
              help="Generated tokens per generation test (comma list; 0 = none).", show_default=True)
@click.option("-t", "--threads", "threads", multiple=True, callback=int_list, metavar="N[,N...]",
              help="Thread counts (comma list; default: one per physical core, as llama-bench).")
@click.option("-r", "--repetitions", "reps", type=click.IntRange(1), default=5, show_default=True,
              help="Repetitions of each test (after one warm-up run).")
@click.option("-b", "--batch-size", "n_batch", type=click.IntRange(1), default=2048, show_default=True,
              help="Tokens per prompt batch.")
@click.option("-ctk", "--cache-type-k", "type_k", type=click.Choice(CACHE_TYPES), default="f16", show_default=True,
              help="KV cache type for keys.")
@click.option("-ctv", "--cache-type-v", "type_v", type=click.Choice(CACHE_TYPES), default="f16", show_default=True,
              help="KV cache type for values.")
@click.option("-o", "--output", "output", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("--no-read-rate", is_flag=True, help="Skip measuring the streaming-read rate (1 GiB buffer).")
def main(models, synthetic_specs, prompts, gens, threads, reps, n_batch, type_k, type_v, output, no_read_rate) -> None:
    """Benchmark prompt processing and generation speed, as llama-bench does."""
    console = Console(stderr=True)
    tests = tests_of(prompts, gens)
    threads = threads or [physical_cores(usable_cpus())]
    try:
        if not tests:
            raise click.UsageError("no tests: every -p and -n is 0")
        if any(t < 1 for t in threads):
            raise click.UsageError("thread counts must be at least 1")
        paths = list(models) + synthetic_paths(list(synthetic_specs), console)
        if not paths:
            raise click.UsageError("give a model: -m FILE or --synthetic SHAPE:TYPE")
        read_rates = {} if no_read_rate else {t: stream_read_gbps(t) for t in sorted(set(threads))}
        for t, rate in read_rates.items():
            console.print(f"streaming read, {t} thread{'s' if t > 1 else ''}: {rate:.1f} GB/s")
        show_cache = (type_k, type_v) != ("f16", "f16")
        if output == "md":
            click.echo(md_header(columns(show_cache)))
        results = []

        def show(r: Result) -> None:
            if output == "md":
                click.echo(md_line(md_cells(r, show_cache), columns(show_cache)))

        for path in paths:
            results += bench_model(path, tests, threads, reps, read_rates, n_batch, type_k, type_v, show)
    except (PyggufError, OSError) as e:
        click.echo(f"pygguf-bench: error: {e}", err=True)
        sys.exit(1)
    if output == "json":
        click.echo(json.dumps([record(r) for r in results], indent=2))
    elif output == "csv":
        write_csv(results, sys.stdout)


if __name__ == "__main__":
    main()
