"""The real `pygguf` command (argv tokeniser, Click, interactive session, terminal console) over
the fakes of interactive_pty_app.py, for pseudo-terminal tests of its flags: a model with a chat
template, whose replies are "You said: <TEXT UPPERCASED>".

usage: python cli_pty_app.py -m FAKE.gguf [pygguf flags...]"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # tests/: the fakes

from interactive_fakes import FakeModel, FakeTokenizer
from interactive_pty_app import TEMPLATE, EchoSampler

from pygguf_cli.main import cli
from pygguf_cli.runtime import Runtime


class CommandEchoSampler(EchoSampler):
    """What the command's set-up lines read from a sampler, besides the echo."""
    seed = 0

    def params_description(self) -> str:
        return "sampler params: (fake)"

    def chain_description(self) -> str:
        return "sampler chain: (fake)"


def main():
    models = []

    def load(path, **kwargs):
        models.append(FakeModel(FakeTokenizer(eot_id=4), metadata={"tokenizer.chat_template": TEMPLATE}))
        return models[-1]

    runtime = Runtime(load_model=load, make_sampler=lambda params, n_vocab, **kw: CommandEchoSampler(models[-1]),
                      sampler_params=dict, errors=())
    cli.main(args=sys.argv[1:], prog_name="pygguf", obj=runtime)


if __name__ == "__main__":
    main()
