"""`make bench`: every benchmark in one run (benchmarks, never timed tests).

1. kernels: matrix x vector GB/s per type and shape at -t 1/-t 2 beside streaming-read bandwidth
2. tokenizer: MB/s on ~1 MB of English and of Python source
3. sampling: the sampler chain's cost per token against a decode step
4. model: prompt (pp128) and generation (tg64) tokens/s on the default model at -t 1 and -t 2
5. batch: total generated tokens/s of a 64-prompt batch run at --parallel 1, 2, 4, 8, 16
6. moe_bytes: the bytes a mixture-of-experts decode step reads (a synthetic Mixtral-style file,
   1.4 GB, built once in the cache) against what it should read, and its tokens/s beside a dense
   file of the same bytes per token
7. record_grammar --bench: the grammar stage's cost per token on SmolLM2 (json.gbnf, a nested JSON
   schema, a long enum, ...) against a decode step, beside llama.cpp's grammar sampler when the
   `make compare` venv exists
8. prompt_cache: time to first token on a 1,500-token prompt with a warm --prompt-cache file vs
   without, on SmolLM2 (bench/prompt_cache.py --synthetic llama2-7b:Q4_K_M for the 7B shape)
Each part is its own script in bench/; run one alone for more options.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPARE_PYTHON = HERE.parent / ".venv-compare" / "bin" / "python"
PARTS = [["kernels.py"], ["tokenizer.py"], ["sampling.py"], ["model.py"], ["batch.py"], ["moe_bytes.py"],
         ["record_grammar.py", "--bench", "--llama-python", str(COMPARE_PYTHON)], ["prompt_cache.py"]]


def main() -> int:
    print(f"loadavg {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (benchmarks want an idle machine)", flush=True)
    failed = []
    for part, *args in PARTS:
        script = HERE / part
        if not script.exists():
            print(f"\n== {part}: not present, skipped", flush=True)
            continue
        print(f"\n== {part}", flush=True)
        if subprocess.run([sys.executable, str(script), *args]).returncode != 0:
            failed.append(part)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
