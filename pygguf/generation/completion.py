"""One completion request decoded token by token: the per-sequence state shared by the Python API
(`pygguf.api`) and batch runs (`pygguf.tools.batch`).

    request = CompletionRequest(prompt_tokens, n_predict=32, sampling=SamplerParams(seed=1), stop=("\\n",))
    engine = SerialEngine(model, tokenizer)
    for delta in engine.stream(request): ...      # text as soon as it is final
    engine.last                                   # the finished Sequence: text, tokens, finish reason, ...

The split: a `Sequence` owns everything per request that is not the forward pass (sampler, stop
strings, UTF-8 stream decoder, logprobs, timings); it turns one row of logits into the next token
or a finish reason. An engine owns the model and its KV cache and decides when each sequence's
logits are computed. `SerialEngine` runs one sequence at a time in the model's first cache
sequence, reusing the prompt prefix the previous sequence left there; `pygguf.generation.batched.BatchedEngine`
drives the same `Sequence` objects several per forward pass.

The token loop reuses pygguf.generation.generate: Generator.check_prompt/prefill/decode_one/sample (prompt
length limit, repeat-penalty history, timings) and StopStrings (stop strings across token
boundaries, single-token stops matched by id); the tokenizer's stream decoder holds split UTF-8.
What is added here: the stop string is cut from the returned text (OpenAI/llama-cpp-python
semantics, unlike the CLI which prints it), streamed text holds back any tail that could still
become a stop string (so the chunks always add up to the final text), and log-probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator
from typing import Sequence as Seq

import numpy as np

from pygguf.errors import EmptyPrompt
from pygguf.generation.generate import GenerationParams, Generator, PromptTooLong, StopStrings
from pygguf.generation.timings import Timings
from pygguf.sampling import Sampler, SamplerParams

__all__ = ["CompletionRequest", "Sequence", "SerialEngine", "new_sequence", "PromptTooLong", "EmptyPrompt", "FINISH_REASONS",
           "common_prefix"]

# finish reasons, as batch records write them
FINISH_EOS, FINISH_LENGTH, FINISH_STOP, FINISH_CONTEXT = "eos", "length", "stop", "context"
FINISH_REASONS = (FINISH_EOS, FINISH_LENGTH, FINISH_STOP, FINISH_CONTEXT)


@dataclass
class CompletionRequest:
    prompt_tokens: list[int]
    n_predict: int = 16                     # -1: until end of generation or a full context
    sampling: SamplerParams = field(default_factory=SamplerParams)
    stop: tuple[str, ...] = ()
    logprobs: int | None = None             # None: none; N >= 0: chosen token's + top N alternatives


@dataclass
class TokenLogprob:
    token: int
    logprob: float
    top: list[tuple[int, float]]            # the N most likely tokens at this position, best first


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


def stop_holdback(text: str, stops: Seq[str]) -> int:
    """How many trailing characters of text could still be the start of a stop string."""
    held = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    return held


class Sequence:
    """The decoding state of one request. Feed it the logits of its last evaluated token with
    `next_token(logits)`; it returns the token to evaluate next, or None once finished."""

    def __init__(self, request: CompletionRequest, model, tokenizer, *, timings: Timings | None = None):
        self.request = request
        self.tokenizer = tokenizer
        n_vocab = getattr(getattr(model, "config", None), "n_vocab", None) or tokenizer.n_vocab
        self.sampler = Sampler(request.sampling, n_vocab, eog_ids=tokenizer.eog_ids)
        self.generator = Generator(model, self.sampler, GenerationParams(n_predict=request.n_predict,
                                                                         context_shift=False),
                                   tokenizer=tokenizer, timings=timings or Timings.start())
        self.stops = StopStrings.for_tokenizer(request.stop, tokenizer)
        self.decoder = tokenizer.stream_decoder(special=False)
        self.tokens: list[int] = []             # generated (an end-of-generation token is not kept)
        self.logprobs: list[TokenLogprob] = []
        self.text = ""                          # generated text, stop string cut once matched
        self.emitted = 0                        # characters of text handed out by take_delta()
        self.finish_reason: str | None = None
        self.cached_prompt_tokens = 0           # prompt tokens whose K/V were reused, not recomputed
        self.stop_string: str | None = None

    @property
    def seed(self) -> int:
        return self.sampler.seed

    @property
    def timings(self) -> Timings:
        return self.generator.timings

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def check_prompt(self) -> None:
        self.generator.check_prompt(self.request.prompt_tokens)

    def next_token(self, logits: np.ndarray) -> int | None:
        if self.finished:
            return None
        if self.request.n_predict >= 0 and len(self.tokens) >= self.request.n_predict:
            return self._finish(FINISH_LENGTH)
        lp = log_softmax(logits) if self.request.logprobs is not None else None
        token = self.generator.sample(logits)
        if self.tokenizer.is_eog(token):
            return self._finish(FINISH_EOS)
        if lp is not None:
            self.logprobs.append(TokenLogprob(token, float(lp[token]), top_logprobs(lp, self.request.logprobs)))
        self.tokens.append(token)
        before = len(self.text)
        piece = self.decoder.push(token)
        self.text += piece
        self.stop_string = self.stops.feed(token, piece)
        if self.stop_string is not None:
            at = self.text.find(self.stop_string)
            self.text = self.text[:at if at >= 0 else before]
            return self._finish(FINISH_STOP)
        if self.request.n_predict >= 0 and len(self.tokens) >= self.request.n_predict:
            return self._finish(FINISH_LENGTH)
        return token

    def context_full(self) -> None:
        """The engine has no room for the next token."""
        self._finish(FINISH_CONTEXT)

    def _finish(self, reason: str) -> None:
        if reason != FINISH_STOP:
            self.text += self.decoder.flush()
        self.finish_reason = reason
        self.timings.finish()
        return None

    def take_delta(self) -> str:
        """Text that is final (cannot turn out to be part of a stop string) and not yet taken."""
        end = len(self.text) if self.finished else len(self.text) - stop_holdback(self.text, self.request.stop)
        if end <= self.emitted:
            return ""
        delta, self.emitted = self.text[self.emitted:end], end
        return delta


def common_prefix(a: Seq[int], b: Seq[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def new_sequence(request: CompletionRequest, model, tokenizer) -> Sequence:
    """A Sequence for request, refusing an empty prompt or one longer than the context."""
    if not request.prompt_tokens:
        raise EmptyPrompt("empty prompt: nothing to evaluate")
    seq = Sequence(request, model, tokenizer)
    seq.check_prompt()
    return seq


class SerialEngine:
    """Decodes sequences one at a time through the model's single KV cache.

    The cache keeps what the last sequence evaluated; a new prompt starting with the same tokens
    truncates the cache to that common prefix and evaluates only the rest (logits do not depend
    on how the prompt is split into batches, so the result is the same as from an empty cache).
    """

    def __init__(self, model, tokenizer=None):
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.cached: list[int] = []             # the tokens whose K/V are in the model's cache
        self.reused_tokens = 0                  # prompt tokens served from the cache (for stats and tests)
        self.last: Sequence | None = None

    def new_sequence(self, request: CompletionRequest) -> Sequence:
        return new_sequence(request, self.model, self.tokenizer)

    def forget(self) -> None:
        """Another engine has used the model's cache: assume nothing of what it holds."""
        self.cached = []

    def _prefill(self, seq: Sequence) -> np.ndarray:
        prompt = seq.request.prompt_tokens
        keep = min(common_prefix(self.cached, prompt), len(prompt) - 1)   # re-evaluate >= 1 token for logits
        if keep > 0 and self.model.n_past >= keep:
            self.model.truncate(keep)
        else:
            keep = 0
            self.model.reset()
        self.cached = list(prompt[:keep])
        self.reused_tokens += keep
        seq.sampler.accept_all(prompt[:keep])   # the penalty window still sees the whole prompt
        logits = seq.generator.prefill(prompt[keep:])
        self.cached = list(prompt)
        return logits

    def steps(self, seq: Sequence) -> Iterator[str]:
        """Run one sequence, yielding once per generated token: the text that became final ("" often)."""
        self.last = seq
        logits = self._prefill(seq)
        seq.cached_prompt_tokens = len(seq.request.prompt_tokens) - seq.timings.n_prompt_eval
        while True:
            token = seq.next_token(logits)
            if token is not None and self.model.n_past + 1 >= self.model.n_ctx:   # llama.cpp's "full" rule
                seq.context_full()
                token = None
            yield seq.take_delta()
            if token is None:
                return
            self.cached = []                    # unknown if the decode is interrupted
            logits = seq.generator.decode_one(token)
            self.cached = list(seq.request.prompt_tokens) + seq.tokens

    def stream(self, seq_or_request) -> Iterator[str]:
        """Run one sequence to its end, yielding its text in non-empty pieces as soon as they are final."""
        seq = seq_or_request if isinstance(seq_or_request, Sequence) else self.new_sequence(seq_or_request)
        return (delta for delta in self.steps(seq) if delta)

    def run(self, request: CompletionRequest) -> Sequence:
        seq = self.new_sequence(request)
        for _ in self.stream(seq):
            pass
        return seq
