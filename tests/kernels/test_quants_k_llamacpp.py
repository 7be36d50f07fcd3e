"""Byte identity of our reference quantizers with llama.cpp's llama-quantize (no imatrix).

/work/shared/ref/tiny/quant_tensors_tiny_codellama.json records the sha256 of every tensor
llama-quantize wrote for 14 file types of tiny-codellama. For every (file type, tensor) whose
type we quantize, we quantize the F16 file's values (read with the `gguf` package, a test
oracle) and compare hashes. Legacy 32-value types are counted only when their quantizer is in
this tree.
"""
import hashlib
import json

import numpy as np
import pytest

from pygguf.model import kernels

from pygguf_cli import paths
from testpaths import shown
from pygguf.gguf.types import by_name

CHECKED_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


def quantizer_present(name: str) -> bool:
    try:
        kernels.quantize(name, np.zeros(by_name(name).block_size, np.float32))
        return True
    except kernels.KernelError:
        return False


@pytest.fixture(scope="module")
def reference():
    shared = paths.shared_dir()
    if shared is None:
        pytest.skip("../shared (llama.cpp reference data) is not present beside this checkout")
    tiny = shared / "ref" / "tiny"
    table, f16 = tiny / "quant_tensors_tiny_codellama.json", tiny / "tiny-codellama-F16.gguf"
    if not table.is_file() or not f16.is_file():
        pytest.skip(f"{shown(table)} or {shown(f16)} is missing")
    from gguf import GGUFReader
    reader = GGUFReader(str(f16))
    values = {t.name: np.asarray(t.data) for t in reader.tensors}
    return json.loads(table.read_text()), values


def test_reference_quantizers_are_byte_identical_to_llama_quantize(reference):
    table, values = reference
    types = [t for t in CHECKED_TYPES if quantizer_present(t)]
    ours: dict[tuple[str, str], str] = {}
    counts = {t: [0, 0] for t in types}
    mismatches = []
    for file_name, entry in table["files"].items():
        for tensor in entry["tensors"]:
            qtype = tensor["type"]
            if qtype not in counts:
                continue
            key = (tensor["name"], qtype)
            if key not in ours:
                x = values[tensor["name"]].astype(np.float32).reshape(-1)
                ours[key] = hashlib.sha256(kernels.quantize(qtype, x).tobytes()).hexdigest()
            same = ours[key] == tensor["sha256"]
            counts[qtype][0] += same
            counts[qtype][1] += 1
            if not same:
                mismatches.append(f"{file_name}:{tensor['name']} ({qtype})")
    print("identical/checked per type:", {t: f"{c[0]}/{c[1]}" for t, c in counts.items()})
    assert all(c[1] > 0 for t, c in counts.items() if t.endswith("_K")), counts
    assert not mismatches, mismatches[:10]
