"""The tensor type table: one row per GGUF type, sizes written as sums of their fields.

The C side (csrc/quants/blocks.h) asserts the same sizes; tests check the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantType:
    name: str
    ggml_id: int
    block_size: int   # values per block
    type_size: int    # bytes per block
    act_name: str     # activation format its dot product consumes
    align: int = 2    # bytes a block's address must be a multiple of: its widest field (fp16; F32, Q8_K: float)

    def row_bytes(self, n: int) -> int:
        if n % self.block_size:
            raise ValueError(f"{self.name}: row length {n} is not a multiple of {self.block_size}")
        return n // self.block_size * self.type_size


QK = 32      # values per legacy block
QK_K = 256   # values per K-quant super-block
HALF = 2     # bytes of an fp16 scale

TYPES: list[QuantType] = [
    QuantType("F32", 0, 1, 4, "F32", align=4),
    QuantType("F16", 1, 1, 2, "F16"),
    QuantType("BF16", 30, 1, 2, "BF16"),
    QuantType("Q4_0", 2, QK, HALF + QK // 2, "Q8_0"),
    QuantType("Q4_1", 3, QK, 2 * HALF + QK // 2, "Q8_1"),
    QuantType("Q5_0", 6, QK, HALF + 4 + QK // 2, "Q8_0"),
    QuantType("Q5_1", 7, QK, 2 * HALF + 4 + QK // 2, "Q8_1"),
    QuantType("Q8_0", 8, QK, HALF + QK, "Q8_0"),
    QuantType("Q8_1", 9, QK, 2 * HALF + QK, "Q8_1"),
    QuantType("Q2_K", 10, QK_K, QK_K // 16 + QK_K // 4 + 2 * HALF, "Q8_K"),
    QuantType("Q3_K", 11, QK_K, QK_K // 8 + QK_K // 4 + 12 + HALF, "Q8_K"),
    QuantType("Q4_K", 12, QK_K, 2 * HALF + 12 + QK_K // 2, "Q8_K"),
    QuantType("Q5_K", 13, QK_K, 2 * HALF + 12 + QK_K // 8 + QK_K // 2, "Q8_K"),
    QuantType("Q6_K", 14, QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + HALF, "Q8_K"),
    QuantType("Q8_K", 15, QK_K, 4 + QK_K + QK_K // 16 * 2, "Q8_K", align=4),
]

BY_NAME: dict[str, QuantType] = {t.name: t for t in TYPES}
BY_ID: dict[int, QuantType] = {t.ggml_id: t for t in TYPES}

# Weight types a model file may hold (the activation-only formats are not among them).
WEIGHT_TYPES = [t for t in TYPES if t.name not in ("Q8_1", "Q8_K")]


def by_id(ggml_id: int) -> QuantType:
    try:
        return BY_ID[ggml_id]
    except KeyError:
        raise ValueError(f"unsupported tensor type id {ggml_id}") from None


def by_name(name: str) -> QuantType:
    try:
        return BY_NAME[name.upper()]
    except KeyError:
        raise ValueError(f"unknown tensor type {name!r}; known: {', '.join(BY_NAME)}") from None
