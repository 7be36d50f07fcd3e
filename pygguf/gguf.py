"""GGUF files: a memory-mapped reader that trusts nothing it reads, and a v3 writer.

Layout (little-endian, v2/v3):
    "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv x      (string key, u32 value type, value)
    n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset from data start)
    padding to `general.alignment` (default 32) | tensor data, each tensor aligned
A string is u64 length + UTF-8 bytes; an array is u32 element type + u64 count + elements.

Every count, length, dimension, offset and type id is checked against the bytes really present
before it is used, so a hostile or truncated file raises `GGUFError` naming the file and the problem.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Union

import numpy as np

from .gguf_strings import read_strings
from .quants import BY_ID, BY_NAME, QuantType

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4                 # GGML_MAX_DIMS
MAX_ARRAY_NESTING = 8        # deeper nesting is refused rather than recursed into
INT64_MAX = 2**63 - 1

# ggml type ids that exist but that pygguf has no kernels for: named in the error message.
_UNSUPPORTED_GGML_TYPES = {
    4: "Q4_2", 5: "Q4_3", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL",
    21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
    29: "IQ1_M", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8", 34: "TQ1_0", 35: "TQ2_0",
    36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8", 39: "MXFP4",
}


# ---- errors ---------------------------------------------------------------------------------

class GGUFError(ValueError):
    """A GGUF file is malformed, hostile or unsupported; the message names the file."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class GGUFTruncatedError(GGUFError):
    """The file ends before something it declares."""


class GGUFUnsupportedError(GGUFError):
    """A well-formed file that pygguf does not handle (version, byte order, tensor type)."""


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
_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
_NUMPY_DTYPES = {
    GGUFValueType.UINT8: "<u1", GGUFValueType.INT8: "<i1", GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2", GGUFValueType.UINT32: "<u4", GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4", GGUFValueType.BOOL: "<u1", GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8", GGUFValueType.FLOAT64: "<f8",
}
_INT_RANGES = {
    GGUFValueType.UINT8: (0, 2**8 - 1), GGUFValueType.INT8: (-2**7, 2**7 - 1),
    GGUFValueType.UINT16: (0, 2**16 - 1), GGUFValueType.INT16: (-2**15, 2**15 - 1),
    GGUFValueType.UINT32: (0, 2**32 - 1), GGUFValueType.INT32: (-2**31, 2**31 - 1),
    GGUFValueType.UINT64: (0, 2**64 - 1), GGUFValueType.INT64: (-2**63, 2**63 - 1),
}
_FLOAT_TYPES = (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64)


def _min_encoded_size(vtype: int) -> int:
    """The fewest bytes one value of this type can occupy (bounds array counts)."""
    if vtype == GGUFValueType.STRING:
        return 8
    if vtype == GGUFValueType.ARRAY:
        return 4 + 8
    return struct.calcsize(_SCALAR_FORMATS[GGUFValueType(vtype)])


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


# ---- reader ---------------------------------------------------------------------------------

class _Cursor:
    """Bounds-checked little-endian reads from a buffer; every failure names what was being read."""

    def __init__(self, buf, size: int, fail):
        self.buf, self.size, self.pos, self.fail = buf, size, 0, fail

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.left:
            self.fail(GGUFTruncatedError, f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                                          f"only {self.left} left")

    def scalar(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return self.scalar("<I", what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", what)

    def raw(self, n: int, what: str) -> bytes:
        self.need(n, what)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def string(self, what: str) -> str:
        length = self.u64(f"{what} length")
        if length > self.left:
            self.fail(GGUFTruncatedError, f"truncated: {what} declares {length} bytes at offset "
                                          f"{self.pos}, only {self.left} left")
        return self.raw(length, what).decode("utf-8", errors="surrogateescape")


class GGUFReader:
    """A GGUF v2/v3 file, memory-mapped read-only; tensors are zero-copy numpy views."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.metadata: dict[str, object] = {}
        self.metadata_types: dict[str, ValueTypeSpec] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self._mmap = None
        self._bytes = None
        try:
            self._map()
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- errors --
    def _fail(self, cls, problem: str):
        raise cls(self.path, problem)

    # -- mapping --
    def _map(self) -> None:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 4 + 4 + 8 + 8:
                    self._fail(GGUFTruncatedError, f"truncated header: {size} bytes, a GGUF header needs 24")
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            self._fail(GGUFError, f"cannot open: {e.strerror or e}")
        self.file_size = size
        self._bytes = np.frombuffer(self._mmap, dtype=np.uint8)

    # -- parsing --
    def _parse(self) -> None:
        cur = _Cursor(self._mmap, self.file_size, self._fail)
        n_tensors, n_kv = self._read_header(cur)
        self._read_metadata(cur, n_kv)
        self.alignment = self._alignment()
        infos = self._read_tensor_infos(cur, n_tensors)
        self.data_offset = _align(cur.pos, self.alignment)
        self._place_tensors(infos)

    def _read_header(self, cur: _Cursor) -> tuple[int, int]:
        magic = cur.raw(4, "magic")
        if magic not in (GGUF_MAGIC, GGUF_MAGIC[::-1]):
            self._fail(GGUFError, f"not a GGUF file (magic {magic!r}, expected b'GGUF')")
        version = cur.u32("version")
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if magic == GGUF_MAGIC[::-1] or (version & 0xFFFF == 0 and swapped & 0xFFFF != 0):
            self._fail(GGUFUnsupportedError, f"big-endian GGUF is not supported (version field reads "
                                             f"{swapped} byte-swapped)")
        if version == 1:
            self._fail(GGUFUnsupportedError, "GGUF v1 is not supported (it used 32-bit counts); "
                                             "convert the file to v3")
        if version not in (2, 3):
            self._fail(GGUFUnsupportedError, f"GGUF version {version} is not supported (only 2 and 3)")
        self.version = version
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata count")
        # every key/value pair takes at least 8+4+1 bytes, every tensor info at least 8+4+8+4+8
        if n_kv > cur.left // 13:
            self._fail(GGUFError, f"absurd metadata count n_kv={n_kv} for {cur.left} bytes left in the file")
        if n_tensors > cur.left // 32:
            self._fail(GGUFError, f"absurd tensor count n_tensors={n_tensors} for {cur.left} bytes left")
        return n_tensors, n_kv

    def _read_metadata(self, cur: _Cursor, n_kv: int) -> None:
        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}")
            if key in self.metadata:
                self._fail(GGUFError, f"duplicate metadata key {key!r}")
            vtype_id = cur.u32(f"value type of {key!r}")
            value, vtype = self._read_value(cur, vtype_id, key, depth=0)
            self.metadata[key] = value
            self.metadata_types[key] = vtype

    def _value_type(self, vtype_id: int, key: str) -> GGUFValueType:
        if vtype_id not in GGUFValueType._value2member_map_:
            self._fail(GGUFError, f"unknown metadata value type {vtype_id} for key {key!r}")
        return GGUFValueType(vtype_id)

    def _read_value(self, cur: _Cursor, vtype_id: int, key: str, depth: int):
        vtype = self._value_type(vtype_id, key)
        if vtype == GGUFValueType.STRING:
            return cur.string(f"string value of {key!r}"), vtype
        if vtype == GGUFValueType.ARRAY:
            return self._read_array(cur, key, depth)
        value = cur.scalar(_SCALAR_FORMATS[vtype], f"{vtype.name.lower()} value of {key!r}")
        return value, vtype

    def _read_array(self, cur: _Cursor, key: str, depth: int):
        if depth >= MAX_ARRAY_NESTING:
            self._fail(GGUFError, f"arrays nested deeper than {MAX_ARRAY_NESTING} in {key!r}")
        elem = self._value_type(cur.u32(f"array element type of {key!r}"), key)
        count = cur.u64(f"array length of {key!r}")
        if count > cur.left // _min_encoded_size(elem):
            self._fail(GGUFTruncatedError, f"array {key!r} declares {count} {elem.name.lower()} values "
                                           f"but only {cur.left} bytes are left")
        if elem == GGUFValueType.STRING:
            return self._read_string_array(cur, count, key), (GGUFValueType.ARRAY, elem)
        if elem == GGUFValueType.ARRAY:
            items, sub_types = [], []
            for _ in range(count):
                item, sub = self._read_array(cur, key, depth + 1)
                items.append(item)
                sub_types.append(sub)
            # the outer declaration says only ARRAY; keep the first inner type (all alike in practice)
            inner = sub_types[0] if sub_types else (GGUFValueType.ARRAY, GGUFValueType.UINT8)
            return items, (GGUFValueType.ARRAY, inner)
        dtype = np.dtype(_NUMPY_DTYPES[elem])
        nbytes = count * dtype.itemsize
        cur.need(nbytes, f"array {key!r}")
        values = np.frombuffer(self._mmap, dtype=dtype, count=count, offset=cur.pos)
        cur.pos += nbytes
        items = values.astype(bool).tolist() if elem == GGUFValueType.BOOL else values.tolist()
        return items, (GGUFValueType.ARRAY, elem)

    def _read_string_array(self, cur: _Cursor, count: int, key: str) -> list:
        """The vocabulary path (tens of thousands of strings), which dominated opening a model:
        the C scan (gguf_strings) checks every length and decodes in bulk; anything it declines
        (a short, truncated or non-UTF-8 array, no extension) goes through the loop below."""
        fast = read_strings(self._bytes, cur.pos, count)
        if fast is not None:
            items, cur.pos = fast
            return items
        return self._read_string_array_slowly(cur, count, key)

    def _read_string_array_slowly(self, cur: _Cursor, count: int, key: str) -> list:
        """The reference: _Cursor.string's checks inlined, one string at a time; it names the
        string that fails."""
        buf, pos, size = self._mmap, cur.pos, cur.size
        read_length = struct.Struct("<Q").unpack_from
        items = []
        for j in range(count):
            if size - pos < 8:
                cur.pos = pos
                cur.need(8, f"length of string #{j} of array {key!r}")
            (length,) = read_length(buf, pos)
            pos += 8
            if length > size - pos:
                self._fail(GGUFTruncatedError, f"truncated: string #{j} of array {key!r} declares {length} "
                                               f"bytes at offset {pos}, only {size - pos} left")
            items.append(buf[pos:pos + length].decode("utf-8", errors="surrogateescape"))
            pos += length
        cur.pos = pos
        return items

    def _alignment(self) -> int:
        value = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
            self._fail(GGUFError, f"general.alignment must be a nonzero power of two, got {value!r}")
        return value

    def _read_tensor_infos(self, cur: _Cursor, n_tensors: int) -> list:
        infos = []
        seen = set()
        for i in range(n_tensors):
            name = cur.string(f"name of tensor #{i}")
            if name in seen:
                self._fail(GGUFError, f"duplicate tensor name {name!r}")
            seen.add(name)
            n_dims = cur.u32(f"n_dims of tensor {name!r}")
            if not 1 <= n_dims <= MAX_DIMS:
                self._fail(GGUFError, f"tensor {name!r} has n_dims={n_dims}, expected 1..{MAX_DIMS}")
            shape = tuple(cur.u64(f"dimension {d} of tensor {name!r}") for d in range(n_dims))
            type_id = cur.u32(f"type of tensor {name!r}")
            rel_offset = cur.u64(f"offset of tensor {name!r}")
            qtype = self._check_tensor_shape(name, shape, type_id)
            infos.append((name, shape, qtype, rel_offset))
        return infos

    def _check_tensor_shape(self, name: str, shape: tuple, type_id: int) -> QuantType:
        n_elements = 1
        for d in shape:
            if d <= 0 or d > INT64_MAX:
                self._fail(GGUFError, f"tensor {name!r} has a bad dimension {d} in shape {list(shape)}")
            n_elements *= d
            if n_elements > INT64_MAX:
                self._fail(GGUFError, f"tensor {name!r}: shape {list(shape)} overflows int64")
        if type_id not in BY_ID:
            known = _UNSUPPORTED_GGML_TYPES.get(type_id)
            what = f"type {known} (id {type_id}) is not supported" if known else f"unknown type id {type_id}"
            self._fail(GGUFUnsupportedError, f"tensor {name!r}: {what}")
        qtype = BY_ID[type_id]
        if shape[0] % qtype.block_size:
            self._fail(GGUFError, f"tensor {name!r}: row length {shape[0]} is not a multiple of "
                                  f"the {qtype.name} block size {qtype.block_size}")
        return qtype

    def _place_tensors(self, infos: list) -> None:
        placed = []
        for name, shape, qtype, rel_offset in infos:
            nbytes = tensor_nbytes(shape, qtype)
            if rel_offset % self.alignment:
                self._fail(GGUFError, f"tensor {name!r}: offset {rel_offset} is not a multiple of the "
                                      f"alignment {self.alignment}")
            start = self.data_offset + rel_offset
            if start + nbytes > self.file_size:
                self._fail(GGUFTruncatedError, f"tensor {name!r}: data [{start}, {start + nbytes}) runs past "
                                               f"the end of the file ({self.file_size} bytes)")
            placed.append((start, nbytes, name))
            n_elements = nbytes // qtype.type_size * qtype.block_size
            self.tensors[name] = TensorInfo(name, shape, qtype, start, nbytes, n_elements,
                                            self._bytes[start:start + nbytes])
        placed.sort()
        for (a_start, a_bytes, a_name), (b_start, _, b_name) in zip(placed, placed[1:]):
            if b_start < a_start + a_bytes:
                self._fail(GGUFError, f"tensors {a_name!r} and {b_name!r} overlap")

    # -- lifetime --
    def close(self) -> None:
        """Drop our references to the map; it is unmapped once no tensor view is alive."""
        for t in self.tensors.values():
            t.data = None
        self._bytes = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass    # a caller still holds a view: the map is released with it
            self._mmap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


# ---- writer ---------------------------------------------------------------------------------

def infer_type(value) -> ValueTypeSpec:
    """The GGUF type a Python/numpy value is written as when none is given."""
    if isinstance(value, (bool, np.bool_)):
        return GGUFValueType.BOOL
    if isinstance(value, np.generic):
        for vtype, dt in _NUMPY_DTYPES.items():
            if vtype != GGUFValueType.BOOL and np.dtype(dt) == value.dtype.newbyteorder("<"):
                return vtype
    if isinstance(value, (int, np.integer)):
        for vtype in (GGUFValueType.INT32, GGUFValueType.INT64, GGUFValueType.UINT64):
            lo, hi = _INT_RANGES[vtype]
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
    if types <= set(_INT_RANGES):
        for vtype in (GGUFValueType.INT32, GGUFValueType.INT64, GGUFValueType.UINT64):
            lo, hi = _INT_RANGES[vtype]
            if all(lo <= x <= hi for x in items):
                return vtype
    if types <= set(_INT_RANGES) | {GGUFValueType.FLOAT32}:
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
        """Write the file (through a temporary name, so a failure leaves no half file).
        progress(name, nbytes) is called after each tensor's data is written."""
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(self._header_bytes())
                for name, _, qtype, nbytes, raw in self._tensors:
                    data = _tensor_bytes(name, raw(), qtype, nbytes) if callable(raw) else raw
                    f.write(data)
                    f.write(b"\0" * (_align(nbytes, self.alignment) - nbytes))
                    if progress is not None:
                        progress(name, nbytes)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

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
            offset += _align(nbytes, self.alignment)
        out += b"\0" * (_align(len(out), self.alignment) - len(out))
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
        if spec[1] in _INT_RANGES or spec[1] in _FLOAT_TYPES:
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
    if spec in _FLOAT_TYPES:
        if not all(issubclass(k, (int, float, np.integer, np.floating)) for k in kinds):
            raise ValueError(f"{key}: {type_name(spec)} needs numbers, got {sorted(k.__name__ for k in kinds)}")
        return
    if not all(issubclass(k, (int, np.integer)) for k in kinds):
        raise ValueError(f"{key}: {type_name(spec)} needs integers, got {sorted(k.__name__ for k in kinds)}")
    lo, hi = _INT_RANGES[spec]
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
        return head + np.asarray(items, dtype=_NUMPY_DTYPES[elem]).tobytes()
    if spec == GGUFValueType.STRING:
        return _encode_string(value)
    if isinstance(value, np.generic):
        value = value.item()
    return struct.pack(_SCALAR_FORMATS[spec], value)
