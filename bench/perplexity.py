"""Measurement: our perplexity on Debian's GPL-3 text against llama.cpp's figure for the same file.

    .venv/bin/python bench/perplexity.py [-m MODEL] [-c 128] [-t 2]

llama.cpp's numbers (llama-perplexity -t 2 on this kind of machine) are read from
../shared/ref/smollm2.md; the run takes a minute or two on two cores, so it is not a test.
"""
from __future__ import annotations

import argparse
import re
import sys
import time

from pygguf.tools import perplexity as P
from pygguf.model import Model
from pygguf_cli.paths import default_model_path, shared_dir

TEXT = "/usr/share/common-licenses/GPL-3"


def llama_cpp_figure(model_file: str, n_ctx: int) -> float | None:
    """The 'PPL ± err' cell of smollm2.md's perplexity table for this quant type and context."""
    ref = shared_dir()
    if ref is None or n_ctx not in (128, 256):
        return None
    quant = re.search(r"\.(Q\w+|F16|F32)\.gguf$", model_file)
    for line in (ref / "ref" / "smollm2.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if quant and len(cells) == 3 and cells[0].split()[0] == quant.group(1):
            return float(cells[1 if n_ctx == 128 else 2].split()[0])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=str(default_model_path()))
    ap.add_argument("-c", "--ctx-size", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=2)
    args = ap.parse_args()
    m = Model.load(args.model, n_ctx=args.ctx_size, n_threads=args.threads)
    text = open(TEXT, encoding="utf-8").read()
    text = text[:-1] if text.endswith("\n") else text
    tokens = m.tokenizer.encode(text, add_special=True, parse_special=False)
    bos = m.tokenizer.bos_id if m.tokenizer.add_bos else None
    t0 = time.perf_counter()
    r = P.perplexity(m, tokens, args.ctx_size, bos_id=bos)
    took = time.perf_counter() - t0
    print(f"pygguf   : PPL = {r.ppl:.4f} +/- {r.uncertainty:.5f}  ({r.n_chunk} chunks, {took:.0f} s)")
    ref = llama_cpp_figure(args.model, args.ctx_size)
    if ref is None:
        print("llama.cpp: no reference figure for this file/context", file=sys.stderr)
        return
    print(f"llama.cpp: PPL = {ref:.4f}   difference {100 * (r.ppl / ref - 1):+.3f}%")


if __name__ == "__main__":
    main()
