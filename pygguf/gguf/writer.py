"""The GGUF v3 writer: metadata with explicit or inferred types, tensors aligned, written to a
temporary file and renamed into place (the layout: format.py)."""
from __future__ import annotations

import os
import struct
from typing import Callable

import numpy as np

from pygguf.atomic_file import replaced
from pygguf.gguf.format import (
    DEFAULT_ALIGNMENT,
    FLOAT_TYPES,
    GGUF_MAGIC,
    GGUF_VERSION,
    INT_RANGES,
    MAX_DIMS,
    NUMPY_DTYPES,
    SCALAR_FORMATS,
    GGUFValueType,
    ValueTypeSpec,
    align,
    parse_type_spec,
    tensor_nbytes,
    type_name,
)
from pygguf.gguf.types import BY_NAME, QuantType

# ---- writer ---------------------------------------------------------------------------------

def infer_type(value) -> ValueTypeSpec:
    """The GGUF type a Python/numpy value is written as when none is given."""
    if isinstance(value, (bool, np.bool_)):
        return GGUFValueType.BOOL
    if isinstance(value, np.generic):
        for vtype, dt in NUMPY_DTYPES.items():
            if vtype != GGUFValueType.BOOL and np.dtype(dt) == value.dtype.newbyteorder("<"):
                return vtype
    if isinstance(value, (int, np.integer)):
        for vtype in (GGUFValueType.INT32, GGUFValueType.INT64, GGUFValueType.UINT64):
            lo, hi = INT_RANGES[vtype]
            if lo <= value <= hi:
                return vtype
        raise ValueError(f"integer {value} does not fit in 64 bits")
    if isinstance(value, (float, np.floating)):
        return GGUFValueType.FLOAT32
    if isinstance(value, (str, bytes)):
        return GGUFValueType.STRING
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            return (GGUFValueType.ARRAY, GGUFValueType.BOOL)
        return (GGUFValueType.ARRAY, infer_type(value.dtype.type(0)))
    if isinstance(value, (list, tuple)):
        return (GGUFValueType.ARRAY, _infer_element_type(list(value)))
    raise ValueError(f"cannot infer a GGUF type for {type(value).__name__}")


def _infer_element_type(items: list) -> ValueTypeSpec:
    """One element type for a whole list: the widest integer type, FLOAT32 for mixed numbers."""
    if not items:
        return GGUFValueType.INT32
    types = {infer_type(x) for x in items}
    if types <= set(INT_RANGES):
        for vtype in (GGUFValueType.INT32, GGUFValueType.INT64, GGUFValueType.UINT64):
            lo, hi = INT_RANGES[vtype]
            if all(lo <= x <= hi for x in items):
                return vtype
    if types <= set(INT_RANGES) | {GGUFValueType.FLOAT32}:
        return GGUFValueType.FLOAT32
    if len(types) > 1:
        raise ValueError(f"array elements have mixed types: {sorted(type_name(t) for t in types)}")
    return types.pop()


class GGUFWriter:
    """Collects metadata and tensors, then writes one GGUF v3 file."""

    def __init__(self, path, arch: str | None = "llama", alignment: int = DEFAULT_ALIGNMENT):
        self.path = os.fspath(path)
        self.metadata: dict[str, object] = {}
        self.metadata_types: dict[str, ValueTypeSpec] = {}
        self._tensors: list = []      # (name, shape, qtype, nbytes, raw or callable)
        self._names: set = set()
        self.alignment = alignment
        if arch is not None:
            self.add("general.architecture", arch)

    def add(self, key: str, value, vtype=None) -> None:
        """Set one metadata value (in insertion order); vtype forces its GGUF type."""
        spec = parse_type_spec(vtype) if vtype is not None else infer_type(value)
        _check_value(key, value, spec)
        if key == "general.alignment":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 \
                    or value & (value - 1):
                raise ValueError(f"general.alignment must be a nonzero power of two, got {value!r}")
            self.alignment = int(value)
        self.metadata[key] = value
        self.metadata_types[key] = spec

    def add_tensor(self, name: str, raw, shape, qtype) -> None:
        """One tensor. raw: already-encoded bytes (any array, viewed as bytes), float32 values for F32,
        or a zero-argument callable returning either at write time (so big data is made lazily)."""
        qtype = BY_NAME[qtype.upper()] if isinstance(qtype, str) else qtype
        shape = tuple(int(d) for d in shape)
        if name in self._names:
            raise ValueError(f"duplicate tensor name {name!r}")
        if not 1 <= len(shape) <= MAX_DIMS or any(d <= 0 for d in shape):
            raise ValueError(f"tensor {name!r}: bad shape {shape}")
        if shape[0] % qtype.block_size:
            raise ValueError(f"tensor {name!r}: row length {shape[0]} is not a multiple of "
                             f"the {qtype.name} block size {qtype.block_size}")
        nbytes = tensor_nbytes(shape, qtype)
        if not callable(raw):
            raw = _tensor_bytes(name, raw, qtype, nbytes)
        self._names.add(name)
        self._tensors.append((name, shape, qtype, nbytes, raw))

    def write(self, progress: Callable[[str, int], None] | None = None) -> None:
        """Write the file (replaced whole, pygguf.atomic_file: a failure leaves no half file).
        progress(name, nbytes) is called after each tensor's data is written."""
        with replaced(self.path) as f:
            f.write(self._header_bytes())
            for name, _, qtype, nbytes, raw in self._tensors:
                data = _tensor_bytes(name, raw(), qtype, nbytes) if callable(raw) else raw
                f.write(data)
                f.write(b"\0" * (align(nbytes, self.alignment) - nbytes))
                if progress is not None:
                    progress(name, nbytes)

    def _header_bytes(self) -> bytes:
        out = bytearray()
        out += GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(self.metadata))
        for key, value in self.metadata.items():
            out += _encode_string(key)
            spec = self.metadata_types[key]
            out += struct.pack("<I", _type_id(spec))
            out += _encode_value(value, spec)
        offset = 0
        for name, shape, qtype, nbytes, _ in self._tensors:
            out += _encode_string(name)
            out += struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
            out += struct.pack("<IQ", qtype.ggml_id, offset)
            offset += align(nbytes, self.alignment)
        out += b"\0" * (align(len(out), self.alignment) - len(out))
        return bytes(out)


def _tensor_bytes(name: str, raw, qtype: QuantType, nbytes: int) -> memoryview:
    arr = np.asarray(raw)
    if qtype.name == "F32" and arr.dtype.kind == "f":
        arr = arr.astype("<f4", copy=False)
    arr = np.ascontiguousarray(arr)
    if arr.nbytes != nbytes:
        raise ValueError(f"tensor {name!r}: {arr.nbytes} bytes given, its shape and type {qtype.name} "
                         f"need {nbytes}")
    return memoryview(arr.reshape(-1).view(np.uint8))


def _type_id(spec: ValueTypeSpec) -> int:
    return int(GGUFValueType.ARRAY if isinstance(spec, tuple) else spec)


def _encode_string(text) -> bytes:
    data = text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogateescape")
    return struct.pack("<Q", len(data)) + data


def _check_value(key: str, value, spec: ValueTypeSpec) -> None:
    """Refuse a value its declared type cannot hold, before anything is written."""
    if isinstance(spec, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise ValueError(f"{key}: {type_name(spec)} needs a list, got {type(value).__name__}")
        items = value.tolist() if isinstance(value, np.ndarray) else value
        if spec[1] in INT_RANGES or spec[1] in FLOAT_TYPES:
            _check_numbers(key, items, spec[1])      # vocab-sized arrays: checked in bulk
        elif spec[1] == GGUFValueType.STRING:
            if not all(isinstance(v, (str, bytes)) for v in items):
                raise ValueError(f"{key}: {type_name(spec)} holds a value that is not a string")
        else:
            for item in items:
                _check_value(key, item, spec[1])
        return
    if spec == GGUFValueType.STRING:
        if not isinstance(value, (str, bytes)):
            raise ValueError(f"{key}: string needed, got {type(value).__name__}")
    elif spec == GGUFValueType.BOOL:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{key}: bool needed, got {type(value).__name__}")
    else:
        _check_numbers(key, [value], spec)


def _check_numbers(key: str, items, spec: GGUFValueType) -> None:
    kinds = {type(v) for v in items}
    if any(issubclass(k, (bool, np.bool_)) for k in kinds):
        raise ValueError(f"{key}: a bool is not a {type_name(spec)}")
    if spec in FLOAT_TYPES:
        if not all(issubclass(k, (int, float, np.integer, np.floating)) for k in kinds):
            raise ValueError(f"{key}: {type_name(spec)} needs numbers, got {sorted(k.__name__ for k in kinds)}")
        return
    if not all(issubclass(k, (int, np.integer)) for k in kinds):
        raise ValueError(f"{key}: {type_name(spec)} needs integers, got {sorted(k.__name__ for k in kinds)}")
    lo, hi = INT_RANGES[spec]
    if items and not (lo <= min(items) and max(items) <= hi):
        raise ValueError(f"{key}: a value is out of range for {type_name(spec)} [{lo}, {hi}]")


def _encode_value(value, spec: ValueTypeSpec) -> bytes:
    if isinstance(spec, tuple):
        elem = spec[1]
        items = value.tolist() if isinstance(value, np.ndarray) else list(value)
        head = struct.pack("<IQ", _type_id(elem), len(items))
        if elem == GGUFValueType.STRING:
            return head + b"".join([_encode_string(v) for v in items])
        if isinstance(elem, tuple):
            return head + b"".join(_encode_value(v, elem) for v in items)
        return head + np.asarray(items, dtype=NUMPY_DTYPES[elem]).tobytes()
    if spec == GGUFValueType.STRING:
        return _encode_string(value)
    if isinstance(value, np.generic):
        value = value.item()
    return struct.pack(SCALAR_FORMATS[spec], value)
