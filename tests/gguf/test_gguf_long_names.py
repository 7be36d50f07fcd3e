"""A hostile file's huge key or tensor name (the issue's was a 98 MB key: 18-40 s and 3-6 GB,
because every read formatted the key's repr for its error message up front): names are formatted
only when a read fails, and cut short in the message."""
from __future__ import annotations

import struct

import pytest

from pygguf.gguf import GGUFError, GGUFReader
from pygguf.gguf import reader as reader_module

LONG = 4 << 20      # 4 M characters: big enough to notice, small enough for a test


def string(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def gguf(kvs: bytes, n_kv: int, tensors: bytes = b"", n_tensors: int = 0, data: bytes = b"") -> bytes:
    body = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kvs + tensors
    return body + b"\0" * (-len(body) % 32) + data


def test_reading_a_long_key_formats_no_name(tmp_path, monkeypatch):
    def no_formatting(name):
        raise AssertionError("a name was formatted for a message although nothing failed")
    monkeypatch.setattr(reader_module, "short", no_formatting)
    path = tmp_path / "long_key.gguf"
    kvs = string(b"k" * LONG) + struct.pack("<I", 4) + struct.pack("<I", 7)
    kvs += string(b"a" * 100) + struct.pack("<I", 9) + struct.pack("<IQ", 8, 2) + string(b"x") + string(b"y")
    tensor = string(b"t" * LONG) + struct.pack("<IQIQ", 1, 8, 0, 0)
    path.write_bytes(gguf(kvs, 2, tensor, 1, bytes(32)))
    with GGUFReader(path) as r:
        assert r.metadata["k" * LONG] == 7 and r.metadata["a" * 100] == ["x", "y"]
        assert list(r.tensors) == ["t" * LONG]


@pytest.mark.parametrize("case", ["value type", "truncated value", "duplicate", "tensor n_dims"])
def test_a_long_name_is_cut_short_in_the_message(tmp_path, case):
    key = string(b"k" * LONG)
    if case == "value type":
        body = gguf(key + struct.pack("<I", 99), 1)
    elif case == "truncated value":
        body = gguf(key + struct.pack("<I", 10), 1)[:8 + 4 + 16 + len(key) + 4 + 3]
    elif case == "duplicate":
        body = gguf((key + struct.pack("<IB", 0, 1)) * 2, 2)
    else:
        body = gguf(b"", 0, string(b"t" * LONG) + struct.pack("<I", 9) + bytes(64), 1)
    path = tmp_path / "long.gguf"
    path.write_bytes(body)
    with pytest.raises(GGUFError) as e:
        GGUFReader(path)
    message = str(e.value)
    assert len(message) < 400 + len(str(path)), message[:500]
    assert f"({LONG} characters)" in message
