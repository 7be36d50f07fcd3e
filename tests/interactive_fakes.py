"""Fakes for the interactive-mode tests: a character-level tokenizer, a model that records what it
was fed (its 'KV cache'), a sampler that plays a script, and a console fed scripted lines."""
from __future__ import annotations

from fake_model import FakeModel as BaseFakeModel

SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
N_SPECIAL = len(SPECIALS)


class FakeTokenizer:
    """Special tokens 0..4, then one token per character (code point + N_SPECIAL)."""

    def __init__(self, add_bos=False, eot_id=None):
        self.add_bos = add_bos
        self.add_eos = False
        self.bos_id = 1
        self.eos_id = 2
        self.eot_id = eot_id
        self.eog_ids = {2, 4}
        self.n_vocab = N_SPECIAL + 0x110000

    def encode(self, text, add_special=True, parse_special=True):
        ids = [self.bos_id] if add_special and self.add_bos else []
        i = 0
        while i < len(text):
            special = next((s for s in SPECIALS if parse_special and text.startswith(s, i)), None)
            if special is not None:
                ids.append(SPECIALS.index(special))
                i += len(special)
            else:
                ids.append(N_SPECIAL + ord(text[i]))
                i += 1
        return ids

    def piece(self, token, special):
        if token < N_SPECIAL:
            return SPECIALS[token] if special else ""
        return chr(token - N_SPECIAL)

    def decode(self, ids, special=False):
        return "".join(self.piece(t, special) for t in ids)

    def token_to_bytes(self, token, special=False):
        return self.piece(token, special).encode()

    def is_eog(self, token):
        return token in self.eog_ids

    def stream_decoder(self, special=False):
        tok = self

        class Decoder:
            def push(self, token):
                return tok.piece(token, special)

            def flush(self):
                return ""
        return Decoder()

    def ids(self, text):
        return self.encode(text, add_special=False, parse_special=True)


class FakeModel(BaseFakeModel):
    """The one fake model (tests/fake_model.py) with zero logits; `cache` is what sequence 0 holds,
    `eval_calls` each decode call's tokens; on_eval(model) runs after each decode."""

    def __init__(self, tokenizer, n_ctx=4096, metadata=None, on_eval=None, n_batch=512):
        super().__init__(tokenizer, 8, n_ctx=n_ctx, metadata=metadata, n_batch=n_batch)
        self.on_eval = on_eval

    @property
    def eval_calls(self):
        return self.calls

    def decode(self, batch):
        rows = super().decode(batch)
        if self.on_eval:
            self.on_eval(self)
        return rows

    def text(self, special=True):
        return self.tokenizer.decode(self.cache, special=special)


class FakeSampler:
    """Plays scripted replies: each reply is a string (special tokens allowed), one token at a time;
    `on_sample(index)` runs before each draw (used to send a real SIGINT mid-reply)."""

    def __init__(self, tokenizer, replies, on_sample=None):
        self.queue = [t for reply in replies for t in tokenizer.ids(reply)]
        self.accepted: list[int] = []
        self.draws = 0
        self.on_sample = on_sample

    def sample(self, logits):
        if self.on_sample:
            self.on_sample(self.draws)
        self.draws += 1
        if not self.queue:
            raise AssertionError("sampler script exhausted: the session generated more than scripted")
        return self.queue.pop(0)

    def accept(self, token):
        self.accepted.append(token)

    grammar_done = False                # no grammar stage (pygguf.sampling.Sampler has one)

    def restart_grammar(self) -> None:
        pass

    def accept_all(self, tokens) -> None:
        for token in tokens:
            self.accept(token)


class ScriptedConsole:
    """Lines to 'type': a str, None for Ctrl+D, KeyboardInterrupt for Ctrl+C at the prompt."""

    def __init__(self, lines, is_tty=True):
        self.lines = list(lines)
        self.is_tty = is_tty
        self.out: list[str] = []
        self.err: list[str] = []
        self.prompts: list[str] = []

    def write(self, text, kind="output"):
        self.out.append(text)

    def info(self, text):
        self.err.append(text)

    def error(self, text):
        self.err.append(text)

    def read_line(self, prompt=""):
        self.prompts.append(prompt)
        self.out.append(prompt)
        if not self.lines:
            raise AssertionError("console script exhausted")
        line = self.lines.pop(0)
        if line is KeyboardInterrupt:
            raise KeyboardInterrupt
        if line is not None:
            self.out.append(line + "\n")
        return line

    @property
    def stdout(self):
        return "".join(self.out)

    @property
    def stderr(self):
        return "\n".join(self.err)
