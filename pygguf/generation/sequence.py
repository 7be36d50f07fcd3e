"""One request's decoding state: what it asked for, its sampler, its text so far, why it ended.

    request = Request(prompt_tokens, n_predict=32, sampling=SamplerParams(seed=1), stop=("\\n",))
    seq = engine.new_sequence(request)
    for delta in engine.stream(seq): ...           # text as soon as it is final
    seq.text, seq.tokens, seq.finish_reason         # once finished

A Sequence never runs the model: the engine (engine.py) evaluates its `pending` tokens, in a
batch with other sequences or alone, and hands it the logits of its last one (`on_logits`); the
sequence samples the next token, checks the stop conditions in llama.cpp's order and says
whether it goes on. Front ends differ only in the Request's parameters:
- the Python API and batch runs: the stop string is cut from the text, streamed text holds back
  whatever could still become a stop string, and a full context ends the sequence;
- the one-shot CLI: the prompt's text comes first from the same UTF-8 decoder, the stop string
  stays in the text (llama.cpp prints it), and a full context is shifted (`context_shift`);
- interactive modes (`interactive`): the sequence lives for the whole session, one turn at a
  time (`start_turn`); a turn ends on an end-of-generation token (which stays in the context,
  fed with the next input), a reverse prompt at the end of the recent text, or the per-turn
  budget; special tokens are shown when `special` is set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from pygguf.generation.stops import RECENT_TOKENS, ReversePrompts, StopStrings, stop_holdback
from pygguf.generation.timings import Timings
from pygguf.sampling import Sampler, SamplerParams
from pygguf.sampling.sampler import GrammarDeadEnd, check_model_logits


class FinishReason(str, Enum):
    EOS = "eos"                     # an end-of-generation token was sampled
    LENGTH = "length"               # the token budget (-n, max_tokens) is spent
    STOP = "stop"                   # a stop string / reverse prompt appeared
    CONTEXT = "context"             # the context is full and may not (or cannot) shift
    INTERRUPTED = "interrupted"     # Ctrl+C, or the front end asked the sequence to stop
    ERROR = "error"                 # its sampling or context handling raised (`Sequence.error`)


@dataclass
class Request:
    prompt_tokens: list[int]
    n_predict: int = -1             # tokens to generate (per turn when interactive); -1: no limit, -2: until full
    sampling: SamplerParams = field(default_factory=SamplerParams)
    stop: tuple[str, ...] = ()      # stop strings (llama.cpp's reverse prompts)
    logprobs: int | None = None     # None: none; N >= 0: the chosen token's and the top N alternatives'
    cut_stop: bool = True           # cut the stop string from the text (API); keep it (CLI, as llama.cpp prints it)
    echo_prompt: bool = False       # the prompt's text opens the decoder (the CLI prints it before generating)
    context_shift: bool = False     # a full context shifts (keeping n_keep tokens) instead of ending the sequence
    n_keep: int = 0                 # prompt tokens a shift keeps (BOS on top); -1: the whole prompt
    ignore_eos: bool = False        # end-of-generation tokens are never sampled
    interactive: bool = False       # turns (see the module docstring); use with cut_stop=False
    special: bool = False           # render special tokens in the text


@dataclass
class TokenLogprob:
    token: int
    logprob: float
    top: list[tuple[int, float]]    # the N most likely tokens at this position, best first


def keep_count(n_keep: int, prompt_tokens: list[int], tokenizer) -> int:
    """Cells a context shift keeps: llama.cpp's n_keep (out of range: the whole prompt) plus the
    BOS the tokenizer put in front of the prompt."""
    n = len(prompt_tokens)
    if n_keep < 0 or n_keep > n:
        return n
    bos = n > 0 and tokenizer.add_bos and prompt_tokens[0] == tokenizer.bos_id
    return min(n, n_keep + int(bos))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return x - np.log(np.exp(x).sum())


def top_logprobs(logprobs: np.ndarray, n: int) -> list[tuple[int, float]]:
    if n <= 0:
        return []
    n = min(n, logprobs.size)
    best = np.argpartition(-logprobs, n - 1)[:n]
    best = best[np.lexsort((best, -logprobs[best]))]     # by logprob, ties by id: deterministic
    return [(int(t), float(logprobs[t])) for t in best]


class Sequence:
    def __init__(self, request: Request, tokenizer, *, n_vocab: int | None = None, sampler: Sampler | None = None,
                 timings: Timings | None = None):
        self.request = request
        self.tokenizer = tokenizer
        self.sampler = sampler or Sampler(request.sampling, n_vocab or tokenizer.n_vocab, eog_ids=tokenizer.eog_ids,
                                          pieces=tokenizer.grammar_pieces() if request.sampling.grammar else None)
        self.timings = timings or Timings.start()
        self._eog_ids = np.array(sorted(tokenizer.eog_ids), dtype=np.int64)
        self.n_keep = keep_count(request.n_keep, request.prompt_tokens, tokenizer)
        self.pending = list(request.prompt_tokens)      # tokens the engine evaluates next
        self.pending_sampled = False                    # pending[0] is a sampled token, not input
        self.sampler.accept_all(request.prompt_tokens)  # the penalty window sees the prompt
        self.decoder = tokenizer.stream_decoder(special=request.special)
        self.prompt_text = "".join(self.decoder.push(t) for t in request.prompt_tokens) if request.echo_prompt else ""
        if request.interactive:
            self.stops, self.reverse = None, ReversePrompts(request.stop, tokenizer)
        else:
            self.stops, self.reverse = StopStrings.for_tokenizer(request.stop, tokenizer), None
        self.tokens: list[int] = []                     # generated (an end-of-generation token that ended it excluded)
        self.logprobs: list[TokenLogprob] = []
        self.text = ""                                  # generated text (this turn's, when interactive)
        self.emitted = 0                                # characters of text handed out by take_delta()
        self.finish_reason: FinishReason | None = None
        self.detail = ""                                # llama.cpp's words for a full context
        self.stop_string: str | None = None             # the stop string that matched
        self.cached_prompt_tokens = 0                   # prompt tokens whose K/V were reused, not recomputed
        self.slot = None                                # the engine's KV-cache slot, once admitted
        self.last_logits: np.ndarray | None = None      # of the last evaluated token (valid until the next decode)
        self.waiting = False                            # evaluate pending tokens but do not sample (interactive)
        self.turn_tokens = 0                            # sampled this turn
        self._check_input = False                       # a reverse prompt may end the input just fed
        self._stop_requested = False
        self.error: Exception | None = None             # what ended it, when FinishReason.ERROR

    @property
    def seed(self) -> int:
        return self.sampler.seed

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    # ---- decoding -------------------------------------------------------------------------

    def on_logits(self, logits: np.ndarray) -> int | None:
        """The logits of the last evaluated token: sample the next one. Returns it (now pending),
        or None once the sequence (or the turn) has finished."""
        self.last_logits = logits
        if self.finished:
            return None
        if self._stop_requested:
            return self.finish(FinishReason.INTERRUPTED)
        if self._check_input and self.reverse.match(self.context_tail(), None):
            return self.finish(FinishReason.STOP)
        self._check_input = False
        if self._budget_spent():
            return self.finish(FinishReason.LENGTH)
        check_model_logits(logits)              # a -inf from the model (NaN, +inf: the sampler): NonFiniteLogits
        lp = log_softmax(logits) if self.request.logprobs is not None else None
        try:
            token = self.sample(logits)
        except GrammarDeadEnd as e:             # the grammar cannot go on: what was made stands
            return self.finish(FinishReason.STOP, str(e))
        reason = self._after_turn_token(token) if self.request.interactive else self._after_token(token, lp)
        return self.finish(reason) if reason is not None else token

    def sample(self, logits: np.ndarray) -> int:
        """One token from the sampler, accepted into its history; timed."""
        t0 = self.timings.now()
        try:
            if self.request.ignore_eos and self._eog_ids.size:
                logits = logits.copy()          # the model's buffer is not ours to edit
                logits[self._eog_ids] = -np.inf
            token = int(self.sampler.sample(logits))
            self.sampler.accept(token)
            self.timings.n_sample += 1
        finally:
            self.timings.sample_ms += Timings.ms_between(t0, self.timings.now())
        return token

    def _after_token(self, token: int, lp: np.ndarray | None) -> FinishReason | None:
        """Completion: end of generation, then the token's text and a stop string, then the budget."""
        if self._is_end_of_generation(token):
            return FinishReason.EOS
        if lp is not None:
            self.logprobs.append(TokenLogprob(token, float(lp[token]), top_logprobs(lp, self.request.logprobs)))
        self._set_pending_token(token)
        before = len(self.text)
        piece = self.decoder.push(token)
        self.text += piece
        self.stop_string = self.stops.feed(token, piece)
        if self.stop_string is not None:
            if self.request.cut_stop:
                at = self.text.find(self.stop_string)
                self.text = self.text[:at if at >= 0 else before]
            return FinishReason.STOP
        if self.sampler.grammar_done:           # llama.cpp would sample the only token left, an EOG
            return FinishReason.EOS
        return FinishReason.LENGTH if self._budget_spent() else None

    def _after_turn_token(self, token: int) -> FinishReason | None:
        """Interactive: every sampled token is shown and stays in the context (fed with the next
        input); end of generation, a reverse prompt, the budget or Ctrl+C hands control back."""
        self._set_pending_token(token)
        self.text += self.decoder.push(token)
        if self._is_end_of_generation(token) or self.sampler.grammar_done:
            return FinishReason.EOS
        if self.reverse.match(self.context_tail(), token):
            return FinishReason.STOP
        if self._budget_spent():
            return FinishReason.LENGTH
        return FinishReason.INTERRUPTED if self._stop_requested else None

    def _set_pending_token(self, token: int) -> None:
        self.tokens.append(token)
        self.turn_tokens += 1
        self.pending = [token]
        self.pending_sampled = True

    def _is_end_of_generation(self, token: int) -> bool:
        return not self.request.ignore_eos and self.tokenizer.is_eog(token)

    def _budget_spent(self) -> bool:
        return 0 <= self.request.n_predict <= self.turn_tokens

    def context_tail(self) -> list[int]:
        """The last RECENT_TOKENS tokens of the context: cached, then pending."""
        cached = self.slot.cached if self.slot is not None else []
        tail = self.pending[-RECENT_TOKENS:]
        return cached[len(tail) - RECENT_TOKENS:] + tail if len(tail) < RECENT_TOKENS else tail

    # ---- ending ---------------------------------------------------------------------------

    def finish(self, reason: FinishReason, detail: str = "") -> None:
        if not (reason is FinishReason.STOP and self.request.cut_stop):     # a cut stop string ends the text
            self.text += self.decoder.flush()
        self.finish_reason = reason
        self.detail = detail
        self.timings.finish()
        return None

    def fail(self, error: Exception) -> None:
        """This sequence's own step raised: it ends, keeping the error for its front end."""
        self.error = error
        self.finish(FinishReason.ERROR)

    def request_stop(self) -> None:
        """Ask the sequence to end (interactive Ctrl+C): checked before and after every token."""
        self._stop_requested = True

    # ---- interactive turns ----------------------------------------------------------------

    def feed(self, tokens: list[int], accept: bool = True) -> None:
        """More input for the next turn (accept: it counts in the penalty window)."""
        self.pending += tokens
        if accept:
            self.sampler.accept_all(tokens)

    def start_turn(self, check_input: bool) -> None:
        """A new turn: budget, text and decoder afresh; check_input: the turn may end at once if
        the input just fed ends in a reverse prompt."""
        self.finish_reason, self.detail, self.stop_string = None, "", None
        self.turn_tokens = 0
        self.text, self.emitted = "", 0
        self.decoder = self.tokenizer.stream_decoder(special=self.request.special)
        self.sampler.restart_grammar()
        self._check_input = check_input
        self._stop_requested = False

    # ---- text for the caller --------------------------------------------------------------

    def take_delta(self) -> str:
        """Text that is final (cannot turn out to be part of a stop string) and not yet taken."""
        end = len(self.text)
        if self.request.cut_stop and not self.finished:
            end -= stop_holdback(self.text, self.request.stop)
        if end <= self.emitted:
            return ""
        delta, self.emitted = self.text[self.emitted:end], end
        return delta
