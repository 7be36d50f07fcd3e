"""The interactive session through a real pseudo-terminal (pexpect): readline input, Ctrl+C,
Ctrl+D, colours. The model is a fake (tests/interactive_pty_app.py); see test_interactive_smollm2.py
for the same through the real CLI and model."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sigint import default_sigint_in_child, sigint_as

pexpect = pytest.importorskip("pexpect")

APP = Path(__file__).with_name("interactive_pty_app.py")


def spawn(options=None, color="off"):
    with sigint_as(signal.SIG_IGN):     # spawned as a backgrounded `make test` would: Ctrl+C still works
        child = pexpect.spawn(sys.executable, [str(APP), json.dumps(options or {}), color],
                              encoding="utf-8", timeout=20, dimensions=(40, 200),
                              env={**os.environ, "TERM": "xterm", "PYTHONUNBUFFERED": "1"},
                              preexec_fn=default_sigint_in_child)
    return child


def finish(child):
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before


def test_conversation_turns_ctrl_d_ends():
    child = spawn()
    child.expect("enabling conversation mode")
    child.expect("> ")
    child.sendline("hello there")
    child.expect("You said: HELLO THERE")
    child.expect("> ")
    child.sendline("again")
    child.expect("You said: AGAIN")
    child.expect("> ")
    child.sendeof()                      # Ctrl+D on an empty line
    child.expect("EOF by user")
    child.expect("eval time")
    status, rest = finish(child)
    assert status == 0
    assert ("CACHE: '<|im_start|>user\\nhello there<|im_end|>\\n<|im_start|>assistant\\n"
            "You said: HELLO THERE<|im_end|>\\n<|im_start|>user\\nagain<|im_end|>\\n"
            "<|im_start|>assistant\\nYou said: AGAIN'") in rest


def test_ctrl_c_mid_reply_returns_to_prompt_and_closes_turn():
    child = spawn()
    child.expect("> ")
    child.sendline("long")
    child.expect("xxxxx")
    child.sendintr()                     # Ctrl+C while generating
    child.expect("> ")
    child.sendline("next")
    child.expect("You said: NEXT")
    child.expect("> ")
    child.sendeof()
    status, rest = finish(child)
    assert status == 0
    cache = rest.split("CACHE: ", 1)[1]
    # The cut reply was closed with the end-of-turn token before the next user turn.
    assert "x<|im_end|>\\n<|im_start|>user\\nnext<|im_end|>" in cache
    assert cache.count("x") < 300


def test_ctrl_c_at_prompt_exits_130():
    child = spawn()
    child.expect("> ")
    child.sendintr()
    child.expect("Interrupted by user")
    status, _ = finish(child)
    assert status == 130


def test_readline_editing_and_backslash_continuation():
    child = spawn()
    child.expect("> ")
    child.send("helo\x1b[D")             # left arrow...
    child.send("l\r")                    # ...insert the missing l: readline is editing the line
    child.expect("You said: HELLO")
    child.expect("> ")
    child.send("one\\\r")                # trailing backslash: keep reading
    child.send("two\r")
    child.expect("You said: ONE\r?\nTWO")
    child.sendeof()
    status, _ = finish(child)
    assert status == 0


def test_colours_on_a_terminal():
    child = spawn(color="on")
    child.expect("> ")
    child.expect_exact("\x1b[1m\x1b[32m")     # the user's typing is bold green
    child.sendline("hi")
    child.expect_exact("\x1b[0m")
    child.expect("You said: HI")
    child.sendeof()
    finish(child)


def test_no_terminal_reads_turns_from_the_pipe_without_colours():
    run = subprocess.run([sys.executable, str(APP), json.dumps({"conversation": True}), "on"],
                         input="first\nsecond\n", capture_output=True, text=True, timeout=20)
    assert run.returncode == 0
    assert "You said: FIRST" in run.stdout and "You said: SECOND" in run.stdout
    assert "\x1b[" not in run.stdout
    assert "EOF by user" in run.stdout


def test_ctrl_d_typed_during_a_reply_is_not_lost():
    child = spawn()
    child.expect("> ")
    child.sendline("long")
    child.expect("xxxxx")
    child.sendeof()                      # typed ahead while the reply streams
    child.expect("EOF by user")
    status, _ = finish(child)
    assert status == 0


def test_canonical_mode_left_and_restored():
    import pty
    import termios
    from pygguf_cli.console import leave_canonical_mode, restore_terminal
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        saved = leave_canonical_mode(slave)
        assert saved == before
        lflags = termios.tcgetattr(slave)[3]
        assert not lflags & termios.ICANON and lflags & termios.ECHO and lflags & termios.ISIG
        restore_terminal(slave, saved)
        assert termios.tcgetattr(slave) == before
        with open(os.devnull) as not_a_tty:
            assert leave_canonical_mode(not_a_tty.fileno()) is None
    finally:
        os.close(master)
        os.close(slave)
