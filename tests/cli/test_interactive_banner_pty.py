"""`pygguf -i -r "User:" -f chat.txt --color` on a real pseudo-terminal (the entry point over the
fakes: tests/cli/fake_cli_app.py): llama.cpp's order is the banner and a blank line, then the prompt
in its colour, the colour reset, and the cursor right after "User:" where the user types."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

APP = Path(__file__).with_name("fake_cli_app.py")
YELLOW, RESET, USER_INPUT = "\x1b[33m", "\x1b[0m", "\x1b[1m\x1b[32m"
BANNER_FIRST, BANNER_LAST = "== Running in interactive mode. ==", " - Press Ctrl+D on an empty line to end the session."
# A chat prompt in the shape of llama.cpp's chat-with-bob example, in our own words
CHAT = ("A dialog in which a User asks questions and an assistant called Bob answers them.\n\n"
        "User: Good morning, Bob.\nBob: Good morning. What would you like to know?\nUser:\n")


def spawn(tmp_path, *flags):
    model, prompt = tmp_path / "fake.gguf", tmp_path / "chat.txt"
    model.write_bytes(b"GGUF")
    prompt.write_text(CHAT)
    child = pexpect.spawn(sys.executable, [str(APP), "-m", str(model), "-i", "-r", "User:", "-f", str(prompt),
                                           "-n", "8", *flags],
                          encoding="utf-8", timeout=30, dimensions=(40, 200), cwd=str(tmp_path),
                          env={**os.environ, "TERM": "xterm", "PYTHONSAFEPATH": "1"})
    child.logfile_read = io.StringIO()
    return child


def test_banner_before_the_prompt_and_the_cursor_after_user(tmp_path):
    child = spawn(tmp_path, "--color")
    child.expect_exact("What would you like to know?\r\nUser:" + RESET + USER_INPUT)
    shown = child.logfile_read.getvalue()
    banner_at, prompt_at = shown.index(BANNER_FIRST), shown.index(YELLOW)     # the prompt's colour goes on
    assert prompt_at < shown.index("A dialog")
    assert banner_at < shown.index(BANNER_LAST) < prompt_at
    assert shown[shown.index(BANNER_LAST) + len(BANNER_LAST):prompt_at] == "\r\n\r\n"   # then one blank line
    assert "\x1b[" not in shown[:prompt_at]                   # no colour is on while the banner prints
    child.sendline("hi")                                     # typed right after "User:"
    child.expect_exact(RESET + "there")                      # the reply, in the default colour
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in child.logfile_read.getvalue()


def test_without_color_the_cursor_is_right_after_user(tmp_path):
    child = spawn(tmp_path)
    child.expect_exact("What would you like to know?\r\nUser:")
    with pytest.raises(pexpect.TIMEOUT):
        child.expect(r"\S|\n", timeout=0.5)                   # nothing after "User:": no banner, no newline
    shown = child.logfile_read.getvalue()
    assert shown.index(BANNER_LAST) < shown.index("A dialog")
    assert "\x1b[" not in shown
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
