"""Model.load's ways of holding the file (issue #17's --no-mmap, --mlock) and its context limits
(a context past the C cache's limit, or one whose cache cannot fit, is refused with a clear error
naming n_ctx, never an OverflowError under a BufferError, never a Config repr)."""
from __future__ import annotations

import errno
import logging
import mmap

import numpy as np
import pytest
from model_factory import encode, random_weights, tiny_config, write_gguf
from model_runner import Runner

from pygguf.errors import ContextTooLarge, ModelError
from pygguf.gguf import GGUFReader
from pygguf.gguf.types import by_name
from pygguf.model import Model, kv_cache, memory_lock
from pygguf.model import model as model_module
from pygguf.model.config import MAX_CONTEXT

TOKENS = [5, 17, 250, 3, 99, 42]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    config = tiny_config()
    tensors, _ = encode(random_weights(config, seed=3), by_name("Q8_0"), config)
    path = tmp_path_factory.mktemp("load") / "tiny.gguf"
    write_gguf(path, config, tensors)
    return path


def logits(model) -> np.ndarray:
    with Runner(model) as runner:
        return runner.eval_all(TOKENS)


def test_no_mmap_reads_the_file_and_gives_the_same_bits(tiny_file):
    mapped = Model.load(tiny_file, n_ctx=32, n_batch=8)
    read = Model.load(tiny_file, n_ctx=32, n_batch=8, use_mmap=False)
    assert read._file_backed is False and mapped._file_backed is True     # no give-back of own memory
    assert np.array_equal(logits(read), logits(mapped))


def test_reader_without_mmap_reads_the_same(tiny_file):
    with GGUFReader(tiny_file) as mapped, GGUFReader(tiny_file, use_mmap=False) as read:
        assert read.metadata == mapped.metadata
        assert {n: bytes(t.data) for n, t in read.tensors.items()} == {n: bytes(t.data) for n, t in mapped.tensors.items()}


def test_mlock_locks_the_mapping_and_close_unlocks(tiny_file, monkeypatch):
    calls = []
    monkeypatch.setattr(memory_lock, "_mlock", lambda address, size: calls.append((address, size)) or 0)
    model = Model.load(tiny_file, n_ctx=32, use_mlock=True)
    assert calls and calls[0][1] == tiny_file.stat().st_size
    assert model._locked == memory_lock.LockedRange(*calls[0])
    unlocked = []
    monkeypatch.setattr(memory_lock.LockedRange, "unlock", lambda self: unlocked.append(self))
    model.close()
    assert unlocked == [memory_lock.LockedRange(*calls[0])]


def test_mlock_for_real_within_the_limit(tiny_file):
    """A real mlock(2) of a small file (as root, or under RLIMIT_MEMLOCK): the model runs."""
    with Model.load(tiny_file, n_ctx=32, use_mlock=True) as model:
        assert model._locked is None or model._locked.size == tiny_file.stat().st_size
        assert np.isfinite(logits(model)).all()


def test_mlock_refused_warns_once_with_the_numbers_and_runs(tiny_file, monkeypatch, caplog):
    monkeypatch.setattr(memory_lock, "_mlock", lambda address, size: errno.ENOMEM)
    monkeypatch.setattr(memory_lock, "_raise_soft_limit", lambda size: False)
    size = tiny_file.stat().st_size
    with caplog.at_level(logging.WARNING, logger="pygguf"), Model.load(tiny_file, n_ctx=32, use_mlock=True) as model:
        assert model._locked is None
        assert np.isfinite(logits(model)).all()
    warnings = [r.getMessage() for r in caplog.records if "mlock" in r.getMessage()]
    assert len(warnings) == 1
    assert f"failed to mlock the model's {memory_lock._size(size)} ({size} bytes): Cannot allocate memory" in warnings[0]
    assert "RLIMIT_MEMLOCK is " in warnings[0] and "ulimit -l" in warnings[0] and "without the lock" in warnings[0]


def test_mlock_retries_after_raising_the_soft_limit(monkeypatch):
    answers = [errno.ENOMEM, 0]
    monkeypatch.setattr(memory_lock, "_raise_soft_limit", lambda size: True)
    buffer = mmap.mmap(-1, 4096)
    locked = memory_lock.lock(buffer, mlock=lambda address, size: answers.pop(0))
    assert locked is not None and locked.size == 4096 and answers == []
    buffer.close()                                           # no view of it was left behind


# ---- context limits -----------------------------------------------------------------------------

def test_a_context_past_the_c_limit_is_refused_cleanly(tiny_file, monkeypatch):
    """Was: OverflowError (int32 n_ctx) hidden under `BufferError: cannot close exported pointers
    exist` when memory could not be read, or the C loader's 'bad argument (Config(...))'."""
    monkeypatch.setattr(kv_cache, "available_memory", lambda: None)
    for n_ctx in (MAX_CONTEXT + 1, 99_999_999, 2 ** 31 - 1):
        with pytest.raises(ContextTooLarge) as info:
            Model.load(tiny_file, n_ctx=n_ctx)
        assert str(info.value) == f"n_ctx={n_ctx} is beyond the largest context pygguf can allocate ({MAX_CONTEXT} tokens)"
        assert info.value.naming("-c").startswith(f"-c {n_ctx} is beyond")
    with pytest.raises(ModelError, match="^n_ctx = 2147483648: must be an integer"):   # context_args.py, first
        Model.load(tiny_file, n_ctx=2 ** 31)


def test_an_error_inside_the_c_call_leaves_no_view_of_the_mapping(tiny_file, monkeypatch):
    """The root of the BufferError: a numpy view of the mapping alive in the failing frame kept the
    mmap exported, so closing it on the error path raised over the real error."""
    real_ffi = model_module.ffi

    class FailingCast:
        def __getattr__(self, name):
            return getattr(real_ffi, name)

        def cast(self, *args):
            raise OverflowError("integer does not fit")

    monkeypatch.setattr(model_module, "ffi", FailingCast())
    with pytest.raises(OverflowError, match="does not fit"):
        Model.load(tiny_file, n_ctx=32)


def test_the_c_loader_refusal_names_values_not_the_config_repr(monkeypatch):
    config = tiny_config()
    tensors, _ = encode(random_weights(config, seed=1), by_name("F32"), config)
    monkeypatch.setattr(kv_cache, "check_context", lambda *args, **kwargs: None)   # let C see it
    with pytest.raises(ModelError) as info:
        Model.from_tensors(config, tensors, n_ctx=MAX_CONTEXT + 1)
    assert "Config(" not in str(info.value)
    assert f"n_ctx={MAX_CONTEXT + 1}" in str(info.value)


def test_an_automatic_context_is_capped_to_what_c_allocates(caplog, monkeypatch):
    config = tiny_config(n_ctx_train=(1 << 31) - 1)
    cache = kv_cache.CacheShape(config.n_layer, config.n_head_kv, config.head_dim)
    monkeypatch.setattr(kv_cache, "available_memory", lambda: None)
    with caplog.at_level(logging.WARNING, logger="pygguf"):
        assert model_module.context_for(config, None, 1, cache, 0) == MAX_CONTEXT
    assert any(f"using at most {MAX_CONTEXT}" in r.getMessage() for r in caplog.records)


def test_a_cache_beyond_memory_is_refused_with_the_numbers(tiny_file, monkeypatch):
    monkeypatch.setattr(kv_cache, "available_memory", lambda: 64 << 20)
    with pytest.raises(ContextTooLarge) as info:
        Model.load(tiny_file, n_ctx=1_000_000, type_v="q8_0")
    message = info.value.naming("-c")
    assert message.startswith("-c 1000000 needs ")
    assert ("GiB of KV cache (K f16, V q8_0), 0.0 GiB of weights and 0.5 GiB for the rest of the run but only "
            "0.1 GiB of memory is available") in message


def test_mlock_past_rlimit_memlock_for_real_warns_and_loads(tiny_file):
    """A real process whose RLIMIT_MEMLOCK (4 KiB, soft and hard) forbids the lock; as root, the
    lock privilege is dropped with setpriv so the limit binds."""
    import os
    import resource
    import shutil
    import subprocess
    import sys

    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: mlock ignores RLIMIT_MEMLOCK")
        prefix = ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock"]
    script = ("import sys; from pygguf.model import Model\n"
              "with Model.load(sys.argv[1], n_ctx=32, use_mlock=True) as m: print('locked' if m._locked else 'unlocked')")
    result = subprocess.run(prefix + [sys.executable, "-c", script, str(tiny_file)], capture_output=True, text=True,
                            timeout=60, env=os.environ, check=False,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_MEMLOCK, (4096, 4096)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unlocked"
    lines = [line for line in result.stderr.splitlines() if "mlock" in line]
    assert len(lines) == 1 and "RLIMIT_MEMLOCK is 4.0 KiB (hard limit 4.0 KiB)" in lines[0], result.stderr


def test_a_file_context_length_of_2_31_is_a_clean_error_naming_the_key(tmp_path):
    config = tiny_config()
    tensors, _ = encode(random_weights(config, seed=3), by_name("F32"), config)
    path = tmp_path / "huge_ctx.gguf"
    write_gguf(path, tiny_config(n_ctx_train=2 ** 31 - 1), tensors)   # Config allows it; the file gets 2^31 below
    data = bytearray(path.read_bytes())
    at = data.index(b"llama.context_length") + len(b"llama.context_length") + 4   # the key, its type, its value
    data[at:at + 4] = (2 ** 31).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as info:
        Model.load(path)
    assert str(info.value) == "llama.context_length 2147483648 is outside 0..2147483647"
