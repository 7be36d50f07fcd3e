"""Interactive modes of llama.cpp's `main`: -i, -if, -r, --in-prefix/--in-suffix, -ins, -cml, -cnv.

One `InteractiveSession` owns the conversation state; `run_interactive` is the entry point the CLI
calls. The turn logic follows llama.cpp's main loop (2023 `main`, today's `llama-completion`):
- the session is one Sequence of the one engine (pygguf.generation), run a turn at a time: every
  token printed is also fed to the model, so the KV cache always holds exactly the text seen (the
  sampled token is evaluated just before the next user input, end-of-generation tokens too);
- the user gets control back on an end-of-generation token, on a reverse prompt at the end of the
  recent text, when the per-turn token budget (-n) is spent, or on Ctrl+C;
- on an end-of-generation token the first reverse prompt is injected as input (PR #333 behaviour);
- conversation mode feeds only the new text of each turn (ChatFormatter.format_single), so earlier
  turns stay cached.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Callable, Sequence

from pygguf.errors import ChatTemplateError, PromptTooLong, TemplateRewritesHistory
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import FinishReason, Request
from pygguf.generation.timings import Timings
from pygguf_cli.interactive_params import (
    InteractiveError,
    InteractiveParams,
    SessionPlan,
    plan_session,
    process_escapes,
    prompt_from_stdin,
)

if TYPE_CHECKING:
    from pygguf.chat import ChatFormatter

__all__ = ["InteractiveError", "InteractiveParams", "InteractiveSession", "SessionPlan",
           "plan_session", "process_escapes", "prompt_from_stdin", "run_interactive", "split_line_controls"]

INSTRUCT_PREFIX = "\n\n### Instruction:\n\n"     # tokenized WITH a BOS in front (2023 main)
INSTRUCT_SUFFIX = "\n\n### Response:\n\n"
INSTRUCT_REVERSE_PROMPT = "### Instruction:\n\n"
CHATML_PREFIX = "\n<|im_start|>user\n"            # tokenized WITH a BOS in front, like -ins
CHATML_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
CHATML_REVERSE_PROMPT = "<|im_start|>user\n"
EXIT_INTERRUPTED = 130


def default_timings_report(timings, write_err: Callable[[str], None]) -> None:
    def rate(ms, n):
        return f"({ms / n if n else 0.0:8.2f} ms per token, {1e3 * n / ms if ms > 0 else 0.0:8.2f} tokens per second)"
    write_err(f"sampling time = {timings.sample_ms:10.2f} ms / {timings.n_sample:5d} runs   "
              + rate(timings.sample_ms, timings.n_sample))
    write_err(f"prompt eval time = {timings.prompt_eval_ms:10.2f} ms / {timings.n_prompt_eval:5d} tokens "
              + rate(timings.prompt_eval_ms, timings.n_prompt_eval))
    write_err(f"eval time = {timings.eval_ms:10.2f} ms / {timings.n_eval:5d} runs   "
              + rate(timings.eval_ms, timings.n_eval))


# --- the session ------------------------------------------------------------------------------

class InteractiveSession:
    def __init__(self, model, sampler, plan: SessionPlan, console, timings=None,
                 report_timings: Callable[[object], None] | None = None, handle_signals: bool = True,
                 prompt_cache=None):
        self.model = model
        self.tok = model.tokenizer
        self.sampler = sampler
        self.plan = plan
        self.p = plan.params
        self.console = console
        self.timings = timings if timings is not None else Timings.start()
        self.report_timings = report_timings or (lambda t: default_timings_report(t, console.error))
        self.handle_signals = handle_signals
        self.formatter: ChatFormatter | None = None
        self.use_template = plan.conversation and not (self.p.in_prefix or self.p.in_suffix)
        self.chat: list[dict[str, str]] = []
        self.reverse_prompts = list(self.p.reverse_prompts)
        self.engine = Engine(model, self.tok, slots=1)
        self.prompt_cache = prompt_cache      # --prompt-cache (pygguf_cli.prompt_cache.PromptCache) or None
        if prompt_cache is not None:
            prompt_cache.engine = self.engine
        self.seq = None                       # the session's Sequence, made by start()
        self.after_reverse_prompt = False     # the last hand-over came from a reverse prompt
        self.need_end_of_turn = False         # conversation reply cut by Ctrl+C: close it first
        self.reply_end_text = ""              # text of the token that closed the last reply
        self.context_shift = self.p.context_shift if self.p.context_shift is not None \
            else (self.p.instruct or self.p.chatml)

    # -- set-up ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.p.instruct:
            self.reverse_prompts.append(INSTRUCT_REVERSE_PROMPT)
        if self.p.chatml:
            self.reverse_prompts.append(CHATML_REVERSE_PROMPT)
        if self.plan.conversation:
            from pygguf.chat import ChatFormatter  # here: jinja2 is only needed for conversations
            self.formatter = ChatFormatter.from_metadata(self.model.metadata, self.p.chat_template)
        for note in self.plan.notes:
            self.console.info(note)
        prompt_tokens = self.initial_prompt_tokens()
        if self.prompt_cache is not None:     # llama.cpp: the session file's cells reused by the first prompt
            self.prompt_cache.load()
            self.prompt_cache.match(prompt_tokens, prompt_given=True)
        self.seq = self.new_sequence(prompt_tokens)
        self.engine.admit(self.seq)
        if self.p.verbose_prompt:
            self.print_verbose_prompt(prompt_tokens)
        # llama.cpp's order: the banner and a blank line, then the prompt in its colour, the
        # colour reset once it is out (the cursor stays where the prompt ends, after "User:")
        self.print_interactive_banner()
        if self.p.display_prompt and prompt_tokens:
            self.console.write(self.tok.decode(prompt_tokens, special=self.p.special or not self.plan.conversation),
                               "prompt")
            self.console.write("", "output")

    def initial_prompt_tokens(self) -> list[int]:
        if self.use_template:
            # The opening turns are rendered whole, as llama.cpp does; later turns as differences.
            if self.p.system_prompt:
                self.chat.append({"role": "system", "content": self.p.system_prompt})
            if self.p.prompt:
                self.chat.append({"role": "user", "content": self.p.prompt})
            if not self.chat:
                return []
            text = self.formatter.render(self.chat, add_generation_prompt=bool(self.p.prompt))
            return self.encode_chat_text(text, first=True)
        prompt = self.p.prompt
        if self.p.chatml:
            prompt = f"<|im_start|>system\n{prompt}<|im_end|>"   # -cml made the prompt the system turn
        tokens = self.tok.encode(prompt, add_special=True, parse_special=True) if prompt else []
        if (self.p.instruct or self.p.chatml) and not tokens and self.tok.add_bos and self.tok.bos_id is not None:
            tokens = [self.tok.bos_id]
        return tokens

    def new_sequence(self, prompt_tokens: list[int]):
        """The session's one Sequence: turns of at most -n tokens (a budget of 0 or less never ends a
        turn: the 2023 loop counted it down and stopped at exactly zero), the reverse prompts matched
        at the end of the recent text, the whole prompt kept by a shift in -ins/-cml."""
        budget = self.p.n_predict if self.p.n_predict > 0 else -1
        keep = -1 if self.p.instruct or self.p.chatml else self.p.n_keep
        request = Request(prompt_tokens, n_predict=budget, stop=tuple(self.reverse_prompts), cut_stop=False,
                          context_shift=self.context_shift, n_keep=keep, interactive=True, special=self.p.special)
        try:
            return self.engine.new_sequence(request, sampler=self.sampler, timings=self.timings, allow_empty=True)
        except PromptTooLong as e:
            raise InteractiveError(str(e)) from None

    def print_interactive_banner(self) -> None:
        self.console.info("== Running in interactive mode. ==")
        self.console.info(" - Press Ctrl+C to interject at any time.")
        self.console.info(" - Press Return to return control to the AI."
                          if not self.p.multiline_input else " - End a line with '\\' to submit.")
        self.console.info(" - To return control without starting a new line, end your input with '/'.")
        self.console.info(" - If you want to submit another line, end your input with '\\'."
                          if not self.p.multiline_input else " - Press Return to start a new line.")
        self.console.info(" - Press Ctrl+D on an empty line to end the session.")
        self.console.info("")

    # -- chat formatting -------------------------------------------------------------------------
    def add_chat_message(self, role: str, content: str, add_generation_prompt: bool) -> tuple[str, bool]:
        """The text to feed for a new message, and whether the cache had to be restarted (the
        template rewrites history, so the text is then the whole conversation)."""
        message = {"role": role, "content": content}
        try:
            text = self.formatter.format_single(self.chat, message, add_generation_prompt,
                                                generated_end=self.reply_end_text)
        except TemplateRewritesHistory:
            self.chat.append(message)
            self.engine.forget(self.seq)
            return self.formatter.render(self.chat, add_generation_prompt), True
        self.chat.append(message)
        return text, False

    def encode_chat_text(self, text: str, first: bool) -> list[int]:
        add_bos = first and self.tok.add_bos
        bos_text = (self.formatter.special_tokens or {}).get("bos_token", "") if self.formatter else ""
        if add_bos and bos_text and text.startswith(bos_text):
            text = text[len(bos_text):]     # the template already wrote BOS: don't double it
        return self.tok.encode(text, add_special=add_bos, parse_special=True)

    def end_of_turn_token(self) -> int | None:
        """The token that closes a cut assistant turn: the one the template writes right after a
        reply when that is an end-of-generation token (<|im_end|>, <|eot_id|>, </s>...), else the
        vocabulary's EOT, else EOS. (SmolLM2's EOT is <|endoftext|>, but its turns end in <|im_end|>.)"""
        ending = self.formatter.assistant_turn_ending([{"role": "user", "content": "u"},
                                                       {"role": "assistant", "content": "a"}])
        ids = self.tok.encode(ending, add_special=False, parse_special=True) if ending else []
        if ids and self.tok.is_eog(ids[0]):
            return ids[0]
        return self.tok.eot_id if self.tok.eot_id is not None else self.tok.eos_id

    # -- verbose output ----------------------------------------------------------------------------
    def piece(self, token: int) -> str:
        return self.tok.token_to_bytes(token, special=True).decode("utf-8", errors="replace")

    def print_tokens(self, label: str, tokens: Sequence[int]) -> None:
        self.console.error(f"{label}: {len(tokens)} tokens")
        for token in tokens:
            self.console.error(f"{token:6d} -> {self.piece(token)!r}")

    def print_verbose_prompt(self, prompt_tokens: list[int]) -> None:
        con = self.console
        if self.formatter is not None:
            detected = self.formatter.detected_builtin
            con.error(f"chat template: {self.formatter.source}"
                      + (f" (detected as built-in {detected})" if detected else ""))
        con.error(f"prompt: {self.tok.decode(prompt_tokens, special=True)!r}")
        self.print_tokens("number of tokens in prompt", prompt_tokens)
        n_keep = self.seq.n_keep
        if n_keep > 0:
            con.error(f"static prompt based on n_keep: {self.tok.decode(prompt_tokens[:n_keep], special=True)!r}")
        for text in self.reverse_prompts:
            self.print_tokens(f"reverse prompt {text!r}", self.tok.encode(text, add_special=False, parse_special=True))
        if self.p.in_prefix:
            self.print_tokens(f"input prefix {self.p.in_prefix!r}",
                              self.tok.encode(self.p.in_prefix, add_special=False, parse_special=True))
        if self.p.in_suffix:
            self.print_tokens(f"input suffix {self.p.in_suffix!r}",
                              self.tok.encode(self.p.in_suffix, add_special=False, parse_special=True))

    # -- one reply ---------------------------------------------------------------------------------
    def generate_reply(self, input_was_fed: bool) -> FinishReason:
        """Feed the pending input and sample until control goes back to the user; returns why."""
        seq = self.seq
        seq.start_turn(check_input=input_was_fed)
        try:
            for delta in self.engine.generate(seq):
                self.show(delta)
        finally:
            self.show(seq.take_delta())
        reason = seq.finish_reason
        if reason is FinishReason.CONTEXT:
            if self.context_shift:
                raise InteractiveError(f"input of {len(seq.pending)} tokens does not fit the context of "
                                       f"{self.model.n_ctx}")
            self.console.error("\n" + seq.detail)
        elif reason is FinishReason.EOS:
            self.reply_end_text = self.piece(seq.tokens[-1])
            self.on_end_of_generation()
        elif reason is FinishReason.STOP:
            self.after_reverse_prompt = True
        return reason

    def show(self, text: str) -> None:
        if text:
            self.console.write(text, "output")

    def on_end_of_generation(self) -> None:
        if self.reverse_prompts:
            first = self.reverse_prompts[0]
            self.seq.feed(self.tok.encode(first, add_special=False, parse_special=True), accept=False)
            self.after_reverse_prompt = True
        self.console.write("\n", "output")

    def close_reply(self, reason: FinishReason) -> None:
        if self.use_template and self.chat and self.chat[-1]["role"] == "user":
            self.chat.append({"role": "assistant", "content": self.seq.text})
        if reason is not FinishReason.EOS and self.use_template:
            # The reply was cut (Ctrl+C, budget, reverse prompt): close the assistant turn with
            # the end-of-turn token before the next user message, as llama.cpp does on Ctrl+C.
            self.need_end_of_turn = True

    # -- user input --------------------------------------------------------------------------------
    def read_user_text(self) -> str | None:
        """One user input (continuation lines joined); None on Ctrl+D at an empty prompt."""
        if self.prompt_cache is not None:     # the first prompt is evaluated by now: saved once
            self.prompt_cache.after_step(self.seq.slot)
        prompt = ""
        if self.plan.conversation or self.p.instruct or self.p.chatml:
            self.console.write("\n", "output")
            prompt = "> "
        if self.p.in_prefix and not self.plan.conversation:
            prompt += self.p.in_prefix
        buffer = ""
        while True:
            line = self.console.read_line(prompt)
            prompt = ""
            if line is None:
                if not buffer:
                    return None
                break
            submit, line, more = split_line_controls(line, self.p.multiline_input)
            buffer += line
            if submit or not more:
                break
        if buffer.endswith("\n"):
            buffer = buffer[:-1]    # a trailing newline is kept only when typed explicitly ("\\" + Return)
        if self.p.in_suffix and not self.plan.conversation and buffer:
            self.console.write(self.p.in_suffix, "output")
        return buffer

    def queue_user_input(self, text: str) -> bool:
        """Turn typed text into pending tokens; False when the line was empty (the model goes on)."""
        if not text:
            return False
        if self.p.escape:
            text = process_escapes(text)
        tokens: list[int] = []
        if self.need_end_of_turn:
            end = self.end_of_turn_token()
            if end is not None:
                tokens.append(end)
            self.reply_end_text = self.piece(end) if end is not None else ""
            self.need_end_of_turn = False
        if self.p.in_prefix_bos and self.tok.bos_id is not None:
            tokens.append(self.tok.bos_id)
        if (self.p.instruct or self.p.chatml) and not self.after_reverse_prompt:
            prefix = INSTRUCT_PREFIX if self.p.instruct else CHATML_PREFIX
            if self.tok.bos_id is not None:
                tokens.append(self.tok.bos_id)
            tokens += self.tok.encode(prefix, add_special=False, parse_special=True)
        tokens += self.tok.encode(self.p.in_prefix, add_special=False, parse_special=True) if self.p.in_prefix else []
        if self.use_template:
            chat_text, restarted = self.add_chat_message("user", text, add_generation_prompt=True)
            if restarted:
                tokens = []         # nothing before the re-rendered conversation
            tokens += self.encode_chat_text(chat_text, first=self.context_is_empty())
        else:
            tokens += self.tok.encode(text, add_special=False, parse_special=False)
        tokens += self.tok.encode(self.p.in_suffix, add_special=False, parse_special=True) if self.p.in_suffix else []
        if self.p.instruct or self.p.chatml:
            suffix = INSTRUCT_SUFFIX if self.p.instruct else CHATML_SUFFIX
            tokens += self.tok.encode(suffix, add_special=False, parse_special=True)
        if self.p.verbose_prompt:
            self.print_tokens("input", tokens)
        self.seq.feed(tokens)
        self.after_reverse_prompt = False
        return True

    def context_is_empty(self) -> bool:
        return not self.seq.slot.cached and not self.seq.pending

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        """The session; Ctrl+C anywhere outside generation ends it with 130, as in llama.cpp."""
        try:
            return self.loop()
        except KeyboardInterrupt:
            self.console.write("\n", "output")
            return self.finish(EXIT_INTERRUPTED, "Interrupted by user")

    def loop(self) -> int:
        self.start()
        waiting = self.p.interactive_first or not self.seq.pending
        input_fed = bool(self.seq.pending)
        if waiting and self.seq.pending:
            self.engine.evaluate(self.seq)  # the prompt is evaluated now, so the first reply starts at once
        while True:
            if not waiting:
                with self.sigint_stops_generation():
                    reason = self.generate_reply(input_fed)
                self.close_reply(reason)
                if reason is FinishReason.CONTEXT:
                    return self.finish(0)
                if self.p.single_turn:
                    return self.finish_single_turn(reason)
            text = self.read_user_text()
            if text is None:
                self.console.write("EOF by user\n", "output")
                return self.finish(0)
            try:
                input_fed = self.queue_user_input(text)
            except ChatTemplateError as exc:
                self.console.error(f"error: {exc}")
                return self.finish(1)
            # An empty line gives control back to the model, if it has anything to go on.
            waiting = not input_fed and self.context_is_empty()

    def finish_single_turn(self, reason: FinishReason) -> int:
        """-st: the session ends after its one reply, the shell's prompt on a line of its own."""
        if reason is not FinishReason.EOS:          # (an end of generation already wrote the newline)
            self.console.write("\n", "output")
        return self.finish(0)

    def finish(self, code: int, message: str | None = None) -> int:
        self.report_timings(self.timings)
        if message:
            self.console.error(message)
        return code

    def sigint_stops_generation(self):
        return _SigintFlag(self) if self.handle_signals else _NoSignals()


def split_line_controls(line: str, multiline: bool) -> tuple[bool, str, bool]:
    """llama.cpp's console rules for one typed line: a trailing '/' submits without a newline; a
    trailing '\\' flips multi-line for this line. Returns (submit_now, text, continue_reading)."""
    if line.endswith("/"):
        return True, line[:-1], False
    if line.endswith("\\"):
        line = line[:-1]
        multiline = not multiline
    return False, line + "\n", multiline


class _SigintFlag:
    """While generating, Ctrl+C only asks the loop to stop after the current token."""

    def __init__(self, session: InteractiveSession):
        self.session = session
        self.previous = None

    def __enter__(self):
        def on_sigint(signum, frame):
            self.session.seq.request_stop()
        try:
            self.previous = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:          # not the main thread: leave signals alone
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


class _NoSignals:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run_interactive(model, sampler, params: InteractiveParams, console, *, stdin_is_tty: bool | None = None,
                    timings=None, report_timings: Callable[[object], None] | None = None,
                    plan: SessionPlan | None = None, prompt_cache=None) -> int:
    """Run an interactive session; returns the process exit code (0, or 130 after Ctrl+C at the
    prompt). `report_timings(timings)` prints the perf block at the end."""
    if plan is None:
        tty = console.is_tty if stdin_is_tty is None else stdin_is_tty
        plan = plan_session(params, model.metadata, tty)
    session = InteractiveSession(model, sampler, plan, console, timings=timings, report_timings=report_timings,
                                 prompt_cache=prompt_cache)
    return session.run()

