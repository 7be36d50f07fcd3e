"""A fake model for API and batch tests: logits that depend on the whole cached context, so a
wrong KV-cache reuse changes the output, and scripted replies for exact-text checks.

FakeContextModel is the one fake model (tests/fake_model.py): it keeps the token ids "in its cache"
(`caches[seq]`) and decodes a batch over several sequences as pygguf.model.Model.decode does
(checking that positions follow what each sequence holds).
If the context starts with the tokens of a prompt in `replies`, the next token is the reply's next
token (then EOS); otherwise the logits are pseudo-random, seeded by the whole context.
Tokenizer: tests/cli_fakes.FakeTokenizer (bytes, three specials, a few words).

FaultyModel adds the faults a batch run must survive, each keyed on a prompt's opening, so that
only the records that carry it fail: logits that turn NaN ("NaN:"), a forward pass that raises
("CRASH:"), and a pause per forward pass (`delay`, so that a kill lands in the middle of a run).
"""
from __future__ import annotations

import hashlib
import time

import numpy as np

from cli_fakes import BOS, EOS, N_VOCAB, FakeTokenizer
from fake_model import FakeModel


class FakeContextModel(FakeModel):
    def __init__(self, replies: dict[str, str] | None = None, n_ctx: int = 128, n_seq: int = 1, n_batch: int = 512,
                 metadata: dict | None = None):
        super().__init__(FakeTokenizer(), N_VOCAB, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch, metadata=metadata)
        self.replies = {tuple(self.tokenizer.encode(p)): self.tokenizer.encode(r, add_special=False) + [EOS]
                        for p, r in (replies or {}).items()}

    @property
    def decode_calls(self) -> int:
        return len(self.calls)

    def logits_for(self, context: tuple[int, ...], call: int) -> np.ndarray:
        for prompt, reply in self.replies.items():
            if context[:len(prompt)] == prompt:
                at = len(context) - len(prompt)
                logits = np.zeros(N_VOCAB, dtype=np.float32)
                logits[reply[min(at, len(reply) - 1)]] = 30.0
                return logits
        seed = int.from_bytes(hashlib.sha256(repr(context).encode()).digest()[:4], "little")
        logits = np.random.default_rng(seed).normal(0.0, 2.0, N_VOCAB).astype(np.float32)
        logits[[BOS, EOS]] -= 4.0           # rarely end, never start over
        return logits


NAN_PROMPT = "NaN:"             # a record whose prompt starts so gets NaN logits a few tokens in
CRASH_PROMPT = "CRASH:"         # ... makes the forward pass raise a few tokens in
FAULT_AFTER = 1                 # context tokens past the fault's opening before it strikes


class EngineFault(RuntimeError):
    pass


class FaultyModel(FakeContextModel):
    def __init__(self, *args, delay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.nan = tuple(self.tokenizer.encode(NAN_PROMPT))
        self.crash = tuple(self.tokenizer.encode(CRASH_PROMPT))

    def before_decode(self, call: int) -> None:
        if self.delay:
            time.sleep(self.delay)

    def logits_for(self, context: tuple[int, ...], call: int) -> np.ndarray:
        logits = super().logits_for(context, call)
        if context[:len(self.crash)] == self.crash and len(context) > len(self.crash) + FAULT_AFTER:
            raise EngineFault("simulated failure of the forward pass")
        if context[:len(self.nan)] == self.nan and len(context) > len(self.nan) + FAULT_AFTER:
            logits = np.full_like(logits, np.nan)
        return logits
