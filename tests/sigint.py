"""Ctrl+C in tests, whatever SIGINT disposition the test run inherited.

A job started in the background (`make test &`, `(trap '' INT; make test) &`) starts with SIGINT
ignored, and every child inherits that through fork and exec: a Python child then never installs
its KeyboardInterrupt handler, and a Ctrl+C sent to it does nothing. So a test that sends SIGINT
to a child restores the default action in the child (`preexec_fn=default_sigint_in_child`), and
tests run as such a job would (`sigint_as(signal.SIG_IGN)`), to prove they do not depend on it.
"""
from __future__ import annotations

import contextlib
import signal


def default_sigint_in_child() -> None:
    """preexec_fn for subprocess.Popen and pexpect.spawn: SIGINT's default action in the child
    before it execs (Python then installs its KeyboardInterrupt handler at start-up)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def sigint_as(handler):
    """SIGINT handled by `handler` in this process for the block, then what it was before."""
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
