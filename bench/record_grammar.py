"""Records llama.cpp's grammar behaviour on SmolLM2 as test data (tests/data/grammar/llamacpp_smollm2.json)
and, with --bench, compares the cost of its grammar stage with pygguf's.

For each case (a grammar of llama.cpp's grammars/ folder or one made from a JSON schema, and a
chat prompt), llama.cpp decodes greedily under the grammar through its own grammar sampler
(bench/grammar_llama_side.py, run by the `make compare` venv's python); we keep the tokens it
chose and, at every step, the set of tokens its grammar allowed (stored as the smaller of the set
and its complement). tests/grammar/test_grammar_llamacpp.py holds pygguf's matcher and greedy
decoding to them.

    python bench/record_grammar.py --llama-python .venv-compare/bin/python          # record
    python bench/record_grammar.py --llama-python .venv-compare/bin/python --bench  # time both sides
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pygguf.grammar.constraint import schema_grammar
from pygguf.model import Model
from pygguf_cli.paths import default_model_path, grammars_dir

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "data" / "grammar" / "llamacpp_smollm2.json"
N_PREDICT = 24

NESTED_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age", "address"],
}
COLOURS = ["red", "orange", "yellow", "green", "blue", "indigo", "violet", "black", "white", "grey", "brown",
           "pink", "purple", "cyan", "magenta", "teal", "navy", "maroon", "olive", "silver", "gold", "beige",
           "coral", "crimson", "khaki", "lavender", "lime", "mint", "peach", "plum", "salmon", "tan"]
ENUM_SCHEMA = {"type": "object", "properties": {"colour": {"enum": COLOURS}}, "required": ["colour"]}


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def cases() -> list[dict]:
    gbnf = lambda name: (grammars_dir() / name).read_text(encoding="utf-8")   # noqa: E731
    return [
        {"name": "json.gbnf", "grammar": gbnf("json.gbnf"), "prompt": chat("Describe a cat as a JSON object.")},
        {"name": "list.gbnf", "grammar": gbnf("list.gbnf"), "prompt": chat("List three fruits.")},
        {"name": "arithmetic.gbnf", "grammar": gbnf("arithmetic.gbnf"), "prompt": chat("Write a sum of two numbers.")},
        {"name": "nested schema", "grammar": schema_grammar(NESTED_SCHEMA),
         "prompt": chat("Give a person with name, age, address and tags as JSON.")},
        {"name": "long enum", "grammar": schema_grammar(ENUM_SCHEMA), "prompt": chat("Pick a colour, as JSON.")},
    ]


def llama_side(python: str, job: dict) -> dict:
    out = subprocess.run([python, str(HERE / "grammar_llama_side.py")], input=json.dumps(job), text=True,
                         capture_output=True, check=True)
    answer = json.loads(out.stdout)
    if "error" in answer:
        raise SystemExit(f"llama.cpp: {answer['error']}")
    return answer


LISTED = 2000      # a step's set is written out when it or its complement is this small; else only its hash


def compact(ids: list[int], n_vocab: int) -> dict:
    """the allowed set's size and hash, and the set itself (or its complement) when small"""
    allowed = np.asarray(ids, dtype=np.int64)
    out = {"count": int(allowed.size), "sha": hashlib.sha256(allowed.astype("<i4").tobytes()).hexdigest()[:16]}
    if allowed.size <= LISTED:
        out["allowed"] = allowed.tolist()
    elif n_vocab - allowed.size <= LISTED:
        out["refused"] = np.setdiff1d(np.arange(n_vocab), allowed).tolist()
    return out


def record(python: str) -> None:
    path = default_model_path()
    model = Model.load(path, n_ctx=512)
    tok, n_vocab = model.tokenizer, model.config.n_vocab
    model.close()
    data = {"model": path.name, "n_vocab": n_vocab, "llama_cpp": "llama-cpp-python 0.3.36, llama_sampler_init_grammar",
            "method": "greedy under the grammar: the grammar applied to every token, then the argmax", "cases": []}
    for case in cases():
        prompt_ids = tok.encode(case["prompt"], add_special=True, parse_special=True)
        answer = llama_side(python, {"model": str(path), "grammar": case["grammar"], "prompt_ids": prompt_ids,
                                     "n_predict": N_PREDICT, "repeats": 1})
        data["cases"].append({**case, "prompt_ids": prompt_ids, "tokens": answer["tokens"],
                              "margins": [round(m, 4) if m != float("inf") else 1e9 for m in answer["margins"]],
                              "steps": [compact(a, n_vocab) for a in answer["allowed"]]})
        print(f"{case['name']}: {len(answer['tokens'])} tokens, allowed {[len(a) for a in answer['allowed']]}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


def pygguf_costs(model: Model, case: dict, tokens: list[int], repeats: int = 5) -> tuple[list[float], list[float]]:
    """per step: microseconds of the whole-vocabulary mask the first time this state is masked (a
    state met again is a cache hit; this is what a generation pays), and of the one-token check
    the sampler tries first (best of `repeats`), along llama.cpp's path"""
    from pygguf.grammar.compiled import matcher_for
    tok = model.tokenizer
    t0 = time.perf_counter()
    matcher = matcher_for(case["grammar"], tok.grammar_pieces(), tok.eog_ids)
    build_ms = (time.perf_counter() - t0) * 1e3
    state = matcher.start()
    logits = np.zeros(model.config.n_vocab, dtype=np.float32)
    mask_us, check_us = [], []
    for token in tokens:
        row = logits.copy()
        t0 = time.perf_counter()
        state.mask(row)
        mask_us.append((time.perf_counter() - t0) * 1e6)
        best_check = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            state.allows(token)
            best_check = min(best_check, (time.perf_counter() - t0) * 1e6)
        check_us.append(best_check)
        if tok.is_eog(token):
            break
        state.accept(token)
    print(f"  pygguf matcher built in {build_ms:.1f} ms (once per grammar and vocabulary)")
    return mask_us, check_us


def own_path(model: Model, grammar: str, prompt_ids: list[int]) -> list[int]:
    """pygguf's greedy tokens under the grammar"""
    from pygguf.model.batch import Batch
    from pygguf.sampling import Sampler, SamplerParams
    tok = model.tokenizer
    sampler = Sampler(SamplerParams(temp=0.0, grammar=grammar), model.config.n_vocab, eog_ids=tok.eog_ids,
                      pieces=tok.grammar_pieces())
    logits, tokens = model.decode(Batch.of(prompt_ids, 0, 0, "last"))[0].copy(), []
    for i in range(N_PREDICT):
        tokens.append(sampler.sample(logits))
        if tok.is_eog(tokens[-1]) or sampler.accept(tokens[-1]) or sampler.grammar_done:
            break
        logits = model.decode(Batch.of([tokens[-1]], len(prompt_ids) + i, 0, "last"))[0].copy()
    return tokens


def stage_us(model: Model, grammar: str, prompt_ids: list[int], tokens: list[int]) -> list[float]:
    """per step of the path: microseconds the grammar adds to sampling a token in a generation
    (greedy: the chain's pick is checked, and masked-and-resampled only when refused; then
    accepted), as the same sampler's time with the grammar minus without it, on the model's logits"""
    from pygguf.model.batch import Batch
    from pygguf.sampling import Sampler, SamplerParams
    tok = model.tokenizer
    with_grammar = Sampler(SamplerParams(temp=0.0, grammar=grammar), model.config.n_vocab, eog_ids=tok.eog_ids,
                           pieces=tok.grammar_pieces())
    plain = Sampler(SamplerParams(temp=0.0), model.config.n_vocab, eog_ids=tok.eog_ids)
    logits = model.decode(Batch.of(prompt_ids, 0, 0, "last"))[0].copy()
    out = []
    for i, token in enumerate(tokens):
        times = []
        for sampler in (with_grammar, plain):
            t0 = time.perf_counter()
            sampler.sample(logits)
            if not tok.is_eog(token):
                sampler.accept(token)
            times.append((time.perf_counter() - t0) * 1e6)
        out.append(times[0] - times[1])
        if tok.is_eog(token):
            break
        logits = model.decode(Batch.of([token], len(prompt_ids) + i, 0, "last"))[0].copy()
    return out


def decode_us(model: Model, prompt_ids: list[int], tokens: list[int]) -> float:
    """pygguf's median decode step (one token's forward pass) along the same path"""
    from pygguf.model.batch import Batch
    model.decode(Batch.of(prompt_ids, 0, 0, "last"))
    times = []
    for i, token in enumerate(tokens[:16]):
        t0 = time.perf_counter()
        model.decode(Batch.of([token], len(prompt_ids) + i, 0, "last"))
        times.append((time.perf_counter() - t0) * 1e6)
    return float(np.median(times))


def bench(python: str) -> None:
    path = default_model_path()
    model = Model.load(path, n_ctx=512, n_threads=2)
    print(f"{path.name}, grammar stage per token (median over the steps of llama.cpp's greedy path), microseconds;")
    print("llama.cpp apply: its grammar sampler over the whole vocabulary (best of 3); pygguf mask: the same, the first"
          " time the state is met; check: the one-token test the sampler tries first")
    print("stage: what the grammar adds to a generated token in pygguf's sampler (check, and mask + resample only"
          " when the pick is refused), mean over the path")
    print(f"{'case':<16} {'llama.cpp apply':>16} {'pygguf mask':>12} {'pygguf check':>13} {'stage':>8} "
          f"{'decode ours':>12} {'decode llama':>13} {'stage/decode':>13} {'llama.cpp/mask':>15}")
    for case in cases():
        prompt_ids = model.tokenizer.encode(case["prompt"], add_special=True, parse_special=True)
        if Path(python).exists():
            answer = llama_side(python, {"model": str(path), "grammar": case["grammar"], "prompt_ids": prompt_ids,
                                         "n_predict": N_PREDICT, "repeats": 3})
        else:                                   # no llama.cpp here: our own greedy path, our side only
            answer = {"tokens": own_path(model, case["grammar"], prompt_ids), "apply_us": [float("nan")],
                      "decode_us": []}
        mask_us, check_us = pygguf_costs(model, case, answer["tokens"])
        theirs, ours, check = (float(np.median(x)) for x in (answer["apply_us"], mask_us, check_us))
        their_decode = float(np.median(answer["decode_us"])) if answer["decode_us"] else float("nan")
        decode = decode_us(model, prompt_ids, answer["tokens"])
        stage = float(np.mean(stage_us(model, case["grammar"], prompt_ids, answer["tokens"])))
        print(f"{case['name']:<16} {theirs:>16.0f} {ours:>12.1f} {check:>13.2f} {stage:>8.1f} {decode:>12.0f} "
              f"{their_decode:>13.0f} {stage / decode:>12.1%} {theirs / ours:>14.1f}x")
    model.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-python", required=True, help="python of the venv with llama-cpp-python")
    ap.add_argument("--bench", action="store_true", help="time both sides instead of recording")
    args = ap.parse_args()
    (bench if args.bench else record)(args.llama_python)


if __name__ == "__main__":
    sys.exit(main())
