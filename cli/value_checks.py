"""The ranges of the command's values, checked by the params that own them (SamplerParams,
pygguf.model.context_args) before the model loads, told in the user's terms: the flag, the value,
what is accepted (`error: --top-p -1: must be in [0, 1] (1 = off)`, one line, exit 1). Values that
llama.cpp reads in a way of its own are accepted with a warning saying so."""
from __future__ import annotations

from dataclasses import fields

import click

from pygguf.errors import BadValue, shown_value
from pygguf.sampling import SamplerParams
from pygguf_cli.llama_flags import TYPED_FLAGS
from pygguf_cli.output import warn

_SAMPLER_FIELDS = {f.name for f in fields(SamplerParams)}
_CONTEXT_FIELDS = ("n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch", "rope_freq_base",
                   "rope_freq_scale")


def flag_of(field: str) -> str:
    """The option that sets `field` as the user typed it (`-c`, `--ctx_size`): pygguf_cli.argv
    records the spelling behind each name Click sees; else the option's long name."""
    ctx = click.get_current_context(silent=True)
    typed = ctx.meta.get(TYPED_FLAGS, {}) if ctx is not None else {}
    for param in ctx.command.params if ctx is not None else ():
        if param.name == field and getattr(param, "opts", None):
            names = param.opts + param.secondary_opts
            return next((typed[name] for name in names if name in typed),
                        next((opt for opt in param.opts if opt.startswith("--")), param.opts[0]))
    return field


def _refuse(e: BadValue) -> click.UsageError:
    return click.UsageError(f"{flag_of(e.field)} {e.shown}: {e.problem}")


def check_sampling(given: dict) -> None:
    """The given sampling options, as SamplerParams checks them."""
    try:
        params = SamplerParams(**{k: v for k, v in given.items() if k in _SAMPLER_FIELDS})
    except BadValue as e:
        raise _refuse(e) from None
    for field, note in params.notes():
        warn(f"{flag_of(field)} {shown_value(getattr(params, field))}: {note}")


def check_model(given: dict, default_n_batch: int) -> dict:
    """The given model options, checked; llama.cpp's zeros made explicit: -ub 0 is -b's value,
    --rope-freq-base/--rope-freq-scale 0 is the model's own (as not given)."""
    from pygguf.model.context_args import check_context_args  # only when a model option is built
    try:
        notes = check_context_args(**{k: v for k, v in given.items() if k in _CONTEXT_FIELDS})
    except BadValue as e:
        raise _refuse(e) from None
    for field, note in notes:
        warn(f"{flag_of(field)} {shown_value(given[field])}: {note}")
    checked = dict(given)
    if checked.get("n_ubatch") == 0:
        checked["n_ubatch"] = checked.get("n_batch", default_n_batch)
    for rope in ("rope_freq_base", "rope_freq_scale"):
        if checked.get(rope) == 0:
            checked.pop(rope)
    return checked
