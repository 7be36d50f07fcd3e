"""Quantize a GGUF model file the way llama-quantize does.

Per tensor type choices come from `quant_mix`; the bytes from the reference quantizers
(`pygguf.model.kernels.quantize`). The output file matches llama-quantize's: tensors in llama.cpp's
loader order, the input metadata with `general.quantization_version = 2` and `general.file_type`
moved to the end, alignment 32.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pygguf.errors import KernelError, PyggufError
from pygguf.gguf import GGUFReader, GGUFValueType, GGUFWriter, TensorInfo
from pygguf.gguf.types import QuantType
from pygguf.model import kernels
from pygguf.tools.quant_mix import FileType, ModelInfo, TypeChoice, choose_types, file_type, llama_tensor_order

QUANTIZATION_VERSION = 2          # GGML_QNT_VERSION
CHUNK_VALUES = 1 << 22            # values converted at a time: bounds the float32 scratch
# keys llama-quantize rewrites (appended at the end, in this order) or drops
REWRITTEN_KEYS = ("general.quantization_version", "general.file_type")
DROPPED_KEYS = ("split.no", "split.count", "split.tensors.count")

Quantizer = Callable[[QuantType, np.ndarray], np.ndarray]        # floats -> raw blocks
Dequantizer = Callable[[QuantType, np.ndarray, int], np.ndarray]  # raw blocks, n -> floats


class QuantizeError(PyggufError, RuntimeError):
    """The input cannot be quantized as asked (requantizing without permission, same file...)."""


@dataclass(frozen=True)
class TensorReport:
    choice: TypeChoice
    src_bytes: int
    dst_bytes: int

    @property
    def converted(self) -> bool:
        return self.choice.src != self.choice.dst


@dataclass(frozen=True)
class QuantizeReport:
    ftype: FileType
    tensors: list
    n_elements: int

    @property
    def size_before(self) -> int:
        return sum(t.src_bytes for t in self.tensors)

    @property
    def size_after(self) -> int:
        return sum(t.dst_bytes for t in self.tensors)

    def bits_per_weight(self, size: int) -> float:
        return size * 8.0 / self.n_elements if self.n_elements else 0.0

    @property
    def fallbacks(self) -> list:
        return [t.choice for t in self.tensors if t.choice.fallback_from]


def _probe(fn, what: str, qtype: QuantType) -> None:
    """Run a kernel on one zero block so a missing one is refused before any file is written."""
    try:
        fn(qtype)
    except KernelError as e:
        raise KernelError(f"no {what} for {qtype.name} in this build of pygguf ({e})") from None


def check_kernels(choices: list, quantizer: Quantizer, dequantizer: Dequantizer) -> None:
    zeros = {}
    for qt in {c.dst for c in choices if c.src != c.dst}:
        zeros[qt] = np.zeros(qt.block_size, dtype=np.float32)
        _probe(lambda t: quantizer(t, zeros[t]), "quantizer", qt)
    for qt in {c.src for c in choices if c.src != c.dst and c.src.name != "F32"}:
        _probe(lambda t: dequantizer(t, np.zeros(t.type_size, np.uint8), t.block_size), "dequantizer", qt)


def check_requantize(choices: list, allow_requantize: bool) -> None:
    for c in choices:
        if c.src != c.dst and c.src.block_size > 1 and not allow_requantize:
            raise QuantizeError(f"requantizing from type {c.src.name} is disabled (tensor {c.name!r} would "
                                f"become {c.dst.name}); pass --allow-requantize to dequantize it first")


def convert_tensor(t: TensorInfo, dst: QuantType, quantizer: Quantizer, dequantizer: Dequantizer) -> np.ndarray:
    """Source bytes -> floats -> destination blocks, a run of whole rows at a time."""
    row_values = t.shape[0]
    rows_per_chunk = max(1, CHUNK_VALUES // row_values)
    n_rows = t.n_elements // row_values
    src_row, dst_row = t.qtype.row_bytes(row_values), dst.row_bytes(row_values)
    out = np.empty(n_rows * dst_row, dtype=np.uint8)
    for r0 in range(0, n_rows, rows_per_chunk):
        r1 = min(n_rows, r0 + rows_per_chunk)
        raw = t.data[r0 * src_row:r1 * src_row]
        n = (r1 - r0) * row_values
        floats = raw.view(np.float32) if t.qtype.name == "F32" else dequantizer(t.qtype, raw, n)
        out[r0 * dst_row:r1 * dst_row] = quantizer(dst, floats)
    return out


def copy_metadata(r: GGUFReader, w: GGUFWriter, ft: FileType) -> None:
    for key, value in r.metadata.items():
        if key not in REWRITTEN_KEYS and key not in DROPPED_KEYS:
            w.add(key, value, r.metadata_types[key])
    w.add("general.quantization_version", QUANTIZATION_VERSION, GGUFValueType.UINT32)
    w.add("general.file_type", ft.ftype_id, GGUFValueType.UINT32)


def plan(r: GGUFReader, ft: FileType | str, pure: bool = False) -> list:
    """The type llama-quantize picks for each tensor of an open file, in its output order."""
    ft = file_type(ft) if not isinstance(ft, FileType) else ft
    order = llama_tensor_order(r.tensors)
    return choose_types(((n, r.tensors[n].shape, r.tensors[n].qtype) for n in order), ft,
                        ModelInfo.from_metadata(r.metadata), pure)


def quantize_file(src, dst, ftype, allow_requantize: bool = False, pure: bool = False,
                  on_plan: Callable[[list], None] | None = None,
                  on_tensor: Callable[[TensorReport], None] | None = None,
                  quantizer: Quantizer = kernels.quantize,
                  dequantizer: Dequantizer = kernels.dequantize) -> QuantizeReport:
    """Write DST, the GGUF file SRC quantized to the file type FTYPE ('Q4_K_M', 15, ...).
    on_plan(choices) is called once the types are chosen, on_tensor(report) after each tensor is
    written (progress bars)."""
    ft = file_type(ftype)
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise QuantizeError(f"input and output are the same file: {dst}")
    with GGUFReader(src) as r:
        choices = plan(r, ft, pure)
        check_requantize(choices, allow_requantize)
        check_kernels(choices, quantizer, dequantizer)
        if on_plan:
            on_plan(choices)
        w = GGUFWriter(dst, arch=None)
        copy_metadata(r, w, ft)
        reports = {}
        for c in choices:
            t = r.tensors[c.name]
            if c.src == c.dst:
                w.add_tensor(c.name, t.data, t.shape, t.qtype)
            else:
                w.add_tensor(c.name, lambda t=t, d=c.dst: convert_tensor(t, d, quantizer, dequantizer),
                             t.shape, c.dst)
            dst_bytes = c.dst.row_bytes(t.shape[0]) * (t.n_elements // t.shape[0])
            reports[c.name] = TensorReport(c, t.nbytes, dst_bytes)
        w.write(progress=(lambda name, _: on_tensor(reports[name])) if on_tensor else None)
        n_elements = sum(t.n_elements for t in r.tensors.values())
    return QuantizeReport(ft, [reports[c.name] for c in choices], n_elements)
