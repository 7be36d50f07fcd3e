"""`pygguf` as a real process on a fake model: SIGINT (exit 130, perf block) and colour on a terminal."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sigint import default_sigint_in_child, sigint_as
from testpaths import TESTS

SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from cli_fakes import FakeModel, FakeSampler, FakeSamplerParams, tokens_of
    from pygguf_cli.main import cli
    from pygguf_cli.runtime import Runtime

    class SlowModel(FakeModel):
        def eval(self, tokens):
            time.sleep(0.01)
            return super().eval(tokens)

    runtime = Runtime(load_model=lambda path, **kw: SlowModel(tokens_of("a"), n_ctx=1 << 20),
                      make_sampler=FakeSampler, sampler_params=FakeSamplerParams, errors=())
    cli.main(args=sys.argv[1:], prog_name="pygguf", obj=runtime)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_while_generating(tmp_path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    with sigint_as(signal.SIG_IGN):                     # as in a backgrounded `make test`
        proc = subprocess.Popen([sys.executable, str(script), "-m", str(model), "-p", "Q", "-n", "-1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint_in_child)
    try:
        assert proc.stdout.read(4) == b"Qaaa"             # generation is under way
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    err_lines = err.decode().splitlines()
    assert "Traceback" not in err.decode()
    assert any(line.startswith("llama_perf_context_print:        eval time =") for line in err_lines)
    assert err_lines[-1] == "Interrupted by user"
    assert set((out.rstrip(b"\n"))) <= {ord("a")}


def test_color_on_a_real_terminal(tmp_path):
    import pty
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(script), "-m", str(model), "-p", "Q", "-n", "3", "--color"],
                            stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = b""
    while True:
        try:
            chunk = os.read(master, 1024)
        except OSError:                                   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks += chunk
    os.close(master)
    assert proc.wait(timeout=20) == 0
    assert chunks.replace(b"\r\n", b"\n") == b"\x1b[33mQ\x1b[0maaa\n"
