"""Quantized files byte for byte as llama-quantize wrote them (tiny-codellama, all 14 file types).

With our C reference quantizers when the build has them. A quantized tensor is cached by its type
and input bytes, so a tensor that several mixes give the same type is quantized once. Where a
build lacks quantizers, the gguf PyPI quantizers stand in to check everything around them."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from pygguf.model import kernels

from pygguf_cli import paths
from testpaths import shown
from pygguf.gguf import GGUFReader
from pygguf.model.kernels import KernelError
from pygguf.tools.quant_mix import FILE_TYPES
from model_factory import has_quantizer
from pygguf.tools.quantize import plan, quantize_file
from pygguf.gguf.types import by_name

gguf = pytest.importorskip("gguf", reason="the gguf PyPI package is the test oracle")


class CachedKernels:
    """kernels.quantize / kernels.dequantize, each distinct input computed once per session."""

    def __init__(self):
        self.cache = {}

    def _key(self, *parts):
        return tuple(p if isinstance(p, (str, int)) else hashlib.sha1(np.ascontiguousarray(p)).digest()
                     for p in parts)

    def quantize(self, qt, floats):
        key = self._key("q", qt.name, floats)
        if key not in self.cache:
            self.cache[key] = kernels.quantize(qt, floats)
        return self.cache[key]

    def dequantize(self, qt, raw, n):
        key = self._key("d", qt.name, raw, n)
        if key not in self.cache:
            self.cache[key] = kernels.dequantize(qt, raw, n)
        return self.cache[key]


@pytest.fixture(scope="module")
def cached_kernels():
    return CachedKernels()


# ---- byte-exactness against llama-quantize --------------------------------------------------

def _tiny():
    shared = paths.shared_dir()
    if shared is None:
        pytest.skip("../shared is absent: no llama-quantize reference files")
    src = shared / "ref" / "tiny" / "tiny-codellama-F16.gguf"
    if not src.exists():
        pytest.skip(f"{shown(src)} is absent")
    record = json.loads((shared / "ref" / "tiny" / "quant_tensors_tiny_codellama.json").read_text())
    return src, record


def _tensor_hashes(path) -> dict:
    with GGUFReader(path) as r:
        return {n: hashlib.sha256(t.data).hexdigest() for n, t in r.tensors.items()}


def _file_sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


QUANT_FTYPES = [f.name for f in FILE_TYPES if by_name(f.default).block_size > 1]


@pytest.mark.parametrize("ftype", QUANT_FTYPES)
def test_quantized_tensors_match_llama_quantize(tmp_path, ftype, cached_kernels):
    """With our C reference quantizers: every tensor (and the whole file) as llama-quantize wrote it."""
    src, record = _tiny()
    expected = record["files"][f"tiny-codellama-{ftype}.gguf"]
    with GGUFReader(src) as r:
        needed = sorted({c.dst.name for c in plan(r, ftype) if c.src != c.dst})
    missing = [t for t in needed if not has_quantizer(t)]
    if missing:
        pytest.skip(f"{ftype}: no quantizer for {', '.join(missing)} in this build")
    dst = tmp_path / f"{ftype}.gguf"
    quantize_file(src, dst, ftype, quantizer=cached_kernels.quantize, dequantizer=cached_kernels.dequantize)
    hashes = _tensor_hashes(dst)
    wrong = [t["name"] for t in expected["tensors"] if hashes.get(t["name"]) != t["sha256"]]
    assert not wrong, f"{len(wrong)} of {len(expected['tensors'])} tensors differ: {wrong[:5]}"
    assert _file_sha(dst) == expected["sha256"]


def _skip_if_c_quantizers(ftype):
    with GGUFReader(_tiny()[0]) as r:
        needed = {c.dst.name for c in plan(r, ftype) if c.src != c.dst}
    if all(has_quantizer(t) for t in needed):
        pytest.skip(f"{ftype}: this build has the C quantizers, so the byte-exact test above covers it")


def _gguf_py_quantizer(stub_types=()):
    """The gguf package's numpy quantizers as a stand-in for ours; types in stub_types get zeros."""
    def quantize(qt, floats):
        if qt.name in stub_types:
            return np.zeros(qt.row_bytes(floats.size), np.uint8)
        x = np.asarray(floats, np.float32).reshape(-1, qt.block_size if qt.block_size > 1 else floats.size)
        try:
            return gguf.quants.quantize(x, gguf.GGMLQuantizationType[qt.name]).reshape(-1).view(np.uint8)
        except NotImplementedError:
            raise KernelError(f"gguf has no quantizer for {qt.name}") from None
    return quantize


def test_q8_0_file_is_byte_identical_with_a_stand_in_quantizer(tmp_path):
    """Everything around the quantizer (types, order, metadata, layout) gives llama.cpp's exact file."""
    src, record = _tiny()
    _skip_if_c_quantizers("Q8_0")
    dst = tmp_path / "Q8_0.gguf"
    quantize_file(src, dst, "Q8_0", quantizer=_gguf_py_quantizer())
    assert _file_sha(dst) == record["files"]["tiny-codellama-Q8_0.gguf"]["sha256"]


def test_q4_0_tensors_match_with_a_stand_in_quantizer(tmp_path):
    """Q4_0's mix needs Q6_K for output.weight, which gguf cannot make: every other tensor must match."""
    src, record = _tiny()
    _skip_if_c_quantizers("Q4_0")
    dst = tmp_path / "Q4_0.gguf"
    quantize_file(src, dst, "Q4_0", quantizer=_gguf_py_quantizer(stub_types=("Q6_K",)))
    expected = record["files"]["tiny-codellama-Q4_0.gguf"]
    hashes = _tensor_hashes(dst)
    with GGUFReader(dst) as r:
        assert r.metadata["general.file_type"] == expected["general_file_type"]
        for t in expected["tensors"]:
            mine = r.tensors[t["name"]]
            assert (mine.qtype.name, list(mine.shape), mine.offset, mine.nbytes) == \
                (t["type"], t["shape"], t["data_offset"], t["n_bytes"]), t["name"]
            if t["name"] != "output.weight":
                assert hashes[t["name"]] == t["sha256"], t["name"]
    assert dst.stat().st_size == expected["size_bytes"]
