"""The limits a chat template renders under, checked BEFORE each operation allocates.

A template comes from an untrusted file, and Jinja hands it Python's operators and str methods,
which allocate their whole result in one C call (`'a' * 10**10`, `'%1000000000d' % 1`,
`'x'.ljust(10**10)`, `10**10000000`): checking the output between chunks comes too late. So
every operation whose result can outgrow its inputs by more than a small factor is sized here
first, from its arguments, and refused past a limit:

- text (str/bytes) a template builds: MAX_TEXT characters (also the whole output's limit);
- lists and tuples it builds by `*`, `+`, `sum`, `batch`, `slice`: MAX_ITEMS items;
- integers: MAX_INT_BITS bits (`**`, `*`);
- containers turned into text (`{{ list }}`, `~`, `|string`, `|tojson`, `'%s' % x`): their text
  is estimated from a walk that stops at the limit, because a list can hold one list a thousand
  times (`[b] * 1000` is small; its text is not);
- time: MAX_SECONDS for a whole compile or render, enforced by a watchdog that raises in the
  rendering thread (see `within_deadline`), so a silent loop, a deep macro recursion or a long filter
  in Python is stopped wherever it is.

The limits are module globals, read at each check, so tests can lower them.
"""
from __future__ import annotations

import ctypes
import itertools
import math
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from jinja2.utils import Namespace

from pygguf.errors import ChatTemplateError

MAX_TEXT = 16 << 20             # characters: far above any context's worth of text
MAX_ITEMS = 1 << 20             # items of one list or tuple
MAX_INT_BITS = 1 << 16          # about 20,000 decimal digits
MAX_SECONDS = 10.0              # for one compile or one render

T = TypeVar("T")


class TemplateLimitError(ChatTemplateError):
    """A chat template went past one of the limits above."""


def _too_big(what: str, size: int, limit: int) -> TemplateLimitError:
    return TemplateLimitError(f"chat template exceeds its limits: {what} would be {_count(size)} (max {limit})")


def _count(n: int) -> str:
    # str() of an int past 4300 digits raises: say how big it is instead
    return str(n) if n < 10 ** 30 else f"about 2^{n.bit_length()}"


# ---- sizes -----------------------------------------------------------------------------------

def check_text(size: int, what: str = "a string") -> None:
    if size > MAX_TEXT:
        raise _too_big(what, size, MAX_TEXT)


def check_items(size: int, what: str = "a list") -> None:
    if size > MAX_ITEMS:
        raise _too_big(what, size, MAX_ITEMS)


def _is_text(x) -> bool:
    return isinstance(x, (str, bytes, bytearray))


def _is_int(x) -> bool:
    return isinstance(x, int)           # bool included: it multiplies like 0 and 1


def _leaf_size(x, escape_all: bool) -> int:
    """Characters of repr()/JSON of a non-container, estimated from above where cheap
    (escape_all: JSON with ensure_ascii, where every non-ASCII character is escaped)."""
    if isinstance(x, str):
        if x.isprintable() and not (escape_all and not x.isascii()):
            return len(x) + 2 + x.count('"') + x.count("'") + x.count("\\")
        return 12 * len(x) + 2          # escapes: \x00 (repr), \u0000 (JSON), \U0001f600 (repr), surrogate pairs
    if isinstance(x, (bytes, bytearray)):
        return 4 * len(x) + 3
    if isinstance(x, bool) or x is None:
        return 5
    if isinstance(x, int):
        return x.bit_length() * 3 // 10 + 2
    if isinstance(x, (float, range)):
        return 24 if isinstance(x, float) else 40
    try:
        return len(str(x))              # jinja's own objects (Undefined, macros, loop): short
    except Exception:
        return 32


_LEAVES = (str, bytes, bytearray, int, float, type(None), range)


def text_size(value, limit: int | None = None, *, indent: int = 0, per_item: int = 0, escape_all: bool = False,
              what: str = "the text of a value") -> int:
    """An upper estimate of len(str(value)) or of its JSON (with `indent` characters per nesting
    level and `per_item` separator characters per item), refused past `limit` (MAX_TEXT). Each
    container is walked once (its size is remembered), and counted as often as it appears: a
    list holding one list a thousand times prints it a thousand times."""
    limit = MAX_TEXT if limit is None else limit
    memo: dict[tuple[int, int], int] = {}

    def size(x, depth: int) -> int:
        if isinstance(x, _LEAVES):
            return _leaf_size(x, escape_all)
        key = (id(x), depth if indent else 0)
        if key in memo:
            return memo[key]
        total = 5                                           # brackets, or "set()"
        if isinstance(x, Namespace):
            x = object.__getattribute__(x, "_Namespace__attrs")
            total += 12                                     # "<Namespace " ... ">"
        if isinstance(x, Mapping):
            items = (part for pair in x.items() for part in pair)
            step = 2 + (per_item + indent * (depth + 1) + 1) // 2     # per key and per value
        elif isinstance(x, Collection):
            items, step = x, 2 + per_item + indent * (depth + 1)
        else:
            return _leaf_size(x, escape_all)
        for item in items:
            total += step + size(item, depth + 1)
            if total > limit:
                raise _too_big(what, total, limit)
        memo[key] = total
        return total

    total = size(value, 0)
    if total > limit:
        raise _too_big(what, total, limit)
    return total


def bounded_str(value) -> str:
    """str(value), refused when it would pass MAX_TEXT (containers are sized first)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        text_size(value)
    return str(value)


def bounded_join(parts, sep: str = "") -> str:
    """sep.join(str(part) for part in parts), sized before it is built."""
    texts, total = [], 0
    for part in parts:
        text = bounded_str(part)
        total += len(text) + len(sep)
        check_text(total, "a joined string")
        texts.append(text)
    return sep.join(texts)


def bounded_concat(chunks) -> str:
    """Environment.concat (macro bodies, {% set %} and {% filter %} blocks): their output, sized."""
    chunks = chunks if isinstance(chunks, list) else list(chunks)
    check_text(sum(len(c) for c in chunks), "a block's output")
    return "".join(chunks)


# ---- operators -------------------------------------------------------------------------------

def check_binop(operator: str, left, right) -> None:
    """Refuse `left <operator> right` when its result would pass a limit."""
    if operator == "*":
        _check_repeat(left, right)
        _check_repeat(right, left)
        if _is_int(left) and _is_int(right):
            _check_int_bits(left.bit_length() + right.bit_length(), "an integer product")
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            _check_int_bits(left.bit_length() * right, "a power")
    elif operator == "+":
        if _is_text(left) and _is_text(right):
            check_text(len(left) + len(right), "a concatenated string")
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            check_items(len(left) + len(right), "a concatenated list")
    elif operator == "%" and _is_text(left):
        check_printf(left, right)


def _check_repeat(seq, times) -> None:
    if not _is_int(times) or times <= 0:
        return
    if _is_text(seq):
        check_text(len(seq) * times, "a repeated string")
    elif isinstance(seq, (list, tuple)):
        check_items(len(seq) * times, "a repeated list")


def _check_int_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(f"chat template exceeds its limits: {what} would have {_count(bits)} bits "
                                 f"(max {MAX_INT_BITS})")


# printf-style conversions: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


def check_printf(fmt, args) -> None:
    """`fmt % args`: widths and precisions (written or taken by `*`) plus the text of the
    arguments, sized before Python builds the string."""
    text = fmt.decode("latin-1") if isinstance(fmt, (bytes, bytearray)) else fmt
    values = args if isinstance(args, tuple) else (args,)
    total = len(text)
    for width, precision, _ in _PRINTF.findall(text):
        for number in (width, precision):
            if number.isdigit():
                total += int(number) if len(number) < 12 else MAX_TEXT + 1
        check_text(total, "a %-formatted string")
    if "*" in text:
        total += sum(abs(v) for v in values if _is_int(v))
    check_text(total, "a %-formatted string")
    total += text_size(values, MAX_TEXT - total + 1, what="a %-formatted string") if values else 0
    check_text(total, "a %-formatted string")


_NUMBERS = re.compile(r"\d+")


def check_format_spec(spec: str) -> None:
    """A str.format spec (`>1000000000`, `.1000000000f`): its width and precision."""
    for number in _NUMBERS.findall(spec):
        check_text(int(number) if len(number) < 12 else MAX_TEXT + 1, "a formatted field")


# ---- str methods ---------------------------------------------------------------------------------

def _arg(args, kwargs, index: int, name: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _check_width(s, args, kwargs) -> None:
    width = _arg(args, kwargs, 0, "width", 0)
    if _is_int(width):
        check_text(max(width, len(s)), "a padded string")


def _check_expandtabs(s, args, kwargs) -> None:
    tabsize = _arg(args, kwargs, 0, "tabsize", 8)
    if _is_int(tabsize) and tabsize > 0:
        check_text(len(s) + s.count("\t" if isinstance(s, str) else b"\t") * tabsize, "an expanded string")


def replaced_size(s, old, new, count=-1) -> int:
    """len(s.replace(old, new, count)) without building it."""
    if not (_is_text(old) and _is_text(new)) or type(old) is not type(s):
        return len(s)
    hits = len(s) + 1 if len(old) == 0 else s.count(old)
    if _is_int(count) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def _check_replace(s, args, kwargs) -> None:
    count = _arg(args, kwargs, 2, "count", -1)
    check_text(replaced_size(s, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), count),
               "a replaced string")


def _check_translate(s, args, kwargs) -> None:
    table = _arg(args, kwargs, 0, "table")
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if _is_text(v)), default=1)
        check_text(len(s) * max(longest, 1), "a translated string")


TEXT_METHOD_CHECKS = {
    "ljust": _check_width, "rjust": _check_width, "center": _check_width, "zfill": _check_width,
    "expandtabs": _check_expandtabs, "replace": _check_replace, "translate": _check_translate,
}


def checked_text_method_call(method, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A str/bytes method about to be called from a template: sized, or refused. Returns the
    arguments to call it with (join's iterable is read into a list, to size it first)."""
    s, name = method.__self__, method.__name__
    if name == "join" and args:
        parts = list(args[0])
        check_items(len(parts), "a joined list")
        check_text(sum(len(p) for p in parts if _is_text(p)) + len(s) * len(parts), "a joined string")
        return (parts,) + tuple(args[1:]), kwargs
    check = TEXT_METHOD_CHECKS.get(name)
    if check is not None:
        check(s, args, kwargs)
    return args, kwargs


# ---- time --------------------------------------------------------------------------------------

class _OutOfTime(BaseException):
    """Raised inside the rendering thread by the watchdog. A BaseException, so that neither the
    template nor Jinja's `except Exception` can swallow it."""


_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int


class _Watchdog:
    """One daemon thread that raises _OutOfTime in threads past their deadline. One per process
    (started on first use, again in a forked child), because a thread per render would cost more
    than rendering a real template (~150 us against ~300 us)."""

    def __init__(self) -> None:
        self._start_afresh()
        os.register_at_fork(after_in_child=self._start_afresh)     # a child has no watchdog thread

    def _start_afresh(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, int]] = {}      # token -> (deadline, thread id)
        self._fired: dict[int, int] = {}                    # token -> thread id
        self._tokens = itertools.count()
        self._wakes_at = math.inf
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> int:
        with self._cond:
            token = next(self._tokens)
            when = time.monotonic() + seconds
            self._armed[token] = (when, threading.get_ident())
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="pygguf-template-watchdog", daemon=True)
                self._thread.start()
            elif when < self._wakes_at:
                self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        """Stop watching; a raise requested but not yet delivered is withdrawn (so it can never
        land in the caller after the body ended)."""
        with self._cond:
            self._armed.pop(token, None)
            thread_id = self._fired.pop(token, None)
            if thread_id is not None:
                _set_async_exc(thread_id, ctypes.py_object())    # NULL: withdraw a pending one

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (when, thread_id) in list(self._armed.items()):
                    if when <= now:
                        del self._armed[token]
                        _set_async_exc(thread_id, ctypes.py_object(_OutOfTime))
                        self._fired[token] = thread_id
                self._wakes_at = min((when for when, _ in self._armed.values()), default=math.inf)
                self._cond.wait(None if self._wakes_at == math.inf else self._wakes_at - now)


_WATCHDOG = _Watchdog()


def within_deadline(run: Callable[[], T], what: str) -> T:
    """run() with MAX_SECONDS to finish: past it, the watchdog raises _OutOfTime in this thread at
    its next bytecode (a loop's next turn, a macro's next call), and that becomes one
    TemplateLimitError. No single C call runs long meanwhile: the size checks bound each one.
    Every place the raise can land is inside the outer try."""
    seconds = MAX_SECONDS
    try:
        token = None
        try:
            token = _WATCHDOG.arm(seconds)
            return run()
        finally:
            if token is not None:
                _WATCHDOG.disarm(token)
    except _OutOfTime:
        raise TemplateLimitError(f"chat template took more than {seconds:g} s to {what}") from None
