"""Property tests of the GGUF reader (Hypothesis): whatever the bytes, GGUFReader returns a reader
whose every tensor lies inside the file with the size its shape and type give, or raises one
GGUFError naming the file; never anything else. Arbitrary bytes test the header checks; files
built from GGUF's own pieces (keys, value types, arrays, tensor infos, alignment) with hostile
numbers in every count, length, type id, dimension and offset reach the checks behind them."""
from __future__ import annotations

import os
import struct
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings   # noqa: E402
from hypothesis import strategies as st               # noqa: E402

from pygguf.gguf import GGUFError, GGUFReader         # noqa: E402
from pygguf.gguf.format import tensor_nbytes          # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EDGES = [0, 1, 2, 3, 7, 8, 31, 32, 33, 255, 256, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
u64 = st.one_of(st.sampled_from(EDGES), st.integers(0, 2**64 - 1), st.integers(0, 64))
u32 = st.one_of(st.sampled_from([e for e in EDGES if e < 2**32]), st.integers(0, 2**32 - 1), st.integers(0, 40))


def read(data: bytes):
    """The reader's verdict on these bytes, checked: a consistent reader, or a one-line GGUFError."""
    fd, path = tempfile.mkstemp(suffix=".gguf")
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            with GGUFReader(path) as r:
                check_consistent(r, len(data))
        except GGUFError as e:
            message = str(e)
            assert path in message and "\n" not in message and len(message) < 1000
    finally:
        os.remove(path)


def check_consistent(r: GGUFReader, size: int) -> None:
    for t in r.tensors.values():
        assert t.nbytes == tensor_nbytes(t.shape, t.qtype)
        assert r.data_offset <= t.offset and t.offset + t.nbytes <= size
        assert t.shape[0] % t.qtype.block_size == 0 and t.data.nbytes == t.nbytes
        assert (t.offset - r.data_offset) % r.alignment == 0


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data):
    read(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_valid_header(rest):
    read(b"GGUF" + struct.pack("<IQQ", 3, 1, 2) + rest)


def string(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


names = st.one_of(st.sampled_from([b"general.alignment", b"general.architecture", b"k", b"", b"\xff\xfe"]),
                  st.binary(max_size=12))
scalar_values = st.tuples(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12]), st.binary(min_size=0, max_size=9))


@st.composite
def values(draw):
    """(type id, encoded value): well-formed ones, and ones whose counts and lengths lie."""
    kind = draw(st.sampled_from(["scalar", "string", "array", "bad_type", "lying_length"]))
    if kind == "scalar":
        vtype, raw = draw(scalar_values)
        return vtype, raw
    if kind == "string":
        return 8, string(draw(st.binary(max_size=16)))
    if kind == "array":
        elem = draw(st.sampled_from([0, 4, 6, 8, 9, 10, 13]))
        items = draw(st.lists(st.binary(max_size=8), max_size=5))
        body = b"".join(string(i) if elem == 8 else i for i in items)
        return 9, struct.pack("<IQ", elem, draw(st.sampled_from([len(items), *EDGES]))) + body
    if kind == "bad_type":
        return draw(u32), draw(st.binary(max_size=16))
    return 8, struct.pack("<Q", draw(u64)) + draw(st.binary(max_size=8))


@st.composite
def tensor_infos(draw):
    n_dims = draw(st.one_of(st.integers(1, 4), u32))
    dims = [draw(st.one_of(st.sampled_from([1, 2, 32, 64, 256]), u64)) for _ in range(min(n_dims, 6))]
    ggml_type = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 8, 12, 14, 30]), u32))
    offset = draw(st.one_of(st.sampled_from([0, 32, 64, 1]), u64))
    return string(draw(names)) + struct.pack(f"<I{len(dims)}Q", n_dims, *dims) + struct.pack("<IQ", ggml_type, offset)


@st.composite
def gguf_files(draw):
    kvs = draw(st.lists(st.tuples(names, values()), max_size=4))
    if draw(st.booleans()):
        alignment_type, alignment = draw(st.sampled_from([(4, 1), (4, 0), (4, 3), (4, 64), (10, 2**40), (8, None)]))
        raw = string(b"32") if alignment is None else struct.pack("<Q" if alignment_type == 10 else "<I", alignment)
        kvs.append((b"general.alignment", (alignment_type, raw)))
    tensors = draw(st.lists(tensor_infos(), max_size=3))
    n_tensors = draw(st.one_of(st.just(len(tensors)), u64))
    n_kv = draw(st.one_of(st.just(len(kvs)), u64))
    version = draw(st.sampled_from([3, 3, 3, 2, 1, 4]))
    body = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)
    body += b"".join(string(k) + struct.pack("<I", v[0]) + v[1] for k, v in kvs) + b"".join(tensors)
    body += b"\0" * draw(st.sampled_from([0, -len(body) % 32, -len(body) % 32 + 1]))
    body += draw(st.sampled_from([b"", bytes(64), bytes(range(256)) * 2]))
    cut = draw(st.one_of(st.none(), st.integers(0, len(body))))
    return body if cut is None else body[:cut]


@SETTINGS
@given(gguf_files())
def test_structured_files(data):
    read(data)


SIZES = {0: 1, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 12: 8}        # scalar type id -> bytes
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34)}  # ggml id -> (block values, block bytes)


@st.composite
def valid_files(draw):
    """A well-formed file (scalars, strings and arrays; 1-3 tensors of small types placed one
    after another), then at most one lie: a count, length, dimension or offset overwritten
    at an 8-byte boundary of the header, one byte changed, or a cut."""
    out = bytearray()
    kvs = []
    for i in range(draw(st.integers(0, 3))):
        vtype = draw(st.sampled_from([*SIZES, 8, 9]))
        if vtype == 8:
            raw = string(draw(st.binary(max_size=8)))
        elif vtype == 9:
            items = draw(st.lists(st.integers(0, 2**32 - 1), max_size=4))
            raw = struct.pack(f"<IQ{len(items)}I", 4, len(items), *items)
        else:
            raw = draw(st.binary(min_size=SIZES[vtype], max_size=SIZES[vtype]))
        kvs.append(string(b"k%d" % i) + struct.pack("<I", vtype) + raw)
    alignment = draw(st.sampled_from([None, 1, 8, 32, 64]))
    if alignment is not None:
        kvs.append(string(b"general.alignment") + struct.pack("<II", 4, alignment))
    step = alignment or 32
    infos, offset = [], 0
    for i in range(draw(st.integers(1, 3))):
        ggml_type = draw(st.sampled_from(sorted(TYPES)))
        block_values, block_bytes = TYPES[ggml_type]
        dims = [block_values * draw(st.integers(1, 3)), draw(st.integers(1, 3))]
        infos.append(string(b"t%d" % i) + struct.pack("<I2QIQ", 2, *dims, ggml_type, offset))
        nbytes = dims[0] // block_values * block_bytes * dims[1]
        offset += -(-nbytes // step) * step
    out += b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    out += b"\0" * (-len(out) % step)
    header = len(out)
    out += bytes(draw(st.binary(min_size=offset, max_size=offset)))
    lie = draw(st.sampled_from(["none", "u64", "byte", "cut"]))
    if lie == "u64" and header >= 32:
        at = draw(st.integers(0, header // 8 - 1)) * 8
        out[at:at + 8] = struct.pack("<Q", draw(u64))
    elif lie == "byte":
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    elif lie == "cut":
        del out[draw(st.integers(0, len(out) - 1)):]
    return bytes(out)


@SETTINGS
@given(valid_files())
def test_valid_files_and_one_lie(data):
    read(data)
