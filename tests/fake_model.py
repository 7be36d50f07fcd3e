"""The one fake model every engine test runs on: Model's interface (decode(batch), kv_shift,
kv_copy, n_ctx, n_seq, n_batch) over a Python 'KV cache' of token ids per sequence.

decode() checks what the real model's caller must guarantee (positions follow what each sequence
holds, the batch fits n_batch and the context) and asks `logits_for(context, call)` for each
wanted row: context is the tuple of the sequence's tokens up to and including that token, call
the 0-based index of this decode call. The three flavours the tests use are small subclasses in
cli_fakes (a script of argmax tokens, one per decode call), batch_fakes (logits that depend on
the whole context, scripted replies) and interactive_fakes (zeros: the sampler is scripted).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np


class FakeModel:
    def __init__(self, tokenizer, n_vocab: int, *, n_ctx: int = 128, n_seq: int = 1, n_batch: int = 512,
                 n_ctx_train: int | None = None, metadata: dict | None = None):
        self.tokenizer = tokenizer
        self.config = SimpleNamespace(n_vocab=n_vocab, n_ctx_train=n_ctx_train or n_ctx)
        self.metadata = metadata or {}
        self.n_ctx, self.n_seq, self.n_batch = n_ctx, n_seq, n_batch
        self.caches: list[list[int]] = [[] for _ in range(n_seq)]   # each sequence's tokens, by position
        self.calls: list[list[int]] = []        # the tokens of each decode call, in batch order
        self.shifts: list[tuple[int, int]] = []
        self.evaluated = 0                      # tokens computed (to see prefix reuse)
        self.closed = False

    # ---- Model's interface ----------------------------------------------------------------

    def decode(self, batch) -> np.ndarray:
        n = batch.n
        assert 0 < n <= self.n_batch, f"decode of {n} tokens, n_batch={self.n_batch}"
        call = len(self.calls)
        self.before_decode(call)
        tokens = [int(t) for t in batch.tokens[:n]]
        self.calls.append(tokens)
        rows = []
        for t, p, s, w in zip(tokens, batch.pos[:n], batch.seq[:n], batch.want[:n]):
            assert 0 <= s < self.n_seq and 0 <= p < self.n_ctx, f"sequence {s} position {p} out of range"
            cache = self.caches[s]
            del cache[p:]                       # positions >= p are overwritten
            assert len(cache) == p, f"sequence {s}: position {p} after {len(cache)} cached tokens"
            cache.append(t)
            self.evaluated += 1
            if w:
                rows.append(self.logits_for(tuple(cache), call))
        self.rows = np.array(rows, dtype=np.float32).reshape(len(rows), self.config.n_vocab)
        return self.rows                        # kept: a test can see that nobody wrote into them

    def kv_shift(self, seq: int, n_past: int, keep: int, discard: int) -> None:
        cache = self.caches[seq]
        assert len(cache) == n_past and 0 < discard and keep + discard <= n_past
        self.shifts.append((keep, discard))
        del cache[keep:keep + discard]

    def kv_copy(self, src: int, dst: int, n: int) -> None:
        assert n <= len(self.caches[src])
        self.caches[dst] = list(self.caches[src][:n])

    def close(self) -> None:
        self.closed = True

    # ---- what the flavours change ---------------------------------------------------------

    def logits_for(self, context: tuple[int, ...], call: int) -> np.ndarray:
        return np.zeros(self.config.n_vocab, dtype=np.float32)

    def before_decode(self, call: int) -> None:
        """Runs before each decode call (a flavour raises KeyboardInterrupt here)."""

    # ---- for assertions -------------------------------------------------------------------

    @property
    def cache(self) -> list[int]:
        """sequence 0's tokens"""
        return self.caches[0]

    @property
    def n_past(self) -> int:
        return len(self.caches[0])
