"""Tokenizers built from GGUF tokenizer.ggml.* metadata (llama.cpp's behaviour)."""
from pygguf.errors import TokenizerError
from pygguf.tokenizer.special import TokenAttr
from pygguf.tokenizer.vocab import Vocab

from .tokenizer import Tokenizer

__all__ = ["Tokenizer", "TokenAttr", "TokenizerError", "Vocab"]
