"""The `pygguf` command's options, in bundles, each building the params object it stands for.

Every llama.cpp spelling is declared (llama.cpp also accepts `_` for `-` in long names, so
`--repeat_penalty` is declared beside `--repeat-penalty`). Options default to None, meaning
"not given": the defaults live once, in the params dataclasses (GenerationParams, ModelParams,
pygguf.sampling.SamplerParams); the help texts read them from there.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path

import click

from pygguf.sampling import SamplerParams
from pygguf_cli.argv import ON_OFF_AUTO
from pygguf_cli.escapes import process_escapes
from pygguf_cli.streams import MAX_PROMPT_BYTES, InputTooLong, read_file_capped
from pygguf_cli.value_checks import check_model, check_sampling


@dataclass(frozen=True)
class ModelParams:
    path: Path | None = None            # None: the default model (pygguf_cli.paths)
    n_ctx: int = 0                      # context size in tokens; 0 = the model's training context
    n_threads: int = -1                 # <= 0: one per physical core
    n_threads_batch: int = -1           # <= 0: same as n_threads
    n_batch: int = 2048                 # logical batch (llama.cpp -b)
    n_ubatch: int = 512                 # physical batch: most tokens per model.decode (-ub)
    n_gpu_layers: int | str | None = None   # N, "auto" or "all": accepted for compatibility; there is no GPU backend
    rope_freq_base: float | None = None     # None: from the GGUF
    rope_freq_scale: float | None = None    # None: from the GGUF
    cache_type_k: str = "f16"           # KV cache types (-ctk/-ctv): f16, q8_0, q4_0
    cache_type_v: str = "f16"
    use_mmap: bool = True               # map the GGUF file (--no-mmap: read it into memory)
    use_mlock: bool = False             # lock the model in RAM (--mlock; a warning if the limit forbids it)


# pygguf.model.kv_cache.CACHE_TYPES, written out so `--help` does not load the C extension (a test
# keeps the two equal)
CACHE_TYPES = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class GenerationParams:
    n_predict: int = -1             # tokens to generate; -1 until end of generation, -2 until the context is full
    n_keep: int = 0                 # prompt tokens kept by a context shift (BOS kept on top); -1 = whole prompt
    ignore_eos: bool = False        # never sample an end-of-generation token
    reverse_prompts: tuple[str, ...] = ()   # stop strings (-r), matched on the generated text
    context_shift: bool = True      # when the context fills: shift it (True) or stop (False)
    special: bool = False           # -sp: special tokens (<|im_end|>, ...) printed as text


@dataclass(frozen=True)
class DisplayParams:
    color: bool = False                 # colour prompt vs generation (only on a terminal): --color on|auto
    display_prompt: bool = True         # echo the prompt before the generated text
    verbose_prompt: bool = False        # print the prompt's tokens on stderr
    json: bool = False                  # one JSON object on stdout instead of streaming


def spellings(*names: str) -> list[str]:
    """The names as given, each dashed long name followed by its underscore twin."""
    out: list[str] = []
    for name in names:
        out.append(name)
        if name.startswith("--") and "-" in name[2:]:
            out.append("--" + name[2:].replace("-", "_"))
    return out


def _default(cls, name: str) -> str:
    for f in fields(cls):
        if f.name == name:
            return f"default: {f.default}"
    raise KeyError(name)


def _bundle(target: str, options: list, build):
    """Decorator: add `options` to a command and hand their values to it as one `target` argument.

    `build(values)` receives the options' values (None = not given) and returns the object.
    """
    names = [opt_name for opt_name, _ in options]

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in names}
            kwargs[target] = build(values)
            return f(*args, **kwargs)
        for _, option in reversed(options):
            wrapper = option(wrapper)
        return wrapper
    return decorate


def _given(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


# ---- model ------------------------------------------------------------------------------------

class _GpuLayers(click.ParamType):
    """-ngl N|auto|all, as today's llama.cpp takes it."""
    name = "N|auto|all"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value in ("auto", "all"):
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number, 'auto' or 'all'", param, ctx)


GPU_LAYERS = _GpuLayers()

_MODEL_OPTIONS = [
    ("path", click.option(*spellings("-m", "--model"), "path", type=click.Path(path_type=Path),
                          help="GGUF model file (default: the SmolLM2-135M-Instruct Q4_1 that `make model` fetches)")),
    ("n_ctx", click.option(*spellings("-c", "--ctx-size"), "n_ctx", type=int,
                           help=f"context size in tokens, 0 = from the model ({_default(ModelParams, 'n_ctx')})")),
    ("n_threads", click.option(*spellings("-t", "--threads"), "n_threads", type=int,
                               help="threads for generation (default: one per physical core; capped at the usable CPUs)")),
    ("n_threads_batch", click.option(*spellings("-tb", "--threads-batch"), "n_threads_batch", type=int,
                                     help="threads for prompt processing (default: same as --threads)")),
    ("n_batch", click.option(*spellings("-b", "--batch-size"), "n_batch", type=int,
                             help=f"logical batch size ({_default(ModelParams, 'n_batch')})")),
    ("n_ubatch", click.option(*spellings("-ub", "--ubatch-size"), "n_ubatch", type=int,
                              help=f"physical batch size ({_default(ModelParams, 'n_ubatch')})")),
    ("n_gpu_layers", click.option(*spellings("-ngl", "--gpu-layers", "--n-gpu-layers"), "n_gpu_layers", type=GPU_LAYERS,
                                  help="accepted for llama.cpp compatibility; ignored (CPU only)")),
    ("rope_freq_base", click.option(*spellings("--rope-freq-base"), "rope_freq_base", type=float,
                                    help="RoPE base frequency (default: from the model)")),
    ("rope_freq_scale", click.option(*spellings("--rope-freq-scale"), "rope_freq_scale", type=float,
                                     help="RoPE frequency scaling factor (default: from the model)")),
    ("cache_type_k", click.option(*spellings("-ctk", "--cache-type-k"), "cache_type_k",
                                  type=click.Choice(CACHE_TYPES, case_sensitive=False),
                                  help=f"KV cache type for K ({_default(ModelParams, 'cache_type_k')})")),
    ("cache_type_v", click.option(*spellings("-ctv", "--cache-type-v"), "cache_type_v",
                                  type=click.Choice(CACHE_TYPES, case_sensitive=False),
                                  help=f"KV cache type for V ({_default(ModelParams, 'cache_type_v')})")),
    ("use_mmap", click.option("--mmap/--no-mmap", "use_mmap", default=None,
                              help="map the model file (default), or read it into memory (slower load; "
                                   "nothing is read from the file afterwards)")),
    ("use_mlock", click.option("--mlock", "use_mlock", is_flag=True, default=None,
                               help="lock the model in RAM so it is never paged out (a warning, and no "
                                    "lock, when RLIMIT_MEMLOCK forbids it)")),
]


def _build_model_params(values: dict) -> ModelParams:
    return ModelParams(**check_model(_given(values), ModelParams.n_batch))


model_options = _bundle("model", _MODEL_OPTIONS, _build_model_params)


# ---- sampling ---------------------------------------------------------------------------------
# Names are pygguf.sampling.SamplerParams fields; the command builds SamplerParams(**given).

_SAMPLING_OPTIONS = [
    ("temp", click.option(*spellings("--temp", "--temperature"), "temp", type=float, help="temperature; <= 0 is greedy" f" ({_default(SamplerParams, 'temp')})")),
    ("top_k", click.option(*spellings("--top-k"), "top_k", type=int, help="top-k sampling, <= 0 = off" f" ({_default(SamplerParams, 'top_k')})")),
    ("top_p", click.option(*spellings("--top-p"), "top_p", type=float, help="top-p sampling, 1.0 = off" f" ({_default(SamplerParams, 'top_p')})")),
    ("min_p", click.option(*spellings("--min-p"), "min_p", type=float, help="min-p sampling, 0.0 = off" f" ({_default(SamplerParams, 'min_p')})")),
    ("typical_p", click.option(*spellings("--typical", "--typical-p"), "typical_p", type=float,
                               help="locally typical sampling, 1.0 = off" f" ({_default(SamplerParams, 'typical_p')})")),
    ("repeat_penalty", click.option(*spellings("--repeat-penalty"), "repeat_penalty", type=float,
                                    help="penalise repeated tokens, 1.0 = off" f" ({_default(SamplerParams, 'repeat_penalty')})")),
    ("repeat_last_n", click.option(*spellings("--repeat-last-n"), "repeat_last_n", type=int,
                                   help="last N tokens (prompt included) the penalties look at, 0 = off" f" ({_default(SamplerParams, 'repeat_last_n')})")),
    ("presence_penalty", click.option(*spellings("--presence-penalty"), "presence_penalty", type=float,
                                      help="presence penalty, 0.0 = off" f" ({_default(SamplerParams, 'presence_penalty')})")),
    ("frequency_penalty", click.option(*spellings("--frequency-penalty"), "frequency_penalty", type=float,
                                       help="frequency penalty, 0.0 = off" f" ({_default(SamplerParams, 'frequency_penalty')})")),
    ("seed", click.option(*spellings("-s", "--seed"), "seed", type=int, help="RNG seed, -1 = random" f" ({_default(SamplerParams, 'seed')})")),
    ("top_n_sigma", click.option(*spellings("--top-nsigma", "--top-n-sigma"), "top_n_sigma", type=float,
                                 help="top-n-sigma sampling, <= 0 = off" f" ({_default(SamplerParams, 'top_n_sigma')})")),
    ("dynatemp_range", click.option(*spellings("--dynatemp-range"), "dynatemp_range", type=float,
                                    help="dynamic temperature range, 0.0 = off" f" ({_default(SamplerParams, 'dynatemp_range')})")),
    ("dynatemp_exponent", click.option(*spellings("--dynatemp-exp"), "dynatemp_exponent", type=float,
                                       help="dynamic temperature exponent" f" ({_default(SamplerParams, 'dynatemp_exponent')})")),
    ("xtc_probability", click.option(*spellings("--xtc-probability"), "xtc_probability", type=float,
                                     help="XTC probability, 0.0 = off" f" ({_default(SamplerParams, 'xtc_probability')})")),
    ("xtc_threshold", click.option(*spellings("--xtc-threshold"), "xtc_threshold", type=float,
                                   help="XTC threshold, > 0.5 = off" f" ({_default(SamplerParams, 'xtc_threshold')})")),
    ("mirostat", click.option(*spellings("--mirostat"), "mirostat", type=int,
                              help="Mirostat: 0 = off, 1 = Mirostat, 2 = Mirostat 2.0" f" ({_default(SamplerParams, 'mirostat')})")),
    ("mirostat_lr", click.option(*spellings("--mirostat-lr"), "mirostat_lr", type=float,
                                 help="Mirostat learning rate (eta)" f" ({_default(SamplerParams, 'mirostat_lr')})")),
    ("mirostat_ent", click.option(*spellings("--mirostat-ent"), "mirostat_ent", type=float,
                                  help="Mirostat target entropy (tau)" f" ({_default(SamplerParams, 'mirostat_ent')})")),
    ("dry_multiplier", click.option(*spellings("--dry-multiplier"), "dry_multiplier", type=float,
                                    help="DRY multiplier, 0.0 = off" f" ({_default(SamplerParams, 'dry_multiplier')})")),
    ("dry_base", click.option(*spellings("--dry-base"), "dry_base", type=float, help="DRY base" f" ({_default(SamplerParams, 'dry_base')})")),
    ("dry_allowed_length", click.option(*spellings("--dry-allowed-length"), "dry_allowed_length", type=int,
                                        help="DRY allowed repeat length" f" ({_default(SamplerParams, 'dry_allowed_length')})")),
    ("dry_penalty_last_n", click.option(*spellings("--dry-penalty-last-n"), "dry_penalty_last_n", type=int,
                                        help="DRY window, -1 = context size, 0 = off" f" ({_default(SamplerParams, 'dry_penalty_last_n')})")),
    ("dry_sequence_breakers", click.option(*spellings("--dry-sequence-breaker"), "dry_sequence_breakers",
                                           multiple=True, help="DRY sequence breaker (repeatable; 'none' = none)")),
    ("samplers", click.option(*spellings("--samplers"), "samplers",
                              help="sampler order, ';'-separated (e.g. 'top_k;top_p;temperature')" f" ({_default(SamplerParams, 'samplers')})")),
    ("sampling_seq", click.option(*spellings("--sampling-seq", "--sampler-seq"), "sampling_seq",
                                  help="sampler order as letters (e.g. 'kpt')")),
    ("logit_bias", click.option(*spellings("-l", "--logit-bias"), "logit_bias", multiple=True,
                                help="TOKEN_ID(+/-)BIAS added to a logit (repeatable), e.g. 15043+1")),
    ("grammar", click.option(*spellings("--grammar"), "grammar",
                             help="GBNF grammar the output must match (llama.cpp's grammars/README.md)")),
    ("grammar_file", click.option(*spellings("--grammar-file"), "grammar_file", type=click.Path(path_type=Path),
                                  help="read the GBNF grammar from a file")),
    ("json_schema", click.option(*spellings("-j", "--json-schema"), "json_schema",
                                 help="JSON schema the output must match, e.g. '{}' for any JSON object")),
    ("json_schema_file", click.option(*spellings("-jf", "--json-schema-file"), "json_schema_file",
                                      type=click.Path(path_type=Path), help="read the JSON schema from a file")),
    ("print_grammar", click.option("--print-grammar", "print_grammar", is_flag=True, default=None,
                                   help="print the GBNF grammar --grammar/-j give (a schema's, converted) and exit")),
]


def _build_sampling(values: dict) -> dict:
    """The SamplerParams fields that were given (llama.cpp spellings folded onto fields)."""
    given = _given(values)
    sequence = given.pop("sampling_seq", None)
    if sequence is not None:
        given.setdefault("samplers", sequence)
    breakers = given.pop("dry_sequence_breakers")
    if breakers:
        given["dry_sequence_breakers"] = [] if "none" in breakers else list(breakers)
    biases = given.pop("logit_bias")
    if biases:
        given["logit_bias"] = dict(_parse_bias(spec) for spec in biases)
    grammar = grammar_from_options(given.pop("grammar", None), given.pop("grammar_file", None),
                                    given.pop("json_schema", None), given.pop("json_schema_file", None))
    if grammar:
        given["grammar"] = grammar
    check_sampling(given)
    return given


def read_option_file(path: Path, what: str, flag: str | None = None, errors: str = "strict") -> str:
    """The text of a file an option names (-f, -sysf, --grammar-file, -jf), at most MAX_PROMPT_BYTES
    (`-f /dev/zero` is refused, not read until memory runs out); a file that cannot be read is a
    click.BadParameter naming it (flag: the option to name, when Click cannot tell which)."""
    hint = f"'{flag}'" if flag else None
    try:
        return read_file_capped(path, MAX_PROMPT_BYTES, what).decode("utf-8", errors=errors)
    except InputTooLong as e:
        raise click.BadParameter(str(e), param_hint=hint) from None
    except (OSError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"cannot read {str(path)!r}: {getattr(e, 'strerror', None) or e}",
                                 param_hint=hint) from None


def without_final_newline(text: str) -> str:
    """What llama.cpp reads from -f and -sysf: the file's text, one trailing newline dropped."""
    return text[:-1] if text.endswith("\n") else text


def grammar_from_options(grammar, grammar_file, json_schema, json_schema_file) -> str:
    """--grammar / --grammar-file / -j / -jf as the sampler's GBNF text, checked here so a bad one
    is refused (one line, exit 1) before the model loads"""
    given = {flag: value for flag, value in (("--grammar", grammar), ("--grammar-file", grammar_file),
                                             ("-j", json_schema), ("-jf", json_schema_file)) if value is not None}
    if not given:
        return ""
    if len(given) > 1:
        raise click.UsageError(f"give one of {', '.join(given)}, not several")
    (flag, value), = given.items()
    from pygguf.errors import PyggufError
    from pygguf.grammar.constraint import grammar_of
    from pygguf.grammar.gbnf import parse
    text = read_option_file(value, f"{str(value)!r}", flag) if flag in ("--grammar-file", "-jf") else value
    try:
        grammar = grammar_of(grammar=text) if flag.startswith("--grammar") else grammar_of(json_schema=text)
        parse(grammar)
    except PyggufError as e:
        raise click.BadParameter(str(e), param_hint=f"'{flag}'") from None
    return grammar


def _parse_bias(spec: str) -> tuple[int, float]:
    from pygguf.sampling import parse_logit_bias  # only when -l is given: keeps --help light
    try:
        return parse_logit_bias(spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'-l'") from None


sampling_options = _bundle("sampling", _SAMPLING_OPTIONS, _build_sampling)


# ---- generation -------------------------------------------------------------------------------

def read_prompt_file(path: Path) -> str:
    """-f FILE: the file's text (bytes that are not UTF-8 replaced), one trailing newline dropped."""
    return without_final_newline(read_option_file(path, f"the prompt file {str(path)!r}", "-f", errors="replace"))


def _remember_prompt(ctx: click.Context, param: click.Parameter, value):
    """-p and -f both set the prompt; as in llama.cpp the later one on the command line wins.

    Click runs the callbacks of given options in command-line order, so the last one to run is it.
    """
    if value is not None:
        ctx.meta["pygguf.prompt"] = read_prompt_file(value) if param.name == "file" else value
    return value


_GENERATION_OPTIONS = [
    ("prompt", click.option(*spellings("-p", "--prompt"), "prompt", callback=_remember_prompt,
                            help="prompt to start generation with")),
    ("file", click.option(*spellings("-f", "--file"), "file", type=click.Path(path_type=Path),
                          callback=_remember_prompt, help="read the prompt from a file")),
    ("n_predict", click.option(*spellings("-n", "--n-predict", "--predict"), "n_predict", type=int,
                               help="tokens to generate: -1 = until end of text (shifting the context when it "
                                    f"fills), -2 = until the context is full ({_default(GenerationParams, 'n_predict')})")),
    ("n_keep", click.option(*spellings("--keep"), "n_keep", type=int,
                            help="prompt tokens kept when the context shifts, -1 = all "
                                 f"({_default(GenerationParams, 'n_keep')})")),
    ("ignore_eos", click.option(*spellings("--ignore-eos"), "ignore_eos", is_flag=True, default=None,
                                help="never end on an end-of-generation token")),
    ("reverse_prompts", click.option(*spellings("-r", "--reverse-prompt"), "reverse_prompts", multiple=True,
                                     help="stop when this text is generated (repeatable)")),
    ("context_shift", click.option("--context-shift/--no-context-shift", "context_shift", default=None,
                                   help="when the context is full: shift it, or stop (default: shift)")),
    ("special", click.option("-sp", "--special", "special", is_flag=True, default=None,
                             help="print special tokens (<|im_end|>, ...) as text")),
    ("escape", click.option("-e", "--escape/--no-escape", "escape", default=True,
                            help="process \\n \\r \\t \\' \\\" \\\\ \\xHH in the prompt and reverse prompts (default: on)")),
]


@dataclass(frozen=True)
class PromptInput:
    text: str = ""                      # escapes already processed (unless --no-escape)
    given: bool = False                 # -p or -f was on the command line (even if empty)
    escape: bool = True                 # -e: also applies to what interactive modes read


def _build_generation(values: dict) -> tuple[GenerationParams, PromptInput]:
    """GenerationParams and the prompt, escapes processed unless --no-escape."""
    escape = values["escape"]
    meta = click.get_current_context().meta
    prompt = meta.get("pygguf.prompt", "")
    reverse = tuple(process_escapes(r) if escape else r for r in values["reverse_prompts"])
    given = _given({
        "n_predict": values["n_predict"],
        "n_keep": values["n_keep"],
        "ignore_eos": values["ignore_eos"],
        "context_shift": values["context_shift"],
        "special": values["special"],
    })
    params = GenerationParams(reverse_prompts=reverse, **given)
    text = process_escapes(prompt) if escape else prompt
    return params, PromptInput(text, given="pygguf.prompt" in meta, escape=escape)


generation_options = _bundle("generation", _GENERATION_OPTIONS, _build_generation)


# ---- display ----------------------------------------------------------------------------------

COLOR_OFF = ("off", "disabled", "false", "0")        # llama.cpp's is_falsey
_DISPLAY_OPTIONS = [
    ("color", click.option("-co", "--color", "color", type=click.Choice(ON_OFF_AUTO, case_sensitive=False),
                           metavar="[on|off|auto]",
                           help="colour the prompt, your input and the generated text differently: on (also "
                                "--color alone) and auto colour when stdout is a terminal, never into a pipe or "
                                "file (default: off)")),
    ("display_prompt", click.option("--display-prompt/--no-display-prompt", "display_prompt", default=None,
                                    help="echo the prompt (default: on)")),
    ("verbose_prompt", click.option(*spellings("--verbose-prompt"), "verbose_prompt", is_flag=True, default=None,
                                    help="print the prompt's tokens on stderr before generating")),
    ("json", click.option("--json", "json", is_flag=True, default=None,
                          help="print one JSON object (text, tokens, stop reason, timings, seed) instead of streaming")),
]


def _build_display(values: dict) -> DisplayParams:
    given = _given(values)
    if "color" in given:
        given["color"] = given["color"].lower() not in COLOR_OFF
    return DisplayParams(**given)


display_options = _bundle("display", _DISPLAY_OPTIONS, _build_display)
