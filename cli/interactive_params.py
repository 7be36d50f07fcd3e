"""What an interactive session is asked to do: its parameters, and how the modes resolve from the
options and the model (conversation mode auto-on, implied flags, conflicts, piped stdin)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from pygguf.errors import PyggufError
from pygguf_cli.escapes import process_escapes  # noqa: F401  (re-exported for the interactive session)
from pygguf_cli.streams import MAX_PROMPT_BYTES, read_capped, stdin_is_terminal


class InteractiveError(PyggufError):
    """A bad combination of interactive options, or a prompt that cannot fit the context."""


@dataclass
class InteractiveParams:
    """Everything the interactive modes need besides the model and sampler. Defaults follow
    llama.cpp's; `None` means "decide from the model" (see `plan_session`)."""
    prompt: str = ""
    prompt_given: bool = False          # -p / -f was used (even if empty)
    interactive: bool = False           # -i
    interactive_first: bool = False     # -if
    reverse_prompts: Sequence[str] = ()  # -r, in order given
    in_prefix: str = ""
    in_suffix: str = ""
    in_prefix_bos: bool = False
    instruct: bool = False              # -ins (2023 Alpaca mode)
    chatml: bool = False                # -cml (2023 ChatML mode)
    conversation: bool | None = None    # -cnv / -no-cnv; None: on when the GGUF has a template or --chat-template is given
    system_prompt: str = ""             # -sys
    chat_template: str | None = None    # --chat-template NAME|JINJA
    verbose_prompt: bool = False        # --verbose-prompt / --print-prompt
    multiline_input: bool = False       # -mli
    single_turn: bool = False           # -st: one reply, then the session ends
    simple_io: bool = False             # --simple-io: plain line input (no readline)
    escape: bool = True                 # -e: process \n, \t, ... in typed input
    special: bool = False               # -sp: print special tokens
    display_prompt: bool = True
    n_predict: int = -1                 # per-turn budget; -1 = until end of generation
    n_keep: int = 0                     # -1 = whole initial prompt
    context_shift: bool | None = None   # None: on for -ins/-cml (2023 main always shifted), else off


@dataclass
class SessionPlan:
    """The modes resolved from the options and the model, plus notes to show the user."""
    params: InteractiveParams
    conversation: bool
    interactive: bool
    notes: list[str] = field(default_factory=list)


def plan_session(params: InteractiveParams, metadata: Mapping[str, object],
                 stdin_is_tty: bool) -> SessionPlan:
    """Resolve -cnv auto-on, implied flags and conflicts. `plan.interactive` False means the CLI
    should run a plain completion instead."""
    if params.instruct and params.chatml:
        raise InteractiveError("-ins/--instruct and -cml/--chatml cannot be combined")
    if (params.instruct or params.chatml) and params.conversation:
        raise InteractiveError("-cnv cannot be combined with -ins/--instruct or -cml/--chatml")
    notes: list[str] = []
    # llama.cpp's common_chat_templates_was_explicit: the file's template or --chat-template
    has_template = isinstance(metadata.get("tokenizer.chat_template"), str) or bool(params.chat_template)
    conversation = params.conversation
    if conversation is None:
        prompt_only = (params.prompt_given or params.interactive or params.interactive_first
                       or params.instruct or params.chatml or params.in_prefix or params.in_suffix)
        conversation = has_template and not prompt_only and stdin_is_tty
        if conversation:
            notes.append("chat template is available, enabling conversation mode (disable it with -no-cnv)")
    if conversation and not has_template:
        notes.append("chat template is not available or is not supported. This may cause the model to "
                     "output suboptimal responses (ChatML is used; --chat-template NAME picks another)")
    if conversation and (params.in_prefix or params.in_suffix):
        notes.append("--in-prefix/--in-suffix given: each turn is sent as typed, without the chat template")
    if conversation and params.prompt_given and params.prompt:
        notes.append("*** User-specified prompt will pre-start conversation, did you mean to set "
                      "--system-prompt (-sys) instead?")
    if params.system_prompt and not conversation:
        notes.append("-sys/--system-prompt is only used in conversation mode (-cnv): ignored")
    interactive = bool(conversation or params.interactive or params.interactive_first
                       or params.instruct or params.chatml)
    interactive_first = params.interactive_first or params.instruct or params.chatml \
        or (conversation and not params.prompt)
    resolved = replace(params, conversation=conversation, interactive=interactive,
                       interactive_first=interactive_first)
    return SessionPlan(params=resolved, conversation=conversation, interactive=interactive, notes=notes)


def prompt_from_stdin(params: InteractiveParams, stdin) -> str | None:
    """Without a terminal on stdin and without -p/-f, the prompt is whatever was piped in (for
    plain completion), so nothing waits on a prompt that will never be typed. None otherwise:
    interactive modes asked for explicitly read their turns from the pipe line by line."""
    asked_interactive = (params.interactive or params.interactive_first or params.instruct
                         or params.chatml or params.conversation)
    if params.prompt_given or asked_interactive or stdin is None or stdin_is_terminal(stdin):
        return None                             # None: stdin closed, nothing was piped
    text = read_capped(stdin, MAX_PROMPT_BYTES, "the prompt piped on stdin")
    return text[:-1] if text.endswith("\n") else text
