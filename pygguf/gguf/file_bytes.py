"""A GGUF file's bytes in memory, as llama.cpp holds them: mapped from the file (the default, its
mmap), or read into memory of the process's own (--no-mmap: nothing is read from the file after
the load, which suits a file on a slow or network disk, or one that may change underneath).

Both give an `mmap.mmap`: page-aligned (the C kernels may read a block with aligned loads),
sliceable into bytes (the reader decodes strings from slices) and closed the same way.
"""
from __future__ import annotations

import mmap
import os

from pygguf.errors import GGUFError, GGUFTruncatedError

MIN_FILE_BYTES = 4 + 4 + 8 + 8          # magic, version, tensor count, metadata count
READ_CHUNK = 64 << 20                   # one read() call at most: a progress point for Ctrl+C


def file_bytes(path: str, use_mmap: bool = True) -> mmap.mmap:
    """The whole file, mapped read-only (use_mmap) or read into anonymous memory; GGUFError
    names the file when it cannot be opened or read, or is too short to be a GGUF file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < MIN_FILE_BYTES:
                raise GGUFTruncatedError(path, f"truncated header: {size} bytes, a GGUF header needs {MIN_FILE_BYTES}")
            if use_mmap:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            return _read_whole(f, size, path)
    except OSError as e:
        raise GGUFError(path, f"cannot open: {e.strerror or e}") from None


def _read_whole(f, size: int, path: str) -> mmap.mmap:
    buffer = mmap.mmap(-1, size)        # anonymous, private, zero pages until written
    try:
        with memoryview(buffer) as view:
            filled = 0
            while filled < size:
                n = f.readinto(view[filled:filled + READ_CHUNK])
                if not n:
                    raise GGUFTruncatedError(path, f"the file ended at {filled} of its {size} bytes while it was read")
                filled += n
    except BaseException:
        buffer.close()
        raise
    return buffer
