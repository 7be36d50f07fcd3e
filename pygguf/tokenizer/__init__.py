"""Tokenizers built from GGUF tokenizer.ggml.* metadata."""
