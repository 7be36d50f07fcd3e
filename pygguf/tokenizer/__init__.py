"""Tokenizers built from GGUF tokenizer.ggml.* metadata (llama.cpp's behaviour)."""
from .tokenizer import Tokenizer
from .vocab import TokenAttr, TokenizerError, Vocab

__all__ = ["Tokenizer", "TokenAttr", "TokenizerError", "Vocab"]
