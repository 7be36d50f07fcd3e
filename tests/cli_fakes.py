"""Small deterministic stand-ins for Model, Tokenizer and Sampler, to test the generator and CLI.

FakeTokenizer: ids 0..255 are single bytes (so a UTF-8 character can split across tokens), then
three specials (<s>, </s>, <|eot|>), then a few multi-byte words. FakeModel (the one fake model of
tests/fake_model.py) returns logits whose argmax is the next entry of a script, one entry per
decode call. FakeSampler is greedy.
"""
from __future__ import annotations

import numpy as np

from fake_model import FakeModel as BaseFakeModel

BOS, EOS, EOT = 256, 257, 258
SPECIALS = {BOS: "<s>", EOS: "</s>", EOT: "<|eot|>"}
WORDS = ["Hello", " world", " STOP", "!"]
WORD_IDS = {w: 259 + i for i, w in enumerate(WORDS)}
N_VOCAB = 259 + len(WORDS)


def byte_tokens(text: str) -> list[int]:
    return list(text.encode("utf-8"))


class FakeStreamDecoder:
    def __init__(self, tokenizer: FakeTokenizer, special: bool):
        self.tokenizer = tokenizer
        self.special = special
        self.pending = b""

    def push(self, token: int) -> str:
        self.pending += self.tokenizer.token_to_bytes(token, self.special)
        for cut in range(len(self.pending), max(-1, len(self.pending) - 4), -1):
            try:
                text = self.pending[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self.pending = self.pending[cut:]
            return text
        text, self.pending = self.pending.decode("utf-8", "replace"), b""
        return text

    def flush(self) -> str:
        text, self.pending = self.pending.decode("utf-8", "replace"), b""
        return text


class FakeTokenizer:
    n_vocab = N_VOCAB
    bos_id, eos_id, eot_id = BOS, EOS, EOT
    eog_ids = {EOS, EOT}
    add_bos, add_eos = True, False

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        ids = [BOS] if add_special and self.add_bos else []
        i = 0
        while i < len(text):
            match = None
            candidates = list(WORD_IDS.items())
            if parse_special:
                candidates += [(s, t) for t, s in SPECIALS.items()]
            for piece, token in candidates:
                if text.startswith(piece, i) and (match is None or len(piece) > len(match[0])):
                    match = (piece, token)
            if match:
                ids.append(match[1])
                i += len(match[0])
            else:
                ids += byte_tokens(text[i])
                i += 1
        return ids

    def token_to_bytes(self, token: int, special: bool = False) -> bytes:
        if token < 256:
            return bytes([token])
        if token in SPECIALS:
            return SPECIALS[token].encode() if special else b""
        return WORDS[token - 259].encode()

    def decode(self, ids, special: bool = False) -> str:
        return b"".join(self.token_to_bytes(t, special) for t in ids).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return token in self.eog_ids

    def stream_decoder(self, special: bool = False) -> FakeStreamDecoder:
        return FakeStreamDecoder(self, special)


class FakeModel(BaseFakeModel):
    """Decode call k returns logits peaking at script[k] (the last entry repeats)."""

    def __init__(self, script: list[int], n_ctx: int = 64, n_ctx_train: int = 64, interrupt_at: int | None = None):
        super().__init__(FakeTokenizer(), N_VOCAB, n_ctx=n_ctx, n_ctx_train=n_ctx_train)
        self.script = list(script)
        self.interrupt_at = interrupt_at

    def before_decode(self, call: int) -> None:
        if self.interrupt_at is not None and call == self.interrupt_at:
            raise KeyboardInterrupt

    def logits_for(self, context, call):
        logits = np.zeros(N_VOCAB, dtype=np.float32)
        logits[self.script[min(call, len(self.script) - 1)]] = 10.0
        return logits


class FakeSamplerParams(dict):
    """Stands in for pygguf.sampling.SamplerParams: keeps whatever options were given."""

    def __init__(self, **given):
        super().__init__(given)


class FakeSampler:
    """Greedy; records what it was built with and what it accepted."""

    def __init__(self, params=None, n_vocab: int = N_VOCAB, eog_ids=(), **kwargs):
        self.params = params
        self.kwargs = kwargs
        self.n_vocab = n_vocab
        self.eog_ids = set(eog_ids)
        self.seed = 1234
        self.accepted: list[int] = []
        self.resets = 0

    def sample(self, logits: np.ndarray) -> int:
        assert logits.shape == (self.n_vocab,)
        return int(np.argmax(logits))

    def accept(self, token: int) -> None:
        self.accepted.append(token)

    grammar_done = False                # no grammar stage (pygguf.sampling.Sampler has one)

    def restart_grammar(self) -> None:
        pass

    def accept_all(self, tokens) -> None:
        for token in tokens:
            self.accept(token)

    def reset(self) -> None:
        self.accepted.clear()
        self.resets += 1

    def chain_description(self) -> str:
        return "sampler chain: logits -> greedy"

    def params_description(self) -> str:
        return "sampler params: \n\tgreedy"


def tokens_of(text: str) -> list[int]:
    """The ids FakeTokenizer gives `text` (no BOS)."""
    return FakeTokenizer().encode(text, add_special=False)
