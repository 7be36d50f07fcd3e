"""Batched decoding: several completion requests advancing together, one forward pass per step.

    engine = BatchedEngine(model)                # model built with n_seq = the slots wanted
    slot = engine.admit(sequence)                # None while no slot is free (or worth waiting for)
    for seq in engine.step(): ...                # one forward pass; the sequences that finished

Each slot is one sequence of the model's KV cache (its own n_ctx positions). A step puts into one
`model.decode` batch the next token of every generating slot and as much of the admitted prompts
as fits in n_batch (continuous batching: a finished slot takes the next prompt at once). Each
token's logits are bit-identical to those of the same sequence run alone (the C forward never
mixes rows), and each Sequence samples with its own sampler, so batching never changes the text.

Prompt prefixes are computed once: a new prompt starts from the longest prefix any slot already
holds (its own cells, or another slot's copied over with model.kv_copy). When a prefix it shares
is still being computed for another slot in this very step, the prompt waits one step rather
than compute it twice: that is how the shared system prompt of a whole batch is evaluated once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from pygguf.generation.completion import Sequence, common_prefix
from pygguf.generation.timings import Timings

__all__ = ["BatchedEngine", "MIN_SHARED_PREFIX"]

# A prompt waits a step for another slot's prefill only if that saves at least this many tokens.
MIN_SHARED_PREFIX = 8


@dataclass
class Slot:
    index: int                                  # the model's sequence id
    cached: list[int] = field(default_factory=list)    # tokens whose K/V fill positions 0..len-1
    pending: list[int] = field(default_factory=list)   # tokens to evaluate next, at len(cached)...
    seq: Sequence | None = None

    @property
    def free(self) -> bool:
        return self.seq is None

    @property
    def planned(self) -> list[int]:
        """what the cache will hold once the pending tokens are evaluated"""
        return self.cached + self.pending


class BatchedEngine:
    def __init__(self, model, slots: int | None = None):
        self.model = model
        n = model.n_seq if slots is None else min(int(slots), model.n_seq)
        self.slots = [Slot(i) for i in range(max(1, n))]
        self.generated_tokens = 0
        # one step's batch, filled in place (a step allocates no arrays)
        self._tokens, self._pos, self._seq = (np.zeros(model.n_batch, np.int32) for _ in range(3))
        self._want = np.zeros(model.n_batch, np.int8)

    @property
    def running(self) -> int:
        return sum(not s.free for s in self.slots)

    @property
    def has_free_slot(self) -> bool:
        return any(s.free for s in self.slots)

    # ---- admission -----------------------------------------------------------------------------

    def admit(self, seq: Sequence) -> Slot | None:
        """Give seq a free slot, starting from the longest cached prefix of its prompt. None when no
        slot is free, or when a slot's prefill in progress will soon hold a longer shared prefix."""
        free = [s for s in self.slots if s.free]
        if not free:
            return None
        prompt = seq.request.prompt_tokens
        limit = len(prompt) - 1                 # evaluate >= 1 prompt token: its logits start the decode
        source, shared = self._best_source(prompt, limit, lambda s: s.cached)
        _, soon = self._best_source(prompt, limit, lambda s: s.planned)
        if soon - shared >= MIN_SHARED_PREFIX:
            return None
        slot = max(free, key=lambda s: (common_prefix(s.cached, prompt[:limit]), -s.index))
        own = common_prefix(slot.cached, prompt[:limit])
        if source is not None and shared > own:
            self.model.kv_copy(source.index, slot.index, shared)
            slot.cached = list(prompt[:shared])
        else:
            shared = own
            slot.cached = slot.cached[:shared]
        slot.pending = list(prompt[shared:])
        slot.seq = seq
        seq.cached_prompt_tokens = shared
        seq.sampler.accept_all(prompt)          # the penalty window sees the whole prompt
        return slot

    def _best_source(self, prompt: list[int], limit: int, tokens_of) -> tuple[Slot | None, int]:
        best, best_n = None, 0
        for s in self.slots:
            n = min(common_prefix(tokens_of(s), prompt), limit)
            if n > best_n:
                best, best_n = s, n
        return best, best_n

    # ---- one step --------------------------------------------------------------------------------

    def step(self) -> list[Sequence]:
        """One forward pass over every running slot; returns the sequences that finished."""
        batch = self._build_batch()
        if not batch:
            return []
        n, parts = batch
        t0 = time.perf_counter()
        rows = self.model.decode(self._tokens[:n], self._pos[:n], self._seq[:n], self._want[:n])
        ms = (time.perf_counter() - t0) * 1e3
        finished, row = [], 0
        for slot, n, wants in parts:
            slot.cached += slot.pending[:n]
            prompt_part = len(slot.cached) <= len(slot.seq.request.prompt_tokens)
            del slot.pending[:n]
            self._charge(slot.seq.timings, ms, n, prompt_part)
            if not wants:
                continue
            if self._advance(slot, rows[row]):
                finished.append(slot.seq)
                slot.seq = None
            row += 1
        return finished

    def _build_batch(self):
        """Each generating slot's next token first, then prompt chunks, within n_batch tokens."""
        order = sorted((s for s in self.slots if not s.free and s.pending), key=lambda s: len(s.pending) > 1)
        parts, used = [], 0
        for slot in order:
            n = min(len(slot.pending), self.model.n_batch - used)
            if n == 0:
                break
            start, end = len(slot.cached), used + n
            if n == 1:                          # the usual decode step: scalar stores
                self._tokens[used], self._pos[used] = slot.pending[0], start
            else:
                self._tokens[used:end] = slot.pending[:n]
                self._pos[used:end] = range(start, start + n)
            self._seq[used:end] = slot.index
            wants = n == len(slot.pending)      # logits only after a slot's last pending token
            self._want[used:end] = 0
            self._want[end - 1] = wants
            parts.append((slot, n, wants))
            used = end
        return (used, parts) if used else None

    @staticmethod
    def _charge(timings: Timings, ms: float, n: int, prompt: bool) -> None:
        """A step's wall time goes to every sequence in it: per-sequence speeds are batch speeds."""
        if prompt:
            timings.prompt_eval_ms += ms
            timings.n_prompt_eval += n
        else:
            timings.eval_ms += ms
            timings.n_eval += n

    def _advance(self, slot: Slot, logits: np.ndarray) -> bool:
        """Sample slot's next token from its logits; True once its sequence has finished."""
        seq = slot.seq
        n_before = len(seq.tokens)
        token = seq.next_token(logits)
        self.generated_tokens += len(seq.tokens) - n_before
        if token is not None and len(slot.cached) + 1 >= self.model.n_ctx:   # llama.cpp's "full" rule
            seq.context_full()
            token = None
        if token is None:
            return True
        slot.pending = [token]
        return False

    def run(self, sequences) -> Iterator[Sequence]:
        """Decode every sequence, admitted in order as slots free up; yields each as it finishes."""
        queue = list(sequences)
        while queue or self.running:
            while queue and self.admit(queue[0]) is not None:
                queue.pop(0)
            yield from self.step()

    def abandon(self) -> None:
        """Forget every running sequence (after an interrupt): their cells keep what was computed."""
        for s in self.slots:
            s.seq, s.pending = None, []
