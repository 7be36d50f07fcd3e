"""Batch output: the results file, written so that no record is ever lost or torn, and read back by --resume.

    out = LineFile.open("results.jsonl", append=True)   # or LineFile(1, "stdout")
    writer = ResultWriter(out.write_line)                 # one whole line per record
    ...; out.close()                                      # fsync, then close

The output schema (one JSON object per line, one line per input record):
- a result: `{"id", "text", "tokens", "finish_reason", ...}`, no "error" key;
- an error: `{"id"?, "line", "error"}`: "line" is the record's 1-based input line; "id" is there
  only when the line gave a usable one. A bad line's line number is never written as an id.

--resume (prepare_resume) reads an existing output and keeps what stands:
- a result line marks its id done: the record is skipped;
- an error line is taken out and its record runs again (retry_errors), or stays and its input
  line is skipped (--no-retry-errors); error lines are matched by "line", never by id;
- a damaged line (a torn last line of a killed run, bytes that are not a JSON record) moves to
  OUT.damaged; the output is rewritten without it (and without retried errors) atomically: a new
  file beside it, fsync, rename.

Writing: each line goes out in one os.write of the whole line (no buffer to flush, nothing for a
kill to lose). A write that fails (a full disk, EFBIG, a closed pipe) cuts a regular file back to
where the line began and raises BatchWriteError: the file never holds part of a line.
"""
from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from typing import Callable

from pygguf.atomic_file import replaced
from pygguf.errors import PyggufError
from pygguf.tools.batch_records import id_key

__all__ = ["BatchWriteError", "BatchOutputError", "LineFile", "stream_writer", "encode_line", "ResultWriter",
           "ResumeState", "prepare_resume", "completed_ids", "damaged_path"]


class BatchWriteError(PyggufError, OSError):
    """The output cannot be written (the message names the file and the reason)."""


class BatchOutputError(PyggufError, ValueError):
    """An output file --resume cannot work on."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


# ---- encoding ----------------------------------------------------------------------------------

def _finite(value):
    """NaN and infinities are not JSON: null instead (a logprob of a NaN-logit model)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def encode_line(record: dict) -> bytes:
    """One output line, UTF-8, ending in a newline. Strict JSON (no NaN); a lone surrogate (an id
    that came in as "\\ud800") is written as that same escape, not refused."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(record), ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(_finite(record)) + "\n").encode("ascii")


# ---- writing -----------------------------------------------------------------------------------

class LineFile:
    """An output file descriptor written one whole line at a time."""

    def __init__(self, fd: int, name: str, owned: bool = False):
        self.fd, self.name, self.owned = fd, name, owned
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)

    @classmethod
    def open(cls, path: str, append: bool) -> LineFile:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            raise BatchWriteError(f"cannot open {path}: {_reason(e)}") from None
        return cls(fd, path, owned=True)

    def write_line(self, data: bytes) -> None:
        start = os.lseek(self.fd, 0, os.SEEK_END) if self.regular else 0
        written = 0
        try:
            while written < len(data):          # once, unless short: a full disk (the next write says so), a pipe
                written += os.write(self.fd, data[written:])
        except OSError as e:
            self._cut_back(start)
            raise BatchWriteError(f"cannot write to {self.name}: {_reason(e)}") from None
        except BaseException:                   # Ctrl+C between two parts of one line
            if written < len(data):
                self._cut_back(start)
            raise

    def _cut_back(self, start: int) -> None:
        """Leave no part of a line behind (a pipe or device cannot be cut: it took none or all)."""
        if self.regular:
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                pass

    def close(self) -> None:
        """fsync (a regular file: its lines are on the disk when the run says done), then close."""
        try:
            if self.regular:
                os.fsync(self.fd)
        except OSError as e:
            raise BatchWriteError(f"cannot write to {self.name}: {_reason(e)}") from None
        finally:
            if self.owned:
                os.close(self.fd)


def stream_writer(stream, name: str = "stdout") -> Callable[[bytes], None]:
    """For a binary stream without a file descriptor (tests' captured stdout): write, flush."""
    def write(data: bytes) -> None:
        try:
            stream.write(data)
            stream.flush()
        except OSError as e:
            raise BatchWriteError(f"cannot write to {name}: {_reason(e)}") from None
    return write


class ResultWriter:
    """Writes result lines as soon as allowed. Ordered: a result waits until every record before
    it (by input index) was written or skipped. `write_bytes` gets one whole line at a time and
    must not return before it is out of the process (LineFile.write_line, stream_writer)."""

    def __init__(self, write_bytes: Callable[[bytes], None], ordered: bool = True,
                 on_line: Callable[[dict], None] | None = None):
        self.write_bytes = write_bytes
        self.ordered = ordered
        self.next_index = 0
        self.pending: dict[int, dict | None] = {}       # index -> record (None: skipped)
        self.on_line = on_line
        self.written = 0

    def _write(self, record: dict) -> None:
        self.write_bytes(encode_line(record))
        self.written += 1
        if self.on_line is not None:
            self.on_line(record)

    def put(self, index: int, record: dict | None) -> None:
        """A finished record (None: nothing to write, e.g. skipped by --resume)."""
        if not self.ordered:
            if record is not None:
                self._write(record)
            return
        self.pending[index] = record
        while self.next_index in self.pending:
            ready = self.pending[self.next_index]
            if ready is not None:
                self._write(ready)              # a failed write leaves it pending
            del self.pending[self.next_index]
            self.next_index += 1

    def flush_pending(self) -> None:
        """On interruption: write whatever finished out of order too (finished work is never dropped)."""
        for index in sorted(self.pending):
            ready = self.pending[index]
            if ready is not None:
                self._write(ready)
            del self.pending[index]


# ---- --resume ----------------------------------------------------------------------------------

@dataclass
class ResumeState:
    """What an existing output holds, once prepare_resume has kept what stands."""
    done: set[str] = field(default_factory=set)         # id keys of result lines: skipped
    kept_lines: set[int] = field(default_factory=set)   # input lines whose error line stays
    retried: int = 0                                    # error lines taken out, to run again
    kept_errors: int = 0                                # error lines left (--no-retry-errors)
    damaged: int = 0                                    # lines moved to damaged_path()

    def summary(self, path: str) -> str:
        parts = [f"{len(self.done)} records done (skipped)", f"{self.retried} error records retried"]
        if self.kept_errors:
            parts.append(f"{self.kept_errors} error records kept (--no-retry-errors)")
        if self.damaged:
            parts.append(f"{self.damaged} damaged lines moved to {damaged_path(path)}")
        return "resume: " + ", ".join(parts)


def damaged_path(path: str) -> str:
    return path + ".damaged"


def _classify(raw: bytes) -> tuple[str, dict | None]:
    """("result" | "error" | "blank" | "damaged", the object)"""
    if not raw.strip():
        return "blank", None
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return "damaged", None
    if not isinstance(obj, dict):
        return "damaged", None
    if "error" in obj:
        return "error", obj
    rid = obj.get("id")
    if isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)):
        return "result", obj
    return "damaged", None


def _lines(f):
    """(raw line without its newline, whether it had one)"""
    for raw in f:
        yield (raw[:-1], True) if raw.endswith(b"\n") else (raw, False)


def prepare_resume(path: str, retry_errors: bool = True) -> ResumeState:
    """Read the output `path` for --resume and leave in it only the lines that stand (see the
    module docstring). Nothing is rewritten when every line stands."""
    state = ResumeState()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return state
    except OSError as e:
        raise BatchOutputError(f"cannot read {path}: {_reason(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BatchOutputError(f"--resume needs a regular file as its output, and {path} is not one")
    rewrite = False
    try:
        with open(path, "rb") as f:
            for raw, whole in _lines(f):
                kind, obj = _classify(raw)
                if kind == "result":
                    state.done.add(id_key(obj["id"]))
                    rewrite |= not whole                    # a complete last record lacking its newline
                elif kind == "error":
                    line = obj.get("line")
                    if not retry_errors and isinstance(line, int) and not isinstance(line, bool):
                        state.kept_lines.add(line)
                        state.kept_errors += 1
                        rewrite |= not whole
                    else:                                   # an old error line without "line" is retried too
                        state.retried += 1
                        rewrite = True
                elif kind == "damaged":
                    state.damaged += 1
                    rewrite = True
        if rewrite:
            _rewrite(path, retry_errors)
    except OSError as e:
        raise BatchWriteError(f"cannot repair {path} for --resume: {_reason(e)}") from None
    return state


def _keeps(kind: str, obj: dict | None, retry_errors: bool) -> bool:
    if kind == "result":
        return True
    if kind == "error":
        line = obj.get("line")
        return not retry_errors and isinstance(line, int) and not isinstance(line, bool)
    return False


def _rewrite(path: str, retry_errors: bool) -> None:
    """The damaged lines appended (and synced) to path.damaged first, then path replaced by a copy
    holding the lines that stand (pygguf.atomic_file): a kill at any point leaves the old file or
    the new one whole."""
    with open(path, "rb") as f, replaced(path) as out:
        damaged = []
        for raw, _ in _lines(f):
            kind, obj = _classify(raw)
            if kind == "damaged":
                damaged.append(raw + b"\n")
            elif _keeps(kind, obj, retry_errors):
                out.write(raw + b"\n")
        if damaged:
            with open(damaged_path(path), "ab") as d:
                d.writelines(damaged)
                d.flush()
                os.fsync(d.fileno())


def completed_ids(path: str) -> set[str]:
    """The ids (as id_key) of the results in an output: what --resume skips (repairs the file too)."""
    return prepare_resume(path).done

