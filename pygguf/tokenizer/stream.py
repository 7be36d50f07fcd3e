"""Incremental detokenizing: bytes in, only whole UTF-8 characters out."""
from __future__ import annotations

import codecs
from typing import Callable


class StreamDecoder:
    """Feed token ids one at a time; get text back as soon as characters are complete.

    A character split over several byte tokens is held until its last byte arrives; bytes that
    can never form a character come out as U+FFFD, so nothing is silently dropped. flush() ends
    the stream and returns whatever is still held."""

    def __init__(self, token_to_bytes: Callable[[int], bytes]):
        self._token_to_bytes = token_to_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self._token_to_bytes(token_id))

    def push_bytes(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
