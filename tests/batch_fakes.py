"""A fake model for API and batch tests: logits that depend on the whole cached context, so a
wrong KV-cache reuse changes the output, and scripted replies for exact-text checks.

FakeContextModel keeps the token ids "in its cache" (`caches[seq]`, `cached` for sequence 0, the
one eval uses); eval appends, truncate/reset cut; decode runs a batch over several sequences as
pygguf.model.Model.decode does (checking that positions follow what each sequence holds).
If the context starts with the tokens of a prompt in `replies`, the next token is the reply's next
token (then EOS); otherwise the logits are pseudo-random, seeded by the whole context.
Tokenizer: tests/cli_fakes.FakeTokenizer (bytes, three specials, a few words).
"""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np

from cli_fakes import BOS, EOS, N_VOCAB, FakeTokenizer


class FakeContextModel:
    def __init__(self, replies: dict[str, str] | None = None, n_ctx: int = 128, n_seq: int = 1, n_batch: int = 512):
        self.tokenizer = FakeTokenizer()
        self.config = SimpleNamespace(n_vocab=N_VOCAB, n_ctx_train=n_ctx)
        self.metadata = {}                  # no chat template: pygguf.chat falls back to ChatML
        self.n_ctx, self.n_seq, self.n_batch = n_ctx, n_seq, n_batch
        self.caches: list[list[int]] = [[] for _ in range(n_seq)]
        self.decode_calls = 0
        self.evaluated = 0                  # tokens computed (to see prefix reuse)
        self.replies = {tuple(self.tokenizer.encode(p)): self.tokenizer.encode(r, add_special=False) + [EOS]
                        for p, r in (replies or {}).items()}
        self._logits = np.zeros(N_VOCAB, dtype=np.float32)

    @property
    def cached(self) -> list[int]:
        return self.caches[0]

    @cached.setter
    def cached(self, tokens: list[int]) -> None:
        self.caches[0] = tokens

    @property
    def n_past(self) -> int:
        return len(self.cached)

    def decode(self, tokens, pos, seq, want) -> np.ndarray:
        self.decode_calls += 1
        assert 0 < len(tokens) <= self.n_batch and len(tokens) == len(pos) == len(seq) == len(want)
        rows = []
        for t, p, s, w in zip(tokens, pos, seq, want):
            assert 0 <= s < self.n_seq and 0 <= p < self.n_ctx
            cache = self.caches[s]
            del cache[p:]                       # positions >= p are overwritten
            assert len(cache) == p, f"sequence {s}: position {p} after {len(cache)} cached tokens"
            cache.append(int(t))
            self.evaluated += 1
            if w:
                rows.append(self._context_logits(tuple(cache)))
        return np.array(rows, dtype=np.float32).reshape(len(rows), N_VOCAB)

    def kv_copy(self, src: int, dst: int, n: int) -> None:
        assert n <= len(self.caches[src])
        self.caches[dst] = list(self.caches[src][:n])

    def eval(self, tokens) -> np.ndarray:
        tokens = [int(t) for t in tokens]
        assert tokens, "no tokens to evaluate"
        assert self.n_past + len(tokens) <= self.n_ctx, "context overflow"
        self.cached += tokens
        self.evaluated += len(tokens)
        self._logits[:] = self._context_logits(tuple(self.cached))
        return self._logits

    def _context_logits(self, context: tuple[int, ...]) -> np.ndarray:
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

    def reset(self) -> None:
        self.cached = []

    def truncate(self, n: int) -> None:
        assert 0 <= n <= self.n_past
        self.cached = self.cached[:n]

    def shift(self, keep: int, discard: int) -> None:
        raise AssertionError("batch/API runs never shift the context")

    def close(self) -> None:
        pass
