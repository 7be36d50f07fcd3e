"""--mlock: the model's bytes locked in RAM with mlock(2), so the kernel never drops its pages
(a mapped file's pages are otherwise reclaimable page cache, re-read from disk when touched).

A lock the limits forbid is not an error, as in llama.cpp: one warning with the numbers (the bytes
asked for, RLIMIT_MEMLOCK) and the model runs unlocked. When the soft limit is too low but the hard
one allows it, the soft limit is raised first (an unprivileged process may do that).

The C loader hands back the file pages under each matrix it repacks (csrc/model/weights.c): it
unlocks them first, since the kernel refuses to drop locked pages and both copies would stay.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

try:
    import resource
except ImportError:                     # not POSIX
    resource = None

log = logging.getLogger("pygguf")


@dataclass(frozen=True)
class LockedRange:
    address: int
    size: int

    def unlock(self) -> None:
        libc = _libc()
        if libc is not None:
            libc.munlock(ctypes.c_void_p(self.address), ctypes.c_size_t(self.size))


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.mlock.argtypes = libc.munlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        return libc
    except (OSError, AttributeError):   # no libc with mlock (Windows)
        return None


def _mlock(address: int, size: int) -> int:
    """0, or the errno of mlock(2)"""
    libc = _libc()
    if libc is None:
        return errno.ENOSYS
    if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(size)) == 0:
        return 0
    return ctypes.get_errno()


def lock(buffer, what: str = "model", mlock: Callable[[int, int], int] | None = None) -> LockedRange | None:
    """Lock the whole buffer (an mmap or any other buffer); None, after one warning, when the
    system refuses. `mlock(address, size) -> errno` (default: mlock(2)) is replaceable for tests."""
    mlock = mlock or _mlock
    view = np.frombuffer(buffer, dtype=np.uint8)
    address, size = view.ctypes.data, view.nbytes
    del view                            # no export left behind: the mapping must stay closable
    err = mlock(address, size)
    if err in (errno.ENOMEM, errno.EPERM, errno.EAGAIN) and _raise_soft_limit(size):
        err = mlock(address, size)
    if err == 0:
        return LockedRange(address, size)
    log.warning(refusal(what, size, err))
    return None


def _raise_soft_limit(size: int) -> bool:
    """Raise RLIMIT_MEMLOCK's soft limit to the hard one when that makes room for size bytes."""
    if resource is None:
        return False
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY or (hard != resource.RLIM_INFINITY and hard < size) or soft >= hard:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    except (ValueError, OSError):
        return False
    return True


def refusal(what: str, size: int, err: int) -> str:
    """The one warning: what failed, the bytes, the reason and the limit in force."""
    reason = os.strerror(err) if err else "refused"
    limit = ""
    if resource is not None:
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        limit = f"; RLIMIT_MEMLOCK is {_size(soft)} (hard limit {_size(hard)}): raise it with `ulimit -l` (as root)"
    return (f"warning: failed to mlock the {what}'s {_size(size)} ({size} bytes): {reason}{limit}; "
            f"running without the lock")


def _size(n: int) -> str:
    if resource is not None and n == resource.RLIM_INFINITY:
        return "unlimited"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"
