"""Compare our GGUFReader with the `gguf` PyPI reader (llama.cpp's own), field by field."""
from __future__ import annotations

import numpy as np

from pygguf.gguf import GGUFReader, GGUFValueType

PSEUDO_FIELDS = ("GGUF.version", "GGUF.tensor_count", "GGUF.kv_count")


def flat_types(spec) -> list[int]:
    """(ARRAY, (ARRAY, UINT8)) -> [9, 9, 0], the way gguf's ReaderField.types lists them."""
    if isinstance(spec, tuple):
        return [int(GGUFValueType.ARRAY)] + flat_types(spec[1])
    return [int(spec)]


def is_nested(spec) -> bool:
    return isinstance(spec, tuple) and isinstance(spec[1], tuple)


def assert_same_as_oracle(path) -> int:
    """Every metadata key, value, type, and every tensor's name, shape, type, offset and bytes agree.
    Returns the number of tensors compared."""
    import gguf
    theirs = gguf.GGUFReader(str(path))
    with GGUFReader(path) as ours:
        fields = {k: f for k, f in theirs.fields.items() if k not in PSEUDO_FIELDS}
        assert list(fields) == list(ours.metadata)
        for key, f in fields.items():
            spec = ours.metadata_types[key]
            if ours.metadata[key] == []:
                # gguf lists no element type for an empty array
                assert [int(t) for t in f.types] == flat_types(spec)[:1], key
                continue
            assert [int(t) for t in f.types] == flat_types(spec), key
            if is_nested(spec):
                continue    # gguf's contents() does not decode nested arrays
            expected = f.contents()
            got = ours.metadata[key]
            if spec == GGUFValueType.FLOAT32 or spec == (GGUFValueType.ARRAY, GGUFValueType.FLOAT32):
                assert np.array_equal(np.float32(got), np.float32(expected)), key
            else:
                assert got == expected, key
        assert ours.alignment == theirs.alignment
        assert [t.name for t in theirs.tensors] == list(ours.tensors)
        for t in theirs.tensors:
            mine = ours.tensors[t.name]
            assert mine.shape == tuple(int(d) for d in t.shape), t.name
            assert mine.qtype.ggml_id == int(t.tensor_type), t.name
            assert mine.offset == t.data_offset, t.name
            assert mine.nbytes == t.n_bytes and mine.n_elements == t.n_elements, t.name
            assert np.array_equal(mine.data, np.asarray(t.data).reshape(-1).view(np.uint8)), t.name
        return len(theirs.tensors)
