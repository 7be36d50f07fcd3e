"""--color on|off|auto and --simple-io through a real pseudo-terminal (pexpect), with the real
command line parsing (tests/cli/cli_pty_app.py: the `pygguf` command over a fake chat model)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pygguf_cli.console import PROMPT_COLOR, USER_INPUT_COLOR

pexpect = pytest.importorskip("pexpect")

APP = Path(__file__).with_name("cli_pty_app.py")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF")
    return path


def spawn(model_file, *flags):
    return pexpect.spawn(sys.executable, [str(APP), "-m", str(model_file), *flags], encoding="utf-8", timeout=20,
                         dimensions=(40, 200), env={**os.environ, "TERM": "xterm", "PYTHONUNBUFFERED": "1"})


def one_turn(child, line: str) -> str:
    """Type `line` at the first `> `, end the session; everything the terminal showed."""
    child.expect("> ")
    shown = child.before + child.after
    child.send(line + "\r")
    for text in ("You said: ", "> "):
        child.expect(text)
        shown += child.before + child.after
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, shown + child.before
    return shown + child.before


@pytest.mark.parametrize("flags", [["--color", "on"], ["--color", "auto"], ["--color"], ["-co"]])
def test_color_on_and_auto_colour_a_terminal(model_file, flags):
    shown = one_turn(spawn(model_file, *flags), "hi")
    assert USER_INPUT_COLOR in shown                       # the user's typing in bold green
    assert "HI" in shown


@pytest.mark.parametrize("flags", [["--color", "off"], []])
def test_color_off_and_default_write_no_colours(model_file, flags):
    shown = one_turn(spawn(model_file, *flags), "hi")
    assert USER_INPUT_COLOR not in shown and PROMPT_COLOR not in shown
    assert "HI" in shown


LEFT = "\x1b[D"     # the left-arrow key


def test_readline_edits_the_line_by_default(model_file):
    shown = one_turn(spawn(model_file), "ab" + LEFT + "X")
    assert "You said: AXB" in shown                        # the arrow moved the cursor


def test_simple_io_reads_plain_lines(model_file):
    shown = one_turn(spawn(model_file, "--simple-io"), "ab" + LEFT + "X")
    assert "You said: AXB" not in shown                    # no line editing: the key's bytes are text
    assert "You said: AB" in shown
