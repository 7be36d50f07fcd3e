"""Where the command writes: text on stdout (streamed, UTF-8, optionally coloured), logs on stderr.

Scripts can take stdout alone: it holds the prompt echo and the generated text, nothing else.
"""
from __future__ import annotations

import sys
from typing import TextIO

from pygguf_cli.streams import stdout_failure

# llama.cpp's console colours: the prompt echo in yellow, generated text in the default colour.
ANSI_PROMPT = "\x1b[33m"
ANSI_RESET = "\x1b[0m"


def write_stdout(text: str, stream: TextIO | None = None) -> None:
    """Write UTF-8 bytes (whatever the locale's encoding) and flush."""
    stream = stream if stream is not None else sys.stdout
    buffer = getattr(stream, "buffer", None)
    try:
        if buffer is not None:
            stream.flush()                      # keep ordering with anything written as text
            buffer.write(text.encode("utf-8", "replace"))
            buffer.flush()
        else:
            stream.write(text)
            stream.flush()
    except BrokenPipeError:
        raise                                   # the reader left: the command stops quietly
    except OSError as e:                        # closed, full (/dev/full), I/O error: one line, exit 1
        raise stdout_failure(e) from None


def log(message: str = "") -> None:
    """One line on stderr (logs, warnings, the perf block)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    log(f"warning: {message}")


class TextOut:
    """Streams text to stdout as UTF-8 bytes, flushed per piece, whatever the locale says."""

    def __init__(self, stream: TextIO | None = None, *, color: bool = False):
        self.stream = stream if stream is not None else sys.stdout
        self.color = color and _is_terminal(self.stream)
        self._in_prompt = False
        self._wrote = False

    def _write(self, text: str) -> None:
        write_stdout(text, self.stream)
        self._wrote = self._wrote or bool(text)

    def prompt(self, text: str) -> None:
        if self.color and not self._in_prompt:
            self._write(ANSI_PROMPT)
            self._in_prompt = True
        self._write(text)

    def generated(self, text: str) -> None:
        if self._in_prompt:
            self._write(ANSI_RESET)
            self._in_prompt = False
        self._write(text)

    def end(self) -> None:
        """Close the stream with a newline so the shell prompt does not glue onto the text."""
        if self._in_prompt:
            self._write(ANSI_RESET)
            self._in_prompt = False
        if self._wrote:
            self._write("\n")


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:                          # a closed stream
        return False
