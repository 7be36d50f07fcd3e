"""pygguf: a llama.cpp-style GGUF model runner with its hot kernels in C."""

__version__ = "0.1.0"
