"""Text generation over a Model and a Sampler, in the phases of llama.cpp's main loop.

    prefill(prompt)     evaluate the prompt, feed it to the sampler's penalty history -> logits
    decode_one(token)   evaluate one generated token -> logits
    generate(prompt)    prefill, then: sample, check the stop conditions, make room in the
                        context, decode_one ... until a stop condition holds

Stop conditions, checked after every sampled token in llama.cpp's order: end of generation
(EOS/EOT, unless ignore_eos), a reverse prompt in the generated text, the -n budget; and before
each decode, a full context (shift it, or stop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Protocol

import numpy as np

from pygguf.errors import GenerationError, PromptTooLong  # noqa: F401
from pygguf.generation.timings import Timings

# llama.cpp refuses a prompt that leaves fewer than 4 free cells in the context.
PROMPT_MARGIN = 4

N_PREDICT_UNTIL_EOG = -1     # until end of generation; the context is shifted when it fills
N_PREDICT_UNTIL_FULL = -2    # until the context is full


class StopReason(str, Enum):
    EOS = "eos"                     # the model produced an end-of-generation token
    LENGTH = "length"               # the -n budget is spent
    STOP = "stop"                   # a reverse prompt appeared in the output
    CONTEXT_FULL = "context_full"   # the context is full and may not be shifted
    INTERRUPTED = "interrupted"     # Ctrl+C


class ModelLike(Protocol):
    n_ctx: int
    n_past: int
    def eval(self, tokens: list[int]) -> np.ndarray: ...
    def reset(self) -> None: ...
    def shift(self, keep: int, discard: int) -> None: ...


class SamplerLike(Protocol):
    def sample(self, logits: np.ndarray) -> int: ...
    def accept(self, token: int) -> None: ...
    def reset(self) -> None: ...


@dataclass(frozen=True)
class GenerationParams:
    n_predict: int = -1             # tokens to generate; -1 until end of generation, -2 until the context is full
    n_keep: int = 0                 # prompt tokens kept by a context shift (BOS kept on top); -1 = whole prompt
    ignore_eos: bool = False        # never sample an end-of-generation token
    reverse_prompts: tuple[str, ...] = ()   # stop strings (-r), matched on the generated text
    context_shift: bool = True      # when the context fills: shift it (True) or stop (False)


@dataclass
class GenerationResult:
    prompt_tokens: list[int]
    tokens: list[int]               # generated tokens (an end-of-generation token that stopped the run is not included)
    text: str                       # their text, as streamed
    stop_reason: StopReason
    detail: str                     # llama.cpp's words for the stop, where it has some ("" otherwise)
    timings: Timings
    stop_string: str | None = None  # the reverse prompt that matched


class StopStrings:
    """Reverse prompts matched on generated text across token boundaries.

    Only the last `longest - 1` characters are kept between tokens: a match must end in the text
    a token just added, so anything older cannot start a new one. A reverse prompt that is a single
    token is also matched by id, as llama.cpp does, so special tokens (rendered as no text) stop too.
    """

    def __init__(self, strings: Iterable[str], single_token_ids: dict[int, str] | None = None):
        self.strings = tuple(s for s in strings if s)
        self.by_id = dict(single_token_ids or {})
        self._carry = max((len(s) for s in self.strings), default=1) - 1
        self._tail = ""

    @classmethod
    def for_tokenizer(cls, strings: Iterable[str], tokenizer) -> StopStrings:
        strings = tuple(s for s in strings if s)
        by_id = {}
        for s in strings:
            ids = tokenizer.encode(s, add_special=False, parse_special=True)
            if len(ids) == 1:
                by_id[ids[0]] = s
        return cls(strings, by_id)

    def feed(self, token: int, piece: str) -> str | None:
        """Add one token and its text; return the reverse prompt that now matched, if any."""
        if token in self.by_id:
            return self.by_id[token]
        window = self._tail + piece
        for s in self.strings:
            if window.find(s, max(0, len(self._tail) - len(s) + 1)) != -1:
                return s
        self._tail = window[-self._carry:] if self._carry else ""
        return None


def keep_count(n_keep: int, prompt_tokens: list[int], add_bos: bool) -> int:
    """Cells a context shift keeps: llama.cpp's n_keep (out of range -> whole prompt, else + the
    BOS the tokenizer adds, going by the model's add_bos flag as llama.cpp does)."""
    n_prompt = len(prompt_tokens)
    if n_keep < 0 or n_keep > n_prompt:
        return n_prompt
    return min(n_prompt, n_keep + int(add_bos))


@dataclass
class RunState:
    """What one generate() call accumulates; thrown away after it."""
    prompt_tokens: list[int]
    n_keep: int
    decoder: object                     # tokenizer.stream_decoder(): .push(id) -> str, .flush() -> str
    stops: StopStrings
    on_text: Callable[[str], None]
    tokens: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    stop: StopReason | None = None
    detail: str = ""
    stop_string: str | None = None

    def emit(self, piece: str) -> None:
        if piece:
            self.pieces.append(piece)
            self.on_text(piece)


def _ignore(_text: str) -> None:
    pass


class Generator:
    def __init__(self, model: ModelLike, sampler: SamplerLike, params: GenerationParams | None = None,
                 *, tokenizer=None, timings: Timings | None = None):
        self.model = model
        self.sampler = sampler
        self.params = params or GenerationParams()
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.timings = timings if timings is not None else Timings.start()
        self._eog_ids = np.array(sorted(self.tokenizer.eog_ids), dtype=np.int64)
        self._runs = 0

    @property
    def max_prompt_tokens(self) -> int:
        return self.model.n_ctx - PROMPT_MARGIN

    # ---- phases -------------------------------------------------------------------------------

    def check_prompt(self, prompt_tokens: list[int]) -> None:
        if len(prompt_tokens) > self.max_prompt_tokens:
            raise PromptTooLong(len(prompt_tokens), self.max_prompt_tokens)

    def prefill(self, prompt_tokens: list[int]) -> np.ndarray:
        """Evaluate the prompt after the cached context; return the last token's logits."""
        self.check_prompt(prompt_tokens)
        for token in prompt_tokens:             # the prompt counts in the repeat-penalty window
            self.sampler.accept(token)
        t0 = self.timings.now()
        try:
            logits = self.model.eval(list(prompt_tokens))
            self.timings.n_prompt_eval += len(prompt_tokens)
        finally:
            self.timings.prompt_eval_ms += Timings.ms_between(t0, self.timings.now())
        return logits

    def decode_one(self, token: int) -> np.ndarray:
        t0 = self.timings.now()
        try:
            logits = self.model.eval([token])
            self.timings.n_eval += 1
        finally:
            self.timings.eval_ms += Timings.ms_between(t0, self.timings.now())
        return logits

    def sample(self, logits: np.ndarray) -> int:
        t0 = self.timings.now()
        try:
            if self.params.ignore_eos and self._eog_ids.size:
                logits = logits.copy()          # the model's buffer is not ours to edit
                logits[self._eog_ids] = -np.inf
            token = int(self.sampler.sample(logits))
            self.sampler.accept(token)
            self.timings.n_sample += 1
        finally:
            self.timings.sample_ms += Timings.ms_between(t0, self.timings.now())
        return token

    def make_room(self, run: RunState) -> StopReason | None:
        """Before decoding one more token: if the context is full, shift it or say why we stop.

        llama.cpp's rule: full when n_past + 1 >= n_ctx; keep the first n_keep cells, drop half of
        the rest, slide the remainder down (the model re-rotates their keys; nothing is recomputed).
        """
        n_past, n_ctx = self.model.n_past, self.model.n_ctx
        if n_past + 1 < n_ctx:
            return None
        if not self.params.context_shift:
            run.detail = "context full and context shift is disabled => stopping"
            return StopReason.CONTEXT_FULL
        if self.params.n_predict == N_PREDICT_UNTIL_FULL:
            run.detail = f"context full and n_predict == {N_PREDICT_UNTIL_FULL} => stopping"
            return StopReason.CONTEXT_FULL
        n_discard = (n_past - run.n_keep) // 2
        if n_discard <= 0:
            run.detail = f"context full and --keep {run.n_keep} leaves nothing to discard => stopping"
            return StopReason.CONTEXT_FULL
        self.model.shift(run.n_keep, n_discard)
        return None

    # ---- stop conditions after a sampled token ------------------------------------------------

    def _is_end_of_generation(self, token: int) -> bool:
        return not self.params.ignore_eos and self.tokenizer.is_eog(token)

    def _budget_spent(self, run: RunState) -> bool:
        return self.params.n_predict >= 0 and len(run.tokens) >= self.params.n_predict

    def _after_sample(self, run: RunState, token: int) -> StopReason | None:
        if self._is_end_of_generation(token):
            return StopReason.EOS
        run.tokens.append(token)
        piece = run.decoder.push(token)
        run.emit(piece)
        run.stop_string = run.stops.feed(token, piece)
        if run.stop_string is not None:
            return StopReason.STOP
        if self._budget_spent(run):
            return StopReason.LENGTH
        return None

    # ---- the loop -----------------------------------------------------------------------------

    def _start(self, prompt_tokens: list[int], on_text: Callable[[str], None]) -> RunState:
        self.model.reset()
        if self._runs:                          # the first run uses the sampler as given (its seed was
            self.sampler.reset()                # already reported); later ones start it afresh
        self._runs += 1
        return RunState(
            prompt_tokens=list(prompt_tokens),
            n_keep=keep_count(self.params.n_keep, prompt_tokens, self.tokenizer.add_bos),
            decoder=self.tokenizer.stream_decoder(special=False),
            stops=StopStrings.for_tokenizer(self.params.reverse_prompts, self.tokenizer),
            on_text=on_text,
        )

    def generate(self, prompt_tokens: list[int], *, on_prompt: Callable[[str], None] | None = None,
                 on_text: Callable[[str], None] | None = None) -> GenerationResult:
        """Run one completion from an empty context. Ctrl+C ends it with StopReason.INTERRUPTED.

        on_prompt gets the prompt's text (decoded as the model sees it) before the prompt is
        evaluated; on_text gets each generated piece as soon as it is complete UTF-8.
        """
        self.check_prompt(prompt_tokens)
        run = self._start(prompt_tokens, on_text or _ignore)
        try:
            prompt_text = "".join(run.decoder.push(t) for t in run.prompt_tokens)
            if on_prompt is not None:
                on_prompt(prompt_text)
            logits = self.prefill(run.prompt_tokens)
            if self._budget_spent(run):
                run.stop = StopReason.LENGTH
            while run.stop is None:
                token = self.sample(logits)
                run.stop = self._after_sample(run, token) or self.make_room(run)
                if run.stop is None:
                    logits = self.decode_one(token)
        except KeyboardInterrupt:
            run.stop = StopReason.INTERRUPTED
        run.emit(run.decoder.flush())
        self.timings.finish()
        return GenerationResult(
            prompt_tokens=run.prompt_tokens, tokens=run.tokens, text="".join(run.pieces),
            stop_reason=run.stop, detail=run.detail, timings=self.timings, stop_string=run.stop_string,
        )
