"""The merge loop both tokenizer families share (llama.cpp's priority queue over adjacent pairs).

BPE merges the pair with the lowest merge rank, SentencePiece the pair whose joined text has the
highest score; both are "pop the best adjacent pair, join it, re-offer its new neighbours", with
ties broken by the leftmost pair. Only `priority` differs: (left, right) -> a key where smaller
pops first, or None when the pair does not merge.
"""
from __future__ import annotations

import heapq
from typing import Callable, Hashable, Optional

Priority = Callable[[str, str], Optional[Hashable]]


def merge_with_heap(symbols: list[str], priority: Priority) -> list[str]:
    n = len(symbols)
    sym = list(symbols)
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    if n:
        nxt[-1] = -1
    heap: list = []

    def offer(left: int, right: int, push=heapq.heappush) -> None:
        key = priority(sym[left], sym[right])
        if key is not None:
            push(heap, (key, left, sym[left], sym[right]))

    for i in range(n - 1):
        key = priority(sym[i], sym[i + 1])
        if key is not None:
            heap.append((key, i, sym[i], sym[i + 1]))
    heapq.heapify(heap)
    while heap:
        _, left, ltext, rtext = heapq.heappop(heap)
        right = nxt[left]
        # stale entry: one side already merged into something else
        if right < 0 or sym[left] != ltext or sym[right] != rtext:
            continue
        sym[left] = ltext + rtext
        sym[right] = ""
        nxt[left] = after = nxt[right]
        if after >= 0:
            prev[after] = left
        before = prev[left]
        if before >= 0:
            offer(before, left)
        if after >= 0:
            offer(left, after)
    return [s for s in sym if s]
