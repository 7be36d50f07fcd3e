"""Closed, full and endless standard streams (issue #18): the real entry point as a process, over
the fakes (tests/cli/fake_cli_app.py). Every case ends with exit 0 and normal output, or one line
on stderr and a non-zero exit; never a traceback, never an unbounded read."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pygguf_cli.streams import MAX_INPUT_LINE, MAX_PROMPT_BYTES, InputTooLong, read_file_capped, read_line_capped

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell redirections")

APP = Path(__file__).with_name("fake_cli_app.py")


def run(tmp_path, args: str, redirections: str):
    """`python fake_cli_app.py -m FILE ARGS REDIRECTIONS` through sh, as a user types it."""
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    command = f'exec "$0" "{APP}" -m "{model}" {args} {redirections}'
    return subprocess.run(["sh", "-c", command, sys.executable], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "PYTHONSAFEPATH": "1"}, check=False)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line]


def test_stdin_closed_one_shot_runs(tmp_path):
    result = run(tmp_path, "-p hi -n 3", "<&-")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi th\n"
    assert "Traceback" not in result.stderr


def test_stdin_closed_without_prompt_reads_as_empty(tmp_path):
    result = run(tmp_path, "-n 3", "<&-")          # piped-prompt detection: nothing was piped
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_stdin_closed_interactive_ends_as_end_of_input(tmp_path):
    result = run(tmp_path, "-i -p hi -n 3", "<&-")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("EOF by user\n")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("redirection, reason", [(">&-", "standard output is closed"),
                                                 (">/dev/full", "No space left on device")])
@pytest.mark.parametrize("args", ["-p hi -n 3", "-i -p hi -n 3", "--help", "--version"])
def test_stdout_closed_or_full_is_one_line_and_exit_1(tmp_path, redirection, reason, args):
    if redirection == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    result = run(tmp_path, args, redirection + " </dev/null")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert error_lines(result.stderr) == [f"main: error: cannot write to standard output: {reason}"]


def test_prompt_file_from_dev_zero_is_refused_naming_f(tmp_path):
    result = run(tmp_path, "-f /dev/zero -n 3", "")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        ("error: invalid value for -f: the prompt file '/dev/zero' is longer than 64 MiB; nothing that long "
         "fits a context")]


def test_system_prompt_file_from_dev_zero_is_refused_naming_sysf(tmp_path):
    result = run(tmp_path, "-sysf /dev/zero -cnv -n 3", "</dev/null")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        ("error: invalid value for -sysf: the system prompt file '/dev/zero' is longer than 64 MiB; nothing "
         "that long fits a context")]


def test_piped_prompt_from_dev_zero_is_refused(tmp_path):
    result = run(tmp_path, "-n 3", "</dev/zero")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        ("main: error: the prompt piped on stdin is longer than 64 MiB; nothing that long fits a context")]


def test_interactive_line_from_dev_zero_is_refused(tmp_path):
    result = run(tmp_path, "-i -p hi -n 3", "</dev/zero")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"main: error: an input line is longer than {MAX_INPUT_LINE} characters (the most one line may hold)"]
    assert "Traceback" not in result.stderr


def test_a_big_regular_prompt_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(MAX_PROMPT_BYTES + 1)           # sparse: nothing is written or read
    with pytest.raises(InputTooLong, match="is 67108865 bytes, more than the 64 MiB a prompt may be"):
        read_file_capped(big, MAX_PROMPT_BYTES, "the prompt file")


def test_caps_pass_what_fits():
    import io
    assert read_line_capped(io.StringIO("a" * 10 + "\nrest"), limit=11) == "a" * 10 + "\n"
    with pytest.raises(InputTooLong):
        read_line_capped(io.StringIO("a" * 12), limit=11)
