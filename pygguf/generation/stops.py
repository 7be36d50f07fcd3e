"""Stop strings (llama.cpp's reverse prompts / antiprompts), matched on generated text.

Two rules, as in llama.cpp:
- completion (`StopStrings`): a stop string anywhere in the generated text, across token
  boundaries; the one-shot CLI and the API use it.
- interactive (`ReversePrompts`): a reverse prompt at the end of the text of the last 32 tokens
  of the context, input included, special tokens rendered (llama.cpp's main loop).
Both also match a stop string that is one token by its id, so a special token (rendered as no
text in completions) stops too.
"""
from __future__ import annotations

from typing import Iterable, Sequence

RECENT_TOKENS = 32          # llama.cpp's main searches the text of this many last tokens


def single_token_ids(strings: Iterable[str], tokenizer) -> dict[int, str]:
    """{id: string} for the stop strings the tokenizer makes into exactly one token."""
    by_id = {}
    for s in strings:
        ids = tokenizer.encode(s, add_special=False, parse_special=True)
        if len(ids) == 1:
            by_id[ids[0]] = s
    return by_id


class StopStrings:
    """Stop strings anywhere in generated text. Only the last `longest - 1` characters are kept
    between tokens: a match must end in the text a token just added, so older text cannot start one."""

    def __init__(self, strings: Iterable[str], single_token_ids: dict[int, str] | None = None):
        self.strings = tuple(s for s in strings if s)
        self.by_id = dict(single_token_ids or {})
        self._carry = max((len(s) for s in self.strings), default=1) - 1
        self._tail = ""

    @classmethod
    def for_tokenizer(cls, strings: Iterable[str], tokenizer) -> StopStrings:
        strings = tuple(s for s in strings if s)
        return cls(strings, single_token_ids(strings, tokenizer))

    def feed(self, token: int, piece: str) -> str | None:
        """Add one token and its text; return the stop string that now matched, if any."""
        if token in self.by_id:
            return self.by_id[token]
        window = self._tail + piece
        for s in self.strings:
            if window.find(s, max(0, len(self._tail) - len(s) + 1)) != -1:
                return s
        self._tail = window[-self._carry:] if self._carry else ""
        return None


class ReversePrompts:
    """Interactive reverse prompts: matched at the end of the recent context's text."""

    def __init__(self, strings: Iterable[str], tokenizer):
        self.strings = tuple(strings)
        self.tokenizer = tokenizer
        self._ids: set[int] | None = None          # built on first use

    def match(self, context: Sequence[int], token: int | None) -> bool:
        """Does the context (every token so far, the last sampled one included) end in a reverse
        prompt? token: the token just sampled (None right after user input), matched by id too."""
        if not self.strings:
            return False
        if token is not None and token in self.single_ids():
            return True
        text = self.tokenizer.decode(context[-RECENT_TOKENS:], special=True)
        return any(s and text.endswith(s) for s in self.strings)

    def single_ids(self) -> set[int]:
        if self._ids is None:
            self._ids = set(single_token_ids(self.strings, self.tokenizer))
        return self._ids


def stop_holdback(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of text could still be the start of a stop string."""
    held = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    return held
