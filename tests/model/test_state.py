"""Saved states (pygguf/model/state.py): one sequence's KV cells as bytes and back through C,
bit-identical logits after a reload (SmolLM2 Q4_1, f16 / q8_0 / q4_0 caches), refusals naming
what differs, a fuzzed file (every truncation, seeded byte flips) always refused with one line,
and atomic writes."""
import os

import numpy as np
import pytest

from model_factory import encode, random_weights, tiny_config
from pygguf._native import ffi, lib
from pygguf.errors import ModelError, StateError, StateMismatch
from pygguf.gguf.types import by_name
from pygguf.model import Model, state
from pygguf.model.batch import Batch
from pygguf_cli import paths

SMOL = paths.default_model_path()
SMOL_Q8 = SMOL.with_name("SmolLM2-135M-Instruct.Q8_0.gguf")
TOKENS = [1, 17, 250, 3, 99, 42, 7, 7, 180, 0, 299, 12]


@pytest.fixture(scope="module")
def tiny_tensors():
    config = tiny_config(n_layer=1)
    tensors, _ = encode(random_weights(config, seed=5), by_name("F32"), config)
    return config, tensors


def tiny(tiny_tensors, **kwargs):
    config, tensors = tiny_tensors
    kwargs.setdefault("n_ctx", 32)
    return Model.from_tensors(config, tensors, **kwargs)


def evaluate(model, tokens, start=0, seq=0):
    """logits of the last token after tokens[start:] run at positions start.. of seq"""
    batch = Batch(model.n_batch)
    batch.add_run(tokens[start:], start, seq, "last")
    return model.decode(batch).copy()


# ---- C and Model: the bytes of one sequence ------------------------------------------------------

@pytest.mark.parametrize("cache", ["f16", "q8_0", "q4_0"])
def test_kv_read_write_round_trip_between_sequences(tiny_tensors, cache):
    with tiny(tiny_tensors, n_seq=2, type_k=cache, type_v=cache) as m:
        evaluate(m, TOKENS, seq=0)
        data = m.kv_read(0, len(TOKENS))
        assert len(data) == m.cache.bytes_per_position() * len(TOKENS)
        m.kv_write(1, data, len(TOKENS))
        assert m.kv_read(1, len(TOKENS)) == data
        assert np.array_equal(evaluate(m, TOKENS + [5], len(TOKENS), seq=1),
                              evaluate(m, TOKENS + [5], len(TOKENS), seq=0))


def test_kv_write_refuses_a_wrong_length_before_c(tiny_tensors):
    with tiny(tiny_tensors) as m:
        data = m.kv_read(0, 4)
        with pytest.raises(ModelError, match="bytes for 4 positions"):
            m.kv_write(0, data[:-1], 4)
        with pytest.raises(ModelError, match="context holds"):
            m.kv_write(0, data, m.n_ctx + 1)
        with pytest.raises(ModelError, match="sequence id"):
            m.kv_read(1, 4)


def test_c_checks_its_arguments_too(tiny_tensors):
    with tiny(tiny_tensors) as m:
        size = m.kv_state_bytes(4)
        buf = ffi.new("char[]", size + 1)
        assert lib.pg_model_kv_export(m._model, 0, 4, buf, size + 1) == lib.PG_EBADARG
        assert lib.pg_model_kv_import(m._model, 0, 4, buf, size - 1) == lib.PG_EBADARG
        assert lib.pg_model_kv_import(m._model, 1, 4, buf, size) == lib.PG_EBADARG
        assert lib.pg_model_kv_import(m._model, 0, m.n_ctx + 1, buf, size) == lib.PG_EBADARG
        assert lib.pg_model_kv_import(m._model, 0, 4, ffi.NULL, size) == lib.PG_EBADARG
        assert lib.pg_model_kv_export(m._model, 0, 4, buf, size) == lib.PG_OK


# ---- bit-identical logits after a reload ------------------------------------------------------------

@pytest.mark.skipif(not SMOL.is_file(), reason=f"default model absent ({SMOL}); run `make model`")
@pytest.mark.parametrize("cache", ["f16", "q8_0", "q4_0"])
def test_reloaded_state_gives_bit_identical_logits_on_smollm2(cache):
    with Model.load(SMOL, n_ctx=128, type_k=cache, type_v=cache) as m:
        tokens = m.tokenizer.encode("The llama is a domesticated South American camelid, widely used as a "
                                    "meat and pack animal by Andean cultures", add_special=True)
        scratch = evaluate(m, tokens)
        data = state.encode(m, 0, tokens[:-1])
    with Model.load(SMOL, n_ctx=128, type_k=cache, type_v=cache) as fresh:
        assert state.restore(fresh, 0, data) == tokens[:-1]
        assert np.array_equal(evaluate(fresh, tokens, len(tokens) - 1), scratch)


# ---- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("change,named", [
    (dict(n_ctx=64), "context size -c 32, this run has 64"),
    (dict(type_k="q8_0"), "K cache type -ctk f16, this run has q8_0"),
    (dict(type_v="q4_0"), "V cache type -ctv f16, this run has q4_0"),
])
def test_other_settings_are_refused_by_name(tiny_tensors, change, named):
    with tiny(tiny_tensors) as m:
        evaluate(m, TOKENS)
        data = state.encode(m, 0, TOKENS)
    with tiny(tiny_tensors, **change) as other:
        with pytest.raises(StateMismatch, match=named):
            state.restore(other, 0, data, "p.bin")


def test_rotation_and_rope_base_are_refused(tiny_tensors):
    with tiny(tiny_tensors, type_k="q8_0", type_v="q8_0") as m:
        data = state.encode(m, 0, TOKENS[:3])
    with tiny(tiny_tensors, type_k="q8_0", type_v="q8_0", attn_rotation=False) as other:
        with pytest.raises(StateMismatch, match="Hadamard rotation .* on, this run has off"):
            state.decode(other, data)
    config, tensors = tiny_tensors
    shifted = tiny_config(n_layer=1, rope_base=5e4)
    with Model.from_tensors(shifted, tensors, n_ctx=32, type_k="q8_0", type_v="q8_0") as other:
        with pytest.raises(StateMismatch, match="RoPE frequency base"):
            state.decode(other, data)


def test_another_models_state_is_refused(tiny_tensors):
    config, tensors = tiny_tensors
    with tiny(tiny_tensors) as m:
        data = state.encode(m, 0, TOKENS[:3])
    other_tensors, _ = encode(random_weights(config, seed=6), by_name("F32"), config)
    with Model.from_tensors(config, other_tensors, n_ctx=32) as other:
        with pytest.raises(StateMismatch, match="p.bin: saved by another model"):
            state.decode(other, data, "p.bin")


@pytest.mark.skipif(not (SMOL.is_file() and SMOL_Q8.is_file()), reason="SmolLM2 Q4_1 and Q8_0 files needed")
def test_a_gguf_models_identity_is_its_header_and_tensor_table():
    with Model.load(SMOL, n_ctx=64) as a, Model.load(SMOL, n_ctx=64) as same, Model.load(SMOL_Q8, n_ctx=64) as b:
        assert a.identity == same.identity != b.identity
        data = state.encode(a, 0, [1, 2, 3])
        with pytest.raises(StateMismatch, match="another model"):
            state.decode(b, data)
        assert state.decode(same, data).tokens == [1, 2, 3]


def test_tokens_outside_the_vocabulary_are_refused(tiny_tensors):
    with tiny(tiny_tensors) as m:
        parts = state.encode_parts(m, 0, [1, 2, 3])
        bad = np.array([1, 2, m.config.n_vocab], dtype="<i4").tobytes()
        import hashlib
        digest = hashlib.sha256(parts[0] + bad + parts[2]).digest()
        with pytest.raises(StateError, match="outside the vocabulary"):
            state.decode(m, parts[0] + bad + parts[2] + digest)


# ---- a hostile file: a clear error, never a crash ----------------------------------------------------

def refused_or_exact(model, data, tokens, kv):
    """decode either refuses with one line or returns exactly what was saved"""
    try:
        saved = state.decode(model, data, "f.bin")
    except StateError as e:
        assert "\n" not in str(e) and str(e).startswith("f.bin: ")
        return False
    assert saved.tokens == tokens and bytes(saved.kv) == kv
    return True


def test_every_truncation_is_refused(tiny_tensors):
    with tiny(tiny_tensors, n_ctx=8, type_k="q4_0", type_v="q4_0") as m:
        evaluate(m, TOKENS[:3])
        data = state.encode(m, 0, TOKENS[:3])
        kv = m.kv_read(0, 3)
        for end in range(len(data)):
            assert not refused_or_exact(m, data[:end], TOKENS[:3], kv), end
        assert refused_or_exact(m, data, TOKENS[:3], kv)
        assert not refused_or_exact(m, data + b"\0", TOKENS[:3], kv)


def test_random_byte_flips_are_refused(tiny_tensors):
    rng = np.random.default_rng(17)
    with tiny(tiny_tensors, n_ctx=8) as m:
        evaluate(m, TOKENS[:4])
        data = state.encode(m, 0, TOKENS[:4])
        kv = m.kv_read(0, 4)
        header = state._HEADER.size
        # half in the header and tokens, where a flip would change meaning, half anywhere
        offsets = np.concatenate([rng.integers(0, header + 16, 200), rng.integers(0, len(data), 200)])
        for offset in offsets:
            flipped = bytearray(data)
            flipped[offset] ^= 1 << int(rng.integers(0, 8))
            assert not refused_or_exact(m, bytes(flipped), TOKENS[:4], kv), offset
        m.kv_write(0, kv, 4)                    # nothing was written into the cache by a refusal
        assert m.kv_read(0, 4) == kv


def test_a_refused_state_leaves_the_cache_alone(tiny_tensors):
    with tiny(tiny_tensors) as m:
        evaluate(m, TOKENS)
        before = m.kv_read(0, len(TOKENS))
        data = bytearray(state.encode(m, 0, TOKENS[:2]))
        data[-1] ^= 0xFF
        with pytest.raises(StateError, match="checksum"):
            state.restore(m, 0, bytes(data))
        assert m.kv_read(0, len(TOKENS)) == before


def test_other_files_are_refused(tiny_tensors):
    with tiny(tiny_tensors) as m:
        for data in (b"", b"GGUF\3\0\0\0", b"PGGUFKV\0"):
            with pytest.raises(StateError):
                state.decode(m, data)


# ---- atomic writes --------------------------------------------------------------------------------

def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "p.bin"
    state.write_file(path, [b"old"])
    assert path.read_bytes() == b"old"

    def parts_then_failure():
        yield b"new, half"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        state.write_file(path, parts_then_failure())
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["p.bin"]

    def failing_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        state.write_file(path, [b"new"])
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["p.bin"]
    monkeypatch.undo()
    state.write_file(path, [b"new", b"er"])
    assert path.read_bytes() == b"newer" and os.listdir(tmp_path) == ["p.bin"]
