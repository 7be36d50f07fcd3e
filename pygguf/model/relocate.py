"""Tensors at addresses their blocks cannot be read at, copied once to addresses they can.

The C kernels read blocks as structs whose fields (fp16 scales, float values) need 2- or 4-byte
alignment (QuantType.align; csrc/model/load.c refuses a weight or norm without it). A GGUF file
puts each tensor at a multiple of its general.alignment (32 unless it says otherwise), so the
model runs on the file's mapping itself, nothing copied. A file may say 1, which puts tensors at
any offset, odd ones included: then every tensor is copied once, at load, into one buffer where
each starts at a multiple of `align`, and the model runs on that copy (the model's size in
memory instead of a mapping of the file).
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["aligned_copy", "misaligned"]


def misaligned(base_address: int, tensors: dict) -> list[str]:
    """The names of the tensors whose first byte, at base_address + offset, is not a multiple of
    their type's block alignment."""
    return [name for name, ref in tensors.items() if (base_address + ref.offset) % ref.qtype.align]


def aligned_copy(buffer, tensors: dict, align: int) -> tuple[np.ndarray, dict]:
    """(a new buffer holding every tensor at a multiple of align, the tensors with their offsets
    in it)"""
    offsets, size = {}, 0
    for name, ref in tensors.items():
        offsets[name] = size
        size += -(-ref.nbytes // align) * align
    # align the buffer itself: numpy promises only its dtype's alignment, 1 for bytes
    spare = np.empty(max(size, align) + align, dtype=np.uint8)
    start = -spare.ctypes.data % align
    copy = spare[start:start + max(size, align)]
    moved = {}
    source = np.frombuffer(buffer, dtype=np.uint8)
    try:
        for name, ref in tensors.items():
            copy[offsets[name]:offsets[name] + ref.nbytes] = source[ref.offset:ref.offset + ref.nbytes]
            moved[name] = dataclasses.replace(ref, offset=offsets[name])
    finally:
        del source        # no view of a mapping outlives this call, even in a traceback's frame
    return copy, moved
