"""The command's rough edges around the model (issue #17): what is wrong with -m's path, a -c the
memory or the loader cannot take (named as -c, with the numbers), and --no-mmap / --mlock."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from test_cli import invoke

from pygguf_cli import main as main_module
from pygguf_cli.main import cli
from pygguf_cli.options import ModelParams


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_a_directory_as_model_says_so(tmp_path):
    result, h = invoke(["-m", tmp_path, "-p", "x"])
    assert result.exit_code == 1
    assert last_line(result) == f"main: error: -m {tmp_path} is a directory, not a GGUF file"
    assert h.load_calls == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_as_model_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    result, _ = invoke(["-m", fifo, "-p", "x"])                      # opening it would wait for a writer
    assert result.exit_code == 1
    assert last_line(result) == f"main: error: -m {fifo} is not a regular file, not a GGUF file"


def test_an_unreadable_model_says_why(tmp_path, monkeypatch):
    model = tmp_path / "locked.gguf"
    model.write_bytes(b"GGUF")

    def refuse(path, mode="r", *args, **kwargs):              # as chmod 000 does for a non-root user
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(main_module, "open", refuse, raising=False)
    result, h = invoke(["-m", model, "-p", "x"])
    assert result.exit_code == 1
    assert last_line(result) == f"main: error: -m {model}: cannot read the model file: Permission denied"
    assert h.load_calls == []


def test_a_missing_model_says_not_found(tmp_path):
    result, _ = invoke(["-m", tmp_path / "absent.gguf", "-p", "x"])
    assert last_line(result) == f"main: error: model file not found: {tmp_path / 'absent.gguf'}"


def test_mmap_and_mlock_reach_the_loader(tmp_path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    assert (ModelParams().use_mmap, ModelParams().use_mlock) == (True, False)
    for flags, expected in (([], (True, False)), (["--no-mmap"], (False, False)), (["--mlock"], (True, True)),
                            (["--no-mmap", "--mlock"], (False, True)), (["--no-mmap", "--mmap"], (True, False))):
        result, h = invoke(["-m", model, "-p", "x", "-n", "1", *flags])
        assert result.exit_code == 0, result.output
        kwargs = h.load_calls[0][1]
        assert (kwargs["use_mmap"], kwargs["use_mlock"]) == expected, flags


# ---- -c through the real loader, on a tiny GGUF ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from model_factory import encode, random_weights, tiny_config, write_gguf

    from pygguf.gguf.types import by_name
    config = tiny_config()
    tensors, _ = encode(random_weights(config, seed=2), by_name("F32"), config)
    path = tmp_path_factory.mktemp("ctx") / "tiny.gguf"
    write_gguf(path, config, tensors)
    return path


def run_real(args):
    from pygguf_cli.runtime import Runtime
    return CliRunner().invoke(cli, [str(a) for a in args], obj=Runtime.default())


def test_c_beyond_memory_is_refused_at_start_with_the_numbers(tiny_gguf, monkeypatch):
    from pygguf.model import kv_cache
    monkeypatch.setattr(kv_cache, "available_memory", lambda: 5 << 30)
    result = run_real(["-m", tiny_gguf, "-p", "x", "-c", "8000000", "-t", "1"])    # 1 KiB a position
    assert result.exit_code == 1
    assert last_line(result) == ("main: error: -c 8000000 needs 7.6 GiB of KV cache (f16), 0.0 GiB of weights and "
                                 "0.5 GiB for the rest of the run but only 5.0 GiB of memory is available: use a "
                                 "smaller context (0 picks one that fits) or a quantized KV cache (q8_0 halves it)")


@pytest.mark.parametrize("n_ctx", ["99999999", "2147483647"])
def test_c_beyond_the_loader_is_refused_naming_c(tiny_gguf, monkeypatch, n_ctx):
    from pygguf.model import kv_cache
    monkeypatch.setattr(kv_cache, "available_memory", lambda: None)    # nothing but the loader's limit stops it
    result = run_real(["-m", tiny_gguf, "-p", "x", "-c", n_ctx, "-t", "1"])
    assert result.exit_code == 1
    assert last_line(result) == f"main: error: -c {n_ctx} is beyond the largest context pygguf can allocate (16777216 tokens)"
    assert "Config(" not in result.stderr and "Traceback" not in result.stderr and "BufferError" not in result.stderr


def test_c_of_2_31_is_one_clean_line(tiny_gguf, monkeypatch):
    """Was OverflowError under `BufferError: cannot close exported pointers exist` (the value check
    of cli/value_checks.py refuses it first now; either way one line, no traceback)."""
    from pygguf.model import kv_cache
    monkeypatch.setattr(kv_cache, "available_memory", lambda: None)
    result = run_real(["-m", tiny_gguf, "-p", "x", "-c", "2147483648", "-t", "1"])
    assert result.exit_code == 1
    assert "2147483648" in last_line(result) and "error" in last_line(result)
    assert "Traceback" not in result.stderr and "BufferError" not in result.stderr and "Config(" not in result.stderr
