"""DRY ("don't repeat yourself"): penalise the token that would extend a repeated sequence.

Same semantics as llama.cpp's DRY sampler (itself from koboldcpp / text-generation-webui):
sequence breakers cut the repetition window; the repeat lengths come from a Z-algorithm run
over the reversed history; a candidate that would extend a repeat of length L >= allowed_length
gets logit -= multiplier * base^(L - allowed_length) (exponent clamped to avoid overflow).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from pygguf.sampling.candidates import Candidates

MAX_BREAKER_CHARS = 40   # longer breakers are truncated, as llama.cpp does
MAX_TAIL_TOKENS = 20     # the tokenized tail of a breaker is clamped to this many tokens
FLOAT_MAX_LOG = 88.7228391


def process_breakers(breakers: Iterable[str], n_vocab: int, detokenize: Callable[[int], str],
                     tokenize: Callable[[str], Sequence[int]] | None = None
                     ) -> dict[int, list[tuple[int, ...]]]:
    """Map each head token to the token tails that complete a breaker after it.

    A token whose text contains a breaker is a single-token breaker (empty tail). A token that
    ends with the start of a breaker gets the tokenization of the rest as its tail; that needs
    `tokenize`, and without it such partial overlaps are skipped (single-character breakers,
    the default ones, never need it).
    """
    result: dict[int, list[tuple[int, ...]]] = {}
    words = [detokenize(t) for t in range(n_vocab)]
    for breaker in breakers:
        if not breaker:
            continue
        breaker = breaker[:MAX_BREAKER_CHARS]
        for token, word in enumerate(words):
            if breaker in word:
                _add_tail(result, token, ())
                continue
            if tokenize is None or len(breaker) == 1:
                continue
            start = word.find(breaker[0])
            while start != -1:
                overlap = len(word) - start
                if overlap < len(breaker) and word[start:] == breaker[:overlap]:
                    tail = tuple(tokenize(breaker[overlap:]))[:MAX_TAIL_TOKENS]
                    _add_tail(result, token, tail)
                start = word.find(breaker[0], start + 1)
    return result


def _add_tail(result: dict[int, list[tuple[int, ...]]], token: int, tail: tuple[int, ...]) -> None:
    tails = result.setdefault(token, [])
    if tail not in tails:
        tails.append(tail)


def _repeat_limit(recent: list[int], breakers: dict[int, list[tuple[int, ...]]]) -> int:
    """How far back a repetition may reach: up to the most recent complete breaker."""
    for i, token in enumerate(recent):
        tails = breakers.get(token)
        if not tails:
            continue
        longest = -1
        for tail in tails:
            n = len(tail)
            if longest < n <= i and all(tail[j] == recent[i - j - 1] for j in range(n)):
                longest = n
        if longest >= 0:
            return i - longest
    return len(recent)


def _z_array(s: list[int]) -> list[int]:
    """z[k] = length of the longest common prefix of s and s[k:] (z[0] unused)."""
    n = len(s)
    z = [0] * n
    left = right = 0
    for k in range(1, n):
        if k < right:
            z[k] = min(right - k, z[k - left])
        while k + z[k] < n and s[z[k]] == s[k + z[k]]:
            z[k] += 1
        if k + z[k] > right:
            left, right = k, k + z[k]
    return z


def dry(cand: Candidates, history: Sequence[int], breakers: dict[int, list[tuple[int, ...]]],
        multiplier: float, base: float, allowed_length: int, penalty_last_n: int,
        context_size: int) -> Candidates:
    """Apply the DRY penalty given the accepted-token history (oldest first)."""
    if multiplier == 0.0 or base < 1.0 or penalty_last_n == 0:
        return cand
    window = context_size if penalty_last_n == -1 else max(penalty_last_n, 0)
    n = min(len(history), window, context_size)
    if n <= allowed_length:
        return cand
    recent = [int(history[len(history) - 1 - i]) for i in range(n)]   # recent[0] = newest
    limit = _repeat_limit(recent, breakers)
    if limit < allowed_length:
        return cand
    z = _z_array(recent)
    longest: dict[int, int] = {}
    for k in range(1, n):
        length = min(z[k], limit)
        if length >= allowed_length:
            follower = recent[k - 1]   # the token that came after the earlier occurrence
            if longest.get(follower, -1) < length:
                longest[follower] = length
    if not longest:
        return cand
    max_exponent = int(FLOAT_MAX_LOG / math.log(base)) if base > 1.000001 else 0
    logits = cand.logits.copy()
    changed = False
    for pos in np.flatnonzero(np.isin(cand.ids, np.fromiter(longest, dtype=np.int64))):
        token = int(cand.ids[pos])
        if () in breakers.get(token, ()):
            continue   # a single-token breaker is never penalised
        exponent = longest[token] - allowed_length
        if max_exponent > 0 and exponent > max_exponent:
            exponent = max_exponent
        logits[pos] -= np.float32(multiplier * base ** exponent)
        changed = True
    return cand.with_logits(logits, False) if changed else cand
