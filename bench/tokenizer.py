"""Tokenizer throughput: ~1 MB of English and ~1 MB of Python source, SmolLM2 (byte-level BPE)
and llama-spm (SentencePiece) vocabularies. Prints MB/s. A benchmark, not a test.

    .venv/bin/python bench/tokenizer.py [--mb 1.0] [--repeat 3]

Each tokenizer is built fresh, so the first pass starts with an empty word cache ("cold");
later passes reuse it ("warm"). llama.cpp has no such cache, so "cold" is the fair comparison on
text seen once; both are printed.
"""
from __future__ import annotations

import argparse
import sys
import sysconfig
import time
from pathlib import Path

from pygguf_cli import paths
from pygguf.gguf import GGUFReader
from pygguf.tokenizer import Tokenizer

ENGLISH_SOURCES = ("/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GPL-2")


def english_text(n_bytes: int) -> str:
    for name in ENGLISH_SOURCES:
        if Path(name).exists():
            base = Path(name).read_text(encoding="utf-8")
            break
    else:
        sys.exit("no English text found (looked for " + ", ".join(ENGLISH_SOURCES) + ")")
    return (base * (n_bytes // len(base) + 1))[:n_bytes]


def python_text(n_bytes: int) -> str:
    """The standard library's own .py files, concatenated in sorted order (varied, not repeated)."""
    parts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text.encode("utf-8"))
        if total >= n_bytes:
            break
    return "".join(parts)


def load(path: Path) -> Tokenizer:
    with GGUFReader(path) as reader:
        return Tokenizer.from_metadata(reader.metadata)


def bench(path: Path, label: str, texts: dict[str, str], repeat: int) -> None:
    for kind, text in texts.items():
        tok = load(path)                      # fresh tokenizer: empty cache
        mb = len(text.encode("utf-8")) / 1e6
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ids = tok.encode(text, add_special=False, parse_special=False)
            times.append(time.perf_counter() - t0)
        cold, warm = times[0], min(times[1:]) if len(times) > 1 else float("nan")
        print(f"{label:12s} {kind:8s} {mb:5.2f} MB  {len(ids):8d} tokens  "
              f"cold {mb / cold:6.2f} MB/s   warm {mb / warm:6.2f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=1.0, help="MB of each kind of text")
    ap.add_argument("--repeat", type=int, default=3, help="passes per text (first one is cold)")
    args = ap.parse_args()
    n = int(args.mb * 1e6)
    texts = {"english": english_text(n), "python": python_text(n)}
    vocabs = [(paths.default_model_path(), "smollm2-bpe"),
              (paths.vocab_dir() / "ggml-vocab-llama-spm.gguf", "llama-spm")]
    for path, label in vocabs:
        if not path.exists():
            print(f"{label}: {path} not found, skipped")
            continue
        bench(path, label, texts, args.repeat)


if __name__ == "__main__":
    main()
