"""`pygguf-batch` on the fake model, as a process of its own (so a test can kill -9 it, limit the
size of the files it writes, or close its stdout):

    python tests/batch_fake_app.py DELAY_SECONDS [pygguf-batch arguments without -m]

The model is batch_fakes.FaultyModel (NaN logits for "NaN:" prompts, a failing forward pass for
"CRASH:" ones), each forward pass pausing DELAY_SECONDS, so that a kill lands in the middle of a run.
"""
from __future__ import annotations

import sys

from batch_fakes import FaultyModel
from pygguf.api import Llama
from pygguf_cli.batch import main as batch_cli


def main() -> None:
    delay = float(sys.argv[1])

    def load(options):
        model = FaultyModel({"Greet:": "Hello world STOP! more"}, n_ctx=options.n_ctx or 128, n_seq=options.parallel,
                            delay=delay)
        return Llama(options.path, model=model, n_seq_max=options.parallel)
    batch_cli.main(["-m", "fake.gguf", *sys.argv[2:]], prog_name="pygguf-batch", obj={"load_llm": load})


if __name__ == "__main__":
    main()
