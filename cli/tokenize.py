"""pygguf-tokenize -m FILE -p TEXT: a prompt's tokens, printed the way llama-tokenize prints them.

`id -> 'piece'` lines (special tokens shown as their text), or `[1, 2, 3]` with --ids. Escapes
(\\n \\t \\xHH ...) in the prompt are processed unless --no-escape. A bad file or tokenizer gives
one line on stderr and exit status 1.
"""
from __future__ import annotations

import functools
import logging
import os
import sys

import click

from pygguf.errors import PyggufError
from pygguf.gguf import GGUFReader
from pygguf.tokenizer import Tokenizer
from pygguf_cli.escapes import process_escapes


def format_pieces(tok: Tokenizer, ids: list[int]) -> str:
    # pieces with special=True, like llama-tokenize; bytes that are not whole UTF-8 show as U+FFFD
    lines = [f"{i:6d} -> '{tok.token_to_bytes(i, special=True).decode('utf-8', 'replace')}'"
             for i in ids]
    return "".join(line + "\n" for line in lines)


def load_tokenizer(path: str) -> Tokenizer:
    stat = os.stat(path)
    return _load_tokenizer(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_tokenizer(path: str, size: int, mtime_ns: int) -> Tokenizer:
    # keyed on size and mtime so a rewritten file is read again (matters when called in-process)
    with GGUFReader(path) as reader:
        return Tokenizer.from_metadata(reader.metadata)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="GGUF file whose tokenizer to use.")
@click.option("-p", "--prompt", default=None, help="Text to tokenize.")
@click.option("-f", "--file", "prompt_file", type=click.Path(exists=True, dir_okay=False),
              help="Read the text from a file (taken as is, no escape processing).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the text from standard input.")
@click.option("--ids", is_flag=True, help="Print only the ids, as [1, 2, 3].")
@click.option("--show-count", is_flag=True, help="Print the number of tokens at the end.")
@click.option("--no-bos", is_flag=True, help="Never add BOS/EOS even if the model asks for it.")
@click.option("--no-parse-special", is_flag=True,
              help="Treat control-token text in the prompt as plain text.")
@click.option("--no-escape", is_flag=True, help="Do not process escapes such as \\n in -p.")
@click.option("--log-disable", is_flag=True, help="Do not print load-time warnings.")
def main(model_path, prompt, prompt_file, from_stdin, ids, show_count, no_bos, no_parse_special,
         no_escape, log_disable):
    """Tokenize TEXT with the tokenizer stored in a GGUF file (like llama.cpp's llama-tokenize)."""
    sources = [prompt is not None, prompt_file is not None, from_stdin]
    if sum(sources) != 1:
        raise click.UsageError("give exactly one of -p/--prompt, -f/--file, --stdin")
    if prompt_file is not None:
        with open(prompt_file, encoding="utf-8", errors="replace", newline="") as fh:
            text = fh.read()
    elif from_stdin:
        text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    else:
        text = prompt if no_escape else process_escapes(prompt)

    if log_disable:
        logging.getLogger("pygguf.tokenizer").setLevel(logging.ERROR)
    try:
        tok = load_tokenizer(model_path)   # load-time warnings go to stderr through logging
    except (PyggufError, OSError) as exc:
        click.echo(f"pygguf-tokenize: {exc}", err=True)
        sys.exit(1)

    tokens = tok.encode(text, add_special=not no_bos, parse_special=not no_parse_special)
    out = sys.stdout
    if ids:
        out.write("[" + ", ".join(str(t) for t in tokens) + "]\n")
    else:
        out.write(format_pieces(tok, tokens))
    if show_count:
        out.write(f"Total number of tokens: {len(tokens)}\n")
    out.flush()


if __name__ == "__main__":
    main()
