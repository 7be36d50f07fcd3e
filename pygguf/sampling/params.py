"""Sampler parameters: llama.cpp's defaults (common.h) and its default chain order, stated once.

Every front end (the CLI's flags, the API's keyword arguments, batch records) takes its sampling
defaults from `SamplerParams`; `--samplers` / `--sampling-seq` spellings are parsed here too.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Sequence

from pygguf.errors import SamplerError, SamplerValueError

# Tokens a batch record generates unless it says otherwise (the API's max_tokens default is 16).
BATCH_N_PREDICT = 256

# The default chain, in llama.cpp's order (common.h); `--samplers` / `--sampling-seq` reorder it.
DEFAULT_SAMPLERS = "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature"

# canonical --samplers names, their accepted alternative spellings, and the --sampling-seq letters
_CANONICAL = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
              "temperature")
_ALT_NAMES = {
    "top-k": "top_k", "top-p": "top_p", "nucleus": "top_p", "top-n-sigma": "top_n_sigma",
    "typical-p": "typ_p", "typical": "typ_p", "typ-p": "typ_p", "typ": "typ_p",
    "min-p": "min_p", "temp": "temperature",
}
_LETTERS = {"e": "penalties", "d": "dry", "s": "top_n_sigma", "k": "top_k", "y": "typ_p",
            "p": "top_p", "m": "min_p", "x": "xtc", "t": "temperature"}
_UNSUPPORTED = {"infill", "adaptive_p", "adaptive-p", "i", "a", "tfs_z", "tfs-z", "tfs"}


@dataclass
class SamplerParams:
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: list[str] = field(default_factory=lambda: ["\n", ":", "\"", "*"])
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    top_n_sigma: float = -1.0
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    mirostat: int = 0
    mirostat_lr: float = 0.1
    mirostat_ent: float = 5.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    samplers: str = DEFAULT_SAMPLERS   # ';'-separated names, or --sampling-seq letters
    seed: int = -1
    min_keep: int = 0
    grammar: str = ""                  # GBNF text the output must match ("": none); -j converts a schema to it

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Every field's type and range, as llama.cpp accepts them (common/arg.cpp, its samplers):
        a SamplerValueError naming the field, else numbers normalised (an integral float given
        for an int field becomes an int). Values llama.cpp clamps or treats as "off" are kept,
        with the same effect; `notes()` says what they do."""
        for name, rule in _RULES.items():
            setattr(self, name, rule(name, getattr(self, name)))
        self.logit_bias = {_as_int("logit_bias", token, 0, _INT32_MAX): _bias_value(value)
                           for token, value in dict(self.logit_bias).items()}

    def notes(self) -> list[tuple[str, str]]:
        """(field, what its value does) for values llama.cpp clamps or treats as "off"."""
        found = []
        for name, (test, note) in _NOTES.items():
            if test(self):
                found.append((name, note))
        return found


# ---- the fields' ranges (llama.cpp's: common/arg.cpp and src/llama-sampler.cpp) -----------------

_INT32_MIN, _INT32_MAX = -2 ** 31, 2 ** 31 - 1
_FLOAT32_TINY = 1.0 / 3.4028234663852886e38     # below it, llama.cpp's 1/repeat_penalty overflows


def _as_int(name: str, value, low: int, high: int, what: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SamplerValueError(name, value, "must be an integer")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(value) or value != int(value):
            raise SamplerValueError(name, value, "must be an integer")
    number = int(value)
    if not low <= number <= high:
        raise SamplerValueError(name, value, what or f"must be an integer in [{low}, {high}]")
    return number


def _as_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SamplerValueError(name, value, "must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise SamplerValueError(name, value, "must be a finite number")
    return number


def _number(low: float | None = None, what: str = "", above: bool = False):
    """A finite number, at least `low` (above: more than it)."""
    def rule(name, value):
        number = _as_number(name, value)
        if low is not None and (number < low or (above and number == low)):
            raise SamplerValueError(name, value, what)
        return number
    return rule


def _integer(low: int = _INT32_MIN, high: int = _INT32_MAX, what: str | None = None):
    return lambda name, value: _as_int(name, value, low, high, what)


def _clamped_integer(name, value) -> int:
    """Any integer, clamped into llama.cpp's int32: past the vocabulary size every value means the same."""
    return min(max(_as_int(name, value, -math.inf, math.inf), _INT32_MIN), _INT32_MAX)


def _repeat_penalty(name, value) -> float:
    number = _as_number(name, value)
    if number <= 0.0 or number < _FLOAT32_TINY:
        raise SamplerValueError(name, value, "must be greater than 0 (1.0 = off), as in llama.cpp")
    return number


def _bias_value(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value == math.inf:
        raise SamplerValueError("logit_bias", value, "a bias must be a number below +inf (-inf bans the token)")
    return float(value)


def _text(name, value) -> str:
    if not isinstance(value, str):
        raise SamplerValueError(name, value, "must be a string")
    return value


def _sampler_spec(name, value):
    """';'-separated names or sequence letters, or a list of names (parse_samplers reads both)."""
    if isinstance(value, str) or isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return value
    raise SamplerValueError(name, value, "must be a string of sampler names or letters, or a list of names")


def _boolean(name, value) -> bool:
    if not isinstance(value, (bool, int)) or isinstance(value, int) and value not in (0, 1):
        raise SamplerValueError(name, value, "must be true or false")
    return bool(value)


def _breakers(name, value) -> list[str]:
    if isinstance(value, str) or not all(isinstance(b, str) for b in value):
        raise SamplerValueError(name, value, "must be a list of strings")
    return list(value)


_PROBABILITY = "must be in [0, 1]"
_RULES = {
    "temp": _number(),                                          # <= 0: greedy
    "top_k": _clamped_integer,                                  # <= 0: off; >= the vocabulary: all
    "top_p": _number(0.0, _PROBABILITY + " (1 = off)"),         # >= 1: off
    "min_p": _number(),                                         # <= 0: off
    "typical_p": _number(0.0, _PROBABILITY + " (1 = off)"),     # >= 1: off
    "repeat_penalty": _repeat_penalty,
    "repeat_last_n": _integer(0, what="must be an integer in [0, 2147483647] (0 = off)"),
    "presence_penalty": _number(),
    "frequency_penalty": _number(),
    "dry_multiplier": _number(),
    "dry_base": _number(),                                      # < 1: DRY off
    "dry_allowed_length": _integer(),
    "dry_penalty_last_n": _integer(-1, what="must be an integer in [-1, 2147483647] (-1 = the context size, 0 = off)"),
    "dry_sequence_breakers": _breakers,
    "xtc_probability": _number(0.0, _PROBABILITY + " (0 = off)"),
    "xtc_threshold": _number(0.0, "must be >= 0 (above 0.5 = off)"),
    "top_n_sigma": _number(),                                   # <= 0: off
    "dynatemp_range": _number(),                                # <= 0: off
    "dynatemp_exponent": _number(0.0, "must be >= 0"),          # (0 entropy)^negative has no value
    "mirostat": _integer(0, 2, "must be 0 (off), 1 or 2"),
    "mirostat_lr": _number(),
    "mirostat_ent": _number(),
    "ignore_eos": _boolean,
    "samplers": _sampler_spec,
    "seed": _integer(-2 ** 63, 2 ** 64 - 1),                    # llama.cpp's stoul range, used mod 2^32
    "min_keep": _integer(0, what="must be an integer in [0, 2147483647]"),
    "grammar": _text,
}

# values llama.cpp accepts and gives a meaning beyond the field's plain range
_NOTES = {
    "top_p": (lambda p: p.top_p > 1.0, "above 1 turns top-p off, as 1.0 does (llama.cpp's rule)"),
    "typical_p": (lambda p: p.typical_p > 1.0, "above 1 turns typical sampling off, as 1.0 does (llama.cpp's rule)"),
    "xtc_probability": (lambda p: p.xtc_probability > 1.0, "above 1 applies XTC at every step, as 1.0 does"),
    "dry_base": (lambda p: p.dry_base < 1.0 and p.dry_multiplier != 0.0, "below 1 turns DRY off (llama.cpp's rule)"),
    "seed": (lambda p: not -1 <= p.seed < 2 ** 32, "is used modulo 2^32, as llama.cpp does"),
}


def parse_logit_bias(spec: str) -> tuple[int, float]:
    """Parse llama.cpp's `-l/--logit-bias TOKEN_ID(+/-)BIAS`, e.g. '15043+1', '2-inf'."""
    text = spec.strip()
    digits = 0
    while digits < len(text) and text[digits].isdigit():
        digits += 1
    if digits == 0:
        raise SamplerError(f"invalid logit bias {spec!r}: expected TOKEN_ID(+/-)BIAS, e.g. 15043+1 or 2-inf")
    if digits == len(text) or text[digits] not in "+-":
        raise SamplerError(f"invalid logit bias {spec!r}: the token id must be followed by + or - and the bias")
    sign = -1.0 if text[digits] == "-" else 1.0
    value = text[digits + 1:].strip()
    try:
        magnitude = float(value)
    except ValueError:
        raise SamplerError(f"invalid logit bias {spec!r}: {value!r} is not a number") from None
    if math.isnan(magnitude):
        raise SamplerError(f"invalid logit bias {spec!r}: the bias is NaN")
    return int(text[:digits]), sign * magnitude


def parse_sampler_names(spec: str | Sequence[str]) -> list[str]:
    """`--samplers "top_k;top_p;temperature"` (or a list of names) -> canonical names."""
    names = [spec] if isinstance(spec, str) else list(spec)
    parts = [part.strip() for item in names for part in item.split(";") if part.strip()]
    return [_canonical(name, letters=False) for name in parts]


def parse_sampling_seq(letters: str) -> list[str]:
    """`--sampling-seq edskypmxt` -> canonical names."""
    return [_canonical(ch, letters=True) for ch in letters.strip()]


def parse_samplers(spec: str | Sequence[str]) -> list[str]:
    """SamplerParams.samplers: a ';'-separated list of names, or a string of sequence letters."""
    if isinstance(spec, str):
        text = spec.strip()
        if ";" not in text and text not in _CANONICAL and text not in _ALT_NAMES \
                and all(ch in _LETTERS or ch in _UNSUPPORTED for ch in text):
            return parse_sampling_seq(text)
    return parse_sampler_names(spec)


def _canonical(name: str, *, letters: bool) -> str:
    canonical = _LETTERS.get(name) if letters else (name if name in _CANONICAL else _ALT_NAMES.get(name))
    if canonical is not None:
        return canonical
    if name in _UNSUPPORTED:
        raise SamplerError(f"sampler {name!r} is not supported by pygguf")
    if letters:
        raise SamplerError(f"unknown sampler letter {name!r} in --sampling-seq; known: {''.join(_LETTERS)}")
    raise SamplerError(f"unknown sampler {name!r}; known: {', '.join(_CANONICAL)} "
                       f"(and {', '.join(_ALT_NAMES)})")


def default(name: str):
    """SamplerParams' default for one field (what an API keyword or batch record falls back to)."""
    for f in fields(SamplerParams):
        if f.name == name:
            return f.default
    raise KeyError(name)
