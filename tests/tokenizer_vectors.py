"""Shared helpers for the llama.cpp tokenizer test vectors (ggml-vocab-X.gguf + .inp/.out).

llama.cpp's test-tokenizer-0 splits the .inp file on "\\n__ggml_vocab_test__\\n" (every input is
followed by one), tokenizes each with add_special=false, parse_special=false, and expects the ids
on the matching line of the .out file.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

from pygguf_cli import paths
from pygguf.gguf import GGUFReader
from pygguf.tokenizer import Tokenizer

SEPARATOR = "\n__ggml_vocab_test__\n"
SUPPORTED_MODELS = ("llama", "gpt2")


def vocab_path(name: str) -> Path:
    return paths.vocab_dir() / f"ggml-vocab-{name}.gguf"


def read_cases(path: Path) -> list[tuple[str, list[int]]]:
    with open(str(path) + ".inp", encoding="utf-8", newline="") as fh:
        inputs = fh.read().split(SEPARATOR)
    with open(str(path) + ".out", encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    if inputs and inputs[-1] == "":
        inputs.pop()          # the text after the last separator
    if lines and lines[-1] == "":
        lines.pop()
    assert len(inputs) == len(lines), f"{path.name}: {len(inputs)} inputs but {len(lines)} outputs"
    return [(text, [int(t) for t in line.split()]) for text, line in zip(inputs, lines)]


@functools.lru_cache(maxsize=None)
def load_metadata(path: Path) -> dict:
    with GGUFReader(path) as reader:
        return dict(reader.metadata)


def tokenizer_or_skip(name: str) -> tuple[Tokenizer, list[tuple[str, list[int]]]]:
    path = vocab_path(name)
    if not (path.exists() and Path(str(path) + ".inp").exists()):
        pytest.skip(f"{path} with .inp/.out not found (run `make vocab`)")
    metadata = load_metadata(path)
    model = metadata.get("tokenizer.ggml.model")
    if model not in SUPPORTED_MODELS:
        pytest.skip(f"{path.name}: tokenizer model {model!r} is not llama/gpt2 (out of scope)")
    return Tokenizer.from_metadata(metadata), read_cases(path)


def check_all_cases(name: str) -> None:
    tok, cases = tokenizer_or_skip(name)
    failures = []
    for i, (text, expected) in enumerate(cases):
        got = tok.encode(text, add_special=False, parse_special=False)
        if got != expected:
            failures.append(f"case {i} {text[:40]!r}: expected {expected[:16]} got {got[:16]}")
    assert not failures, f"{name}: {len(failures)}/{len(cases)} cases differ:\n" + "\n".join(failures)


def discovered_names(exclude: set[str]) -> list[str]:
    """Any other vocab with test vectors in the cache (checked or skipped by model type)."""
    directory = paths.vocab_dir()
    if not directory.is_dir():
        return []
    names = []
    for path in sorted(directory.glob("ggml-vocab-*.gguf.out")):
        name = path.name[len("ggml-vocab-"):-len(".gguf.out")]
        if name not in exclude:
            names.append(name)
    return names
