"""Measurement: time to first token on a long prompt without and with a warm prompt cache (--prompt-cache).

    .venv/bin/python bench/prompt_cache.py [-m MODEL | --synthetic llama2-7b:Q4_K_M] [--prompt 1500] [-t 2]

cold: a fresh engine evaluates the whole prompt and samples one token (what a run without a cache
      does after loading the model); the state after the prompt is then saved to a file, as
      --prompt-cache does (its time is reported apart).
warm: a fresh engine reads that file, checks it (length, sha256, the model's settings), copies the
      cells into the KV cache, evaluates the last prompt token again and samples one token (what
      the second run does). The file was just written, so it is read from the page cache.
The model is loaded once for both (loading is the same with or without a cache). Timing, so not
a test; `make bench` runs it on SmolLM2 only (the 7B file costs minutes of prefill on 2 cores).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pygguf.generation.engine import Engine
from pygguf.generation.sequence import Request
from pygguf.model import Model, state
from pygguf.sampling import SamplerParams
from pygguf.tools import benchmark, synthetic
from pygguf_cli.paths import cache_dir, default_model_path, vocab_dir


def prompt_tokens(model: Model, n: int) -> list[int]:
    """n tokens of English-like text: a paragraph repeated, cut to n (BOS first when the model wants one)"""
    text = ("The llama is a domesticated South American camelid, widely used as a meat and pack animal by "
            "Andean cultures since the pre-Columbian era. Llamas are social animals and live with others "
            "as a herd. Their wool is soft and contains only a small amount of lanolin. ")
    tokens = model.tokenizer.encode(text * (n // 40 + 1), add_special=True)
    return tokens[:n]


def first_token_ms(engine: Engine, tokens: list[int]) -> tuple[float, int]:
    """ms from admission to the first sampled token, and how many prompt tokens were evaluated"""
    seq = engine.new_sequence(Request(tokens, n_predict=1, sampling=SamplerParams(seed=1, temp=0.0)))
    t0 = time.perf_counter()
    engine.admit(seq)
    while not seq.tokens:
        engine.step()
    ms = (time.perf_counter() - t0) * 1e3
    engine.release(seq)
    return ms, seq.timings.n_prompt_eval


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--synthetic", default=None, help="a synthetic model spec instead, e.g. llama2-7b:Q4_K_M")
    ap.add_argument("--prompt", type=int, default=1500, help="prompt tokens (default 1500)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--cache-type", default="f16", help="-ctk/-ctv (default f16)")
    args = ap.parse_args()
    if args.synthetic:
        path = synthetic.cached(args.synthetic, cache_dir() / "synthetic", vocab_dir(),
                                on_build=lambda p: print(f"building {p} (once)", flush=True))
    else:
        path = Path(args.model) if args.model else default_model_path()
    if not path.is_file():
        sys.exit(f"{path} is missing (`make model` fetches the default)")
    print(f"{benchmark.cpu_name()}, {args.threads} threads, {path.name}, cache {args.cache_type}", flush=True)
    t0 = time.perf_counter()
    model = Model.load(path, n_ctx=args.prompt + 64, n_threads=args.threads, type_k=args.cache_type,
                       type_v=args.cache_type)
    model.tokenizer
    print(f"loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    tokens = prompt_tokens(model, args.prompt)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        file = Path(tmp) / "prompt.bin"
        cold = Engine(model)
        cold_ms, cold_eval = first_token_ms(cold, tokens)
        t0 = time.perf_counter()
        state.write_file(file, cold.state_parts(0, len(tokens)))
        save_ms = (time.perf_counter() - t0) * 1e3
        size = file.stat().st_size

        warm = Engine(model)
        t0 = time.perf_counter()
        warm.load_state(state.read_file(file), source=str(file))
        load_ms = (time.perf_counter() - t0) * 1e3
        eval_ms, warm_eval = first_token_ms(warm, tokens)
    warm_ms = load_ms + eval_ms
    print(f"prompt {len(tokens)} tokens; state file {size / 2**20:.1f} MiB, saved in {save_ms:.0f} ms (atomic, fsynced)")
    print(f"cold: first token after {cold_ms:9.1f} ms ({cold_eval} prompt tokens evaluated)")
    print(f"warm: first token after {warm_ms:9.1f} ms (state read + checked + copied {load_ms:.1f} ms, "
          f"{warm_eval} prompt token evaluated {eval_ms:.1f} ms)")
    print(f"speed-up {cold_ms / warm_ms:.1f}x")
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
