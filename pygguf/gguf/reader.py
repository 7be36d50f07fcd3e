"""GGUF files: a memory-mapped reader that trusts nothing it reads (the layout: format.py).

Every count, length, dimension, offset and type id is checked against the bytes really present
before it is used, so a hostile or truncated file raises `GGUFError` naming the file and the problem.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from pygguf.errors import GGUFError, GGUFTruncatedError, GGUFUnsupportedError
from pygguf.gguf.file_bytes import MIN_FILE_BYTES, file_bytes
from pygguf.gguf.format import (
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    INT64_MAX,
    MAX_ARRAY_NESTING,
    MAX_DIMS,
    NUMPY_DTYPES,
    SCALAR_FORMATS,
    UNSUPPORTED_GGML_TYPES,
    GGUFValueType,
    TensorInfo,
    ValueTypeSpec,
    align,
    min_encoded_size,
    tensor_nbytes,
)
from pygguf.gguf.strings import read_strings
from pygguf.gguf.types import BY_ID, QuantType

# ---- reader ---------------------------------------------------------------------------------

MAX_NAME_IN_MESSAGE = 80      # a key or tensor name longer than this is cut short in error messages


def short(name: str) -> str:
    """repr of a key or tensor name for a message: a hostile file's 100 MB key is cut to its start."""
    if len(name) <= MAX_NAME_IN_MESSAGE:
        return repr(name)
    return f"{name[:MAX_NAME_IN_MESSAGE - 20]!r}... ({len(name)} characters)"


def describe(what) -> str:
    """What was being read: a plain string, or (template, name), formatted only when a read fails
    (formatting the name eagerly cost seconds per read for a key of 100 MB)."""
    if isinstance(what, tuple):
        template, name = what
        return template.format(short(name))
    return what


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; every failure names what was being read
    (`what`: a string or a (template, name) pair, see describe)."""

    def __init__(self, buf, size: int, fail):
        self.buf, self.size, self.pos, self.fail = buf, size, 0, fail

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.left:
            self.fail(GGUFTruncatedError, f"truncated: {describe(what)} needs {n} bytes at offset {self.pos}, "
                                          f"only {self.left} left")

    def scalar(self, fmt: str, what):
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def u32(self, what) -> int:
        return self.scalar("<I", what)

    def u64(self, what) -> int:
        return self.scalar("<Q", what)

    def raw(self, n: int, what) -> bytes:
        self.need(n, what)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def string(self, what) -> str:
        if self.left < 8:
            self.need(8, f"{describe(what)} length")
        length = self.u64("")
        if length > self.left:
            self.fail(GGUFTruncatedError, f"truncated: {describe(what)} declares {length} bytes at offset "
                                          f"{self.pos}, only {self.left} left")
        return self.raw(length, what).decode("utf-8", errors="surrogateescape")


class GGUFReader:
    """A GGUF v2/v3 file, memory-mapped read-only (or read into memory: use_mmap=False); tensors
    are zero-copy numpy views. `data`: the file's bytes already in memory (file_bytes), parsed in
    place and left open by close(): their owner closes them."""

    def __init__(self, path, *, use_mmap: bool = True, data=None):
        self.path = os.fspath(path)
        self.metadata: dict[str, object] = {}
        self.metadata_types: dict[str, ValueTypeSpec] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self._mmap = None
        self._owns_mmap = data is None
        self._bytes = None
        try:
            self._map(use_mmap, data)
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- errors --
    def _fail(self, cls, problem: str):
        raise cls(self.path, problem)

    # -- mapping --
    def _map(self, use_mmap: bool, data) -> None:
        self._mmap = file_bytes(self.path, use_mmap) if data is None else data
        self.file_size = len(self._mmap)
        if self.file_size < MIN_FILE_BYTES:
            self._fail(GGUFTruncatedError, f"truncated header: {self.file_size} bytes, a GGUF header needs {MIN_FILE_BYTES}")
        self._bytes = np.frombuffer(self._mmap, dtype=np.uint8)

    # -- parsing --
    def _parse(self) -> None:
        cur = _Cursor(self._mmap, self.file_size, self._fail)
        n_tensors, n_kv = self._read_header(cur)
        self._read_metadata(cur, n_kv)
        self.alignment = self._alignment()
        infos = self._read_tensor_infos(cur, n_tensors)
        self.data_offset = align(cur.pos, self.alignment)
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
                self._fail(GGUFError, f"duplicate metadata key {short(key)}")
            vtype_id = cur.u32(("value type of {}", key))
            value, vtype = self._read_value(cur, vtype_id, key, depth=0)
            self.metadata[key] = value
            self.metadata_types[key] = vtype

    def _value_type(self, vtype_id: int, key: str) -> GGUFValueType:
        if vtype_id not in GGUFValueType._value2member_map_:
            self._fail(GGUFError, f"unknown metadata value type {vtype_id} for key {short(key)}")
        return GGUFValueType(vtype_id)

    def _read_value(self, cur: _Cursor, vtype_id: int, key: str, depth: int):
        vtype = self._value_type(vtype_id, key)
        if vtype == GGUFValueType.STRING:
            return cur.string(("string value of {}", key)), vtype
        if vtype == GGUFValueType.ARRAY:
            return self._read_array(cur, key, depth)
        value = cur.scalar(SCALAR_FORMATS[vtype], (vtype.name.lower() + " value of {}", key))
        return value, vtype

    def _read_array(self, cur: _Cursor, key: str, depth: int):
        if depth >= MAX_ARRAY_NESTING:
            self._fail(GGUFError, f"arrays nested deeper than {MAX_ARRAY_NESTING} in {short(key)}")
        elem = self._value_type(cur.u32(("array element type of {}", key)), key)
        count = cur.u64(("array length of {}", key))
        if count > cur.left // min_encoded_size(elem):
            self._fail(GGUFTruncatedError, f"array {short(key)} declares {count} {elem.name.lower()} values "
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
        dtype = np.dtype(NUMPY_DTYPES[elem])
        nbytes = count * dtype.itemsize
        cur.need(nbytes, ("array {}", key))
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
                cur.need(8, f"length of string #{j} of array {short(key)}")
            (length,) = read_length(buf, pos)
            pos += 8
            if length > size - pos:
                self._fail(GGUFTruncatedError, f"truncated: string #{j} of array {short(key)} declares {length} "
                                               f"bytes at offset {pos}, only {size - pos} left")
            items.append(buf[pos:pos + length].decode("utf-8", errors="surrogateescape"))
            pos += length
        cur.pos = pos
        return items

    def _alignment(self) -> int:
        value = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
            shown = short(value) if isinstance(value, str) else value if isinstance(value, (int, float)) \
                else f"a {type(value).__name__}"
            self._fail(GGUFError, f"general.alignment must be a nonzero power of two, got {shown}")
        return value

    def _read_tensor_infos(self, cur: _Cursor, n_tensors: int) -> list:
        infos = []
        seen = set()
        for i in range(n_tensors):
            name = cur.string(f"name of tensor #{i}")
            if name in seen:
                self._fail(GGUFError, f"duplicate tensor name {short(name)}")
            seen.add(name)
            n_dims = cur.u32(("n_dims of tensor {}", name))
            if not 1 <= n_dims <= MAX_DIMS:
                self._fail(GGUFError, f"tensor {short(name)} has n_dims={n_dims}, expected 1..{MAX_DIMS}")
            shape = tuple(cur.u64((f"dimension {d} of tensor " + "{}", name)) for d in range(n_dims))
            type_id = cur.u32(("type of tensor {}", name))
            rel_offset = cur.u64(("offset of tensor {}", name))
            qtype = self._check_tensor_shape(name, shape, type_id)
            infos.append((name, shape, qtype, rel_offset))
        return infos

    def _check_tensor_shape(self, name: str, shape: tuple, type_id: int) -> QuantType:
        n_elements = 1
        for d in shape:
            if d <= 0 or d > INT64_MAX:
                self._fail(GGUFError, f"tensor {short(name)} has a bad dimension {d} in shape {list(shape)}")
            n_elements *= d
            if n_elements > INT64_MAX:
                self._fail(GGUFError, f"tensor {short(name)}: shape {list(shape)} overflows int64")
        if type_id not in BY_ID:
            known = UNSUPPORTED_GGML_TYPES.get(type_id)
            what = f"type {known} (id {type_id}) is not supported" if known else f"unknown type id {type_id}"
            self._fail(GGUFUnsupportedError, f"tensor {short(name)}: {what}")
        qtype = BY_ID[type_id]
        if shape[0] % qtype.block_size:
            self._fail(GGUFError, f"tensor {short(name)}: row length {shape[0]} is not a multiple of "
                                  f"the {qtype.name} block size {qtype.block_size}")
        return qtype

    def _place_tensors(self, infos: list) -> None:
        placed = []
        for name, shape, qtype, rel_offset in infos:
            nbytes = tensor_nbytes(shape, qtype)
            if rel_offset % self.alignment:
                self._fail(GGUFError, f"tensor {short(name)}: offset {rel_offset} is not a multiple of the "
                                      f"alignment {self.alignment}")
            start = self.data_offset + rel_offset
            if start + nbytes > self.file_size:
                self._fail(GGUFTruncatedError, f"tensor {short(name)}: data [{start}, {start + nbytes}) runs past "
                                               f"the end of the file ({self.file_size} bytes)")
            placed.append((start, nbytes, name))
            n_elements = nbytes // qtype.type_size * qtype.block_size
            self.tensors[name] = TensorInfo(name, shape, qtype, start, nbytes, n_elements,
                                            self._bytes[start:start + nbytes])
        placed.sort()
        for (a_start, a_bytes, a_name), (b_start, _, b_name) in zip(placed, placed[1:]):
            if b_start < a_start + a_bytes:
                self._fail(GGUFError, f"tensors {short(a_name)} and {short(b_name)} overlap")

    # -- lifetime --
    def close(self) -> None:
        """Drop our references to the map; it is unmapped once no tensor view is alive."""
        for t in self.tensors.values():
            t.data = None
        self._bytes = None
        if self._mmap is not None and self._owns_mmap:
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
