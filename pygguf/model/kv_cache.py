"""The KV cache's size: its types (llama.cpp's -ctk/-ctv: f16, q8_0, q4_0), its bytes, and the
context it can hold in the memory there is.

llama.cpp takes the model's training context when -c is 0; a 13B model trained on 16384 tokens
would then need 12.8 GiB of F16 KV cache. `fit_context` is the one rule that caps such a context
(to a multiple of 256) so the weights and the cache fit in available memory, and `check_context`
refuses an explicit context whose cache cannot fit before anything is allocated.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pygguf.errors import ModelError
from pygguf.gguf.types import by_name

CACHE_TYPES = ("f16", "q8_0", "q4_0")          # the names -ctk/-ctv take, llama.cpp's spelling
_GGML_IDS = {by_name(name).ggml_id: name for name in CACHE_TYPES}   # llama-cpp-python's ints
CONTEXT_STEP = 256                             # an automatic context is a multiple of this
MARGIN_SHARE, MARGIN_MIN = 0.10, 512 << 20     # available memory an automatic context leaves free
ROTATION_OFF = "LLAMA_ATTN_ROT_DISABLE"        # llama.cpp's switch for its Hadamard rotation


def cache_type(value: str | int | None, what: str = "type_k") -> str:
    """A cache type given as a name ("q8_0", any case) or a ggml type id (llama-cpp-python's
    type_k=8); None is f16."""
    if value is None:
        return "f16"
    name = _GGML_IDS.get(value) if isinstance(value, int) else str(value).lower()
    if name not in CACHE_TYPES:
        raise ModelError(f"{what}={value!r} is not a KV cache type: use {', '.join(CACHE_TYPES)} "
                         f"(or the ggml ids {', '.join(map(str, _GGML_IDS))})")
    return name


def check_head_dim(name: str, head_dim: int, what: str = "type_k") -> None:
    """A quantized cache stores rows of whole 32-value blocks."""
    block = by_name(name).block_size
    if head_dim % block:
        raise ModelError(f"{what}={name}: a {name} cache stores rows of {block}-value blocks, and this model's "
                         f"head size {head_dim} is not a multiple of {block}; use f16")


def rotation_disabled(environ: Mapping[str, str]) -> bool:
    """Whether LLAMA_ATTN_ROT_DISABLE turns off the Hadamard rotation of a quantized cache, read
    as llama.cpp reads it (C's atoi: a leading integer, nonzero disables; "yes" or "" do not)."""
    number = re.match(r"\s*([+-]?\d+)", environ.get(ROTATION_OFF, ""))
    return bool(number and int(number.group(1)))


@dataclass(frozen=True)
class CacheShape:
    """What one cached position costs: every layer's K and V rows of every KV head."""
    n_layer: int
    n_head_kv: int
    head_dim: int
    type_k: str = "f16"
    type_v: str = "f16"

    def bytes_per_position(self) -> int:
        rows = self.n_layer * self.n_head_kv
        return rows * (by_name(self.type_k).row_bytes(self.head_dim) + by_name(self.type_v).row_bytes(self.head_dim))

    def bytes(self, n_ctx: int, n_seq: int = 1) -> int:
        return self.bytes_per_position() * n_ctx * n_seq


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def fit_context(n_ctx_train: int, per_position: int, weights: int, available: int | None) -> tuple[int, str | None]:
    """The automatic context (-c 0) and, when it is less than the training context, the one line
    that says why. The training context when its cache and the weights fit in `available` bytes
    less a margin (a tenth, at least 512 MiB, for everything else the process and the system
    hold), else the largest multiple of 256 that fits (256 at the least: the model may still run,
    paging its mapped weights). Unknown available memory: the training context."""
    if available is None or n_ctx_train * per_position + weights <= available - _margin(available):
        return n_ctx_train, None
    room = max(0, available - _margin(available) - weights)
    n_ctx = min(n_ctx_train, max(CONTEXT_STEP, room // per_position // CONTEXT_STEP * CONTEXT_STEP))
    return n_ctx, (f"context {n_ctx_train} would need {_gib(n_ctx_train * per_position)} of KV cache, "
                   f"{_gib(room)} available: using -c {n_ctx}")


def check_context(n_ctx: int, n_seq: int, per_position: int, weights: int, available: int | None) -> None:
    """An explicit context is refused, before anything is allocated, when its cache and the weights
    cannot fit in available memory (no margin: the user asked for it)."""
    need = n_ctx * n_seq * per_position
    if available is not None and need + weights > available:
        seqs = f" x {n_seq} sequences" if n_seq > 1 else ""
        raise ModelError(f"-c {n_ctx}{seqs} needs {_gib(need)} of KV cache and {_gib(weights)} of weights, "
                         f"{_gib(available)} of memory available: use a smaller -c (0 picks one that fits) "
                         f"or a quantized cache (-ctk q8_0 -ctv q8_0 halves it)")


def _margin(available: int) -> int:
    return max(MARGIN_MIN, int(available * MARGIN_SHARE))
