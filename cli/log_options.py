"""Where the command's log lines go: --log-disable, --log-file FILE, -v/--verbose, -lv/--verbosity N.

Log lines are everything the command writes on stderr while it runs (set-up lines, warnings, the
sampler lines, the timings block, the interactive banner); stdout (the text) is never touched.
llama.cpp's verbosity levels are 0 output, 1 error, 2 warning, 3 info (the default), 4 debug. pygguf's
log lines carry no levels, so:
- -lv 3 (or none) changes nothing; -lv 0..2 drops the log lines like --log-disable;
- -v (any verbosity) or -lv 4 and up adds the details --verbose-prompt prints (the prompt's tokens,
  reverse prompts, prefix and suffix) and pygguf's debug messages (Python logging at DEBUG).
An error that ends the run is still one line on stderr, whatever these say.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from pygguf_cli.options import _bundle

INFO_LEVEL = 3                  # llama.cpp's default verbosity
DEBUG_LEVEL = 4


@dataclass(frozen=True)
class LogParams:
    disable: bool = False           # --log-disable: no log lines on stderr
    file: Path | None = None        # --log-file: log lines also written here
    verbosity: int = INFO_LEVEL     # -lv N; -v sets it to "everything"

    @property
    def verbose(self) -> bool:
        return self.verbosity >= DEBUG_LEVEL

    @property
    def quiet(self) -> bool:
        return self.disable or self.verbosity < INFO_LEVEL


_LOG_OPTIONS = [
    ("log_disable", click.option("--log-disable", "log_disable", is_flag=True, default=None,
                                 help="no log lines on stderr (the text on stdout and a final error line stay)")),
    ("log_file", click.option("--log-file", "log_file", type=click.Path(path_type=Path), metavar="FNAME",
                              help="also write the log lines to FNAME (replaced)")),
    ("verbose", click.option("-v", "--verbose", "--log-verbose", "verbose", is_flag=True, default=None,
                             help="log everything: the prompt's tokens as --verbose-prompt prints them, and "
                                  "debug messages")),
    ("verbosity", click.option("-lv", "--verbosity", "--log-verbosity", "verbosity", type=int, metavar="N",
                               help="llama.cpp's log levels: 4 and up as -v, 3 the default, 0-2 no log lines "
                                    "(pygguf's lines carry no levels)")),
]


def _build_log_params(values: dict) -> LogParams:
    verbosity = DEBUG_LEVEL if values["verbose"] else values["verbosity"]
    return LogParams(disable=bool(values["log_disable"]), file=values["log_file"],
                     verbosity=INFO_LEVEL if verbosity is None else verbosity)


log_options = _bundle("logs", _LOG_OPTIONS, _build_log_params)


class _Tee:
    """A text stream writing to several (none: a sink)."""

    def __init__(self, streams: list[TextIO], terminal: TextIO | None):
        self.streams = streams
        self.terminal = terminal

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return self.terminal is not None and self.terminal.isatty()


@contextmanager
def log_destination(params: LogParams) -> Iterator[None]:
    """While the run lasts, stderr (and the logging handlers writing to it) goes where `params` say."""
    logger = logging.getLogger("pygguf")
    level = logger.level
    if params.verbose:
        logger.setLevel(logging.DEBUG)
    try:
        with _stderr_redirected(params):
            yield
    finally:
        logger.setLevel(level)


@contextmanager
def _stderr_redirected(params: LogParams) -> Iterator[None]:
    if not params.quiet and params.file is None:
        yield
        return
    stderr = sys.stderr
    log_file = _open_log_file(params.file) if params.file is not None else None
    keep = [] if params.quiet else [stderr]
    tee = _Tee(keep + ([log_file] if log_file else []), stderr if keep else None)
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stderr]
    sys.stderr = tee
    for handler in handlers:
        handler.setStream(tee)
    try:
        yield
    finally:
        sys.stderr = stderr
        for handler in handlers:
            handler.setStream(stderr)
        if log_file is not None:
            log_file.close()


def _open_log_file(path: Path) -> TextIO:
    try:
        return path.open("w", encoding="utf-8", buffering=1)
    except OSError as e:
        raise click.BadParameter(f"cannot open {str(path)!r}: {e.strerror or e}", param_hint="'--log-file'") from None
