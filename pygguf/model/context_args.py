"""The context arguments a model is loaded with (-c, -b, -ub, -t, -tb, --rope-freq-base,
--rope-freq-scale; Llama(n_ctx=, n_batch=, n_threads=)), checked against llama.cpp's ranges before
anything is loaded. One place, used by Model.load (so the API gets it) and by the CLI (which names
the flag). Values llama.cpp gives a meaning of their own are accepted, and `notes` says so."""
from __future__ import annotations

import math
import numbers

from pygguf.errors import ContextValueError

INT32_MAX = 2 ** 31 - 1

# field -> (lowest accepted, what the message says)
_INTEGERS = {
    "n_ctx": (0, "must be an integer in [0, 2147483647] (0 = the model's training context)"),
    "n_batch": (1, "must be an integer in [1, 2147483647]"),
    "n_ubatch": (0, "must be an integer in [0, 2147483647] (0 = the same as n_batch)"),
    "n_threads": (-2 ** 31, "must be an integer (<= 0: one per physical core)"),
    "n_threads_batch": (-2 ** 31, "must be an integer (<= 0: the same as n_threads)"),
}
_RATIOS = {
    "rope_freq_base": "must be a finite number >= 0 (0 = from the model)",
    "rope_freq_scale": "must be a finite number >= 0 (0 = from the model)",
}


def check_context_args(**values) -> list[tuple[str, str]]:
    """Raise ContextValueError for the first value out of range (None = not given); return
    (field, note) for values llama.cpp reads in its own way (0 = from the model, ...)."""
    notes = []
    for name, value in values.items():
        if value is None:
            continue
        if name in _INTEGERS:
            low, problem = _INTEGERS[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= INT32_MAX:
                raise ContextValueError(name, value, problem)
        elif name in _RATIOS:
            number = _finite(value)
            if number is None or number < 0:
                raise ContextValueError(name, value, _RATIOS[name])
            if number == 0:
                notes.append((name, "0 means: from the model (llama.cpp's rule)"))
        else:
            raise TypeError(f"check_context_args: unknown argument {name!r}")
    if values.get("n_ubatch") == 0:
        notes.append(("n_ubatch", "0 means: the same as n_batch (llama.cpp's rule)"))
    return notes


def _finite(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
