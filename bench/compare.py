"""`make compare`: pygguf beside llama.cpp (llama-cpp-python 0.3.36) on the same GGUF files, in one run.

For each file and thread count: load time, prompt processing (pp128: one batch of 128 tokens
from an empty cache) and generation (tg64: 64 tokens one at a time from an empty cache), as
llama-bench measures them, mean ± standard deviation of --reps (fewer for files over 5 GiB); the
weights streamed per second by each side's generation beside the machine's streaming-read rate.
llama.cpp runs in its own venv through bench/llama_cpp_side.py. The files: the default model,
plus Q8_0 / Q4_K_M / Q6_K versions made with pygguf-quantize from an F16 dequantization of it (as
the ../shared reference figures were), plus synthetic 1B, 7B and 13B Q4_K_M models
(pygguf.tools.synthetic: released shapes and types, random weights).
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

from pygguf.model import Model
from pygguf.tools import benchmark, synthetic
from pygguf_cli.paths import cache_dir, default_model_path, gemma3_model_path, vocab_dir

HERE = Path(__file__).resolve().parent


def pygguf_side(path: Path, threads: int, n_prompt: int, n_gen: int, reps: int) -> dict:
    """pygguf-bench's pp and tg (pygguf.tools.benchmark: the same warm-ups and empty caches as
    llama-bench), and the load time."""
    t0 = time.perf_counter()
    model = Model.load(str(path), n_ctx=max(n_prompt, n_gen, 16), n_threads=threads, n_batch=512)
    _ = model.tokenizer  # built lazily; llama.cpp's load includes its vocab, so ours must too
    load_s = time.perf_counter() - t0
    try:
        pp = benchmark.run_test(model, benchmark.BenchTest("pp", n_prompt), reps)
        tg = benchmark.run_test(model, benchmark.BenchTest("tg", n_gen), reps)
        step_bytes = benchmark.model_facts(path, model).step_bytes
    finally:
        model.close()
    return {"load_s": load_s, "pp": pp, "tg": tg, "step_bytes": step_bytes}


def llama_side(python: str, path: Path, threads: int, n_prompt: int, n_gen: int, reps: int) -> dict:
    out = subprocess.run([python, str(HERE / "llama_cpp_side.py"), str(path), str(threads), str(n_prompt),
                          str(n_gen), str(reps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def mean_std(samples: list[float]) -> str:
    std = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return f"{statistics.fmean(samples):7.2f} ± {std:5.2f}"


def compare_tokenizers(python: str, path: Path) -> None:
    """Tokenizer MB/s on ~1 MB of English and of Python source: ours (a fresh tokenizer, so its
    word cache starts empty) beside llama.cpp's (vocab_only)."""
    sys.path.insert(0, str(HERE))
    from tokenizer import english_text, load, python_text

    print(f"\ntokenizer, {path.name}")
    for kind, text in (("English", english_text(1_000_000)), ("Python", python_text(1_000_000))):
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
            f.write(text)
        mb = len(text.encode("utf-8")) / 1e6
        tok = load(path)
        t = time.perf_counter()
        ours = tok.encode(text, add_special=False, parse_special=False)
        ours_s = time.perf_counter() - t
        out = subprocess.run([python, str(HERE / "llama_cpp_side.py"), "tokenize", str(path), f.name],
                             capture_output=True, text=True, check=True)
        ref = json.loads(out.stdout.strip().splitlines()[-1])
        os.unlink(f.name)
        same = "same ids" if len(ours) == ref["tokens"] else f"token counts differ: {len(ours)} vs {ref['tokens']}"
        print(f"  {kind:8s} ours {mb / ours_s:6.2f} MB/s   llama.cpp {mb / ref['seconds']:6.2f} MB/s   "
              f"ratio {ref['seconds'] / ours_s:5.2f}x   ({same})", flush=True)


def compare_perplexity(python: str, path: Path, n_ctx: int = 128, threads: int = 2) -> None:
    """Perplexity on Debian's GPL-3 text, llama-perplexity's method, both implementations."""
    from pygguf.tools import perplexity as P
    text_file = "/usr/share/common-licenses/GPL-3"
    if not Path(text_file).exists():
        print(f"perplexity: {text_file} not found, skipped")
        return
    model = Model.load(str(path), n_ctx=n_ctx, n_threads=threads)
    text = open(text_file, encoding="utf-8").read()
    text = text[:-1] if text.endswith("\n") else text
    tokens = model.tokenizer.encode(text, add_special=True, parse_special=False)
    ours = P.perplexity(model, tokens, n_ctx, bos_id=model.tokenizer.bos_id if model.tokenizer.add_bos else None)
    model.close()
    out = subprocess.run([python, str(HERE / "llama_cpp_side.py"), "ppl", str(path), text_file, str(n_ctx),
                          str(threads)], capture_output=True, text=True, check=True)
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {path.name:<36} -c {n_ctx}: ours {ours.ppl:.4f}   llama.cpp {ref['ppl']:.4f}   "
          f"difference {100 * (ours.ppl / ref['ppl'] - 1):+.3f}%", flush=True)


def variant_files() -> list[Path]:
    """The default model and requantized variants (made once, cached beside it)."""
    base = default_model_path()
    files = [base]
    f16 = cache_dir() / "models" / "SmolLM2-135M-Instruct.F16.gguf"
    quantize = [sys.executable, "-m", "pygguf_cli.quantize"]
    if not f16.exists():
        subprocess.run(quantize + [str(base), str(f16), "F16", "--allow-requantize"], check=True)
    for qtype in ("Q8_0", "Q4_K_M", "Q6_K"):
        out = cache_dir() / "models" / f"SmolLM2-135M-Instruct.{qtype}.gguf"
        if not out.exists():
            subprocess.run(quantize + [str(f16), str(out), qtype], check=True)
        files.append(out)
    return files


SYNTHETIC = ["tinyllama-1.1b:Q4_K_M", "llama2-7b:Q4_K_M", "codellama-13b:Q4_K_M"]
BIG_FILE = 5 << 30    # files past this get fewer repetitions (a 13B tg64 repetition takes half a minute)


def synthetic_files(specs: list[str]) -> list[Path]:
    """Synthetic models with released shapes and types (pygguf.tools.synthetic), built once."""
    return [synthetic.cached(spec, cache_dir() / "synthetic", vocab_dir(),
                             on_build=lambda p: print(f"building {p} (once)", flush=True)) for spec in specs]


def compare_speed(python: str, files: list[Path], threads: list[int], n_prompt: int, n_gen: int, reps: int) -> None:
    rates = {t: benchmark.stream_read_gbps(t) for t in threads}
    print("streaming read: " + ", ".join(f"-t {t} {r:.1f} GB/s" for t, r in rates.items()))
    header = (f"{'file':<40} {'-t':>2} | {'pp' + str(n_prompt) + ' ours':>16} {'llama.cpp':>16} {'ratio':>6} | "
              f"{'tg' + str(n_gen) + ' ours':>16} {'llama.cpp':>16} {'ratio':>6} | {'tg GB/s ours/llama.cpp/read':>28} | "
              f"{'load s':>11}")
    print(header)
    print("-" * len(header))
    for path in files:
        n_reps = max(2, reps // 2) if path.stat().st_size > BIG_FILE else reps
        for t in threads:
            ours = pygguf_side(path, t, n_prompt, n_gen, n_reps)
            ref = llama_side(python, path, t, n_prompt, n_gen, n_reps)
            pp, tg = (statistics.fmean(ours[k]) / statistics.fmean(ref[k]) for k in ("pp", "tg"))
            gbps = [ours["step_bytes"] * statistics.fmean(side["tg"]) / 1e9 for side in (ours, ref)]
            print(f"{path.name:<40} {t:>2} | {mean_std(ours['pp'])} {mean_std(ref['pp'])} {pp:>5.2f}x |"
                  f" {mean_std(ours['tg'])} {mean_std(ref['tg'])} {tg:>5.2f}x |"
                  f" {gbps[0]:>8.1f} {gbps[1]:>8.1f} {rates[t]:>8.1f}  |"
                  f" {ours['load_s']:>5.2f}/{ref['load_s']:>5.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--llama-python", required=True, help="python of the venv with llama-cpp-python")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--files", nargs="*", help="GGUF files (default: the default model and its variants)")
    ap.add_argument("--synthetic", nargs="*", default=SYNTHETIC, metavar="SHAPE:TYPE",
                    help="synthetic models to add (default: the 1B, 7B and 13B Q4_K_M shapes; none: --synthetic)")
    ap.add_argument("--skip-tokenizer", action="store_true")
    ap.add_argument("--skip-perplexity", action="store_true")
    args = ap.parse_args()
    files = [Path(f) for f in args.files] if args.files else variant_files() + [gemma3_model_path()]
    files += synthetic_files(args.synthetic)
    print(f"loadavg: {os.getloadavg()[0]:.2f}  (the machine should be idle)")
    compare_speed(args.llama_python, files, [int(t) for t in args.threads.split(",")], args.p, args.n, args.reps)
    if not args.skip_perplexity:
        print("\nperplexity (GPL-3 text)")
        for path in files:
            if ".Q4_1." in path.name or ".Q8_0." in path.name or path == gemma3_model_path():
                compare_perplexity(args.llama_python, path)
    if not args.skip_tokenizer:
        for vocab in (default_model_path(), vocab_dir() / "ggml-vocab-llama-spm.gguf", gemma3_model_path()):
            if vocab.exists():
                compare_tokenizers(args.llama_python, vocab)


if __name__ == "__main__":
    main()
