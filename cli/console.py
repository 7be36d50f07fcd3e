"""The terminal side of interactive mode: readline line editing and history, llama.cpp's colours.

Colours (llama.cpp common/console.cpp): the prompt echo yellow, the user's typing bold green,
generated text in the default colour, errors bold red. They are used only when stdout is a
terminal, whatever --color says, so pipes and files never get escape codes.
"""
from __future__ import annotations

import atexit
import sys
from typing import TextIO

from pygguf_cli.streams import read_line_capped, stdout_failure

try:
    import termios
except ImportError:          # not a POSIX terminal API (Windows)
    termios = None

RESET = "\x1b[0m"
PROMPT_COLOR = "\x1b[33m"
USER_INPUT_COLOR = "\x1b[1m\x1b[32m"
ERROR_COLOR = "\x1b[1m\x1b[31m"

_KIND_COLORS = {"prompt": PROMPT_COLOR, "output": RESET, "error": ERROR_COLOR}


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def leave_canonical_mode(fd: int):
    """Leave canonical mode for the whole session, as llama.cpp's console does: keys typed while
    the model is generating stay in the input queue as plain bytes (a Ctrl+D typed ahead is still
    a Ctrl+D when readline reads it, not a lost end-of-file). Ctrl+C still raises SIGINT. Echo
    stays on: readline only echoes what is typed when the terminal it starts from echoes.
    readline sets its own mode while reading and puts this one back after. Returns the previous
    settings (None if fd is not a terminal)."""
    if termios is None:
        return None
    try:
        saved = termios.tcgetattr(fd)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ICANON
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        return saved
    except (termios.error, OSError, ValueError):
        return None


def restore_terminal(fd: int, saved) -> None:
    try:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    except (termios.error, OSError, ValueError):
        pass


def color_enabled(mode: str, stdout: TextIO) -> bool:
    """--color on|off|auto: colours only ever go to a terminal."""
    return mode in ("on", "auto") and _isatty(stdout)


class TerminalConsole:
    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None,
                 stderr: TextIO | None = None, color: bool = False, simple_io: bool = False):
        self.stdin = stdin or sys.stdin         # None: stdin is closed, read as end of input
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.is_tty = _isatty(self.stdin)
        self.color = color and _isatty(self.stdout)
        self.simple_io = simple_io          # --simple-io: lines read as the terminal delivers them
        self._current = RESET
        self._readline = None
        self._saved_tty = None
        if self.is_tty and self.stdin is sys.stdin and not simple_io:
            try:
                import readline  # noqa: F401  (importing it gives input() editing + history)
                self._readline = readline
            except ImportError:
                self._readline = None
            if self._readline is not None:
                self._keys_stay_keys()

    def _keys_stay_keys(self) -> None:
        self._saved_tty = leave_canonical_mode(self.stdin.fileno())
        if self._saved_tty is not None:
            atexit.register(self.close)

    def close(self) -> None:
        """Give the terminal its settings back (also done at exit)."""
        if self._saved_tty is not None:
            restore_terminal(self.stdin.fileno(), self._saved_tty)
            self._saved_tty = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def write(self, text: str, kind: str = "output") -> None:
        if self.color and kind in _KIND_COLORS and _KIND_COLORS[kind] != self._current:
            # switch colour only when it changes, so streamed tokens stay plain text
            code = _KIND_COLORS[kind]
            text = (code if self._current == RESET or code == RESET else RESET + code) + text
            self._current = _KIND_COLORS[kind]
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except BrokenPipeError:
            raise                               # the reader left: the command stops quietly
        except OSError as e:                    # closed, full: one line on stderr, exit 1
            raise stdout_failure(e) from None

    def reset_color(self) -> None:
        """Back to the default colour, so that what comes next (on stdout or stderr, one
        terminal) is not painted in the colour of the prompt or the user's input."""
        if self.color and self._current != RESET:
            self.write("", "output")

    def info(self, text: str) -> None:
        self.reset_color()
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def error(self, text: str) -> None:
        self.reset_color()
        if self.color and _isatty(self.stderr):
            text = ERROR_COLOR + text + RESET
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def read_line(self, prompt: str = "") -> str | None:
        """One line without its newline; None at end of input (Ctrl+D). Ctrl+C raises
        KeyboardInterrupt."""
        if not self.is_tty or self.stdin is not sys.stdin or self.simple_io:
            self.write(prompt)
            if self.stdin is None:
                return None
            line = read_line_capped(self.stdin)
            if not line:
                return None
            return line[:-1] if line.endswith("\n") else line
        if self.color:
            # \001 and \002 tell readline the codes take no room, so editing stays aligned.
            prompt = prompt + "\001" + USER_INPUT_COLOR + "\002"
        try:
            return input(prompt)
        except EOFError:
            return None
        finally:
            if self.color:
                self.stdout.write(RESET)
                self.stdout.flush()
                self._current = RESET
