"""Run timings, collected by the engine and the sequences, printed in llama.cpp's perf-block format.

The counting follows llama.cpp's `llama_perf_*` (2024): `sample` runs are sampled tokens,
`prompt eval` tokens are input tokens computed (prompt, user input), `eval` runs are single-token
decodes of sampled tokens (one fewer than the generated tokens: the first token's logits come from
the prompt), and the total runs from the start of model loading to the end of generation. In a
batched step every sequence is charged the step's whole time: per-sequence speeds are batch speeds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

# Kept identical to llama.cpp's so scripts that grep its perf block read ours unchanged.
SAMPLER_PREFIX = "llama_perf_sampler_print"
CONTEXT_PREFIX = "llama_perf_context_print"


@dataclass
class Timings:
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    t_start: float = 0.0            # clock() when the run began (before the model load)
    load_ms: float = 0.0
    prompt_eval_ms: float = 0.0
    n_prompt_eval: int = 0          # prompt tokens computed
    eval_ms: float = 0.0
    n_eval: int = 0                 # single-token decodes
    sample_ms: float = 0.0
    n_sample: int = 0               # tokens sampled
    total_ms: float = 0.0

    @classmethod
    def start(cls, clock: Callable[[], float] = time.perf_counter) -> Timings:
        return cls(clock=clock, t_start=clock())

    def now(self) -> float:
        return self.clock()

    @staticmethod
    def ms_between(t0: float, t1: float) -> float:
        return (t1 - t0) * 1e3

    def charge(self, ms: float, n: int, prompt: bool) -> None:
        """A decode of n of this run's tokens that took ms: input (prompt eval) or a sampled token (eval)."""
        if prompt:
            self.prompt_eval_ms += ms
            self.n_prompt_eval += n
        else:
            self.eval_ms += ms
            self.n_eval += n

    def finish(self) -> None:
        """Stamp the total: from the start of the run to now."""
        self.total_ms = self.ms_between(self.t_start, self.now())

    def as_dict(self) -> dict[str, float | int]:
        return {
            "load_ms": self.load_ms,
            "prompt_eval_ms": self.prompt_eval_ms,
            "prompt_tokens": self.n_prompt_eval,
            "prompt_tokens_per_second": _per_second(self.prompt_eval_ms, self.n_prompt_eval),
            "eval_ms": self.eval_ms,
            "eval_runs": self.n_eval,
            "eval_tokens_per_second": _per_second(self.eval_ms, self.n_eval),
            "sample_ms": self.sample_ms,
            "sample_runs": self.n_sample,
            "total_ms": self.total_ms,
        }


def _per_token(ms: float, n: int) -> float:
    return ms / n if n > 0 else 0.0


def _per_second(ms: float, n: int) -> float:
    return 1e3 * n / ms if ms > 0 else 0.0


def _rate(ms: float, n: int) -> str:
    return f"({_per_token(ms, n):8.2f} ms per token, {_per_second(ms, n):8.2f} tokens per second)"


def format_perf_block(t: Timings) -> list[str]:
    """The five lines llama.cpp prints on stderr at the end of a run (no trailing newlines).

    Where llama.cpp would divide by zero (no tokens, or no time) the rate reads 0.00, not nan/inf.
    """
    return [
        f"{SAMPLER_PREFIX}:    sampling time = {t.sample_ms:10.2f} ms / {t.n_sample:5d} runs   "
        + _rate(t.sample_ms, t.n_sample),
        f"{CONTEXT_PREFIX}:        load time = {t.load_ms:10.2f} ms",
        f"{CONTEXT_PREFIX}: prompt eval time = {t.prompt_eval_ms:10.2f} ms / {t.n_prompt_eval:5d} tokens "
        + _rate(t.prompt_eval_ms, t.n_prompt_eval),
        f"{CONTEXT_PREFIX}:        eval time = {t.eval_ms:10.2f} ms / {t.n_eval:5d} runs   "
        + _rate(t.eval_ms, t.n_eval),
        f"{CONTEXT_PREFIX}:       total time = {t.total_ms:10.2f} ms / {t.n_prompt_eval + t.n_eval:5d} tokens",
    ]
