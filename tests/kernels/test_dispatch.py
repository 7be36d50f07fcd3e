"""The dispatch table's choices (csrc/kernels/dispatch.c), queried without running a kernel, so the
rows of ISAs this machine cannot run (AVX-512, AMX) are checked here too: every ISA x op x type x
batch size against the rules the four choosers before the table followed (the weak-symbol gemm
table, repack.c's r8 and AMX choosers, model/ops.c's *_for functions, the activation quantizers of
quants/traits.c). The choices are those of an ISA on a CPU that runs it; the NEON row of an
aarch64 build is checked under qemu (tests/neon/driver.c), an x86 build has none."""
import platform

import pytest

from harness import ISAS, kernel_name
from pygguf.gguf.types import TYPES

X86 = platform.machine() in ("x86_64", "AMD64")
GEMM_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
R8_TYPES = ["Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K"]
AMX_MIN_TOKENS_Q8_0 = 8   # Q8_0 batches of this many tokens go to the AMX tiles; Q4 never does
BATCHES = [1, 2, 3, 4, 7, 8, 9, 16, 17, 64, 512]
HEAD_DIMS = [6, 8, 12, 24, 64, 72, 80, 100, 128]


def simd_row(isa):
    """The ISA whose kernels the x86 choosers gave `isa`: avx2's and avx512's own on x86; none
    elsewhere (a NEON row exists only in an aarch64 build)"""
    return isa if X86 and isa in ("avx2", "avx512") else None


def expected_gemm(isa, name):
    if name not in GEMM_TYPES:
        return None
    row = simd_row(isa)
    return f"pg_gemm_{lower(name)}_{row}" if row else f"pg_gemm_{lower(name)}_ref"


def expected_gemm_r8(isa, name, ntok, amx):
    row = simd_row(isa)
    if not row or name not in R8_TYPES:
        return None
    if row == "avx512" and name == "Q8_0" and amx and ntok >= AMX_MIN_TOKENS_Q8_0:
        return "pg_gemm_q8_0_r8_amx"
    if name in ("Q4_K", "Q5_K"):
        return f"pg_gemm_{lower(name)}_r8_avx2"           # avx512 runs AVX2's sliced kernels
    return f"pg_gemm_{lower(name)}_r8_{row}"


def lower(name):
    return name.lower().replace("_k", "_K")


def expected_quantize_act(isa, name):
    if simd_row(isa) and name in ("Q8_0", "Q8_1", "Q8_K"):
        return f"pg_quantize_act_{lower(name)}_avx2"      # avx512 runs AVX2's
    if name in ("Q8_0", "Q8_1"):
        return f"pg_quantize_act_{lower(name)}"          # llama.cpp's run-time rounding
    return f"pg_quantize_ref_{lower(name)}"


def expected_op(isa, op):
    if op == "geglu" and simd_row(isa):
        return f"pg_geglu_{simd_row(isa)}"                 # avx512 has its own
    return f"pg_{op}_avx2" if simd_row(isa) else f"pg_{op}_ref"


def expected_attention(isa, head_dim):
    return "pg_attention_kernels_avx2" if simd_row(isa) and head_dim % 8 == 0 else "pg_attention_kernels_ref"


@pytest.mark.parametrize("isa", list(ISAS))
def test_type_kernels(isa):
    for qt in TYPES:
        assert kernel_name(isa, "gemm", qt) == expected_gemm(isa, qt.name), qt.name
        assert kernel_name(isa, "quantize_act", qt) == expected_quantize_act(isa, qt.name), qt.name
        for ntok in BATCHES:
            for amx in (False, True):
                assert kernel_name(isa, "gemm_r8", qt, ntok, amx) == expected_gemm_r8(isa, qt.name, ntok, amx), \
                    (qt.name, ntok, amx)


@pytest.mark.parametrize("isa", list(ISAS))
def test_forward_pass_kernels(isa):
    for op in ("rmsnorm", "swiglu", "geglu", "f16_row"):
        assert kernel_name(isa, op) == expected_op(isa, op)
    for head_dim in HEAD_DIMS:
        assert kernel_name(isa, "attention", head_dim=head_dim) == expected_attention(isa, head_dim), head_dim


def test_every_simd_kernel_is_its_own_function():
    """no row names one kernel for two types (a slip in the table would still pass a test that
    only checks the suffix)"""
    for isa in ISAS:
        names = [kernel_name(isa, "gemm", name) for name in GEMM_TYPES]
        assert len(set(names)) == len(names), isa
