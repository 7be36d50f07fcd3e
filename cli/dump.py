"""pygguf-dump FILE [--json] [--no-tensors]: a GGUF file's metadata and tensor table.

Rich tables on a terminal, plain aligned text when piped, JSON for machines. A bad file gives one
line on stderr and exit status 1.
"""
from __future__ import annotations

import json
import sys

import click
import numpy as np

from pygguf.errors import PyggufError
from pygguf.gguf import GGUFReader, GGUFValueType, type_name

ARRAY_PREVIEW = 8        # array elements shown before "..." (gguf-dump abbreviates the same way)
STRING_PREVIEW = 60      # characters of a long string shown in the tables


def format_scalar(value, vtype) -> str:
    if vtype == GGUFValueType.STRING:
        text = value if len(value) <= STRING_PREVIEW else value[:STRING_PREVIEW] + "..."
        return repr(text)
    if vtype == GGUFValueType.FLOAT32:
        return str(np.float32(value))      # shortest text that reads back as the same float32
    return str(value)


def format_value(value, vtype, preview: int = ARRAY_PREVIEW) -> str:
    """One line: scalars as they are, arrays as [a, b, ... (N total)]."""
    if not isinstance(vtype, tuple):
        return format_scalar(value, vtype)
    shown = [format_value(v, vtype[1], preview) for v in value[:preview]]
    if len(value) > preview:
        return f"[{', '.join(shown)}, ... ({len(value)} total)]"
    return f"[{', '.join(shown)}]"


def json_value(value, vtype):
    if isinstance(vtype, tuple):
        return [json_value(v, vtype[1]) for v in value]
    if vtype == GGUFValueType.FLOAT32:
        return float(np.float32(value))
    return value


def shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ---- the three outputs ----------------------------------------------------------------------

def as_json(r: GGUFReader, with_tensors: bool) -> str:
    doc = {
        "path": r.path, "version": r.version, "alignment": r.alignment, "data_offset": r.data_offset,
        "metadata": [{"key": k, "type": type_name(r.metadata_types[k]),
                      "value": json_value(v, r.metadata_types[k])} for k, v in r.metadata.items()],
    }
    if with_tensors:
        doc["tensors"] = [{"name": t.name, "type": t.qtype.name, "shape": list(t.shape),
                           "n_elements": t.n_elements, "offset": t.offset, "n_bytes": t.nbytes}
                          for t in r.tensors.values()]
    return json.dumps(doc, ensure_ascii=False, indent=1)


def summary_line(r: GGUFReader) -> str:
    total = sum(t.nbytes for t in r.tensors.values())
    return (f"{r.path}: GGUF v{r.version}, {len(r.metadata)} metadata keys, {len(r.tensors)} tensors "
            f"({total:,} bytes), alignment {r.alignment}, tensor data at offset {r.data_offset}")


def plain_lines(r: GGUFReader, with_tensors: bool):
    yield "* " + summary_line(r)
    yield f"* {len(r.metadata)} key/value pairs"
    width = max((len(type_name(t)) for t in r.metadata_types.values()), default=6)
    for i, (key, value) in enumerate(r.metadata.items(), 1):
        vtype = r.metadata_types[key]
        yield f"{i:6}: {type_name(vtype):<{width}} | {key} = {format_value(value, vtype)}"
    if not with_tensors:
        return
    yield f"* {len(r.tensors)} tensors"
    name_width = max((len(n) for n in r.tensors), default=4)
    for i, t in enumerate(r.tensors.values(), 1):
        yield (f"{i:6}: {t.name:<{name_width}} | {t.qtype.name:<5} | {shape_text(t.shape):<22} "
               f"| {t.nbytes:>12,} bytes")


def print_rich(r: GGUFReader, with_tensors: bool, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(summary_line(r), highlight=False, markup=False)
    meta = Table(title="metadata", title_justify="left")
    for col, style in (("#", "dim"), ("key", "bold"), ("type", "cyan"), ("value", None)):
        meta.add_column(col, style=style, justify="right" if col == "#" else "left", overflow="fold")
    for i, (key, value) in enumerate(r.metadata.items(), 1):
        vtype = r.metadata_types[key]
        meta.add_row(str(i), key, type_name(vtype), format_value(value, vtype))
    console.print(meta, markup=False)
    if not with_tensors:
        return
    table = Table(title="tensors", title_justify="left")
    for col in ("#", "name", "type", "shape", "bytes"):
        table.add_column(col, justify="right" if col in ("#", "bytes") else "left")
    for i, t in enumerate(r.tensors.values(), 1):
        table.add_row(str(i), t.name, t.qtype.name, shape_text(t.shape), f"{t.nbytes:,}")
    console.print(table)


# ---- the command ----------------------------------------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json_flag", is_flag=True, help="Print JSON (every value in full).")
@click.option("--no-tensors", is_flag=True, help="Leave out the tensor table.")
def main(file: str, as_json_flag: bool, no_tensors: bool) -> None:
    """Show the metadata and tensors of a GGUF FILE."""
    try:
        with GGUFReader(file) as r:
            if as_json_flag:
                click.echo(as_json(r, not no_tensors))
            elif sys.stdout.isatty():
                print_rich(r, not no_tensors)
            else:
                for line in plain_lines(r, not no_tensors):
                    click.echo(line)
    except (PyggufError, OSError) as e:
        click.echo(f"pygguf-dump: error: {e}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        sys.stderr.close()     # output piped into `head`: stop quietly
        sys.exit(0)


if __name__ == "__main__":
    main()
