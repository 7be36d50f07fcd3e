"""One call at a time on an engine: the turns a Llama's callers take.

An engine (its slots, their cached tokens, its batch, the model's KV cache and thread pool) serves
one call at a time: two threads stepping it together mix their tokens into each other's cache
cells. So a call takes the turn and gives it back when it returns, and a call from another thread
waits for it. A stream takes the turn when it is first read (one created and never read holds
nothing) and keeps it until it ends, is closed or is dropped (the generator's cleanup gives it
back), so its chunks come from one uninterrupted run, the same text as the call without stream.

A thread never waits for itself. A call made while a stream of the same thread holds the turn
between two chunks (read partway and left open, or a call in the loop that reads it) takes the
turn over: the stream, read on, ends at once with the finish reason INTERRUPTED (the API's
"length"), as a single-threaded caller has always seen. A call made while the same thread is
inside a call (from a callback or a signal handler) is refused with ReentrantCall.

So what waits is another thread's call while a stream is open: a stream read partway and kept
(not closed, not dropped) in one thread makes the others wait until it is closed.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from pygguf.errors import PyggufError


class ReentrantCall(PyggufError, RuntimeError):
    """A call into a Llama from inside one of its own calls on the same thread."""


@dataclass(eq=False)
class Turn:
    thread: int                 # the thread that runs it now, or last ran the stream holding it
    running: bool = True        # False while a stream waits between two chunks
    taken_over: bool = False    # a later call of the same thread took it from a paused stream


class Turns:
    def __init__(self):
        # reentrant: a stream dropped in a reference cycle is finalized by the garbage collector,
        # which may run inside take() on this very thread and give its turn back
        self._cond = threading.Condition(threading.RLock())
        self._holder: Turn | None = None

    @contextmanager
    def call(self) -> Iterator[Turn]:
        """Hold the turn for the duration of the block (a whole call, or a whole stream)."""
        turn = self._take()
        try:
            yield turn
        finally:
            self._give_back(turn)

    @contextmanager
    def paused(self, turn: Turn) -> Iterator[None]:
        """Around a stream's yield: while the consumer has the chunk, a call of the consumer's
        thread may take the turn over (see the top); afterwards, turn.taken_over says so."""
        with self._cond:
            turn.running = False
        try:
            yield
        finally:
            with self._cond:
                turn.running = not turn.taken_over
                turn.thread = threading.get_ident()

    def _take(self) -> Turn:
        me = threading.get_ident()
        with self._cond:
            while self._holder is not None:
                holder = self._holder
                if holder.thread == me:
                    if holder.running:
                        raise ReentrantCall("a Llama was called from inside one of its own calls on the same "
                                            "thread; call it after that call returns")
                    holder.taken_over = True        # this thread's stream, paused: it ends when read on
                    break
                self._cond.wait()
            self._holder = turn = Turn(me)
            return turn

    def _give_back(self, turn: Turn) -> None:
        with self._cond:
            if self._holder is turn:
                self._holder = None
                self._cond.notify()
