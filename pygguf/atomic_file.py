"""Files replaced whole: written under a temporary name in the same directory, fsynced, renamed over
the target and the directory fsynced, so a kill or a failed write leaves the old file or the new
one, never half of one. The state files (--prompt-cache), pygguf-batch's repaired output and the
GGUF writer all write this way."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def replaced(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write path's new contents to; path is replaced when the block ends without
    an exception, and left untouched (the temporary file removed) when it raises."""
    path = Path(path)
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())        # mkstemp's 0600 would differ from a plain open's
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(directory)


def fsync_directory(directory: str | os.PathLike) -> None:
    """A rename in directory made durable (where the platform lets a directory be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
