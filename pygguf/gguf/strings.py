"""Fast reading of GGUF string arrays (a vocabulary is ~50k-250k strings) through csrc/gguf_strings.c.

C checks every inline length against the mapping and copies the payloads back to back; Python then
decodes them with ONE decode and cuts the text at the code-point ends C counted. That is exact only
when every string is well-formed UTF-8 on its own (so no character straddles two strings): C checks
that too. Anything else (a truncated or hostile array, a non-UTF-8 token, no extension) returns
None and the reader's per-string loop, the reference, does the work and raises the precise error.
"""
from __future__ import annotations

import numpy as np

try:
    from pygguf._native import ffi, lib
    HAVE_NATIVE = hasattr(lib, "pg_gguf_scan_strings")
except ImportError:       # extension not built
    ffi = lib = None
    HAVE_NATIVE = False

MIN_COUNT = 64   # below this the Python loop is as fast as the setup here


def read_strings(mapped: np.ndarray, offset: int, count: int) -> tuple[list[str], int] | None:
    """(strings, offset past the array) for `count` records at `offset` in the mapped file, or None."""
    if not HAVE_NATIVE or count < MIN_COUNT or not 0 <= offset <= mapped.nbytes:
        return None
    base = ffi.cast("const uint8_t *", mapped.ctypes.data)
    size = mapped.nbytes
    byte_ends = np.empty(count, dtype=np.uint64)
    char_ends = np.empty(count, dtype=np.uint64)
    end = ffi.new("uint64_t *")
    status = lib.pg_gguf_scan_strings(base, size, offset, count, _u64(byte_ends), _u64(char_ends), end)
    if status != 0:
        return None
    payload = np.empty(int(byte_ends[-1]), dtype=np.uint8)
    if lib.pg_gguf_gather_strings(base, size, offset, count, ffi.cast("uint8_t *", payload.ctypes.data),
                                  payload.nbytes) != 0:
        return None
    try:
        text = str(payload, "utf-8")
    except UnicodeDecodeError:      # C and Python disagree on UTF-8: let the reference decide
        return None
    stops = char_ends.tolist()
    starts = [0, *stops[:-1]]
    return [text[a:b] for a, b in zip(starts, stops)], end[0]


def _u64(a: np.ndarray):
    return ffi.cast("uint64_t *", a.ctypes.data)
