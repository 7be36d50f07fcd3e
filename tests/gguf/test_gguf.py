"""GGUF reader/writer: round trips through our reader and the `gguf` PyPI reader, real files,
and hand-made hostile files that must each raise GGUFError naming the file and the problem."""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from pygguf_cli import paths
from testpaths import shown
from pygguf.gguf import (GGUFError, GGUFReader, GGUFTruncatedError, GGUFUnsupportedError,
                         GGUFValueType as VT, GGUFWriter, type_name)
from pygguf.gguf.types import by_name

from gguf_oracle import assert_same_as_oracle

gguf = pytest.importorskip("gguf", reason="the gguf PyPI package is the test oracle")


# ---- a writer exercising every value type ---------------------------------------------------

SCALARS = [
    ("t.u8", 200, VT.UINT8), ("t.i8", -100, VT.INT8), ("t.u16", 60000, VT.UINT16),
    ("t.i16", -30000, VT.INT16), ("t.u32", 4_000_000_000, VT.UINT32), ("t.i32", -2_000_000_000, VT.INT32),
    ("t.f32", 0.1, VT.FLOAT32), ("t.bool", True, VT.BOOL), ("t.str", "héllo ✓ 世界", VT.STRING),
    ("t.u64", 2**64 - 1, VT.UINT64), ("t.i64", -2**63, VT.INT64), ("t.f64", 1e-300, VT.FLOAT64),
]


def _fill(w: GGUFWriter) -> None:
    for key, value, vtype in SCALARS:
        w.add(key, value, vtype)
    w.add("t.arr.u8", [1, 2, 255], "array[uint8]")
    w.add("t.arr.i32", [-1, 0, 7])                        # inferred int32
    w.add("t.arr.f32", np.array([0.5, -1.25, 3e-7], dtype=np.float32))
    w.add("t.arr.f64", [0.1, 0.2], (VT.ARRAY, VT.FLOAT64))
    w.add("t.arr.bool", [True, False, True])
    w.add("t.arr.str", ["a", "", "ünï", "<0x0A>"])
    w.add("t.arr.u64", [2**63 + 5], [VT.UINT64])
    w.add("t.arr.empty", [], "array[string]")
    w.add("t.inferred.int", 7)
    w.add("t.inferred.float", 2.5)


def _tensors(rng):
    f32 = rng.standard_normal((3, 64)).astype(np.float32)
    f16 = rng.standard_normal((2, 32)).astype(np.float16)
    q40 = rng.integers(0, 256, size=4 * 18, dtype=np.uint8)       # 4 blocks of Q4_0 bytes
    q6k = rng.integers(0, 256, size=by_name("Q6_K").type_size, dtype=np.uint8)
    return [("a.f32", f32, (64, 3), "F32"), ("b.f16", f16.view(np.uint8), (32, 2), "F16"),
            ("c.q4_0", q40, (64, 2), "Q4_0"), ("d.q6_k", q6k, (256,), "Q6_K")]


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "all.gguf"
    w = GGUFWriter(path, arch="test")
    _fill(w)
    tensors = _tensors(rng)
    for name, raw, shape, qtype in tensors:
        w.add_tensor(name, raw, shape, qtype)
    w.write()
    return path, tensors


def test_writer_round_trips_through_our_reader(written):
    path, tensors = written
    with GGUFReader(path) as r:
        assert r.version == 3 and r.alignment == 32
        assert r.metadata["general.architecture"] == "test"
        for key, value, vtype in SCALARS:
            assert r.metadata_types[key] == vtype
            if vtype == VT.FLOAT32:
                assert r.metadata[key] == float(np.float32(value))
            else:
                assert r.metadata[key] == value
        assert r.metadata["t.arr.str"] == ["a", "", "ünï", "<0x0A>"]
        assert type_name(r.metadata_types["t.arr.str"]) == "array[string]"
        assert type_name(r.metadata_types["t.arr.i32"]) == "array[int32]"
        assert r.metadata["t.arr.bool"] == [True, False, True]
        assert r.metadata["t.arr.empty"] == []
        assert r.metadata_types["t.inferred.int"] == VT.INT32
        assert r.metadata_types["t.inferred.float"] == VT.FLOAT32
        assert list(r.tensors) == [t[0] for t in tensors]
        for name, raw, shape, qtype in tensors:
            t = r.tensors[name]
            assert t.shape == shape and t.qtype.name == qtype
            assert t.offset % 32 == 0
            assert bytes(t.data) == np.ascontiguousarray(raw).tobytes()
            assert t.data.base is not None and not t.data.flags.writeable   # a view of the map


def test_writer_output_matches_gguf_oracle(written):
    path, _ = written
    assert assert_same_as_oracle(path) == 4


def test_our_reader_reads_gguf_writer_output(tmp_path):
    path = tmp_path / "theirs.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_uint32("x.u32", 5)
    w.add_int64("x.i64", -5)
    w.add_float64("x.f64", 0.25)
    w.add_bool("x.b", False)
    w.add_array("x.strs", ["one", "two"])
    w.add_array("x.floats", [0.5, 1.5])
    w.add_tensor("w", np.arange(96, dtype=np.float32).reshape(3, 32))
    w.add_tensor("h", np.ones((4, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert assert_same_as_oracle(path) == 2
    with GGUFReader(path) as r:
        assert r.tensors["w"].shape == (32, 3)
        assert np.array_equal(r.tensors["w"].data.view(np.float32), np.arange(96, dtype=np.float32))


def test_metadata_round_trips_with_types_through_writer(written, tmp_path):
    """Copying every key with its recorded type reproduces the same file byte for byte."""
    path, _ = written
    copy = tmp_path / "copy.gguf"
    _rewrite(path, copy)
    assert copy.read_bytes() == Path(path).read_bytes()


def _rewrite(src, dst):
    with GGUFReader(src) as r:
        w = GGUFWriter(dst, arch=None)
        for key, value in r.metadata.items():
            w.add(key, value, r.metadata_types[key])
        for t in r.tensors.values():
            w.add_tensor(t.name, t.data, t.shape, t.qtype)
        w.write()


def test_nested_arrays_round_trip(tmp_path):
    path = tmp_path / "nested.gguf"
    w = GGUFWriter(path)
    w.add("n.pairs", [[1, 2], [3, 4, 5]], "array[array[uint16]]")
    w.add("n.words", [["a", "b"], []], [[VT.STRING]])
    w.write()
    with GGUFReader(path) as r:
        assert r.metadata["n.pairs"] == [[1, 2], [3, 4, 5]]
        assert type_name(r.metadata_types["n.pairs"]) == "array[array[uint16]]"
        assert r.metadata["n.words"] == [["a", "b"], []]


def test_writer_refuses_bad_values(tmp_path):
    w = GGUFWriter(tmp_path / "x.gguf")
    with pytest.raises(ValueError):
        w.add("k", 300, "uint8")
    with pytest.raises(ValueError):
        w.add("k", "text", "int32")
    with pytest.raises(ValueError):
        w.add("k", [1, "a"])
    with pytest.raises(ValueError):
        w.add("general.alignment", 24, "uint32")
    with pytest.raises(ValueError):
        w.add_tensor("t", np.zeros(10, np.uint8), (64,), "Q4_0")       # 36 bytes needed
    with pytest.raises(ValueError):
        w.add_tensor("t", np.zeros(33, np.float32), (33,), "Q8_0")     # row not a block multiple


def test_writer_custom_alignment_and_lazy_tensors(tmp_path):
    path = tmp_path / "a64.gguf"
    w = GGUFWriter(path)
    w.add("general.alignment", 64, "uint32")
    w.add_tensor("a", np.ones(3, np.float32), (3,), "F32")
    w.add_tensor("b", lambda: np.full(5, 2.0, np.float32), (5,), "F32")
    seen = []
    w.write(progress=lambda name, n: seen.append((name, n)))
    assert seen == [("a", 12), ("b", 20)]
    with GGUFReader(path) as r:
        assert r.alignment == 64
        assert r.tensors["b"].offset % 64 == 0
        assert r.tensors["b"].data.view(np.float32).tolist() == [2.0] * 5
    assert_same_as_oracle(path)


# ---- real files -----------------------------------------------------------------------------

def test_tiny_tensor_hashes_match_llama_cpp_record():
    shared = paths.shared_dir()
    if shared is None:
        pytest.skip("../shared is absent: no llama.cpp reference data")
    import json
    record = json.loads((shared / "ref" / "tiny" / "quant_tensors_tiny_codellama.json").read_text())
    checked = 0
    for fname, entry in record["files"].items():
        path = shared / "ref" / "tiny" / fname
        if not path.exists():
            continue
        with GGUFReader(path) as r:
            assert [t["name"] for t in entry["tensors"]] == list(r.tensors)
            for t in entry["tensors"]:
                mine = r.tensors[t["name"]]
                assert mine.qtype.name == t["type"] and list(mine.shape) == t["shape"]
                assert mine.offset == t["data_offset"] and mine.nbytes == t["n_bytes"]
                assert hashlib.sha256(mine.data).hexdigest() == t["sha256"]
                checked += 1
    if not checked:
        pytest.skip("no tiny-codellama GGUF file present")


def test_rewriting_llama_cpp_files_is_byte_identical(tmp_path):
    """Our writer lays files out exactly as gguf-py (F16) and llama.cpp (quantized) do."""
    shared = paths.shared_dir()
    if shared is None:
        pytest.skip("../shared is absent")
    for name in ("tiny-codellama-F16.gguf", "tiny-codellama-Q4_0.gguf"):
        src = shared / "ref" / "tiny" / name
        if not src.exists():
            pytest.skip(f"{shown(src)} is absent")
        dst = tmp_path / name
        _rewrite(src, dst)
        assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest(), name


# ---- hostile files --------------------------------------------------------------------------

def s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name: str, dims, type_id: int = 0, offset: int = 0) -> bytes:
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) \
        + struct.pack("<IQ", type_id, offset)


def gguf_file(kvs=(), tensors=(), data=b"", version=3, n_kv=None, n_tensors=None, alignment=32,
              pad=True) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    if pad:
        body += b"\0" * (-len(body) % alignment)
    return body + data


LONG_INFO = tinfo("weights.long", [16], 0, 0)
DATA_64 = bytes(64)

HOSTILE = {
    "empty_file": (b"", GGUFTruncatedError, "truncated header"),
    "truncated_header": (b"GGUF\x03\x00\x00\x00\x01\x00", GGUFTruncatedError, "truncated header"),
    "bad_magic": (b"GGML" + bytes(20), GGUFError, "not a GGUF file"),
    "v1_file": (b"GGUF" + struct.pack("<III", 1, 0, 0) + bytes(12), GGUFUnsupportedError, "v1"),
    "unknown_version": (gguf_file(version=4), GGUFUnsupportedError, "version 4"),
    "big_endian_file": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), GGUFUnsupportedError, "big-endian"),
    "huge_n_kv": (gguf_file(n_kv=2**62), GGUFError, "absurd metadata count"),
    "huge_n_tensors": (gguf_file(n_tensors=2**40), GGUFError, "absurd tensor count"),
    "truncated_metadata_string": (gguf_file(kvs=[s("general.name")[:-3]], pad=False), GGUFTruncatedError, "metadata key #0"),
    "string_length_past_eof": (gguf_file(kvs=[kv("k", VT.STRING, struct.pack("<Q", 2**63) + b"abc")]),
                               GGUFTruncatedError, "declares"),
    "huge_array_length": (gguf_file(kvs=[kv("k", VT.ARRAY, struct.pack("<IQ", VT.UINT32, 2**61))]),
                          GGUFTruncatedError, "array 'k' declares"),
    "huge_string_array": (gguf_file(kvs=[kv("k", VT.ARRAY, struct.pack("<IQ", VT.STRING, 10**12))]),
                          GGUFTruncatedError, "array 'k' declares"),
    "unknown_value_type": (gguf_file(kvs=[kv("k", 13, b"\0" * 8)]), GGUFError, "unknown metadata value type 13"),
    "unknown_array_element_type": (gguf_file(kvs=[kv("k", VT.ARRAY, struct.pack("<IQ", 99, 1) + bytes(8))]),
                                   GGUFError, "unknown metadata value type 99"),
    "nesting_bomb": (gguf_file(kvs=[kv("k", VT.ARRAY, struct.pack("<IQ", VT.ARRAY, 1) * 40)]),
                     GGUFError, "nested deeper"),
    "duplicate_key": (gguf_file(kvs=[kv("k", VT.UINT8, b"\1"), kv("k", VT.UINT8, b"\2")]), GGUFError,
                      "duplicate metadata key"),
    "bad_alignment_zero": (gguf_file(kvs=[kv("general.alignment", VT.UINT32, struct.pack("<I", 0))]),
                           GGUFError, "power of two"),
    "bad_alignment_not_power_of_two": (gguf_file(kvs=[kv("general.alignment", VT.UINT32, struct.pack("<I", 48))]),
                                       GGUFError, "power of two"),
    "bad_alignment_string": (gguf_file(kvs=[kv("general.alignment", VT.STRING, s("32"))]), GGUFError,
                             "power of two"),
    "zero_n_dims": (gguf_file(tensors=[tinfo("w", [])], data=DATA_64), GGUFError, "n_dims=0"),
    "huge_n_dims": (gguf_file(tensors=[s("w") + struct.pack("<I", 2**31) + bytes(64)]), GGUFError, "n_dims=2147483648"),
    "five_dims": (gguf_file(tensors=[tinfo("w", [1, 1, 1, 1, 1])], data=DATA_64), GGUFError, "n_dims=5"),
    "zero_dim": (gguf_file(tensors=[tinfo("w", [16, 0])], data=DATA_64), GGUFError, "bad dimension 0"),
    "dim_over_int64": (gguf_file(tensors=[tinfo("w", [2**64 - 1])], data=DATA_64), GGUFError, "bad dimension"),
    "huge_dims_overflowing": (gguf_file(tensors=[tinfo("w", [2**32, 2**32])], data=DATA_64), GGUFError,
                              "overflows int64"),
    "unknown_type": (gguf_file(tensors=[tinfo("w", [16], 99)], data=DATA_64), GGUFUnsupportedError,
                     "unknown type id 99"),
    "unsupported_iq_type": (gguf_file(tensors=[tinfo("w", [256], 16)], data=DATA_64), GGUFUnsupportedError,
                            "IQ2_XXS"),
    "row_not_block_multiple": (gguf_file(tensors=[tinfo("w", [33], 2)], data=DATA_64), GGUFError,
                               "not a multiple of the Q4_0 block size"),
    "offset_past_the_end": (gguf_file(tensors=[tinfo("w", [16], 0, 2**40)], data=DATA_64), GGUFTruncatedError,
                            "past the end"),
    "offset_near_2_64": (gguf_file(tensors=[tinfo("w", [16], 0, 2**64 - 32)], data=DATA_64), GGUFTruncatedError,
                         "past the end"),
    "data_past_the_end": (gguf_file(tensors=[tinfo("w", [16, 2])], data=DATA_64[:100 // 2]), GGUFTruncatedError,
                          "past the end"),
    "misaligned_offset": (gguf_file(tensors=[tinfo("w", [4], 0, 4)], data=DATA_64), GGUFError,
                          "not a multiple of the alignment"),
    "overlapping_tensors": (gguf_file(tensors=[tinfo("a", [16], 0, 0), tinfo("b", [16], 0, 32)], data=DATA_64 * 2),
                            GGUFError, "overlap"),
    "duplicate_tensor_names": (gguf_file(tensors=[tinfo("w", [8], 0, 0), tinfo("w", [8], 0, 32)], data=DATA_64),
                               GGUFError, "duplicate tensor name"),
    "truncated_tensor_info": (gguf_file(tensors=[LONG_INFO[:-5]], pad=False), GGUFTruncatedError,
                              "offset of tensor 'weights.long'"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_raises_gguf_error(tmp_path, case):
    data, error, words = HOSTILE[case]
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(data)
    with pytest.raises(error) as info:
        GGUFReader(path)
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_big_endian_file_from_gguf_writer_is_refused(tmp_path):
    path = tmp_path / "be.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama", endianess=gguf.GGUFEndian.BIG)
    w.add_uint32("x", 1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFUnsupportedError, match="big-endian GGUF is not supported"):
        GGUFReader(path)


def test_missing_file_is_a_gguf_error(tmp_path):
    with pytest.raises(GGUFError, match="cannot open"):
        GGUFReader(tmp_path / "nope.gguf")


def test_every_truncation_of_a_valid_file_is_refused(written, tmp_path):
    """Cutting the file anywhere before the end of the last tensor's data raises GGUFError."""
    path, _ = written
    full = Path(path).read_bytes()
    with GGUFReader(path) as r:
        end = max(t.offset + t.nbytes for t in r.tensors.values())
        data_start = r.data_offset
    cut_path = tmp_path / "cut.gguf"
    # every byte of the header; in the tensor data every cut gives the same check, so sample it
    for cut in list(range(0, data_start)) + list(range(data_start, end, 13)) + [end - 1]:
        cut_path.write_bytes(full[:cut])
        with pytest.raises(GGUFError):
            GGUFReader(cut_path)


def test_tensor_views_survive_close_of_other_handles(written):
    path, tensors = written
    r = GGUFReader(path)
    view = r.tensors["a.f32"].data
    keep = np.array(view)
    r.close()                    # our references dropped; the caller's view stays valid
    assert np.array_equal(view, keep)


def test_v2_file_reads_like_v3(written, tmp_path):
    """v2 already had 64-bit counts: the same layout as v3."""
    path, tensors = written
    data = bytearray(Path(path).read_bytes())
    data[4:8] = struct.pack("<I", 2)
    v2 = tmp_path / "v2.gguf"
    v2.write_bytes(bytes(data))
    with GGUFReader(v2) as r, GGUFReader(path) as r3:
        assert r.version == 2
        assert r.metadata == r3.metadata and r.metadata_types == r3.metadata_types
        assert [(t.name, t.shape, t.offset) for t in r.tensors.values()] == \
            [(t.name, t.shape, t.offset) for t in r3.tensors.values()]
