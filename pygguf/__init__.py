"""pygguf: a llama.cpp-style GGUF model runner with its hot kernels in C."""

__version__ = "0.1.0"

__all__ = ["Llama"]


def __getattr__(name: str):
    # `from pygguf import Llama` without making `import pygguf` load numpy or the C extension
    if name == "Llama":
        from pygguf.api import Llama
        return Llama
    raise AttributeError(f"module 'pygguf' has no attribute {name!r}")
