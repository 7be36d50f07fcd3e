"""The standard streams when they are closed, full or endless, and the caps on what is read.

- stdin closed (`<&-`: Python leaves sys.stdin None): it reads as empty, so every mode sees end of
  input at once (a piped prompt is empty, an interactive session ends as on Ctrl+D).
- stdout closed (`>&-`) or failing (`>/dev/full`, EIO): the first write raises StdoutError, which
  the command reports as one line on stderr with exit status 1 (a closed stdout refuses every
  write, so the run does not go on writing nowhere).
- A closed descriptor 0, 1 or 2 is reopened on /dev/null, so that no file opened later takes its
  number (a model file opened as descriptor 1 would receive what is meant for stdout).
- What is read has bounds: a prompt file or piped prompt at most MAX_PROMPT_BYTES, one interactive
  line at most MAX_INPUT_LINE characters (`-f /dev/zero` or an input of /dev/zero would otherwise
  read until memory runs out).
"""
from __future__ import annotations

import errno
import io
import os
import sys

# A context holds at most 2^24 tokens (pygguf.model.config.MAX_CONTEXT), and a token rarely
# stands for more than a few bytes of text: 64 MiB is already more than any context could take.
MAX_PROMPT_BYTES = 64 << 20
MAX_INPUT_LINE = 1 << 20            # characters of one interactive input line


class StdoutError(OSError):
    """Writing to standard output failed (closed, disk full, I/O error): one line, exit 1."""

    def __init__(self, cause: OSError):
        super().__init__(cause.errno, cause.strerror)

    def __str__(self) -> str:
        return f"cannot write to standard output: {self.strerror or 'write failed'}"


class InputTooLong(OSError):
    """A prompt file, piped prompt or input line past its cap; the message names where it came from."""

    def __init__(self, message: str):
        super().__init__(errno.EFBIG, message)

    def __str__(self) -> str:
        return self.strerror


def stdout_failure(e: OSError) -> StdoutError:
    """The StdoutError for an error raised by a write to stdout (already one: itself)."""
    return e if isinstance(e, StdoutError) else StdoutError(e)


# what a write to a closed, full or broken output reports
WRITE_ERRNOS = {errno.EBADF, errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_write_failure(e: OSError) -> bool:
    """An OSError that escaped Click's own writes (--help, --version) to stdout."""
    return isinstance(e, StdoutError) or e.errno in WRITE_ERRNOS


class ClosedStdout(io.TextIOBase):
    """sys.stdout when descriptor 1 was closed at start: every write fails with EBADF."""

    def write(self, text: str) -> int:
        raise StdoutError(OSError(errno.EBADF, "standard output is closed"))

    def flush(self) -> None:
        pass                        # nothing was written, nothing to flush (the exit flush is quiet)

    def isatty(self) -> bool:
        return False


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _occupy_with_devnull(fd: int) -> None:
    flags = os.O_RDONLY if fd == 0 else os.O_WRONLY
    got = os.open(os.devnull, flags)
    if got != fd:
        os.dup2(got, fd)
        os.close(got)


def reopen_closed_standard_streams() -> None:
    """At start, before any file is opened: see the module's docstring."""
    for fd in (0, 1, 2):
        if not _is_open(fd):
            _occupy_with_devnull(fd)
    if sys.stdin is None:
        sys.stdin = io.StringIO("")
    if sys.stdout is None:
        sys.stdout = ClosedStdout()
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115  (the process's stderr, open until exit)


def stdin_is_terminal(stdin=None) -> bool:
    """isatty() of stdin, False when there is none (closed) or it is not a file."""
    stream = sys.stdin if stdin is None else stdin
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def read_capped(stream, limit: int, what: str) -> str:
    """All of a text stream, refused with InputTooLong past `limit` characters."""
    text = stream.read(limit + 1)
    if len(text) > limit:
        raise InputTooLong(f"{what} is longer than {_size(limit)}; nothing that long fits a context")
    return text


def read_line_capped(stream, limit: int = MAX_INPUT_LINE) -> str:
    """One line of a text stream (with its newline), refused past `limit` characters."""
    line = stream.readline(limit + 1)
    if len(line) > limit:
        raise InputTooLong(f"an input line is longer than {limit} characters (the most one line may hold)")
    return line


def read_file_capped(path, limit: int, what: str) -> bytes:
    """A file's bytes, refused past `limit` bytes: the size of a regular file is checked before
    reading, and a device or pipe (/dev/zero) is read no further than the limit."""
    with open(path, "rb") as f:
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError:
            size = 0
        if size > limit:
            raise InputTooLong(f"{what} is {_size(size)}, more than the {_size(limit)} a prompt may be")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputTooLong(f"{what} is longer than {_size(limit)}; nothing that long fits a context")
    return data


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n and n % (1 << 20) == 0 else f"{n} bytes"
