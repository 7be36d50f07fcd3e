"""`pygguf`: text completion from a GGUF model, with llama.cpp main's flags and output.

stdout gets the prompt echo and the generated text (or, with --json, one JSON object); stderr gets
the logs, the sampler lines and the perf block. Exit status: 0, 1 on an error (one line on stderr),
130 after Ctrl+C (the perf block is still printed).
"""
from __future__ import annotations

import io
import logging
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import click

import pygguf
from pygguf.errors import ContextTooLarge, PromptTooLong
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import FinishReason, Request, Sequence
from pygguf.generation.timings import Timings, format_perf_block
from pygguf_cli import paths
from pygguf_cli.argv import ArgvError
from pygguf_cli.escapes import process_escapes
from pygguf_cli.interactive import run_interactive
from pygguf_cli.interactive_params import prompt_from_stdin

from .interactive_options import interactive_options, make_console, params_from_options, plan_from_options
from .llama_flags import IGNORED_NOTICES, TYPED_FLAGS, read_command_line
from .log_options import LogParams, log_destination, log_options
from .options import (
    DisplayParams,
    GenerationParams,
    ModelParams,
    PromptInput,
    display_options,
    generation_options,
    model_options,
    sampling_options,
)
from .output import TextOut, log, warn
from .prompt_cache import PromptCache, PromptCacheParams, check_interactive, prompt_cache_options
from .report import log_run_setup, log_verbose_prompt, report, token_piece
from .runtime import Runtime
from .streams import InputTooLong, StdoutError, is_write_failure, reopen_closed_standard_streams, stdout_failure
from .system import physical_cores, resolve_threads, system_info, usable_cpus

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130          # like llama.cpp (and a shell's 128 + SIGINT)
EXIT_BROKEN_PIPE = 141          # 128 + SIGPIPE, what a C program killed by the signal reports
MIN_CTX = 8                     # llama.cpp raises a smaller -c to this


class CommandError(click.ClickException):
    """A failure shown as one line on stderr, llama.cpp-style (no 'Error:' banner, no traceback)."""
    exit_code = EXIT_ERROR

    def show(self, file=None) -> None:
        log(self.format_message())


class LlamaStyleCommand(click.Command):
    """argv read as llama.cpp reads it (pygguf_cli.argv with the table of pygguf_cli.llama_flags), then
    by Click; errors read like llama.cpp's (`error: invalid argument: --foo`), exit status 1, and
    name the flag as the user typed it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            parsed = read_command_line(self, list(args))
        except ArgvError as e:
            raise CommandError(str(e)) from None
        ctx.meta[IGNORED_NOTICES] = parsed.notices
        ctx.meta[TYPED_FLAGS] = parsed.typed
        try:
            return super().parse_args(ctx, parsed.click_args)
        except click.NoSuchOption as e:         # in the table, not (yet) declared here
            raise CommandError(f"error: invalid argument: {parsed.typed.get(e.option_name, e.option_name)}") from None
        except click.BadParameter as e:
            raise CommandError(bad_value_message(e, parsed.typed)) from None
        except click.UsageError as e:
            raise CommandError(f"error: {e.format_message()}") from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.BadParameter as e:         # a value the option bundles could not turn into params
            raise CommandError(bad_value_message(e, ctx.meta.get(TYPED_FLAGS, {}))) from None
        except click.UsageError as e:
            raise CommandError(f"error: {e.format_message()}") from None


def bad_value_message(e: click.BadParameter, typed: dict[str, str]) -> str:
    """`error: invalid value for -c: 'abc' is not a valid integer`, naming the flag as typed."""
    names = (e.param.opts + e.param.secondary_opts) if e.param is not None else []
    flag = next((typed[name] for name in names if name in typed), None)
    if flag is None:
        hint = e.param_hint if isinstance(e.param_hint, str) else (names[0] if names else "")
        flag = hint.strip("'\"")
    return f"error: invalid value for {flag}: {e.message.rstrip('.')}"


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass                                    # not a real file (e.g. under CliRunner)


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    cpus = usable_cpus()
    n_threads = physical_cores(cpus)
    click.echo(f"version: {pygguf.__version__} (pygguf)")
    click.echo(system_info(n_threads, n_threads, len(cpus)))
    ctx.exit(0)


# ---- the command --------------------------------------------------------------------------------

@click.command("pygguf", cls=LlamaStyleCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="print the version and system info, then exit")
@model_options
@sampling_options
@generation_options
@display_options
@interactive_options
@log_options
@prompt_cache_options
@click.pass_context
def cli(ctx: click.Context, model: ModelParams, sampling: dict, generation: tuple[GenerationParams, PromptInput],
        display: DisplayParams, logs: LogParams, prompt_cache: PromptCacheParams, **interactive) -> None:
    """Complete a prompt with a GGUF model, like llama.cpp's main.

    llama.cpp's other flags are accepted and ignored with a notice saying why, or refused with the
    reason (the table: pygguf_cli/llama_flags.py).

    \b
    Example:
      pygguf -m codellama-13b-python.Q4_K_M.gguf -c 4096 --temp 0.7 --repeat_penalty 1.1 \\
             -n -1 -p "### Instruction: Write a story about llamas\\n### Response:"
    """
    params, prompt = generation
    display = replace(display, verbose_prompt=display.verbose_prompt or logs.verbose)
    if sampling.pop("print_grammar", None):
        click.echo(sampling.get("grammar", ""), nl=False)
        ctx.exit(0)
    runtime = ctx.obj if isinstance(ctx.obj, Runtime) else Runtime.default()
    prompt = prompt_or_piped_stdin(prompt, interactive)
    with log_destination(logs):
        code = run_logged(runtime, model, sampling, params, prompt, display, interactive, ctx.meta, prompt_cache)
    ctx.exit(code)


def run_logged(runtime: Runtime, model: ModelParams, sampling: dict, params: GenerationParams, prompt: PromptInput,
               display: DisplayParams, interactive: dict, meta: dict,
               prompt_cache: PromptCacheParams = PromptCacheParams()) -> int:
    """The run, its log lines going where --log-disable / --log-file / -lv say; an error is still
    one line on stderr."""
    for notice in meta.get(IGNORED_NOTICES, ()):
        log(notice)
    try:
        code = complete(runtime, model, sampling, params, prompt, display, interactive, prompt_cache)
    except KeyboardInterrupt:                   # during loading, before the generator took over
        log("Interrupted by user")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:                     # `pygguf ... | head`: the reader left; stop quietly
        silence_stdout()
        code = EXIT_BROKEN_PIPE
    except StdoutError as e:                    # stdout closed or full: one line, exit 1
        silence_stdout()
        raise CommandError(f"main: error: {e}") from None
    except PromptTooLong as e:
        raise CommandError(f"main: {e}") from None
    except runtime.errors as e:
        raise CommandError(f"main: error: {e}") from None
    return code


def complete(runtime: Runtime, mp: ModelParams, sampling: dict, gp: GenerationParams, prompt: PromptInput,
             display: DisplayParams, interactive: dict | None = None,
             prompt_cache: PromptCacheParams = PromptCacheParams()) -> int:
    timings = Timings.start(runtime.clock)
    model = load_model(runtime, mp, timings)
    try:
        tokenizer = model.tokenizer
        sampler = make_sampler(runtime, model, sampling, gp)
        plan = interactive_plan(interactive or {}, model, gp, prompt, display)
        if plan.interactive:
            check_interactive(prompt_cache)
            return run_session(model, sampler, plan, gp, mp, display, timings, PromptCache(prompt_cache))
        engine = Engine(model, tokenizer, slots=1, clock=runtime.clock)
        cache = PromptCache(prompt_cache, engine)
        session_tokens = cache.load()           # before the prompt: without -p/-f it is the prompt
        prompt_tokens = (session_tokens if session_tokens and not prompt.given
                         else tokenize_prompt(tokenizer, prompt.text))
        cache.match(prompt_tokens, prompt.given)
        seq = engine.new_sequence(one_shot_request(prompt_tokens, gp), sampler=sampler, timings=timings)
        if display.verbose_prompt:
            log_verbose_prompt(tokenizer, prompt.text, prompt_tokens, gp)
        log_run_setup(model, sampler, gp, mp, prompt_tokens)
        run_generation(engine, seq, display, on_step=cache.after_step)
        cache.finish(engine.slots[0], seq.tokens, interrupted=seq.finish_reason is FinishReason.INTERRUPTED)
    finally:
        model.close()
    report(seq, display)
    return EXIT_INTERRUPTED if seq.finish_reason is FinishReason.INTERRUPTED else 0


def one_shot_request(prompt_tokens: list[int], gp: GenerationParams) -> Request:
    """llama.cpp main's one-shot completion: the prompt echoed through the same decoder, reverse
    prompts printed (not cut), a full context shifted unless --no-context-shift."""
    return Request(prompt_tokens, n_predict=gp.n_predict, stop=gp.reverse_prompts, cut_stop=False, echo_prompt=True,
                   context_shift=gp.context_shift, n_keep=gp.n_keep, ignore_eos=gp.ignore_eos, special=gp.special)


# ---- interactive modes (pygguf_cli.interactive) -------------------------------------------------------

def prompt_or_piped_stdin(prompt: PromptInput, interactive: dict) -> PromptInput:
    """Without -p/-f and without a terminal on stdin, the prompt is what was piped in."""
    try:
        piped = prompt_from_stdin(params_from_options(interactive, prompt_given=prompt.given), sys.stdin)
    except InputTooLong as e:                   # `pygguf < /dev/zero`
        raise CommandError(f"main: error: {e}") from None
    if piped is None:
        return prompt
    return replace(prompt, text=process_escapes(piped) if prompt.escape else piped, given=True)


def interactive_plan(interactive: dict, model, gp: GenerationParams, prompt: PromptInput, display: DisplayParams):
    """-i, -if, -ins, -cml, -cnv (auto-on with a chat template and no prompt): which mode runs."""
    return plan_from_options(interactive, model.metadata, prompt=prompt.text, prompt_given=prompt.given,
                             n_predict=gp.n_predict, n_keep=gp.n_keep, context_shift=gp.context_shift,
                             escape=prompt.escape, display_prompt=display.display_prompt,
                             reverse_prompts=gp.reverse_prompts, verbose_prompt=display.verbose_prompt,
                             special=gp.special)


def run_session(model, sampler, plan, gp: GenerationParams, mp: ModelParams, display: DisplayParams,
                timings: Timings, prompt_cache: PromptCache | None = None) -> int:
    log_run_setup(model, sampler, gp, mp, [])

    def print_perf_block(session_timings) -> None:
        timings.finish()
        log()
        for line in format_perf_block(timings):
            log(line)

    with make_console("on" if display.color else "off", simple_io=plan.params.simple_io) as console:
        return run_interactive(model, sampler, plan.params, console, plan=plan, timings=timings,
                               report_timings=print_perf_block, prompt_cache=prompt_cache)


# ---- steps ----------------------------------------------------------------------------------------

def model_path(mp: ModelParams) -> Path:
    if mp.path is not None:
        check_model_file(mp.path)
        return mp.path
    path = paths.default_model_path()
    if not path.exists():
        raise CommandError(f"main: error: no -m given and the default model is missing ({path}); "
                           f"run `{paths.FETCH_MODEL_COMMAND}` to fetch it")
    check_model_file(path)
    return path


def check_model_file(path: Path) -> None:
    """Say what is wrong with -m's path before the loader opens it: missing, a directory, not a
    regular file (a FIFO would block the open), or unreadable (and why)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CommandError(f"main: error: model file not found: {path}") from None
    except OSError as e:
        raise CommandError(f"main: error: -m {path}: cannot read the model file: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise CommandError(f"main: error: -m {path} is a directory, not a GGUF file")
    if not stat.S_ISREG(mode):
        raise CommandError(f"main: error: -m {path} is not a regular file, not a GGUF file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise CommandError(f"main: error: -m {path}: cannot read the model file: {e.strerror or e}") from None


def load_model(runtime: Runtime, mp: ModelParams, timings: Timings):
    """Warn about what llama.cpp warns about, resolve threads and context, then load (timed)."""
    if mp.n_gpu_layers is not None:             # llama.cpp says this whenever -ngl is given on a CPU build
        warn("not compiled with GPU offload support, --gpu-layers option will be ignored")
        warn("pygguf runs on the CPU only (see README.md)")
    cpus = usable_cpus()
    n_cpus = len(cpus)
    n_threads, lowered = resolve_threads(mp.n_threads, n_cpus, physical_cores(cpus))
    if lowered:
        warn(lowered)
    if mp.n_threads_batch > 0 and mp.n_threads_batch != n_threads:
        warn(f"-tb {mp.n_threads_batch}: prompt processing uses the same {n_threads} threads as generation")
    n_ctx = mp.n_ctx
    if 0 < n_ctx < MIN_CTX:
        log(f"main: warning: minimum context size is {MIN_CTX}, using minimum size.")
        n_ctx = MIN_CTX
    if mp.rope_freq_base is not None:
        warn(f"changing RoPE frequency base to {mp.rope_freq_base:g}.")
    if mp.rope_freq_scale is not None:
        warn(f"scaling RoPE frequency by {mp.rope_freq_scale:g}.")
    path = model_path(mp)
    t0 = timings.now()
    try:
        model = runtime.load_model(path, n_ctx=n_ctx or None, n_threads=n_threads,
                                   n_batch=max(1, min(mp.n_batch, mp.n_ubatch)),
                                   rope_freq_base=mp.rope_freq_base, rope_freq_scale=mp.rope_freq_scale,
                                   type_k=mp.cache_type_k, type_v=mp.cache_type_v,
                                   use_mmap=mp.use_mmap, use_mlock=mp.use_mlock)
    except ContextTooLarge as e:                # the library names n_ctx; the user typed -c
        raise CommandError(f"main: error: {e.naming('-c')}") from None
    model.tokenizer                             # built on first use: count it in the load, as llama.cpp does
    timings.load_ms = Timings.ms_between(t0, timings.now())
    n_ctx_train = model.config.n_ctx_train
    if model.n_ctx > n_ctx_train:
        log(f"main: warning: model was trained on only {n_ctx_train} context tokens ({model.n_ctx} specified)")
    log(system_info(n_threads, n_threads, n_cpus))
    return model


def tokenize_prompt(tokenizer, prompt: str) -> list[int]:
    """BOS (if the model wants it) + the prompt, special tokens parsed; never empty, as in llama.cpp."""
    tokens = tokenizer.encode(prompt, add_special=True, parse_special=True)
    if not tokens:
        if tokenizer.bos_id is None:
            raise CommandError("main: error: input is empty")
        tokens = [tokenizer.bos_id]
        log(f"main: warning: embd_inp was considered empty and bos was added: [{tokenizer.bos_id}]")
    return tokens


def make_sampler(runtime: Runtime, model, sampling: dict, gp: GenerationParams):
    """The Sampler for the given options. --ignore-eos also goes to it, as llama.cpp's logit bias
    (the generator masks end-of-generation tokens itself as well)."""
    if gp.ignore_eos:
        sampling = {**sampling, "ignore_eos": True}
    tokenizer = model.tokenizer
    return runtime.make_sampler(
        runtime.sampler_params(**sampling), model.config.n_vocab, eog_ids=set(tokenizer.eog_ids),
        detokenize=lambda token: token_piece(tokenizer, token, special=False),
        tokenize=lambda text: tokenizer.encode(text, add_special=False, parse_special=True),
        n_ctx_train=model.config.n_ctx_train,
        **({"pieces": tokenizer.grammar_pieces()} if sampling.get("grammar") else {}),
    )


def run_generation(engine: Engine, seq: Sequence, display: DisplayParams,
                   on_step: Callable[[object], None] | None = None) -> None:
    """Print the prompt, then each piece of text as soon as it is final (nothing with --json)."""
    if display.json:
        generate_text(engine, seq, lambda text: None, on_step)
        return
    out = TextOut(color=display.color)
    try:
        if display.display_prompt:
            out.prompt(seq.prompt_text)
        generate_text(engine, seq, out.generated, on_step)
    finally:
        out.end()


def generate_text(engine: Engine, seq: Sequence, on_text: Callable[[str], None],
                  on_step: Callable[[object], None] | None = None) -> None:
    """Run the sequence to its end, handing each non-empty piece of text to on_text, and its slot
    to on_step between steps (the prompt cache saves the prompt there); Ctrl+C ends it as
    INTERRUPTED (the decoder's held bytes come out too)."""
    try:
        engine.admit(seq)
        for delta in engine.generate(seq):
            if on_step is not None:
                on_step(seq.slot)
            if delta:
                on_text(delta)
    except KeyboardInterrupt:
        seq.finish(FinishReason.INTERRUPTED)
        rest = seq.take_delta()
        if rest:
            on_text(rest)


def main(argv: list[str] | None = None) -> None:
    # pygguf's modules warn through `logging` (e.g. the model capping n_ctx to fit memory): show
    # those on stderr with the module's name, like llama.cpp's `function: message` lines.
    reopen_closed_standard_streams()            # `<&-`, `>&-`: see pygguf_cli.streams
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        cli.main(args=argv, prog_name="pygguf")
    except OSError as e:                        # Click's own writes (--help, --version) to a closed or full stdout
        if not is_write_failure(e):
            raise
        silence_stdout()
        log(f"main: error: {stdout_failure(e)}")
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
