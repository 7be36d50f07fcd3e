"""A GGUF file with general.alignment = 1 may put tensor data at any offset, odd ones included.
Such a model gives the same logits as the same tensors in a file aligned as usual: its tensors are
copied once, at load, to where C can read their blocks as structs (pygguf/model/relocate.py),
while a usual file runs on its mapping with nothing copied. `make asan` runs this file under
UBSan, which reports any block read through a misaligned pointer."""
import numpy as np
import pytest

from model_factory import encode, missing_kernels, random_weights, tiny_config, write_gguf
from model_runner import Runner
from pygguf._native import ffi, lib
from pygguf.errors import ModelError
from pygguf.gguf import GGUFReader
from pygguf.gguf.types import WEIGHT_TYPES, by_name
from pygguf.model import Model, kernels, relocate

TOKENS = [5, 17, 250, 3, 99, 42, 7, 180, 0, 299]
RUNNABLE = [t for t in WEIGHT_TYPES if not missing_kernels(t)]


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    return config, random_weights(config, seed=3)


def write_at(path, config, tensors, residue: int | None):
    """The file, aligned as usual (residue None) or with general.alignment = 1 and its tensor
    data starting at an offset of `residue` mod 4 (a general.name of the length that does it;
    every tensor's size is even, so with an odd residue every tensor is at an odd offset)."""
    if residue is None:
        write_gguf(path, config, tensors)
        return
    for pad in range(4):
        write_gguf(path, config, tensors, extra={"general.alignment": (1, "uint32"), "general.name": "x" * (1 + pad)})
        with GGUFReader(path) as reader:
            if reader.data_offset % 4 == residue:
                return
    raise AssertionError(f"no general.name length puts the data at {residue} mod 4")


def tensor_offsets(path) -> list[int]:
    with GGUFReader(path) as reader:
        return [int(t.offset) for t in reader.tensors.values()]


def logits(path, **kwargs) -> np.ndarray:
    with Model.load(path, n_ctx=64, n_batch=4, **kwargs) as model:
        return Runner(model).eval_all(TOKENS)


@pytest.mark.parametrize("qtype", RUNNABLE, ids=lambda t: t.name)
def test_odd_offsets_give_the_aligned_files_logits(tiny, qtype, tmp_path):
    config, weights = tiny
    tensors, _ = encode(weights, qtype, config)
    write_at(tmp_path / "aligned.gguf", config, tensors, None)
    write_at(tmp_path / "odd.gguf", config, tensors, 1)
    assert all(offset % 2 == 1 for offset in tensor_offsets(tmp_path / "odd.gguf"))
    expected = logits(tmp_path / "aligned.gguf")
    assert np.array_equal(logits(tmp_path / "odd.gguf"), expected)
    assert np.array_equal(logits(tmp_path / "odd.gguf", repack=False), expected)


@pytest.mark.parametrize("residue", [2, 3])
def test_every_misalignment_is_copied(tiny, residue, tmp_path):
    """2 mod 4 suits the fp16 scales of Q4_0 but not the F32 norms"""
    config, weights = tiny
    tensors, _ = encode(weights, by_name("Q4_0"), config)
    write_at(tmp_path / "aligned.gguf", config, tensors, None)
    write_at(tmp_path / "odd.gguf", config, tensors, residue)
    assert np.array_equal(logits(tmp_path / "odd.gguf"), logits(tmp_path / "aligned.gguf"))


def test_an_aligned_file_runs_on_its_mapping(tiny, tmp_path):
    """the usual case copies nothing: the model's buffer is the file's mapping; so is a file
    with general.alignment = 1 whose tensors all happen to lie at multiples of 4"""
    config, weights = tiny
    tensors, _ = encode(weights, by_name("Q4_0"), config)
    for name, residue in (("aligned.gguf", None), ("by4.gguf", 0)):
        write_at(tmp_path / name, config, tensors, residue)
        with Model.load(tmp_path / name, n_ctx=64) as model:
            assert model._weights is model._buffer is model._mapping
    with Model.load(tmp_path / "aligned.gguf", n_ctx=64) as aligned:
        offsets = {name: ref.offset for name, ref in aligned.tensors.items()}
    write_at(tmp_path / "odd.gguf", config, tensors, 1)
    with Model.load(tmp_path / "odd.gguf", n_ctx=64) as odd:
        assert odd._weights is not odd._buffer and not odd._file_backed    # repacking hands back no file pages
        assert all(ref.offset % 32 == 0 for ref in odd.tensors.values()) and offsets.keys() == odd.tensors.keys()


def test_c_refuses_a_misaligned_weight(tiny, tmp_path, monkeypatch):
    """the C loader never reads a block through a misaligned pointer, whoever calls it"""
    config, weights = tiny
    tensors, _ = encode(weights, by_name("Q8_0"), config)
    write_at(tmp_path / "odd.gguf", config, tensors, 1)
    monkeypatch.setattr(relocate, "misaligned", lambda base, tensors: [])
    with pytest.raises(ModelError, match=r"tensor token_embd\.weight \(Q8_0\): bad argument"):
        Model.load(tmp_path / "odd.gguf", n_ctx=64)


def at_odd_address(nbytes: int) -> np.ndarray:
    spare = np.zeros(nbytes + 1, dtype=np.uint8)
    start = 1 - spare.ctypes.data % 2
    return spare[start:start + nbytes]


@pytest.mark.parametrize("qtype", WEIGHT_TYPES, ids=lambda t: t.name)
def test_dequantize_of_a_misaligned_view(qtype):
    """kernels.dequantize copies a view at an odd address (a tensor of such a file, as
    pygguf-quantize reads it) to dequantize it; the C entry point refuses one"""
    n = qtype.block_size * 4
    odd = at_odd_address(qtype.row_bytes(n))
    odd[:] = np.random.default_rng(0).integers(0, 64, size=odd.size, dtype=np.uint8)   # small fp16 scales
    assert np.array_equal(kernels.dequantize(qtype, odd, n), kernels.dequantize(qtype, odd.copy(), n))
    out = np.empty(n, dtype=np.float32)
    assert lib.pg_dequantize(qtype.ggml_id, ffi.from_buffer(odd), ffi.from_buffer("float[]", out), n) == lib.PG_EBADARG
