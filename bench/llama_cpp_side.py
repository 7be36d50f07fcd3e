"""llama.cpp's side of `make compare`, run by the compare venv's Python (llama-cpp-python).

Prints one JSON object: load seconds, pp tokens/s and tg tokens/s for one file and thread count,
measured like llama-bench: pp = one batch of N prompt tokens from an empty cache, tg = N tokens
decoded one at a time from an empty cache.
"""
import json
import sys
import time

import llama_cpp


def main(path: str, threads: int, n_prompt: int, n_gen: int, reps: int) -> None:
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False, logits_all=False)
    load_s = time.perf_counter() - t0
    prompt = [(i * 7919) % 1000 + 100 for i in range(n_prompt)]
    llm.eval(prompt[:8])  # warm-up, as llama-bench does
    pp, tg = [], []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        pp.append(n_prompt / (time.perf_counter() - t))
        llm.reset()
        t = time.perf_counter()
        for i in range(n_gen):
            llm.eval([prompt[i % n_prompt]])
        tg.append(n_gen / (time.perf_counter() - t))
    print(json.dumps({"load_s": load_s, "pp": max(pp), "tg": max(tg)}))


def tokenize(path: str, text_file: str) -> None:
    """Seconds llama.cpp's tokenizer takes over a text file (vocab only, no BOS, no special parsing)."""
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    data = open(text_file, "rb").read()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        ids = llm.tokenize(data, add_bos=False, special=False)
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"seconds": best, "tokens": len(ids)}))


if __name__ == "__main__":
    if sys.argv[1] == "tokenize":
        tokenize(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
