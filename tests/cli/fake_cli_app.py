"""The real `pygguf` entry point (pygguf_cli.main.main: stream guards included) over the fakes of
tests/cli_fakes.py, for tests that run the command as a process: a closed or full stdout, a closed
stdin, a pseudo-terminal. The fake model answers " there" then end of text.

usage: python fake_cli_app.py -m ANY_FILE [pygguf options...]"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # tests/: the fakes

from cli_fakes import EOS, FakeModel, FakeSampler, FakeSamplerParams, tokens_of

from pygguf.errors import PyggufError
from pygguf_cli import main as cli_main
from pygguf_cli.runtime import Runtime

RUNTIME = Runtime(load_model=lambda path, **kwargs: FakeModel(tokens_of(" there") + [EOS], n_ctx=512),
                  make_sampler=FakeSampler, sampler_params=FakeSamplerParams, errors=(PyggufError, OSError))

if __name__ == "__main__":
    Runtime.default = classmethod(lambda cls: RUNTIME)     # what cli() uses when no ctx.obj is given
    cli_main.main(sys.argv[1:])
