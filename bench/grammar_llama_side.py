"""llama.cpp's side of the grammar comparisons (run by the `make compare` venv's python, which has
llama-cpp-python 0.3.36 and not pygguf): reads one JSON job on stdin, writes one JSON answer.

Job: {"model": path, "grammar": GBNF text, "prompt_ids": [...], "n_predict": N, "repeats": R}
Answer, for greedy decoding under the grammar through llama.cpp's own grammar sampler
(llama_sampler_init_grammar, applied to every token then the argmax taken, as its common sampler
does when the first pick is refused):
  "tokens":   the tokens chosen (an end-of-generation token ends the list, included),
  "allowed":  per step, the sorted ids the grammar allowed,
  "margins":  per step, the best allowed logit minus the second best (how firm the greedy pick is),
  "apply_us": per step, microseconds of one grammar apply over the whole vocabulary (the best of
              R repeats on copies of the step's state),
  "decode_us": per step, microseconds of the llama_decode of one token (its forward pass).
"""
from __future__ import annotations

import ctypes
import json
import sys
import time

import numpy as np
import llama_cpp


def token_array(logits: np.ndarray):
    n = logits.shape[0]
    data = (llama_cpp.llama_token_data * n)()
    for i in range(n):
        data[i].id, data[i].logit, data[i].p = i, float(logits[i]), 0.0
    arr = llama_cpp.llama_token_data_array(data=ctypes.cast(data, ctypes.POINTER(llama_cpp.llama_token_data)),
                                           size=n, selected=-1, sorted=False)
    return data, arr


def apply(sampler, logits: np.ndarray) -> tuple[np.ndarray, float]:
    """the grammar applied to a fresh copy of the logits: (logits after, microseconds)"""
    data, arr = token_array(logits)
    t0 = time.perf_counter()
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
    us = (time.perf_counter() - t0) * 1e6
    out = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_float)), shape=(logits.shape[0] * 3,))
    return out[1::3].copy(), us


def main() -> None:
    job = json.load(sys.stdin)
    llm = llama_cpp.Llama(job["model"], n_ctx=512, n_batch=512, n_threads=job.get("threads", 2),
                          logits_all=False, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    grammar = llama_cpp.llama_sampler_init_grammar(vocab, job["grammar"].encode(), b"root")
    if not grammar:
        print(json.dumps({"error": "llama.cpp refused the grammar"}))
        return
    llm.eval(job["prompt_ids"])
    tokens, allowed, margins, apply_us, decode_us = [], [], [], [], []
    for _ in range(job["n_predict"]):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        best = float("inf")
        for _ in range(job.get("repeats", 3)):
            masked, us = apply(grammar, logits)
            best = min(best, us)
        apply_us.append(best)
        ok = np.flatnonzero(np.isfinite(masked))
        allowed.append(ok.tolist())
        token = int(ok[np.argmax(masked[ok])]) if ok.size else -1
        top = np.sort(masked[ok])[-2:] if ok.size else np.zeros(2)
        margins.append(float(top[-1] - top[0]) if ok.size > 1 else float("inf"))
        tokens.append(token)
        if token < 0 or llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        llama_cpp.llama_sampler_accept(grammar, token)
        t0 = time.perf_counter()
        llm.eval([token])
        decode_us.append((time.perf_counter() - t0) * 1e6)
    print(json.dumps({"tokens": tokens, "allowed": allowed, "margins": margins, "apply_us": apply_us,
                      "decode_us": decode_us}))


if __name__ == "__main__":
    main()
