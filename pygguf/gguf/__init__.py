"""GGUF: the file format (format.py), the ggml tensor types (types.py), a reader that trusts
nothing it reads (reader.py, strings.py) and a writer (writer.py)."""
from pygguf.errors import GGUFError, GGUFTruncatedError, GGUFUnsupportedError
from pygguf.gguf.format import GGUFValueType, TensorInfo, type_name
from pygguf.gguf.reader import GGUFReader
from pygguf.gguf.writer import GGUFWriter

__all__ = ["GGUFError", "GGUFReader", "GGUFTruncatedError", "GGUFUnsupportedError", "GGUFValueType", "GGUFWriter",
           "TensorInfo", "type_name"]
