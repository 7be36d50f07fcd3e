"""pygguf-quantize IN OUT TYPE [--allow-requantize] [--pure]: llama-quantize's file-type mixes.

A progress bar and the size summary go to stderr (as llama-quantize logs); errors are one line on
stderr and exit status 1.
"""
from __future__ import annotations

import sys
from collections import Counter

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pygguf.errors import PyggufError
from pygguf.tools.quant_mix import FILE_TYPES, FileType, file_type
from pygguf.tools.quantize import QuantizeReport, quantize_file

MIB = 1024 * 1024


def type_help() -> str:
    return ", ".join(f"{f.name} ({f.ftype_id})" for f in FILE_TYPES)


def print_summary(console: Console, report: QuantizeReport) -> None:
    before, after = report.size_before, report.size_after
    console.print(f"model size = {before / MIB:10.2f} MiB ({report.bits_per_weight(before):.2f} BPW)")
    console.print(f"quant size = {after / MIB:10.2f} MiB ({report.bits_per_weight(after):.2f} BPW)")
    table = Table(title=f"{report.ftype.name}: tensors per type", title_justify="left")
    table.add_column("type")
    table.add_column("tensors", justify="right")
    table.add_column("MiB", justify="right")
    counts, sizes = Counter(), Counter()
    for t in report.tensors:
        counts[t.choice.dst.name] += 1
        sizes[t.choice.dst.name] += t.dst_bytes
    for name, n in sorted(counts.items()):
        table.add_row(name, str(n), f"{sizes[name] / MIB:.2f}")
    console.print(table)
    fallbacks = Counter((c.fallback_from, c.dst.name) for c in report.fallbacks)
    if fallbacks:
        moves = ", ".join(f"{src} -> {dst} x{n}" for (src, dst), n in sorted(fallbacks.items()))
        console.print(f"warning: {sum(fallbacks.values())} of {len(report.tensors)} tensors needed a fallback "
                      f"type (row length not a multiple of the super-block): {moves}", markup=False)


def run_with_progress(console: Console, src: str, dst: str, ft: FileType, allow_requantize: bool,
                      pure: bool) -> QuantizeReport:
    """The bar appears once the checks have passed, so a refused input prints only its error."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[tensor]}"), console=console)
    task = progress.add_task(f"quantizing to {ft.name}", total=None, tensor="")

    def on_plan(choices):
        progress.update(task, total=len(choices))
        progress.start()

    def on_tensor(t):
        progress.update(task, advance=1, tensor=f"{t.choice.name} -> {t.choice.dst.name}")

    try:
        return quantize_file(src, dst, ft.name, allow_requantize=allow_requantize, pure=pure,
                             on_plan=on_plan, on_tensor=on_tensor)
    finally:
        progress.stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("dst", metavar="OUT", type=click.Path(dir_okay=False))
@click.argument("ftype", metavar="TYPE")
@click.option("--allow-requantize", "--allow_requantize", is_flag=True,
              help="Allow tensors that are already quantized to be requantized (dequantized first).")
@click.option("--pure", is_flag=True, help="Every quantizable tensor gets the default type (no mix).")
def main(src: str, dst: str, ftype: str, allow_requantize: bool, pure: bool) -> None:
    """Quantize the GGUF model IN into OUT with the file type TYPE, as llama-quantize does.

    TYPE: a name or a llama_ftype number."""
    console = Console(stderr=True)
    try:
        report = run_with_progress(console, src, dst, file_type(ftype), allow_requantize, pure)
    except (PyggufError, OSError) as e:
        click.echo(f"pygguf-quantize: error: {e}", err=True)
        sys.exit(1)
    print_summary(console, report)


main.help = (main.help or "") + f"\n\n    Types: {type_help()}."

if __name__ == "__main__":
    main()
