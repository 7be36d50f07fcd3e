"""The one token loop: sequences in the slots of the model's KV cache, one forward pass per step.

    engine = Engine(model, slots=4)              # slots <= model.n_seq (one KV-cache sequence each)
    seq = engine.new_sequence(request)           # refuses an empty prompt or one too long for the context
    for delta in engine.stream(seq): ...         # one sequence to its end (CLI, API)
    for seq in engine.run(sequences): ...        # many, `parallel` at a time (batch runs)

A step puts into one `model.decode` batch the pending tokens of every running slot: each
generating sequence's last sampled token first, then as much of the admitted prompts as fits in
n_batch (continuous batching: a finished slot takes the next prompt at once). Each token's logits
are bit-identical to those of the same sequence run alone (the C forward never mixes rows), and
each Sequence samples with its own sampler, so batching never changes the text.

What the engine owns, once for every front end:
- the cache bookkeeping: each slot's `cached` tokens (extended only after a decode succeeded, so
  an interrupted step leaves them true);
- prefix reuse: a new prompt starts from the longest prefix any slot holds (its own cells, or
  another slot's copied with model.kv_copy); when a prefix it shares is being computed for another
  slot in this very step, the prompt waits one step rather than compute it twice;
- saved states (`save_state` / `load_state`, pygguf.model.state): a slot's cells and tokens as
  bytes, and back, so a restored prompt is reused like any cached prefix;
- the context policy (`_make_room`): llama.cpp's "full" rule, the shift (keep n_keep, drop half
  of the rest) or the end of the sequence with llama.cpp's words;
- the timings: a step's wall time is charged to every sequence in it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence as Seq

from pygguf.errors import EmptyPrompt, PromptTooLong
from pygguf.generation.sequence import FinishReason, Request, Sequence
from pygguf.model import state
from pygguf.model.batch import Batch

PROMPT_MARGIN = 4           # llama.cpp refuses a prompt that leaves fewer than 4 free cells
MIN_SHARED_PREFIX = 8       # a prompt waits a step for another slot's prefill only to save this many tokens


def common_prefix(a: Seq[int], b: Seq[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Slot:
    index: int                                          # the model's KV-cache sequence id
    cached: list[int] = field(default_factory=list)     # tokens whose K/V fill positions 0..len-1
    seq: Sequence | None = None

    @property
    def free(self) -> bool:
        return self.seq is None

    @property
    def planned(self) -> list[int]:
        """what the cache will hold once the running sequence's pending tokens are evaluated"""
        return self.cached + self.seq.pending if self.seq is not None else self.cached


class Engine:
    def __init__(self, model, tokenizer=None, slots: int | None = None, clock: Callable[[], float] = time.perf_counter):
        self.model = model
        self.clock = clock
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        n = model.n_seq if slots is None else min(int(slots), model.n_seq)
        self.slots = [Slot(i) for i in range(max(1, n))]
        self.generated_tokens = 0
        self._batch = Batch(model.n_batch)              # one step's batch, refilled in place

    @property
    def max_prompt_tokens(self) -> int:
        return self.model.n_ctx - PROMPT_MARGIN

    @property
    def running(self) -> int:
        return sum(not s.free for s in self.slots)

    def new_sequence(self, request: Request, *, sampler=None, timings=None, allow_empty: bool = False) -> Sequence:
        """A Sequence for request, refusing an empty prompt (unless allow_empty: an interactive
        session may start with none) or one longer than the context."""
        n = len(request.prompt_tokens)
        if n == 0 and not allow_empty:
            raise EmptyPrompt("empty prompt: nothing to evaluate")
        if n > self.max_prompt_tokens:
            raise PromptTooLong(n, self.max_prompt_tokens)
        n_vocab = getattr(getattr(self.model, "config", None), "n_vocab", None)
        return Sequence(request, self.tokenizer, n_vocab=n_vocab, sampler=sampler, timings=timings)

    # ---- admission -------------------------------------------------------------------------

    def admit(self, seq: Sequence, slots: list[Slot] | None = None) -> Slot | None:
        """Give seq a free slot (of `slots`, default all), starting from the longest cached prefix of
        its prompt. None when none is free, or when a slot's prefill in progress will soon hold a
        longer shared prefix."""
        free = [s for s in (slots or self.slots) if s.free]
        if not free:
            return None
        prompt = seq.pending
        limit = len(prompt) - 1                 # evaluate >= 1 prompt token: its logits start the decode
        source, shared = self._best_source(prompt, limit, lambda s: s.cached)
        _, soon = self._best_source(prompt, limit, lambda s: s.planned)
        if soon - shared >= MIN_SHARED_PREFIX:
            return None
        slot = max(free, key=lambda s: (common_prefix(s.cached, prompt[:limit]), -s.index))
        own = common_prefix(slot.cached, prompt[:limit])
        if source is not None and shared > own:
            slot.cached = []                    # while the copy overwrites its cells (if it fails)
            self.model.kv_copy(source.index, slot.index, shared)
            slot.cached = list(prompt[:shared])
        else:
            shared = own
            slot.cached = slot.cached[:shared]
        seq.pending = list(prompt[shared:])
        seq.cached_prompt_tokens = shared
        slot.seq, seq.slot = seq, slot
        return slot

    def _best_source(self, prompt: list[int], limit: int, tokens_of) -> tuple[Slot | None, int]:
        best, best_n = None, 0
        for s in self.slots:
            n = min(common_prefix(tokens_of(s), prompt), limit)
            if n > best_n:
                best, best_n = s, n
        return best, best_n

    # ---- saved states ----------------------------------------------------------------------

    def state_parts(self, slot: int = 0, n_tokens: int | None = None) -> list[bytes]:
        """The first n_tokens (default: all) cached tokens of slot `slot` and their KV cells, in
        pygguf.model.state's format, as the pieces of one file (state.write_file takes them)."""
        cached = self.slots[slot].cached
        tokens = cached if n_tokens is None else cached[:n_tokens]
        return state.encode_parts(self.model, self.slots[slot].index, list(tokens))

    def save_state(self, slot: int = 0, n_tokens: int | None = None) -> bytes:
        return b"".join(self.state_parts(slot, n_tokens))

    def load_state(self, data, slot: int = 0, source: str = "state") -> list[int]:
        """A saved state checked and put into slot `slot` (which must be free): its cells and
        tokens, reused by the next prompt sharing a prefix with them like any cached prefix (the
        last prompt token is always evaluated again, so its logits exist). Returns the tokens. A
        state that fails its checks changes nothing."""
        target = self.slots[slot]
        if not target.free:
            raise RuntimeError("load_state: the slot is running a sequence")
        saved = state.decode(self.model, data, source)
        target.cached = []                      # from here the cells are being overwritten
        self.model.kv_write(target.index, saved.kv, len(saved.tokens))
        target.cached = list(saved.tokens)
        return list(saved.tokens)

    def release(self, seq: Sequence) -> None:
        """The sequence leaves its slot; the slot's cells keep what was computed (for reuse)."""
        if seq.slot is not None and seq.slot.seq is seq:
            seq.slot.seq = None

    def forget(self, seq: Sequence) -> None:
        """Empty the sequence's cache (a chat template rewrote history: start over)."""
        seq.slot.cached = []
        seq.pending = []
        seq.n_keep = 0

    def reset(self) -> None:
        """Forget what every slot's cells hold (nothing is reused afterwards)."""
        for s in self.slots:
            s.cached = []

    def abandon(self) -> None:
        """Forget every running sequence (after an interrupt): their cells keep what was computed."""
        for s in self.slots:
            s.seq = None

    # ---- one step --------------------------------------------------------------------------

    def step(self, only: list[Slot] | None = None) -> list[Sequence]:
        """One forward pass over every running slot's pending tokens (or only those of `only`);
        returns the sequences that finished (their slots are free again). A sequence whose own
        sampling raises ends with FinishReason.ERROR (`seq.error`) and the others go on; an error
        of the forward pass itself propagates, leaving every slot as it was before the step."""
        parts = self._build_batch(only)
        if not parts:
            return []
        t0 = self.clock()
        rows = self.model.decode(self._batch)
        ms = (self.clock() - t0) * 1e3
        finished, row = [], 0
        for slot, n, wants in parts:
            seq = slot.seq
            input_chunk = not (seq.pending_sampled and n == 1)
            slot.cached += seq.pending[:n]
            del seq.pending[:n]
            seq.pending_sampled = False
            seq.timings.charge(ms, n, prompt=input_chunk)
            if not wants:
                continue
            if seq.waiting:
                seq.last_logits = rows[row]
            elif self._advance(slot, rows[row]):
                finished.append(seq)
                self.release(seq)
            row += 1
        return finished

    def _build_batch(self, only: list[Slot] | None = None) -> list[tuple[Slot, int, bool]]:
        """Each generating slot's next token first, then prompt chunks, within n_batch tokens."""
        batch = self._batch
        batch.clear()
        running = (s for s in (self.slots if only is None else only) if not s.free and s.seq.pending)
        parts = []
        for slot in sorted(running, key=lambda s: len(s.seq.pending) > 1):
            pending = slot.seq.pending
            n = min(len(pending), batch.capacity - batch.n)
            if n == 0:
                break
            wants = n == len(pending)           # logits only after a slot's last pending token
            if n == 1:                          # the usual decode step: scalar stores
                batch.add(pending[0], len(slot.cached), slot.index, wants)
            else:
                batch.add_run(pending[:n], len(slot.cached), slot.index, "last" if wants else "none")
            parts.append((slot, n, wants))
        return parts

    def _advance(self, slot: Slot, logits) -> bool:
        """Sample slot's next token from its logits; True once its sequence has finished."""
        seq = slot.seq
        n_before = len(seq.tokens)
        try:
            if seq.on_logits(logits) is not None:
                self._make_room(slot)
        except Exception as e:                  # noqa: BLE001 - this sequence's failure ends it, not the step
            seq.fail(e)
        self.generated_tokens += len(seq.tokens) - n_before
        return seq.finished

    def _make_room(self, slot: Slot) -> bool:
        """Before a slot's pending tokens are evaluated: if they do not fit (llama.cpp's rule:
        full when n_past + n_new >= n_ctx), shift the context (keep n_keep cells, drop half of the
        rest, slide the remainder down: the model re-rotates their keys, nothing is recomputed)
        or end the sequence saying why. False when it ended."""
        seq, n_ctx = slot.seq, self.model.n_ctx
        n_past, n_new = len(slot.cached), len(seq.pending)
        if n_past + n_new < n_ctx:
            return True
        keep, discard = seq.n_keep, (n_past - seq.n_keep) // 2
        if not seq.request.context_shift:
            seq.finish(FinishReason.CONTEXT, "context full and context shift is disabled => stopping")
        elif seq.request.n_predict == -2:
            seq.finish(FinishReason.CONTEXT, "context full and n_predict == -2 => stopping")
        elif discard <= 0:
            seq.finish(FinishReason.CONTEXT, f"context full and --keep {keep} leaves nothing to discard => stopping")
        elif n_past - discard + n_new >= n_ctx:
            seq.finish(FinishReason.CONTEXT, f"input of {n_new} tokens does not fit the context of {n_ctx}")
        else:
            shifted = slot.cached[:keep] + slot.cached[keep + discard:]
            slot.cached = []                    # while the shift moves its cells (if it fails)
            self.model.kv_shift(slot.index, n_past, keep, discard)
            slot.cached = shifted
            return True
        return False

    # ---- driving sequences -----------------------------------------------------------------

    def generate(self, seq: Sequence) -> Iterator[str]:
        """Run one admitted sequence (its turn, when interactive) to its end, yielding once per
        step the text that became final ("" often). A sequence with nothing pending samples from
        its last logits. If the caller stops early, the sequence leaves its slot."""
        slot = seq.slot
        if slot.seq is None:
            slot.seq = seq                       # an interactive sequence back for a new turn
        try:
            if not self._make_room(slot):
                yield seq.take_delta()
                return
            if not seq.pending and seq.on_logits(seq.last_logits) is not None:
                self._make_room(slot)
            while not seq.finished:
                yield seq.take_delta()
                if slot.seq is not seq:         # abandoned while the caller was away
                    seq.finish(FinishReason.INTERRUPTED)
                    break
                self.step()
            if seq.error is not None:
                raise seq.error
            yield seq.take_delta()
        finally:
            self.release(seq)

    def evaluate(self, seq: Sequence) -> None:
        """Evaluate an admitted sequence's pending tokens without sampling (the interactive prompt
        before the user's first input); its last logits are kept."""
        seq.waiting = True
        try:
            while seq.pending:
                self.step()
        finally:
            seq.waiting = False

    def stream(self, seq: Sequence) -> Iterator[str]:
        """Admit one sequence and run it to its end, yielding its text in non-empty pieces as soon
        as they are final."""
        if self.admit(seq) is None:
            raise RuntimeError("no free slot: another sequence is running in this engine")
        return (delta for delta in self.generate(seq) if delta)

    def run(self, sequences: Iterable[Sequence], parallel: int | None = None) -> Iterator[Sequence]:
        """Decode every sequence, `parallel` at a time (default: every slot), admitted in order
        as slots free up; yields each as it finishes."""
        slots = self.slots[:parallel] if parallel else self.slots
        queue = list(sequences)
        while queue or self.running:
            while queue and self.admit(queue[0], slots) is not None:
                queue.pop(0)
            for seq in self.step():
                if seq.error is not None:
                    raise seq.error
                yield seq
