"""Drive one sequence of a real Model token run by token run, for tests of the forward pass.

The product never does this (the engine owns the cache bookkeeping); tests that check logits
position by position want the old shape of it: eval(tokens) appends at n_past and returns the last
token's logits, eval_all every token's, in n_batch chunks through Model.decode.
"""
from __future__ import annotations

import numpy as np

from pygguf._native import ffi, lib
from pygguf.model import kernels
from pygguf.model.batch import Batch


def read_kv(model, layer: int, pos0: int, n: int, seq: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Copies of cached K and V (n_head_kv, n, head_dim) of one layer of one sequence, as float32,
    through the test-only entry point pg_model_kv_read (csrc/testing/model.h)."""
    c = model.config
    k = np.empty((c.n_head_kv, n, c.head_dim), dtype=np.float32)
    v = np.empty_like(k)
    kernels.check(lib.pg_model_kv_read(model._model, seq, layer, pos0, n, ffi.cast("float *", k.ctypes.data),
                                       ffi.cast("float *", v.ctypes.data)), "read KV cache")
    return k, v


class Runner:
    def __init__(self, model, seq: int = 0):
        self.model = model
        self.seq = seq
        self.n_past = 0

    def _run(self, tokens, logits: str) -> list[np.ndarray]:
        tokens = [int(t) for t in np.asarray(tokens).reshape(-1)]
        rows = []
        for i in range(0, len(tokens), self.model.n_batch):
            chunk = tokens[i:i + self.model.n_batch]
            last = i + self.model.n_batch >= len(tokens)
            mode = logits if logits == "all" or last else "none"
            out = self.model.decode(Batch.of(chunk, self.n_past, self.seq, mode))
            self.n_past += len(chunk)
            if out.shape[0]:
                rows.append(out.copy())
        return rows

    def eval(self, tokens) -> np.ndarray:
        """(n_vocab,) logits of the last token"""
        return self._run(tokens, "last")[-1][-1]

    def eval_all(self, tokens) -> np.ndarray:
        """(len(tokens), n_vocab) logits of every token"""
        return np.concatenate(self._run(tokens, "all"))

    def reset(self) -> None:
        self.n_past = 0

    def truncate(self, n: int) -> None:
        """forget positions >= n (what the engine does to reuse a cached prefix)"""
        assert 0 <= n <= self.n_past
        self.n_past = n

    def shift(self, keep: int, discard: int) -> None:
        self.model.kv_shift(self.seq, self.n_past, keep, discard)
        self.n_past -= discard

    def kv_cache(self, layer: int, pos0: int = 0, n: int | None = None):
        return read_kv(self.model, layer, pos0, self.n_past - pos0 if n is None else n, seq=self.seq)

    # the model's own attributes (config, n_ctx, close, ...) and `with Runner(model) as m:`
    def __getattr__(self, name):
        return getattr(self.model, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.model.close()
