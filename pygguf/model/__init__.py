"""The model: the architecture's hyper-parameters and tensor table from GGUF metadata
(config.py), the loaded weights with the C forward pass and KV cache (model.py; relocate.py
copies a file's tensors at odd offsets to aligned ones), and checked wrappers over the C kernels
and thread pool (kernels.py)."""
from pygguf.errors import ModelError
from pygguf.model.config import Config
from pygguf.model.model import Model, TensorRef

__all__ = ["Config", "Model", "ModelError", "TensorRef"]
