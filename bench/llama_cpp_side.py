"""llama.cpp's side of `make compare`, run by the compare venv's Python (llama-cpp-python).

Prints one JSON object: load seconds, and the tokens/s of each repetition of pp and of tg for one
file and thread count, measured like llama-bench: pp = one batch of N prompt tokens from an empty
cache, tg = N tokens decoded one at a time from an empty cache, after llama-bench's warm-ups.
"""
import json
import sys
import time

import llama_cpp


def main(path: str, threads: int, n_prompt: int, n_gen: int, reps: int) -> None:
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=max(n_prompt, n_gen, 16), n_batch=512, n_ubatch=512,
                          n_threads=threads, n_threads_batch=threads, verbose=False, logits_all=False)
    load_s = time.perf_counter() - t0
    prompt = [(i * 7919) % 1000 + 100 for i in range(max(n_prompt, n_gen))]
    pp, tg = [], []
    llm.eval(prompt[:n_prompt])  # llama-bench's warm-ups: the whole prompt, one generated token
    llm.reset()
    llm.eval(prompt[:1])
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt[:n_prompt])
        pp.append(n_prompt / (time.perf_counter() - t))
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        for i in range(n_gen):
            llm.eval([prompt[i]])
        tg.append(n_gen / (time.perf_counter() - t))
    print(json.dumps({"load_s": load_s, "pp": pp, "tg": tg}))


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


# the KV cache types -ctk/-ctv take, as llama-cpp-python's ggml type ids
CACHE_TYPE_IDS = {"f16": 1, "q8_0": 8, "q4_0": 2}


def perplexity(path: str, text_file: str, n_ctx: int, threads: int, type_k: str = "f16", type_v: str = "f16") -> None:
    """llama-perplexity's method through llama-cpp-python: chunks of n_ctx tokens from an empty
    cache, BOS swapped into the first position when the vocab adds one, the second half scored.
    A quantized V cache needs flash attention in llama.cpp, so any quantized cache turns it on."""
    import numpy as np

    quantized = (type_k, type_v) != ("f16", "f16")
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
                          n_threads_batch=threads, logits_all=True, verbose=False, type_k=CACHE_TYPE_IDS[type_k],
                          type_v=CACHE_TYPE_IDS[type_v], flash_attn=quantized)
    text = open(text_file, encoding="utf-8").read()
    text = text[:-1] if text.endswith("\n") else text
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
    nll, count = 0.0, 0
    for c in range(len(tokens) // n_ctx):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if add_bos:
            chunk[0] = llm.token_bos()
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(n_ctx // 2, n_ctx - 1):
            row = logits[j]
            top = row.max()
            nll += top + np.log(np.exp(row - top).sum()) - row[chunk[j + 1]]
            count += 1
    print(json.dumps({"ppl": float(np.exp(nll / count)), "chunks": len(tokens) // n_ctx}))


if __name__ == "__main__":
    if sys.argv[1] == "ppl":
        perplexity(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), *sys.argv[6:8])
    elif sys.argv[1] == "tokenize":
        tokenize(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
