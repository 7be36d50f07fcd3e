"""llama.cpp's GEGLU in numpy, from its formula: the oracle of csrc/kernels/ref.c's pg_geglu_ref.

ggml_vec_geglu_f32 (ggml-cpu/vec.h, GGML_GELU_FP16): a gate <= -10 gives +0, a gate >= 10 gives
gate * up, any other gate (NaN too) is rounded to binary16 and its bits index ggml_table_gelu_f16,
whose entry h is binary16(gelu(float(h))) with gelu the tanh form in float, 1 + 0.044715 x x
contracted into one fma as compilers do for an FMA target. Every float operation below is a
float32 one in llama.cpp's order, except two done in float64 and rounded once:
  - the fma: (0.044715 x) * x is exact in float64 (24 + 11 significant bits); adding 1 is exact
    too while |that| >= 2^-18, and below it the float64 sum could only land on a float32 midpoint
    from within 2^-53 of it, which no binary16 x does (test_geglu.py compares all 65536);
  - tanh: the correctly rounded float, where glibc's tanhf misses by an ulp for about 10^4 of the
    table's arguments, none of which moves the entry's rounding to binary16.
"""
from __future__ import annotations

import numpy as np

SQRT_2_OVER_PI = np.float32(0.79788456080286535587989211986876)
GELU_COEF_A = np.float32(0.044715)
ONE, HALF = np.float32(1.0), np.float32(0.5)


def fma32(a: np.ndarray, b: np.ndarray, c: np.float32) -> np.ndarray:
    """float32 a * b + c rounded once (see the module's note on when float64 is exact)"""
    return (a.astype(np.float64) * b.astype(np.float64) + np.float64(c)).astype(np.float32)


def gelu_f32(x: np.ndarray) -> np.ndarray:
    """ggml_gelu_f32: 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))) in float32, left to right"""
    x = np.asarray(x, np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        inner = fma32(GELU_COEF_A * x, x, ONE)
        t = np.tanh((SQRT_2_OVER_PI * x * inner).astype(np.float64)).astype(np.float32)
        return HALF * x * (ONE + t)


def gelu_table() -> np.ndarray:
    """ggml_table_gelu_f16 widened to float32: entry h = binary16(gelu(h)) for every bit pattern h"""
    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(over="ignore"):
        return gelu_f32(x).astype(np.float16).astype(np.float32)


def geglu(g: np.ndarray, u: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """ggml_vec_geglu_f32: gelu(g) * u through the table, with its clamps at -10 and 10"""
    g, u = np.asarray(g, np.float32), np.asarray(u, np.float32)
    table = gelu_table() if table is None else table
    with np.errstate(over="ignore", invalid="ignore"):
        looked_up = table[g.astype(np.float16).view(np.uint16)] * u   # nearest even; NaN -> a NaN entry
        out = np.where(g >= 10, g * u, looked_up)
    return np.where(g <= -10, np.float32(0), out).astype(np.float32)


def same_floats(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """elementwise: the same bits, or both NaN (a NaN's payload is not part of the contract)"""
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
