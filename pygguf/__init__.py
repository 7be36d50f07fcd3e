"""pygguf: a llama.cpp-style GGUF model runner with its hot kernels in C."""
import os as _os

# `make asan` (.ci/asan) names the folder of its sanitizer build of the C extension, so that every
# process it starts (tests, CLIs, fuzz workers) loads pygguf._native from there, the rest from here
if _os.environ.get("PYGGUF_NATIVE_DIR"):
    __path__.insert(0, _os.environ["PYGGUF_NATIVE_DIR"])

__version__ = "0.1.0"

__all__ = ["Llama"]


def __getattr__(name: str):
    # `from pygguf import Llama` without making `import pygguf` load numpy or the C extension
    if name == "Llama":
        from pygguf.api import Llama
        return Llama
    raise AttributeError(f"module 'pygguf' has no attribute {name!r}")
