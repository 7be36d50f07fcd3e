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
from pathlib import Path

from pygguf.errors import ContextTooLarge, ModelError
from pygguf.gguf.types import by_name
from pygguf.model.config import MAX_CONTEXT

CACHE_TYPES = ("f16", "q8_0", "q4_0")          # the names -ctk/-ctv take, llama.cpp's spelling
_GGML_IDS = {by_name(name).ggml_id: name for name in CACHE_TYPES}   # llama-cpp-python's ints
CONTEXT_STEP = 256                             # an automatic context is a multiple of this
MARGIN_SHARE, MARGIN_MIN = 0.10, 512 << 20     # available memory an automatic context leaves free
RUN_RESERVE = 512 << 20                        # an explicit context's allowance for the rest of the run
                                               # (logits rows, scratch, the interpreter, the tokenizer)
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

    def types(self) -> str:
        """The cache types as a message names them: "f16", or "K q8_0, V f16" when they differ"""
        return self.type_k if self.type_k == self.type_v else f"K {self.type_k}, V {self.type_v}"


def available_memory(root: str | Path = "/") -> int | None:
    """The bytes this process may still take, or None where that is unknown: MemAvailable of
    /proc/meminfo, lowered to the room left under the memory limits of its cgroup and the
    cgroup's parents (a container's limit, which /proc/meminfo does not show: a context sized to
    the host's memory would be killed when its cache fills, long after it was accepted)."""
    root = Path(root)
    known = [n for n in (_meminfo_available(root), _cgroup_room(root)) if n is not None]
    return min(known) if known else None


def _meminfo_available(root: Path) -> int | None:
    try:
        with open(root / "proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# (directory under /sys/fs/cgroup, limit file, usage file, the memory.stat key of reclaimable file pages)
_CGROUP_V2 = ("", "memory.max", "memory.current", "inactive_file")
_CGROUP_V1 = ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
_NO_LIMIT = 1 << 60             # v1 writes "no limit" as a huge number (v2 as "max")


def _cgroup_room(root: Path) -> int | None:
    """The least room (limit - usage, inactive page cache counted as free) over the process's
    memory cgroup and its parents, v2 or v1; None without a limit."""
    rooms = [room for directory, files in _cgroup_dirs(root) if (room := _room_in(directory, *files)) is not None]
    return min(rooms) if rooms else None


def _cgroup_dirs(root: Path) -> list[tuple[Path, tuple[str, str, str]]]:
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        version = _CGROUP_V2 if controllers == "" else _CGROUP_V1 if "memory" in controllers.split(",") else None
        if version is None:
            continue
        mount = root / "sys/fs/cgroup" / version[0]
        leaf = Path(path.lstrip("/"))
        for rel in [leaf, *leaf.parents]:      # the cgroup, its parents, the mount (a container's own view)
            out.append((mount / rel, version[1:]))
    return out


def _room_in(directory: Path, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    limit, usage = _read_int(directory / limit_file), _read_int(directory / usage_file)
    if limit is None or usage is None or limit >= _NO_LIMIT:
        return None
    inactive = 0
    try:
        for line in (directory / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key:
                inactive = int(value)
    except (OSError, ValueError):
        pass
    return max(0, limit - max(0, usage - inactive))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):        # absent, unreadable, or v2's "max"
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


def check_context(n_ctx: int, n_seq: int, per_position: int, weights: int, available: int | None,
                  types: str = "f16") -> None:
    """An explicit context is refused, before anything is allocated, when the C cache cannot take it
    or when its cache, the weights and RUN_RESERVE cannot fit in available memory (the cache is
    allocated untouched: one that does not fit would be accepted and kill the run when it fills).
    ContextTooLarge names n_ctx; the CLI names -c."""
    if n_ctx > MAX_CONTEXT:
        raise ContextTooLarge(n_ctx, f"is beyond the largest context pygguf can allocate ({MAX_CONTEXT} tokens)")
    need = n_ctx * n_seq * per_position
    if available is not None and need + weights + RUN_RESERVE > available:
        seqs = f"x {n_seq} sequences " if n_seq > 1 else ""
        raise ContextTooLarge(n_ctx, f"{seqs}needs {_gib(need)} of KV cache ({types}), {_gib(weights)} of weights "
                                     f"and {_gib(RUN_RESERVE)} for the rest of the run but only {_gib(available)} "
                                     f"of memory is available: use a smaller context (0 picks one that fits) or "
                                     f"a quantized KV cache (q8_0 halves it)")


def _margin(available: int) -> int:
    return max(MARGIN_MIN, int(available * MARGIN_SHARE))
