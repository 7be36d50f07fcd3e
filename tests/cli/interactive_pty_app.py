"""A stand-in `pygguf` for pseudo-terminal tests: the real interactive session and terminal console
over the fakes. The fake 'model' answers each user turn with "You said: <TEXT UPPERCASED>" (or 300
slow 'x' for "long"), so tests see replies that depend on what went through the terminal.

usage: python interactive_pty_app.py '{"conversation": true, ...}' [color]
At exit it prints the cache contents as `CACHE: <repr>` on stderr."""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # tests/: the fakes

from interactive_fakes import FakeModel, FakeTokenizer  # noqa: E402
from pygguf_cli.console import TerminalConsole, color_enabled  # noqa: E402
from pygguf_cli.interactive import InteractiveParams, run_interactive  # noqa: E402

TEMPLATE = ("{% for message in messages %}"
            "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


class EchoSampler:
    def __init__(self, model):
        self.model = model
        self.queue: list[int] = []
        self.tok = model.tokenizer

    def reply_for(self, text: str) -> str:
        return "x" * 300 if text == "long" else "You said: " + text.upper()

    def sample(self, logits):
        cache = self.tok.decode(self.model.cache, special=True)
        if cache.endswith("<|im_start|>assistant\n"):
            user = cache.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>")[0]
            self.queue = self.tok.ids(self.reply_for(user)) + [4]
        if not self.queue:
            return 4
        if len(self.queue) > 20:
            time.sleep(0.02)        # a long reply is slow, so Ctrl+C can land in the middle
        return self.queue.pop(0)

    def accept(self, token):
        pass

    grammar_done = False                # no grammar stage (pygguf.sampling.Sampler has one)

    def restart_grammar(self) -> None:
        pass

    def accept_all(self, tokens):
        pass


def main():
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    color = sys.argv[2] if len(sys.argv) > 2 else "off"
    tok = FakeTokenizer(eot_id=4)
    model = FakeModel(tok, metadata={"tokenizer.chat_template": TEMPLATE})
    console = TerminalConsole(color=color_enabled(color, sys.stdout))
    rc = 1
    try:
        rc = run_interactive(model, EchoSampler(model), InteractiveParams(**options), console)
    finally:
        sys.stderr.write("CACHE: " + repr(model.text()) + "\n")
        sys.stderr.flush()
    sys.exit(rc)


if __name__ == "__main__":
    main()
