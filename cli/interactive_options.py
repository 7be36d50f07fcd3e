"""Click options of the interactive modes (llama.cpp spellings, `_` aliases included), and the glue
from parsed options to `pygguf_cli.interactive`: the main command takes them as **interactive,
resolves the session with `plan_from_options` (its own -r, --verbose-prompt and --color go in as
keywords) and runs `run_interactive` when `plan.interactive` is set.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Mapping

import click

from pygguf_cli.console import TerminalConsole, color_enabled
from pygguf_cli.interactive import InteractiveParams, SessionPlan, plan_session, process_escapes
from pygguf_cli.options import read_option_file, without_final_newline
from pygguf_cli.streams import MAX_PROMPT_BYTES, read_file_capped, stdin_is_terminal

def _read_system_prompt_file(ctx: click.Context, param: click.Parameter, path: Path | None) -> str | None:
    """-sysf FILE: the file's text, one trailing newline dropped (as llama.cpp does)."""
    if path is None:
        return None
    return without_final_newline(read_option_file(path, f"the system prompt file {str(path)!r}"))


_OPTIONS = [
    click.option("-i", "--interactive", is_flag=True, help="Run in interactive mode."),
    click.option("-if", "--interactive-first", "--interactive_first", "interactive_first", is_flag=True,
                 help="Run in interactive mode and wait for input right away."),
    click.option("--in-prefix", "--in_prefix", "in_prefix", default="", metavar="STRING",
                 help="String to prefix user inputs with."),
    click.option("--in-suffix", "--in_suffix", "in_suffix", default="", metavar="STRING",
                 help="String to suffix after user inputs with."),
    click.option("--in-prefix-bos", "--in_prefix_bos", "in_prefix_bos", is_flag=True,
                 help="Prefix BOS to user inputs, before --in-prefix."),
    click.option("-ins", "--instruct", is_flag=True,
                 help="Alpaca instruction mode of 2023 llama.cpp main (### Instruction / ### Response)."),
    click.option("-cml", "--chatml", is_flag=True, help="ChatML mode of 2023 llama.cpp main."),
    click.option("-cnv/-no-cnv", "--conversation/--no-conversation", "conversation", default=None,
                 help="Conversation mode with the chat template (default: on when the model has a "
                      "template and no prompt or other interactive mode is given)."),
    click.option("-sys", "--system-prompt", "--system_prompt", "system_prompt", default="", metavar="PROMPT",
                 help="System prompt for conversation mode."),
    click.option("-sysf", "--system-prompt-file", "system_prompt_file", type=click.Path(path_type=Path),
                 callback=_read_system_prompt_file, metavar="FNAME",
                 help="System prompt for conversation mode, from a file (one trailing newline dropped)."),
    click.option("-st", "--single-turn", "single_turn", is_flag=True,
                 help="Conversation mode: one turn (the -p prompt, or one typed input), its reply, then exit."),
    click.option("--simple-io", "simple_io", is_flag=True,
                 help="Plain line input in interactive mode: no readline editing or history, the terminal "
                      "left as it is (for pipes and limited consoles)."),
    click.option("--jinja/--no-jinja", "jinja", default=None, expose_value=False,
                 help="Accepted for llama.cpp compatibility: chat templates are always rendered with Jinja here."),
    click.option("--chat-template", "--chat_template", "chat_template", default=None, metavar="NAME|JINJA",
                 help="Built-in template name (chatml, llama2, llama3, mistral-v7, ...) or a Jinja template."),
    click.option("--chat-template-file", "--chat_template_file", "chat_template_file", default=None,
                 type=click.Path(exists=True, dir_okay=False), help="Read the Jinja chat template from a file."),
    click.option("--print-prompt", "--print_prompt", "print_prompt", is_flag=True,
                 help="Same as --verbose-prompt: the rendered prompt and each turn's tokens with ids."),
    click.option("-mli", "--multiline-input", "--multiline_input", "multiline_input", is_flag=True,
                 help="Return continues a line; end a line with '\\' to submit."),
]

def interactive_options(command: Callable) -> Callable:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def params_from_options(options: Mapping[str, object], *, prompt: str = "", prompt_given: bool = False,
                        n_predict: int = -1, n_keep: int = 0, escape: bool = True, special: bool = False,
                        display_prompt: bool | None = True, context_shift: bool | None = None,
                        reverse_prompts=(), verbose_prompt: bool = False) -> InteractiveParams:
    """`options`: this bundle's values; the keywords: values of the command's own options."""
    def text(key: str) -> str:
        value = str(options.get(key) or "")
        return process_escapes(value) if escape else value     # -e covers these, as in llama.cpp

    template = options.get("chat_template")
    if options.get("chat_template_file"):
        template = read_file_capped(Path(options["chat_template_file"]), MAX_PROMPT_BYTES,
                                    "--chat-template-file").decode("utf-8", errors="replace")
    return InteractiveParams(
        prompt=prompt, prompt_given=prompt_given,
        interactive=bool(options.get("interactive")), interactive_first=bool(options.get("interactive_first")),
        reverse_prompts=tuple(process_escapes(r) if escape else r for r in options.get("reverse_prompt") or ())
        + tuple(reverse_prompts or ()),
        in_prefix=text("in_prefix"), in_suffix=text("in_suffix"),
        in_prefix_bos=bool(options.get("in_prefix_bos")),
        instruct=bool(options.get("instruct")), chatml=bool(options.get("chatml")),
        conversation=options.get("conversation"), system_prompt=system_prompt(options, escape),
        chat_template=template,
        verbose_prompt=bool(options.get("verbose_prompt") or options.get("print_prompt") or verbose_prompt),
        multiline_input=bool(options.get("multiline_input")), escape=escape, special=special,
        single_turn=bool(options.get("single_turn")), simple_io=bool(options.get("simple_io")),
        display_prompt=display_prompt is not False, n_predict=n_predict, n_keep=n_keep,
        context_shift=context_shift)


def system_prompt(options: Mapping[str, object], escape: bool) -> str:
    """-sysf's file (as written) or -sys's text (escapes processed under -e, as in llama.cpp)."""
    if options.get("system_prompt_file") is not None:
        return str(options["system_prompt_file"])
    value = str(options.get("system_prompt") or "")
    return process_escapes(value) if escape else value


def plan_from_options(options: Mapping[str, object], metadata: Mapping[str, object],
                      stdin_is_tty: bool | None = None, **params) -> SessionPlan:
    """Resolve the session; `plan.interactive` False means: run a plain completion."""
    tty = stdin_is_terminal(sys.stdin) if stdin_is_tty is None else stdin_is_tty
    return plan_session(params_from_options(options, **params), metadata, tty)


def make_console(color: str = "auto", simple_io: bool = False) -> TerminalConsole:
    return TerminalConsole(color=color_enabled(color, sys.stdout), simple_io=simple_io)
