"""tests/kernels: the C kernels, each ISA against the scalar reference (harness.py). The shared
helpers one folder up (model_factory, gguf_oracle) stay importable from here."""
import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent.parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
