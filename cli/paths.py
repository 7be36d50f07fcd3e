"""Where pygguf keeps what the Makefile fetches: the default model, Gemma 3 and test data."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FETCH_MODEL_COMMAND = "make model"
GEMMA3_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
FETCH_GEMMA3_COMMAND = "make gemma3"


def cache_dir() -> Path:
    if os.environ.get("PYGGUF_CACHE"):
        return Path(os.environ["PYGGUF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pygguf"


def default_model_path() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL_FILE


def gemma3_model_path() -> Path:
    """Gemma 3 270M Q4_K_M (architecture gemma3, SentencePiece vocabulary of 262k tokens)."""
    return cache_dir() / "models" / GEMMA3_MODEL_FILE


def vocab_dir() -> Path:
    """llama.cpp's tokenizer test vectors (ggml-vocab-*.gguf with .inp/.out)."""
    return cache_dir() / "vocab"


def grammars_dir() -> Path:
    """llama.cpp's example GBNF grammars (grammars/*.gbnf of the llama-cpp-python sdist, `make vocab`)."""
    return cache_dir() / "grammars"


def shared_dir() -> Path | None:
    """../shared beside the checkout (reference data measured with llama.cpp), if present."""
    here = Path(__file__).resolve().parent.parent
    candidate = here.parent / "shared"
    return candidate if candidate.is_dir() else None
