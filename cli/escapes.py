"""llama.cpp's escape processing for -p/-f prompts and reverse prompts (on by default, -e).

Recognised: \\n \\r \\t \\' \\" \\\\ and \\xHH (one byte, so \\xe2\\x82\\xac spells a UTF-8 character);
any other backslash sequence is kept as written, like llama.cpp's string_process_escapes.
"""
from __future__ import annotations

_SIMPLE = {"n": b"\n", "r": b"\r", "t": b"\t", "'": b"'", '"': b'"', "\\": b"\\"}
_HEX = frozenset("0123456789abcdefABCDEF")


def process_escapes(text: str) -> str:
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\" or i + 1 >= n:
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _SIMPLE:
            out += _SIMPLE[nxt]
            i += 2
        elif nxt == "x" and i + 3 < n and text[i + 2] in _HEX and text[i + 3] in _HEX:
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:                                   # unknown escape: keep the backslash and the character
            out += b"\\"
            i += 1
    # \xHH may build bytes that are not UTF-8; they become U+FFFD rather than failing the run.
    return out.decode("utf-8", "replace")
