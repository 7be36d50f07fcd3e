"""Peak resident memory of loading a big model with and without the repacked weights.

    .venv/bin/python bench/repack_rss.py --type Q4_0 --model 7B        # writes ~3.6 GiB, then deletes it
    .venv/bin/python bench/repack_rss.py --type Q4_K --model 7B --layers 8 --keep

Writes a GGUF file of random blocks (every matrix of the chosen type, LLaMA shapes, a 32000-token
vocabulary, no tokenizer) under ~/.cache/pygguf/tmp, then, each in a fresh process, loads it with
the GGUF rows only and with the repacked rows (Model.load: a read-only file mapping), decodes a few
tokens, and prints the process's peak and final resident set (VmHWM, VmRSS) and the load time.
The peak is what matters on a machine with little memory to spare: before the repacked rows
handed the file's pages back, repacking took the matrices' size twice. Random weights: the logits
mean nothing, the bytes stream the same.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPES = {   # n_embd, n_ff, n_layer, n_head, n_head_kv
    "1B": (2048, 5632, 22, 32, 4),
    "7B": (4096, 11008, 32, 32, 32),
    "13B": (5120, 13824, 40, 40, 40),
}
N_VOCAB = 32000
TMP = Path.home() / ".cache" / "pygguf" / "tmp"


def random_blocks(qt, rows: int, cols: int, rng) -> np.ndarray:
    """rows x cols values of random quants whose fp16 scales (the block's leading halves) are small
    and finite"""
    raw = rng.integers(0, 256, size=rows * qt.row_bytes(cols), dtype=np.uint8)
    blocks = raw.reshape(-1, qt.type_size)
    halves = 1 if qt.name in ("Q4_0", "Q8_0", "Q6_K") else 2
    scale = np.frombuffer(np.float16(0.001).tobytes(), dtype=np.uint8)
    for h in range(halves):
        at = qt.type_size - 2 if qt.name == "Q6_K" else 2 * h   # Q6_K keeps d last
        blocks[:, at:at + 2] = scale
    return raw


def write_model(path: Path, type_name: str, model: str, layers: int | None) -> None:
    from pygguf.gguf import GGUFWriter
    from pygguf.gguf.types import by_name

    qt = by_name(type_name)
    n_embd, n_ff, n_layer, n_head, n_head_kv = SHAPES[model]
    n_layer = layers or n_layer
    head_dim = n_embd // n_head
    w = GGUFWriter(str(path), arch="llama")
    for key, value in {"vocab_size": N_VOCAB, "context_length": 4096, "embedding_length": n_embd,
                       "block_count": n_layer, "feed_forward_length": n_ff, "attention.head_count": n_head,
                       "attention.head_count_kv": n_head_kv, "rope.dimension_count": head_dim}.items():
        w.add(f"llama.{key}", value, "uint32")
    w.add("llama.rope.freq_base", 10000.0, "float32")
    w.add("llama.attention.layer_norm_rms_epsilon", 1e-5, "float32")
    rng = np.random.default_rng(0)
    f32 = by_name("F32")
    w.add_tensor("token_embd.weight", random_blocks(qt, N_VOCAB, n_embd, rng), (n_embd, N_VOCAB), qt)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32), (n_embd,), f32)
    w.add_tensor("output.weight", random_blocks(qt, N_VOCAB, n_embd, rng), (n_embd, N_VOCAB), qt)
    n_kv = n_head_kv * head_dim
    for layer in range(n_layer):
        p = f"blk.{layer}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, np.float32), (n_embd,), f32)
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, np.float32), (n_embd,), f32)
        for name, rows, cols in (("attn_q", n_embd, n_embd), ("attn_k", n_kv, n_embd), ("attn_v", n_kv, n_embd),
                                 ("attn_output", n_embd, n_embd), ("ffn_gate", n_ff, n_embd),
                                 ("ffn_up", n_ff, n_embd), ("ffn_down", n_embd, n_ff)):
            w.add_tensor(p + name + ".weight", random_blocks(qt, rows, cols, rng), (cols, rows), qt)
    w.write()


CHILD = """
import json, sys, time
from pygguf.model import Model
from pygguf.model.batch import Batch
t0 = time.perf_counter()
with Model.load(sys.argv[1], n_ctx=64, n_threads=int(sys.argv[3]), repack=sys.argv[2] == "1") as m:
    load_s = time.perf_counter() - t0
    m.decode(Batch.of([1, 2, 3, 4], 0, 0, "last"))
    t1 = time.perf_counter()
    for pos in range(4, 12):
        m.decode(Batch.of([5], pos, 0, "last"))
    tg = 8 / (time.perf_counter() - t1)
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    print(json.dumps({"load_s": load_s, "tg": tg, "hwm_kib": int(status["VmHWM"].split()[0]),
                      "rss_kib": int(status["VmRSS"].split()[0])}))
"""


def measure(path: Path, repack: bool, threads: int) -> dict:
    # run from TMP, so the child imports the pygguf this process does (PYTHONPATH), not one in the cwd
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(int(repack)), str(threads)], cwd=TMP,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--type", default="Q4_0")
    ap.add_argument("--model", default="7B", choices=list(SHAPES))
    ap.add_argument("--layers", type=int, default=None, help="fewer layers than the model has")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the file for the next run")
    args = ap.parse_args()

    TMP.mkdir(parents=True, exist_ok=True)
    path = TMP / f"rss-{args.model}-{args.layers or 'all'}-{args.type}.gguf"
    if not path.exists():
        t0 = time.perf_counter()
        write_model(path, args.type, args.model, args.layers)
        print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    try:
        size = path.stat().st_size / 2**30
        print(f"{args.type} {args.model} ({args.layers or 'all'} layers), file {size:.2f} GiB, "
              f"load average {os.getloadavg()[0]:.2f}")
        for repack in (False, True):
            r = measure(path, repack, args.threads)
            print(f"  {'repacked ' if repack else 'GGUF rows'}: peak RSS {r['hwm_kib'] / 2**20:.2f} GiB, "
                  f"final RSS {r['rss_kib'] / 2**20:.2f} GiB, load {r['load_s']:.1f} s, "
                  f"{r['tg']:.1f} tokens/s (-t {args.threads})")
    finally:
        if not args.keep:
            path.unlink()


if __name__ == "__main__":
    main()
