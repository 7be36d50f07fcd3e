"""llama.cpp's side of bench/record_families.py, run by the compare venv's Python (llama-cpp-python,
numpy; nothing of pygguf).

    python llama_cpp_families_side.py JOB.json

JOB.json: {"settings": {...}, "tokens": [...], "n_greedy": 16,
           "quantize": [{"src": F16 path, "dst": path, "ftype": llama_ftype id}, ...],
           "eval": [{"path": model, "out": npz path, "n_expert": 0 or N}, ...]}

quantize: llama.cpp's own llama_model_quantize (default parameters) of each F16 file, so the caller
can check that pygguf's quantizer wrote the same tensor bytes.
eval: for each model, logits at every position of `tokens` evaluated as one batch, then the greedy
continuation (argmax, one token at a time) with each step's logits; for models with experts a
second run with an eval callback records every layer's router probabilities (ffn_moe_probs-<il>)
for the prompt and the greedy tokens, and its logits must equal the first run's bit for bit. Prints one JSON line of facts per model.
"""
import ctypes
import json
import re
import sys

import llama_cpp
import llama_cpp.llama_cpp as lc
import numpy as np
from llama_cpp._ggml import libggml


def load(path, settings, cb_eval=None):
    """A Llama with the recorded settings; cb_eval: an eval callback set in its context params."""
    original = lc.llama_context_default_params
    if cb_eval is not None:
        def patched():
            p = original()
            p.cb_eval = cb_eval
            return p
        lc.llama_context_default_params = patched
    try:
        return llama_cpp.Llama(model_path=path, n_ctx=settings["n_ctx"], n_batch=settings["n_batch"],
                               n_ubatch=settings["n_ubatch"], n_threads=settings["n_threads"],
                               n_threads_batch=settings["n_threads"], flash_attn=settings["flash_attn"],
                               logits_all=True, verbose=False, seed=0)
    finally:
        lc.llama_context_default_params = original


def prompt_logits(llm, tokens):
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)], dtype=np.float32)


def greedy(llm, last, n):
    """argmax decoding after the prompt: ids, every step's logits (the step's input row)."""
    ids, steps, logits = [], [], last
    for _ in range(n):
        steps.append(logits.copy())
        ids.append(int(np.argmax(logits)))
        llm.eval([ids[-1]])
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    return ids, np.stack(steps)


# ggml accessors for the eval callback (the tensors live in host memory on the CPU backend)
libggml.ggml_get_name.restype = ctypes.c_char_p
libggml.ggml_get_name.argtypes = [ctypes.c_void_p]
libggml.ggml_nelements.restype = ctypes.c_int64
libggml.ggml_nelements.argtypes = [ctypes.c_void_p]
libggml.ggml_get_data_f32.restype = ctypes.POINTER(ctypes.c_float)
libggml.ggml_get_data_f32.argtypes = [ctypes.c_void_p]
libggml.ggml_is_contiguous.restype = ctypes.c_bool
libggml.ggml_is_contiguous.argtypes = [ctypes.c_void_p]


def router_probs(path, settings, tokens, greedy_ids, n_expert, n_layer):
    """(n_layer, n_tokens + n_greedy, n_expert) softmax router probabilities of the prompt batch
    and then of each greedy token fed one at a time, and the prompt's logits."""
    seen = {}

    def callback(t, ask, _user):
        name = libggml.ggml_get_name(t).decode()
        m = re.fullmatch(r"ffn_moe_probs-(\d+)", name)       # not its "(reshaped)" views
        if ask or not m:
            return m is not None
        assert libggml.ggml_is_contiguous(t), name
        n = libggml.ggml_nelements(t)
        data = np.ctypeslib.as_array(libggml.ggml_get_data_f32(t), shape=(n,)).copy()
        seen.setdefault(int(m.group(1)), []).append(data.reshape(-1, n_expert))
        return True

    cb = lc.ggml_backend_sched_eval_callback(callback)
    llm = load(path, settings, cb)
    seen.clear()                          # warm-up or reserve runs, if any
    logits = prompt_logits(llm, tokens)
    for t in greedy_ids:
        llm.eval([t])
    llm.close()
    probs = np.stack([np.concatenate(seen[i]) for i in range(n_layer)])
    assert probs.shape[1] == len(tokens) + len(greedy_ids), probs.shape
    return probs, logits


def main(job_path):
    with open(job_path) as fh:
        job = json.load(fh)
    settings, tokens = job["settings"], job["tokens"]
    for q in job.get("quantize", []):
        params = lc.llama_model_quantize_default_params()
        params.ftype = q["ftype"]
        params.nthread = settings["n_threads"]
        rc = lc.llama_model_quantize(q["src"].encode(), q["dst"].encode(), ctypes.byref(params))
        if rc != 0:
            raise SystemExit(f"llama_model_quantize {q['src']} -> {q['dst']}: error {rc}")
    for e in job.get("eval", []):
        llm = load(e["path"], settings)
        logits = prompt_logits(llm, tokens)
        ids, steps = greedy(llm, logits[-1], job["n_greedy"])
        facts = {"path": e["path"], "n_ctx": llm.n_ctx(), "n_vocab": llm.n_vocab()}
        llm.close()
        out = {"logits": logits, "greedy_ids": np.array(ids, dtype=np.int32), "greedy_logits": steps}
        if e.get("n_expert"):
            probs, again = router_probs(e["path"], settings, tokens, ids, e["n_expert"], e["n_layer"])
            facts["probe_logits_identical"] = bool(np.array_equal(again, logits))
            out["router_probs"] = probs.astype(np.float32)
        np.savez(e["out"], **out)
        print(json.dumps(facts), flush=True)
    print(json.dumps({"llama_cpp_python": llama_cpp.__version__,
                      "system_info": lc.llama_print_system_info().decode(errors="replace")}))


if __name__ == "__main__":
    main(sys.argv[1])
