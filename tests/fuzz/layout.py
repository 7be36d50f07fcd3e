"""A GGUF file as editable parts, for the fuzzer: header counts, metadata entries, tensor infos and
the data region, parsed from a trusted file and written back with any of them changed.

`build` also records where each count, length, type id, dimension and offset landed in the bytes
it wrote (`Field`), so a mutation can overwrite one exactly (a huge array count, a string length
past the end) without re-deriving the layout.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

STRING, ARRAY = 8, 9
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
                  11: "<q", 12: "<d"}


@dataclass
class Entry:
    """One metadata key/value: the value kept as its encoded bytes (after the type id)."""
    key: bytes
    vtype: int
    value: bytes


@dataclass
class Tensor:
    name: bytes
    dims: list
    ggml_type: int
    offset: int               # relative to the data region


@dataclass
class Field:
    kind: str                 # "n_tensors", "n_kv", "key_len", "vtype", "str_len", "arr_type", "arr_count",
    offset: int               # "name_len", "n_dims", "dim", "ttype", "toffset"
    size: int                 # 4 or 8 bytes, little-endian unsigned
    owner: str = ""           # the key or tensor name it belongs to


@dataclass
class Layout:
    version: int
    entries: list
    tensors: list
    data_offset: int          # where the data region starts in the source file
    alignment: int = 32
    fields: list = field(default_factory=list)   # filled by build()

    def entry(self, key: str) -> Entry | None:
        return next((e for e in self.entries if e.key == key.encode()), None)


def parse(buf) -> Layout:
    """The parts of a well-formed GGUF file (the fuzzer's seed: trusted, so lightly checked)."""
    pos = 0

    def take(fmt):
        nonlocal pos
        (v,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    def take_bytes(n):
        nonlocal pos
        out = bytes(buf[pos:pos + n])
        pos += n
        return out

    def skip_value(vtype):
        nonlocal pos
        if vtype == STRING:
            n = take("<Q")          # (not `pos += take(...)`: take moves pos first)
            pos += n
        elif vtype == ARRAY:
            elem, count = take("<I"), take("<Q")
            if elem in SCALAR_SIZES:
                pos += SCALAR_SIZES[elem] * count
            else:
                for _ in range(count):
                    skip_value(elem)
        else:
            pos += SCALAR_SIZES[vtype]

    assert take_bytes(4) == b"GGUF"
    version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    entries = []
    for _ in range(n_kv):
        key = take_bytes(take("<Q"))
        vtype = take("<I")
        start = pos
        skip_value(vtype)
        entries.append(Entry(key, vtype, bytes(buf[start:pos])))
    tensors = []
    for _ in range(n_tensors):
        name = take_bytes(take("<Q"))
        dims = [take("<Q") for _ in range(take("<I"))]
        tensors.append(Tensor(name, dims, take("<I"), take("<Q")))
    layout = Layout(version, entries, tensors, 0)
    align_entry = layout.entry("general.alignment")
    if align_entry is not None:
        layout.alignment = struct.unpack(SCALAR_FORMATS[align_entry.vtype], align_entry.value)[0]
    layout.data_offset = -(-pos // layout.alignment) * layout.alignment
    return layout


def build(layout: Layout, alignment: int | None = None) -> bytes:
    """The header bytes (up to the data region, padded to `alignment`, the layout's by default);
    layout.fields says where each count and id went."""
    out = bytearray()
    fields = layout.fields = []

    def put(fmt, value, kind, owner=""):
        fields.append(Field(kind, len(out), struct.calcsize(fmt), owner))
        out.extend(struct.pack(fmt, value))

    out += b"GGUF" + struct.pack("<I", layout.version)
    put("<Q", len(layout.tensors), "n_tensors")
    put("<Q", len(layout.entries), "n_kv")
    for e in layout.entries:
        owner = e.key.decode("utf-8", "replace")
        put("<Q", len(e.key), "key_len", owner)
        out += e.key
        put("<I", e.vtype, "vtype", owner)
        _record_value_fields(fields, len(out), e.vtype, e.value, owner)
        out += e.value
    for t in layout.tensors:
        owner = t.name.decode("utf-8", "replace")
        put("<Q", len(t.name), "name_len", owner)
        out += t.name
        put("<I", len(t.dims), "n_dims", owner)
        for d in t.dims:
            put("<Q", d, "dim", owner)
        put("<I", t.ggml_type, "ttype", owner)
        put("<Q", t.offset, "toffset", owner)
    step = alignment or layout.alignment
    if step > 0:
        out += b"\0" * (-len(out) % step)
    return bytes(out)


def _record_value_fields(fields: list, base: int, vtype: int, value: bytes, owner: str) -> None:
    """The length/count/type fields inside an encoded value (only the outer level of an array,
    and the first few strings of a string array: enough targets, little work)."""
    if len(value) < 8:
        return
    if vtype == STRING:
        fields.append(Field("str_len", base, 8, owner))
    elif vtype == ARRAY and len(value) >= 12:
        fields.append(Field("arr_type", base, 4, owner))
        fields.append(Field("arr_count", base + 4, 8, owner))
        (elem,) = struct.unpack_from("<I", value, 0)
        if elem == STRING:
            pos = 12
            for _ in range(4):
                if pos + 8 > len(value):
                    break
                fields.append(Field("str_len", base + pos, 8, owner))
                pos += 8 + struct.unpack_from("<Q", value, pos)[0]


def encode_scalar(vtype: int, value) -> bytes:
    return struct.pack(SCALAR_FORMATS[vtype], value)


def encode_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def encode_array(elem: int, items: list) -> bytes:
    head = struct.pack("<IQ", elem, len(items))
    if elem == STRING:
        return head + b"".join(encode_string(x) for x in items)
    return head + b"".join(encode_scalar(elem, x) for x in items)


def decode_array(value: bytes) -> tuple[int, list]:
    """(element type, items) of an encoded array of scalars or strings."""
    elem, count = struct.unpack_from("<IQ", value, 0)
    pos, items = 12, []
    for _ in range(count):
        if elem == STRING:
            (n,) = struct.unpack_from("<Q", value, pos)
            items.append(value[pos + 8:pos + 8 + n])
            pos += 8 + n
        else:
            items.append(struct.unpack_from(SCALAR_FORMATS[elem], value, pos)[0])
            pos += SCALAR_SIZES[elem]
    return elem, items
