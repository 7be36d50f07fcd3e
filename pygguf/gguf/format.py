"""The GGUF format: constants, metadata value types and tensor infos, shared by reader and writer.

Layout (little-endian, v2/v3):
    "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv x      (string key, u32 value type, value)
    n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset from data start)
    padding to `general.alignment` (default 32) | tensor data, each tensor aligned
A string is u64 length + UTF-8 bytes; an array is u32 element type + u64 count + elements.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Union

import numpy as np

from pygguf.gguf.types import QuantType

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4                 # GGML_MAX_DIMS
MAX_ARRAY_NESTING = 8        # deeper nesting is refused rather than recursed into
INT64_MAX = 2**63 - 1

# ggml type ids that exist but that pygguf has no kernels for: named in the error message.
UNSUPPORTED_GGML_TYPES = {
    4: "Q4_2", 5: "Q4_3", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL",
    21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
    29: "IQ1_M", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8", 34: "TQ1_0", 35: "TQ2_0",
    36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8", 39: "MXFP4",
}


# ---- metadata value types -------------------------------------------------------------------

class GGUFValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# A value's full type: a scalar GGUFValueType, or (ARRAY, element type) with the element type
# itself a full type, so arrays of arrays keep every level.
ValueTypeSpec = Union[GGUFValueType, tuple]

# struct format of each fixed-size scalar, little-endian
SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
NUMPY_DTYPES = {
    GGUFValueType.UINT8: "<u1", GGUFValueType.INT8: "<i1", GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2", GGUFValueType.UINT32: "<u4", GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4", GGUFValueType.BOOL: "<u1", GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8", GGUFValueType.FLOAT64: "<f8",
}
INT_RANGES = {
    GGUFValueType.UINT8: (0, 2**8 - 1), GGUFValueType.INT8: (-2**7, 2**7 - 1),
    GGUFValueType.UINT16: (0, 2**16 - 1), GGUFValueType.INT16: (-2**15, 2**15 - 1),
    GGUFValueType.UINT32: (0, 2**32 - 1), GGUFValueType.INT32: (-2**31, 2**31 - 1),
    GGUFValueType.UINT64: (0, 2**64 - 1), GGUFValueType.INT64: (-2**63, 2**63 - 1),
}
FLOAT_TYPES = (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64)


def min_encoded_size(vtype: int) -> int:
    """The fewest bytes one value of this type can occupy (bounds array counts)."""
    if vtype == GGUFValueType.STRING:
        return 8
    if vtype == GGUFValueType.ARRAY:
        return 4 + 8
    return struct.calcsize(SCALAR_FORMATS[GGUFValueType(vtype)])


def type_name(vtype: ValueTypeSpec) -> str:
    """'uint32', 'string', 'array[string]', 'array[array[int32]]'."""
    if isinstance(vtype, tuple):
        return f"array[{type_name(vtype[1])}]"
    return GGUFValueType(vtype).name.lower()


def parse_type_spec(spec) -> ValueTypeSpec:
    """Normalise a user-given type: GGUFValueType, 'uint32', 'array[string]', (ARRAY, sub), [sub]."""
    if isinstance(spec, GGUFValueType):
        if spec == GGUFValueType.ARRAY:
            raise ValueError("an array type needs its element type: (GGUFValueType.ARRAY, element)")
        return spec
    if isinstance(spec, list) and len(spec) == 1:
        return (GGUFValueType.ARRAY, parse_type_spec(spec[0]))
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] in (GGUFValueType.ARRAY, "array"):
        return (GGUFValueType.ARRAY, parse_type_spec(spec[1]))
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text.startswith("array[") and text.endswith("]"):
            return (GGUFValueType.ARRAY, parse_type_spec(text[6:-1]))
        if text.upper() in GGUFValueType.__members__ and text != "array":
            return GGUFValueType[text.upper()]
    if isinstance(spec, int) and not isinstance(spec, bool) and spec in GGUFValueType._value2member_map_:
        return parse_type_spec(GGUFValueType(spec))
    raise ValueError(f"not a GGUF value type: {spec!r}")


# ---- tensor infos ---------------------------------------------------------------------------

@dataclass
class TensorInfo:
    name: str
    shape: tuple            # ggml order: shape[0] = ne0, the row length
    qtype: QuantType
    offset: int             # absolute file offset of the first byte
    nbytes: int
    n_elements: int
    data: np.ndarray = field(repr=False)   # zero-copy, read-only np.uint8 view of the mapped file

    @property
    def n_rows(self) -> int:
        return self.n_elements // self.shape[0]


def tensor_nbytes(shape, qtype: QuantType) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n // qtype.block_size * qtype.type_size


def align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment
