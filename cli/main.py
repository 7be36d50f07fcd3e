"""`pygguf`: text completion from a GGUF model, with llama.cpp main's flags and output.

stdout gets the prompt echo and the generated text (or, with --json, one JSON object); stderr gets
the logs, the sampler lines and the perf block. Exit status: 0, 1 on an error (one line on stderr),
130 after Ctrl+C (the perf block is still printed).
"""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import click

import pygguf
from pygguf import paths
from pygguf.generate import Generator, GenerationParams, GenerationResult, PromptTooLong, StopReason, keep_count
from pygguf.timings import Timings, format_perf_block

from .options import DisplayParams, ModelParams, display_options, generation_options, model_options, sampling_options
from .output import TextOut, log, warn, write_stdout
from .runtime import Runtime

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
    """Argument errors read like llama.cpp's: `error: invalid argument: --foo`, exit status 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        typed = list(args)                      # Click's parser consumes the list it is given
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            raise CommandError(f"error: invalid argument: {_as_typed(e.option_name, typed)}") from None
        except click.UsageError as e:
            raise CommandError(f"error: {_unexpected_argument(e) or e.format_message()}") from None


def _as_typed(option_name: str, args: list[str]) -> str:
    """The argument as the user typed it: Click names `-z` when `-zz` was given."""
    for arg in args:
        typed = arg.split("=", 1)[0]
        if typed == option_name or (not typed.startswith("--") and typed.startswith(option_name)):
            return typed
    return option_name


def _unexpected_argument(e: click.UsageError) -> str | None:
    prefix = "Got unexpected extra argument"
    message = e.format_message()
    if message.startswith(prefix):
        return "invalid argument: " + message.split("(", 1)[-1].rstrip(")")
    return None


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass                                    # not a real file (e.g. under CliRunner)


# ---- machine facts ------------------------------------------------------------------------------

def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not Linux
        return os.cpu_count() or 1


def resolve_threads(requested: int, n_cpus: int) -> tuple[int, str | None]:
    """Threads to run with, and a warning when the request was lowered.

    llama.cpp runs whatever -t says; our pool's barriers spin, so more threads than CPUs would
    make every step wait on descheduled threads. We cap at the CPU count and say so.
    """
    if requested <= 0:
        return n_cpus, None
    if requested > n_cpus:
        return n_cpus, f"-t {requested} is more than the {n_cpus} CPUs available; using {n_cpus} threads"
    return requested, None


def system_info(n_threads: int, n_threads_batch: int, n_cpus: int) -> str:
    from pygguf import kernels
    features = " | ".join(f"{isa.upper()} = {int(kernels.isa_supported(isa))}" for isa in ("avx2", "avx512", "neon"))
    return (f"system_info: n_threads = {n_threads} (n_threads_batch = {n_threads_batch}) / {n_cpus} | "
            f"CPU : {features} | ISA = {kernels.active_isa()} |")


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    n_cpus = usable_cpus()
    click.echo(f"version: {pygguf.__version__} (pygguf)")
    click.echo(system_info(n_cpus, n_cpus, n_cpus))
    ctx.exit(0)


# ---- the command --------------------------------------------------------------------------------

@click.command("pygguf", cls=LlamaStyleCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="print the version and system info, then exit")
@model_options
@sampling_options
@generation_options
@display_options
@click.pass_context
def cli(ctx: click.Context, model: ModelParams, sampling: dict, generation: tuple[GenerationParams, str],
        display: DisplayParams) -> None:
    """Complete a prompt with a GGUF model, like llama.cpp's main.

    \b
    Example:
      pygguf -m codellama-13b-python.Q4_K_M.gguf -c 4096 --temp 0.7 --repeat_penalty 1.1 \\
             -n -1 -p "### Instruction: Write a story about llamas\\n### Response:"
    """
    params, prompt = generation
    runtime = ctx.obj if isinstance(ctx.obj, Runtime) else Runtime.default()
    try:
        code = complete(runtime, model, sampling, params, prompt, display)
    except KeyboardInterrupt:                   # during loading, before the generator took over
        log("Interrupted by user")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:                     # `pygguf ... | head`: the reader left; stop quietly
        silence_stdout()
        code = EXIT_BROKEN_PIPE
    except PromptTooLong as e:
        raise CommandError(f"main: {e}") from None
    except runtime.errors as e:
        raise CommandError(f"main: error: {e}") from None
    ctx.exit(code)


def complete(runtime: Runtime, mp: ModelParams, sampling: dict, gp: GenerationParams, prompt: str,
             display: DisplayParams) -> int:
    timings = Timings.start(runtime.clock)
    model = load_model(runtime, mp, timings)
    try:
        tokenizer = model.tokenizer
        prompt_tokens = tokenize_prompt(tokenizer, prompt)
        sampler = make_sampler(runtime, model, sampling, gp)
        generator = Generator(model, sampler, gp, tokenizer=tokenizer, timings=timings)
        generator.check_prompt(prompt_tokens)
        log_run_setup(model, sampler, gp, mp, prompt_tokens)
        if display.verbose_prompt:
            log_verbose_prompt(tokenizer, prompt, prompt_tokens, gp)
        result = run_generation(generator, prompt_tokens, display)
    finally:
        model.close()
    report(result, sampler, display)
    return EXIT_INTERRUPTED if result.stop_reason is StopReason.INTERRUPTED else 0


# ---- steps ----------------------------------------------------------------------------------------

def model_path(mp: ModelParams) -> Path:
    if mp.path is not None:
        if not mp.path.is_file():
            raise CommandError(f"main: error: model file not found: {mp.path}")
        return mp.path
    path = paths.default_model_path()
    if not path.is_file():
        raise CommandError(f"main: error: no -m given and the default model is missing ({path}); "
                           f"run `{paths.FETCH_MODEL_COMMAND}` to fetch it")
    return path


def load_model(runtime: Runtime, mp: ModelParams, timings: Timings):
    """Warn about what llama.cpp warns about, resolve threads and context, then load (timed)."""
    if mp.n_gpu_layers is not None:             # llama.cpp says this whenever -ngl is given on a CPU build
        warn("not compiled with GPU offload support, --gpu-layers option will be ignored")
        warn("pygguf runs on the CPU only (see README.md)")
    n_cpus = usable_cpus()
    n_threads, lowered = resolve_threads(mp.n_threads, n_cpus)
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
    model = runtime.load_model(path, n_ctx=n_ctx or None, n_threads=n_threads,
                               n_batch=max(1, min(mp.n_batch, mp.n_ubatch)),
                               rope_freq_base=mp.rope_freq_base, rope_freq_scale=mp.rope_freq_scale)
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
        detokenize=lambda token: _piece(tokenizer, token, special=False),
        tokenize=lambda text: tokenizer.encode(text, add_special=False, parse_special=True),
        n_ctx_train=model.config.n_ctx_train,
    )


def log_run_setup(model, sampler, gp: GenerationParams, mp: ModelParams, prompt_tokens: list[int]) -> None:
    n_keep = keep_count(gp.n_keep, prompt_tokens, model.tokenizer.bos_id)
    log(f"sampler seed: {sampler.seed}")
    log(sampler.params_description())
    log(sampler.chain_description())
    log(f"generate: n_ctx = {model.n_ctx}, n_batch = {mp.n_batch}, n_predict = {gp.n_predict}, n_keep = {n_keep}")
    log()


def _piece(tokenizer, token: int, special: bool = True) -> str:
    return tokenizer.token_to_bytes(token, special=special).decode("utf-8", "replace")


def log_verbose_prompt(tokenizer, prompt: str, prompt_tokens: list[int], gp: GenerationParams) -> None:
    """llama.cpp's --verbose-prompt listing: the prompt, then `id -> 'piece'` per token."""
    log(f"main: prompt: '{prompt}'")
    log(f"main: number of tokens in prompt = {len(prompt_tokens)}")
    for token in prompt_tokens:
        log(f"{token:6d} -> '{_piece(tokenizer, token)}'")
    n_keep = keep_count(gp.n_keep, prompt_tokens, tokenizer.bos_id)
    has_bos = bool(prompt_tokens) and prompt_tokens[0] == tokenizer.bos_id
    if n_keep > int(has_bos):
        static = "".join(_piece(tokenizer, t) for t in prompt_tokens[:n_keep])
        log(f"main: static prompt based on n_keep: '{static}'")
    for reverse in gp.reverse_prompts:
        log(f"Reverse prompt: '{reverse}'")
        for token in tokenizer.encode(reverse, add_special=False, parse_special=True):
            log(f"{token:6d} -> '{_piece(tokenizer, token)}'")
    log()


def run_generation(generator: Generator, prompt_tokens: list[int], display: DisplayParams) -> GenerationResult:
    if display.json:
        return generator.generate(prompt_tokens)
    out = TextOut(color=display.color)
    try:
        return generator.generate(prompt_tokens, on_prompt=out.prompt if display.display_prompt else None,
                                  on_text=out.generated)
    finally:
        out.end()


def report(result: GenerationResult, sampler, display: DisplayParams) -> None:
    """Why it stopped, then the perf block (stderr); with --json the result object (stdout)."""
    if result.stop_reason is StopReason.EOS:
        log("[end of text]")
    elif result.stop_reason is StopReason.CONTEXT_FULL:
        log(f"main: {result.detail}")
    log()
    for line in format_perf_block(result.timings):
        log(line)
    if result.stop_reason is StopReason.INTERRUPTED:
        log("Interrupted by user")
    if display.json:
        write_stdout(json.dumps(result_json(result, sampler), ensure_ascii=False) + "\n")


def result_json(result: GenerationResult, sampler) -> dict:
    return {
        "text": result.text,
        "tokens": result.tokens,
        "prompt_tokens": result.prompt_tokens,
        "stop_reason": result.stop_reason.value,
        "stop_string": result.stop_string,
        "seed": sampler.seed,
        "timings": result.timings.as_dict(),
    }


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="pygguf")


if __name__ == "__main__":
    main()
