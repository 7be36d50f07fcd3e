"""Sampler parameters: llama.cpp's defaults (common.h) and its default chain order, stated once.

Every front end (the CLI's flags, the API's keyword arguments, batch records) takes its sampling
defaults from `SamplerParams`; `--samplers` / `--sampling-seq` spellings are parsed here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Sequence

from pygguf.errors import SamplerError

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
