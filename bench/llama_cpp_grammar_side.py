"""llama.cpp's side of bench/grammar.py, run by the compare venv's Python (llama-cpp-python):
its grammar sampler (llama_sampler_init_grammar) over the model's vocabulary, timed at the same
states (the same accepted token ids) as pygguf's matcher.

    .venv-compare/bin/python bench/llama_cpp_grammar_side.py REQUEST.json

REQUEST: {"model", "grammar" (GBNF text), "tokens" (ids accepted in turn), "states" (how many of
them are accepted at each measured state), "check" (the next token at each state), "reps"}.
Prints one JSON object: per state the microseconds of each llama_sampler_apply over the whole
vocabulary (what common_sampler_sample does after a refused token) and over the one token
(its first check), the ids the whole-vocabulary apply left finite, and every token's piece
(token_to_piece, special=True) in hex, so the caller can check it reads the same pieces.
"""
import ctypes
import json
import sys
import time

import llama_cpp


def main(request_path: str) -> None:
    req = json.load(open(request_path, encoding="utf-8"))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(req["model"].encode(), params)
    if not model:
        raise SystemExit(f"llama.cpp could not load {req['model']}")
    vocab = llama_cpp.llama_model_get_vocab(model)
    n = llama_cpp.llama_vocab_n_tokens(vocab)

    pieces = []
    buf = ctypes.create_string_buffer(512)
    for t in range(n):
        k = llama_cpp.llama_token_to_piece(vocab, t, buf, len(buf), 0, True)
        pieces.append(buf.raw[:k].hex())

    t0 = time.perf_counter()
    smpl = llama_cpp.llama_sampler_init_grammar(vocab, req["grammar"].encode(), b"root")
    init_s = time.perf_counter() - t0
    if not smpl:
        raise SystemExit("llama.cpp refused the grammar")

    pristine = (llama_cpp.llama_token_data * n)()
    for i in range(n):
        pristine[i].id = i
        pristine[i].logit = 0.0
        pristine[i].p = 0.0
    data = (llama_cpp.llama_token_data * n)()
    one = (llama_cpp.llama_token_data * 1)()
    size = ctypes.sizeof(pristine)

    states = []
    accepted = 0
    tokens = req["tokens"]
    for at, check in zip(req["states"], req["check"]):
        while accepted < at:
            llama_cpp.llama_sampler_accept(smpl, tokens[accepted])
            accepted += 1
        full, single = [], []
        for _ in range(req["reps"]):
            ctypes.memmove(data, pristine, size)
            cur = llama_cpp.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
            t0 = time.perf_counter()
            llama_cpp.llama_sampler_apply(smpl, ctypes.byref(cur))
            full.append((time.perf_counter() - t0) * 1e6)
        allowed = [i for i in range(n) if data[i].logit != float("-inf")]
        for _ in range(req["reps"]):
            one[0].id, one[0].logit, one[0].p = check, 0.0, 0.0
            cur1 = llama_cpp.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
            t0 = time.perf_counter()
            llama_cpp.llama_sampler_apply(smpl, ctypes.byref(cur1))
            single.append((time.perf_counter() - t0) * 1e6)
        states.append({"at": at, "apply_us": full, "one_us": single, "one_allowed": one[0].logit != float("-inf"),
                       "allowed": allowed})
    llama_cpp.llama_sampler_free(smpl)
    llama_cpp.llama_model_free(model)
    print(json.dumps({"n_vocab": n, "init_s": init_s, "states": states, "pieces": pieces}))


if __name__ == "__main__":
    main(sys.argv[1])
