"""The C string-array scan (csrc/gguf_strings.c via pygguf/gguf_strings.py) against the reader's
per-string loop: the same strings for every array, and hostile arrays handed back (None) so the
loop raises the precise error; the scan itself never reads past the buffer it is given."""
from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from pygguf.gguf import strings as gguf_strings
from pygguf.gguf import GGUFReader, GGUFTruncatedError, GGUFValueType

pytestmark = pytest.mark.skipif(not gguf_strings.HAVE_NATIVE, reason="the C extension is not built")

ffi, lib = gguf_strings.ffi, gguf_strings.lib


def records(strings) -> bytes:
    return b"".join(struct.pack("<Q", len(b)) + b for b in strings)


def reference(strings) -> list[str]:
    return [b.decode("utf-8", errors="surrogateescape") for b in strings]


def scan_status(raw: bytes, count: int) -> int:
    buf = np.frombuffer(raw, dtype=np.uint8) if raw else np.zeros(1, dtype=np.uint8)
    ends = np.empty(max(count, 1), dtype=np.uint64)
    chars = np.empty(max(count, 1), dtype=np.uint64)
    end = ffi.new("uint64_t *")
    return lib.pg_gguf_scan_strings(ffi.cast("const uint8_t *", buf.ctypes.data), len(raw), 0, count,
                                    ffi.cast("uint64_t *", ends.ctypes.data),
                                    ffi.cast("uint64_t *", chars.ctypes.data), end)


def random_bytes(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))      # mostly invalid
    if kind == 1:                                                             # edge lead bytes
        lead = rng.choice([0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF])
        return bytes([lead] + [rng.choice([0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0])
                               for _ in range(rng.randrange(4))])
    text = "".join(chr(rng.choice([rng.randrange(0x80), rng.randrange(0x80, 0xD800),
                                   rng.randrange(0xE000, 0x110000)])) for _ in range(rng.randrange(5)))
    return text.encode("utf-8")


def test_utf8_check_agrees_with_pythons_strict_decoder():
    rng = random.Random(7)
    for _ in range(20000):
        b = random_bytes(rng)
        try:
            b.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert scan_status(records([b]), 1) == (0 if valid else 1), b


def test_vocabulary_like_array_matches_reference():
    rng = random.Random(3)
    strings = [b"", b"\x00", b"a b", "Ġthe".encode(), "日本".encode(), "😀".encode(), b"\n"]
    strings += ["".join(chr(rng.choice([rng.randrange(0x20, 0x80), rng.randrange(0xA0, 0x3000),
                                        0x1F600 + rng.randrange(50)])) for _ in range(rng.randrange(1, 9))
                        ).encode() for _ in range(2000)]
    raw = b"pad" + records(strings) + b"tail"
    got = gguf_strings.read_strings(np.frombuffer(raw, dtype=np.uint8), 3, len(strings))
    assert got is not None
    assert got[0] == reference(strings) and got[1] == len(raw) - 4


def test_a_string_that_is_not_utf8_goes_to_the_reference():
    strings = [b"ok"] * 100 + [b"\xe6\x97"] + [b"\xa5"] + [b"ok"] * 100   # one char split over two
    raw = records(strings)
    assert gguf_strings.read_strings(np.frombuffer(raw, dtype=np.uint8), 0, len(strings)) is None


@pytest.mark.parametrize("cut", [1, 5, 8, 9, 300, 301, 302])
def test_truncated_array_is_refused_at_every_cut(cut):
    raw = records([b"abc"] * 100)[:-cut]
    assert gguf_strings.read_strings(np.frombuffer(raw, dtype=np.uint8), 0, 100) is None


def test_hostile_lengths_are_refused():
    for length in (2**64 - 1, 2**63, 2**32 + 3):
        raw = records([b"x"] * 70) + struct.pack("<Q", length) + b"abc"
        assert scan_status(raw, 71) == -1
        assert gguf_strings.read_strings(np.frombuffer(raw, dtype=np.uint8), 0, 71) is None
    assert scan_status(b"", 0) == 0


def gguf_with_strings(strings) -> bytes:
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    key = b"tokenizer.ggml.tokens"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", GGUFValueType.ARRAY, GGUFValueType.STRING,
                                                          len(strings))
    return header + body + records(strings)


def test_reader_gives_the_same_strings_either_way(tmp_path, monkeypatch):
    strings = [f"tok{i}".encode() for i in range(500)] + [b"\xff\xfe", "é".encode()]
    path = tmp_path / "v.gguf"
    path.write_bytes(gguf_with_strings(strings))
    with GGUFReader(path) as r:
        fast = r.metadata["tokenizer.ggml.tokens"]
    assert fast == reference(strings)
    valid = strings[:500]
    path.write_bytes(gguf_with_strings(valid))
    with GGUFReader(path) as r:
        fast = r.metadata["tokenizer.ggml.tokens"]
    monkeypatch.setattr("pygguf.gguf.reader.read_strings", lambda *a: None)
    with GGUFReader(path) as r:
        assert r.metadata["tokenizer.ggml.tokens"] == fast == reference(valid)


def test_reader_names_the_truncated_string(tmp_path):
    path = tmp_path / "t.gguf"
    path.write_bytes(gguf_with_strings([b"abcd"] * 200)[:-2])
    with pytest.raises(GGUFTruncatedError, match=r"string #199 of array 'tokenizer.ggml.tokens'"):
        GGUFReader(path)
