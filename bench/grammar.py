"""Benchmark: the grammar matcher's cost per token on SmolLM2's vocabulary (49152 tokens) with a
JSON grammar, at several states of a JSON document, beside llama.cpp's grammar sampler.

    .venv/bin/python bench/grammar.py [--model FILE.gguf] [--reps N] [--llama-python PY | --no-llama]

pygguf (µs per call, median):
  mask cold    mask(logits) with every cache dropped first: the trie walk building its memo
  mask walk    mask(logits) with only the allowed sets dropped: a walk over a warm memo, the cost
               of a state never masked before in a long generation
  mask cached  mask(logits) again on the same stack set: writing the -infs
  allows       allows(next token), the sampler's first check, without / with a cached allowed set
llama.cpp (--llama-python, default .venv-compare/bin/python when present): llama_sampler_apply
of llama_sampler_init_grammar over the whole vocabulary (what common_sampler_sample does after
a refused token) and over the one sampled token (its first check), after accepting the same
tokens; its allowed set must be pygguf's at every state, and its pieces (token_to_piece,
special=True) pygguf's. The grammar is the GBNF text in tests/grammar/handbuilt.py, parsed by
pygguf.grammar.gbnf when present, else the hand-built rules of the same text.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "grammar"))

from handbuilt import JSON_GBNF, json_grammar  # noqa: E402

from pygguf.gguf import GGUFReader  # noqa: E402
from pygguf.grammar.matcher import GrammarVocab, TokenMatcher  # noqa: E402
from pygguf.tokenizer import Tokenizer  # noqa: E402
from pygguf.tools.benchmark import cpu_name  # noqa: E402
from pygguf_cli.paths import default_model_path  # noqa: E402

DOC = ('{"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poésie ✓"], "ok": true, '
       '"ratio": -1.5e3, "notes": {"a": null, "b": [1, 2, 3]}}')
# (label, the decoded prefix ends with this) for the measured states; "" = the start
MARKS = [("start", None), ('in a key: {"name', '{"name'), ('value: "name": ', '"name":'),
         ('in a string: "Ada', '"Ada'), ("in a number: 18", ": 18"), ("array: [", "["),
         ('after a value: true', "true"), ("end", "END")]


def grammar():
    try:
        from pygguf.grammar.gbnf import parse
    except ImportError:
        return json_grammar(), "hand-built rules (parser not merged)"
    return parse(JSON_GBNF), "pygguf.grammar.gbnf.parse"


def state_positions(tok: Tokenizer, ids: list[int]) -> list[tuple[str, int]]:
    out = []
    for label, mark in MARKS:
        if mark is None:
            out.append((label, 0))
        elif mark == "END":
            out.append((label, len(ids)))
        else:
            for k in range(1, len(ids) + 1):
                if tok.decode(ids[:k]).endswith(mark):
                    out.append((label, k))
                    break
    return out


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def time_calls(fn, reps: int, before=None) -> float:
    samples = []
    for _ in range(reps):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return median_us(samples)


def llama_side(python: str, model: Path, ids, positions, checks, reps: int) -> dict | None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"model": str(model), "grammar": JSON_GBNF, "tokens": ids, "states": positions,
                   "check": checks, "reps": reps}, f)
    try:
        out = subprocess.run([python, str(REPO / "bench" / "llama_cpp_grammar_side.py"), f.name],
                             capture_output=True, text=True, timeout=1800)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        print(f"llama.cpp side failed:\n{out.stderr[-2000:]}")
        return None
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=default_model_path())
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--llama-python", default=str(REPO / ".venv-compare" / "bin" / "python"))
    ap.add_argument("--no-llama", action="store_true")
    args = ap.parse_args()
    if not args.model.exists():
        print(f"{args.model} not found (run `make model`)")
        return 1
    print(f"CPU: {cpu_name()}; loadavg {os.getloadavg()[0]:.2f}")
    with GGUFReader(args.model) as reader:
        tok = Tokenizer.from_metadata(reader.metadata)
    t0 = time.perf_counter()
    pieces = [tok.token_to_bytes(t, special=True) for t in range(tok.n_vocab)]
    t1 = time.perf_counter()
    vocab = GrammarVocab(pieces, tok.eog_ids)
    t2 = time.perf_counter()
    info = vocab.info()
    print(f"vocabulary: {info['n_vocab']} tokens, trie of {info['nodes']} nodes over {info['tokens']} pieces "
          f"(longest {info['max_depth']} bytes), {info['bytes'] / 2**20:.2f} MiB; pieces {(t1 - t0) * 1e3:.0f} ms, "
          f"trie {(t2 - t1) * 1e3:.0f} ms")
    rules, source = grammar()
    t0 = time.perf_counter()
    m = TokenMatcher(rules, vocab)
    print(f"grammar: JSON ({len(rules.rules)} rules), {source}; TokenMatcher {(time.perf_counter() - t0) * 1e3:.2f} ms")

    ids = tok.encode(DOC, add_special=False)
    positions = state_positions(tok, ids)
    n = vocab.n_vocab
    logits = np.zeros(n, dtype=np.float32)
    fresh = np.zeros(n, dtype=np.float32)
    rows, masks = [], []
    st = m.start()
    accepted = 0
    for label, at in positions:
        while accepted < at:
            st.accept(ids[accepted])
            accepted += 1
        check = ids[at] if at < len(ids) else 2
        reset = lambda: np.copyto(logits, fresh)                       # noqa: E731
        cold = time_calls(lambda: st.mask(logits), args.reps, lambda: (m.flush(), reset()))
        walk = time_calls(lambda: st.mask(logits), args.reps, lambda: (m.flush(masks_only=True), reset()))
        cached = time_calls(lambda: st.mask(logits), args.reps * 10, reset)
        allows_cold = time_calls(lambda: st.allows(check), args.reps * 10, lambda: m.flush(masks_only=True))
        st.allowed()
        allows_hot = time_calls(lambda: st.allows(check), args.reps * 100)
        allowed = st.allowed()
        masks.append(allowed)
        rows.append((label, at, int(allowed.sum()), cold, walk, cached, allows_cold, allows_hot, check))
    stats = m.stats()

    llama = None
    if not args.no_llama:
        if Path(args.llama_python).exists():
            llama = llama_side(args.llama_python, args.model, ids, [r[1] for r in rows], [r[8] for r in rows],
                               args.reps)
        else:
            print(f"llama.cpp: {args.llama_python} not found (make compare builds it); not measured")

    print(f"\n{'state':<22}{'allowed':>8}{'mask cold':>11}{'mask walk':>11}{'mask cached':>13}"
          f"{'allows':>9}{'allows cached':>15}" + (f"{'llama apply':>13}{'llama one':>11}" if llama else ""))
    for i, (label, at, count, cold, walk, cached, a_cold, a_hot, _) in enumerate(rows):
        line = f"{label:<22}{count:>8}{cold:>11.1f}{walk:>11.1f}{cached:>13.1f}{a_cold:>9.2f}{a_hot:>15.2f}"
        if llama:
            s = llama["states"][i]
            line += f"{statistics.median(s['apply_us']):>13.0f}{statistics.median(s['one_us']):>11.1f}"
        print(line)
    print("(µs per call, median; pygguf timed from Python, so each call includes ~0.3 µs of cffi)")
    print(f"matcher caches after the run: {stats['bytes'] / 2**10:.0f} KiB, {stats['stack_nodes']} stack nodes, "
          f"{stats['stack_sets']} stack sets, {stats['transitions']} memoized steps")

    if llama:
        ok = True
        llama_pieces = [bytes.fromhex(h) for h in llama["pieces"]]
        diff = [t for t in range(n) if llama_pieces[t] != pieces[t]]
        if diff:
            ok = False
            print(f"pieces differ from llama.cpp's on {len(diff)} tokens, e.g. "
                  f"{[(t, pieces[t], llama_pieces[t]) for t in diff[:5]]}")
        for i, (label, *_rest) in enumerate(rows):
            theirs = np.zeros(n, dtype=bool)
            theirs[llama["states"][i]["allowed"]] = True
            if not np.array_equal(theirs, masks[i]):
                ok = False
                bad = np.flatnonzero(theirs != masks[i])
                print(f"{label}: allowed sets differ on {bad.size} tokens, e.g. "
                      f"{[(int(t), pieces[t], bool(theirs[t])) for t in bad[:5]]}")
        print("llama.cpp: same pieces and the same allowed set at every state" if ok else "llama.cpp: MISMATCH")
        print(f"llama.cpp grammar init {llama['init_s'] * 1e3:.2f} ms (timed through ctypes: ~1 µs per call)")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
