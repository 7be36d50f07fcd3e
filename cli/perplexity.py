"""pygguf-perplexity: llama-perplexity's measurement (PPL over chunks, or KL divergence to a base run).

    pygguf-perplexity -m model.gguf -f text.txt -c 128
    pygguf-perplexity -m f16.gguf  -f text.txt -c 128 --kl-divergence-base base.kld
    pygguf-perplexity -m q4.gguf   --kl-divergence-base base.kld --kl-divergence

Per-chunk running estimates go to stdout (`[1]24.1234,[2]...`), logs and the final estimate to
stderr, as llama-perplexity does; a progress bar is drawn on stderr when it is a terminal.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from pygguf.errors import PyggufError
from pygguf.tools import perplexity as ppl_mod
from pygguf_cli.options import CACHE_TYPES


def log(msg: str) -> None:
    click.echo(msg, err=True)


@contextmanager
def progress_bar(total: int, label: str):
    """A rich progress bar on stderr when it is a terminal; otherwise nothing."""
    if not sys.stderr.isatty():
        yield lambda done, text="": None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                        console=Console(stderr=True), transient=True,
                        redirect_stdout=False, redirect_stderr=False)
    with progress:
        task = progress.add_task(label, total=total, note="")
        yield lambda done, text="": progress.update(task, completed=done, note=text)


def read_text(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise click.ClickException(f"cannot read {path}: {e.strerror}") from None
    return text[:-1] if text.endswith("\n") else text   # llama.cpp drops one trailing newline


def load_model(path: str, n_ctx: int, n_batch: int, n_threads: int, cache_types: tuple[str, str] = ("f16", "f16")):
    from pygguf.model import Model
    try:
        return Model.load(path, n_ctx=n_ctx, n_threads=n_threads, n_batch=min(n_batch, n_ctx),
                          type_k=cache_types[0], type_v=cache_types[1])
    except PyggufError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot open {path}: {e.strerror or e}") from None


def bos_for(tokenizer) -> int | None:
    return tokenizer.bos_id if tokenizer.add_bos else None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", "model_path", required=True, help="GGUF model file.")
@click.option("-f", "--file", "text_file", help="Text to measure (not needed with --kl-divergence).")
@click.option("-c", "--ctx-size", "--ctx_size", "n_ctx", type=int, default=512, show_default=True,
              help="Tokens per chunk; the second half of each chunk is scored.")
@click.option("-b", "--batch-size", "--batch_size", "n_batch", type=int, default=2048, show_default=True,
              help="Tokens per forward call (capped at the context size).")
@click.option("--chunks", "n_chunks", type=int, default=-1, show_default=True,
              help="At most this many chunks (-1 = all).")
@click.option("-t", "--threads", "n_threads", type=int, default=2, show_default=True)
@click.option("-ctk", "--cache-type-k", "cache_type_k", type=click.Choice(CACHE_TYPES, case_sensitive=False),
              default="f16", show_default=True, help="KV cache type for K.")
@click.option("-ctv", "--cache-type-v", "cache_type_v", type=click.Choice(CACHE_TYPES, case_sensitive=False),
              default="f16", show_default=True, help="KV cache type for V.")
@click.option("--kl-divergence-base", "base_path", default=None,
              help="Save the model's log-probs here (or, with --kl-divergence, read them).")
@click.option("--kl-divergence", "do_kld", is_flag=True,
              help="Compare this model against the log-probs in --kl-divergence-base.")
def main(model_path, text_file, n_ctx, n_batch, n_chunks, n_threads, cache_type_k, cache_type_v, base_path, do_kld):
    """Measure perplexity like llama-perplexity."""
    if n_batch < 1 or n_threads < 1:
        raise click.ClickException("--batch-size and --threads must be at least 1")
    cache_types = (cache_type_k.lower(), cache_type_v.lower())
    try:
        if do_kld:
            run_kld(model_path, base_path, n_batch, n_chunks, n_threads, cache_types)
        else:
            run_ppl(model_path, text_file, n_ctx, n_batch, n_chunks, n_threads, base_path, cache_types)
    except PyggufError as e:
        raise click.ClickException(str(e)) from None


def run_ppl(model_path, text_file, n_ctx, n_batch, n_chunks, n_threads, base_path, cache_types):
    if not text_file:
        raise click.ClickException("-f/--file is required (the text to measure)")
    text = read_text(text_file)
    model = load_model(model_path, n_ctx, n_batch, n_threads, cache_types)
    log("perplexity: tokenizing the input ..")
    t0 = time.perf_counter()
    tokens = model.tokenizer.encode(text, add_special=True, parse_special=False)
    log(f"perplexity: tokenization took {1e3 * (time.perf_counter() - t0):g} ms")
    n_chunk = ppl_mod.count_chunks(len(tokens), n_ctx, n_chunks)
    log(f"perplexity: calculating perplexity over {n_chunk} chunks, n_ctx={n_ctx}, "
        f"batch_size={min(n_batch, n_ctx)}, n_seq=1")
    if base_path:
        log(f"perplexity: saving all log-probs to {base_path}")
    started = time.perf_counter()
    # with the bar and the estimates on one terminal, the estimates wait for the bar to finish
    hold_output = sys.stdout.isatty() and sys.stderr.isatty()
    held: list[str] = []
    with progress_bar(n_chunk, "perplexity") as update:
        def on_chunk(i, total, running):
            if i == 1:
                per_pass = time.perf_counter() - started
                log(f"perplexity: {per_pass:.2f} seconds per pass - ETA {per_pass * total / 60:.2f} minutes")
            if hold_output:
                held.append(f"[{i}]{running:.4f},")
            else:
                click.echo(f"[{i}]{running:.4f},", nl=False)
                sys.stdout.flush()
            update(i, f"PPL {running:.4f}")
        result = ppl_mod.perplexity(model, tokens, n_ctx, n_chunks, bos_for(model.tokenizer),
                                    base_file=base_path, on_chunk=on_chunk)
    click.echo("".join(held))
    if result.uncertainty > 0:
        log(f"Final estimate: PPL = {result.ppl:.4f} +/- {result.uncertainty:.5f}")
    else:
        log(f"Final estimate: PPL = {result.ppl:.4f} (no spread in log(prob): uncertainty undefined)")


def run_kld(model_path, base_path, n_batch, n_chunks, n_threads, cache_types):
    if not base_path:
        raise click.ClickException("--kl-divergence needs --kl-divergence-base FILE (from a base run)")
    base = ppl_mod.BaseLogprobReader(base_path)
    model = load_model(model_path, base.n_ctx, n_batch, n_threads, cache_types)
    n_chunk = base.n_chunk if n_chunks < 0 else min(n_chunks, base.n_chunk)
    log(f"kl_divergence: {n_chunk} chunks of {base.n_ctx} tokens from {base_path}")
    click.echo("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence"
               "              Δp RMS            Same top p")
    hold_output = sys.stdout.isatty() and sys.stderr.isatty()
    held: list[str] = []
    with progress_bar(n_chunk, "kl-divergence") as update:
        def on_chunk(i, total, acc):
            p, dp = acc.ppl()
            r, dr = acc.log_ppl_ratio()
            k, dk = acc.mean_kld()
            rms, drms = acc.rms_p_diff()
            top, dtop = acc.same_top_fraction()
            line = (f"{i:4d}    {p:9.4f} ± {dp:9.4f}    {r:10.5f} ± {dr:10.5f}    {k:10.5f} ± {dk:10.5f}"
                    f"    {100 * rms:6.3f} ± {100 * drms:6.3f} %    {100 * top:6.3f} ± {100 * dtop:6.3f} %")
            if hold_output:
                held.append(line)
            else:
                click.echo(line)
            update(i, f"KLD {k:.5f}")
        acc = ppl_mod.kl_divergence(model, base, n_chunks, bos_for(model.tokenizer), on_chunk=on_chunk)
    for line in held:
        click.echo(line)
    click.echo("")
    for line in ppl_mod.kld_report(acc):
        click.echo(line)


if __name__ == "__main__":
    main()
