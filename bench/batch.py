"""Batched decoding: total generated tokens/s of a batch run at --parallel 1, 2, 4, 8, 16.

    .venv/bin/python bench/batch.py [-m FILE] [--prompts 64] [-n 64] [-t 2] [--parallel 1,2,4,8,16]

The issue's measurement: 64 prompts of about 30 tokens, 64 generated tokens each, SmolLM2 Q4_1 at
-t 2, through the same path pygguf-batch takes (run_batch, records, a JSONL writer to nowhere).
The rate counts every generated token over the whole run's wall time, prompts included. The
prompts differ after their opening words (4 openings, at most 10 tokens in common, which a slot's
cache reuses at every --parallel alike); the seeds are fixed, so every --parallel must produce the
same texts, and the script says so or fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pygguf.api import Llama
from pygguf.tools.batch import BatchDefaults, Record, ResultWriter, run_batch
from pygguf_cli.paths import default_model_path

SUBJECTS = ["the sea", "a lighthouse keeper", "prime numbers", "an old bicycle", "the first snow", "a robot chef",
            "mountain goats", "a library at night", "the moon landing", "a jazz trio", "desert rain", "a lost key",
            "volcanoes", "a chess endgame", "honeybees", "the northern lights"]
STYLES = ["Write a short story about", "Explain to a ten year old child everything about",
          "Describe in vivid detail the sounds and colours of", "Give three surprising facts about"]


def prompts(n: int) -> list[str]:
    """n different prompts of about 30 tokens"""
    out = []
    for i in range(n):
        subject, style = SUBJECTS[i % len(SUBJECTS)], STYLES[(i // len(SUBJECTS)) % len(STYLES)]
        out.append(f"{style} {subject}, number {i}, in a calm and friendly voice, using simple words "
                   f"and short sentences that a reader will enjoy:")
    return out


def run(llm: Llama, texts: list[str], parallel: int, n_predict: int) -> tuple[float, int, dict]:
    """(seconds, tokens generated, {id: text}) of one batch run"""
    records = [Record(index=i, id=i, prompt=t, params={"seed": 1000 + i}) for i, t in enumerate(texts)]
    texts_by_id: dict = {}

    def collect(line: bytes) -> None:
        for record in map(json.loads, line.splitlines()):
            texts_by_id[record["id"]] = record.get("text", record.get("error"))
    generated = [0]

    def progress(_records: int, tokens: int) -> None:
        generated[0] = tokens
    llm.reset()                     # each --parallel starts from an empty cache
    t0 = time.perf_counter()
    summary = run_batch(llm, records, ResultWriter(collect), BatchDefaults(n_predict=n_predict), parallel=parallel,
                        on_progress=progress)
    seconds = time.perf_counter() - t0
    if summary.failed:
        raise SystemExit(f"{summary.failed} records failed at --parallel {parallel}")
    return seconds, generated[0], texts_by_id


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=str(default_model_path()))
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("-n", "--n-predict", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-c", "--ctx-size", type=int, default=256, help="each sequence's context")
    ap.add_argument("--parallel", default="1,2,4,8,16")
    args = ap.parse_args()
    levels = [int(p) for p in args.parallel.split(",")]
    llm = Llama(args.model, n_ctx=args.ctx_size, n_threads=args.threads, n_seq_max=max(levels))
    texts = prompts(args.prompts)
    n_prompt = sum(len(llm.tokenize(t, add_bos=True, special=True)) for t in texts)
    print(f"{Path(args.model).name} -t {args.threads}: {args.prompts} prompts ({n_prompt / len(texts):.1f} tokens "
          f"each on average), -n {args.n_predict}; loadavg {os.getloadavg()[0]:.2f}")
    print(f"{'--parallel':>10} {'seconds':>8} {'generated':>10} {'tok/s':>8} {'vs 1':>6}")
    base_rate, base_texts, same = None, None, True
    for p in levels:
        seconds, generated, results = run(llm, texts, p, args.n_predict)
        rate = generated / seconds
        base_rate = base_rate or rate
        if base_texts is None:
            base_texts = results
        elif results != base_texts:
            same = False
            print(f"  --parallel {p} changed the text of {sum(results[k] != base_texts[k] for k in results)} records")
        print(f"{p:>10} {seconds:>8.2f} {generated:>10} {rate:>8.1f} {rate / base_rate:>5.2f}x", flush=True)
    print("texts identical at every --parallel" if same else "TEXTS DIFFER between --parallel levels")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
