"""One forward pass's tokens, like llama.cpp's `llama_batch`.

    batch = Batch(model.n_batch)
    batch.add(token, pos, seq, want=True)         # token at position pos of KV-cache sequence seq
    rows = model.decode(batch)                    # (n wanted, n_vocab) logits, in batch order

Token i goes to sequence seq[i] at position pos[i] and attends to that sequence's positions
0..pos[i]; want[i] asks for its logits. The arrays are allocated once, at the batch's capacity,
with their C pointers: filling and decoding a batch allocates nothing.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pygguf._native import ffi


class Batch:
    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"a batch holds at least one token, got capacity {capacity}")
        self.capacity = int(capacity)
        self.tokens = np.zeros(self.capacity, dtype=np.int32)     # (capacity,)
        self.pos = np.zeros(self.capacity, dtype=np.int32)        # (capacity,) position in its sequence
        self.seq = np.zeros(self.capacity, dtype=np.int32)        # (capacity,) KV-cache sequence id
        self.want = np.zeros(self.capacity, dtype=np.int8)        # (capacity,) 1: return this token's logits
        self.n = 0
        self.c_tokens, self.c_pos, self.c_seq = (ffi.from_buffer("int32_t[]", a) for a in (self.tokens, self.pos,
                                                                                          self.seq))
        self.c_want = ffi.from_buffer("int8_t[]", self.want)

    @classmethod
    def of(cls, tokens: Sequence[int], pos0: int = 0, seq: int = 0, logits: str = "last") -> Batch:
        """One run of tokens of one sequence from position pos0 (llama_batch_get_one);
        logits: "last", "all" or "none"."""
        batch = cls(max(len(tokens), 1))
        batch.add_run(tokens, pos0, seq, logits)
        return batch

    def clear(self) -> None:
        self.n = 0

    def add(self, token: int, pos: int, seq: int, want: bool = False) -> None:
        if self.n >= self.capacity:
            raise ValueError(f"the batch is full ({self.capacity} tokens)")
        i = self.n
        self.tokens[i], self.pos[i], self.seq[i], self.want[i] = token, pos, seq, want
        self.n = i + 1

    def add_run(self, tokens: Sequence[int], pos0: int, seq: int, logits: str = "last") -> None:
        """tokens at positions pos0.. of one sequence; logits of the "last", "all" or "none"."""
        n, i = len(tokens), self.n
        if logits not in ("last", "all", "none"):
            raise ValueError(f"logits must be 'last', 'all' or 'none', got {logits!r}")
        if i + n > self.capacity:
            raise ValueError(f"{n} tokens do not fit the batch ({self.capacity - i} of {self.capacity} left)")
        self.tokens[i:i + n] = tokens
        self.pos[i:i + n] = np.arange(pos0, pos0 + n)
        self.seq[i:i + n] = seq
        self.want[i:i + n] = logits == "all"
        if n and logits == "last":
            self.want[i + n - 1] = 1
        self.n = i + n

    @property
    def n_wanted(self) -> int:
        return int(np.count_nonzero(self.want[:self.n]))
