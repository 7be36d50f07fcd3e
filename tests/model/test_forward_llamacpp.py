"""Our logits and greedy tokens against llama.cpp's recorded ones (../shared/ref): the tiny
CodeLlama-shaped model in F16 and four llama.cpp quantizations, and SmolLM2-135M Q4_1.

Tolerances, from ../shared/README.md: on F16 files llama.cpp agrees with a float64 numpy forward
within ~0.01, so we allow 0.03. On quantized files llama.cpp disagrees with itself by up to
~0.6 in a logit (0.31-0.53 max, 0.055-0.082 rms on tiny-codellama, flash attention on vs off)
because 8-bit activations turn any tiny upstream difference into whole quantisation steps; a
correct implementation is as far from llama.cpp as llama.cpp is from itself, so we allow 0.6
max and 0.12 rms (measured: 0.24-0.42 max, 0.05-0.10 rms). Greedy tokens must match until the
first step where llama.cpp's own top-1/top-2 margin is small (0.05 on F16, 0.5 on quantized
files, where llama.cpp's flash-attention run departs at margins up to 0.3-0.5); at that step our
pick must be one of llama.cpp's top two.
"""
import hashlib
import json

import numpy as np
import pytest

from model_factory import missing_kernels
from model_runner import Runner
from pygguf.model import kernels
from pygguf_cli.paths import default_model_path, shared_dir
from pygguf.gguf.types import by_name

gguf = pytest.importorskip("pygguf.gguf", reason="needs the GGUF reader (pygguf/gguf.py)")
from pygguf.model import Model  # noqa: E402

SHARED = shared_dir()
TINY = SHARED / "ref" / "tiny" if SHARED else None
N_STEPS = 16


def _refs():
    if TINY is None or not (TINY / "refs_tiny_codellama.json").exists():
        return {}
    return json.loads((TINY / "refs_tiny_codellama.json").read_text())


REFS = _refs()
TINY_FILES = sorted(REFS.get("files", {})) or ["(no ../shared)"]


def skip_unless_runnable(path):
    with gguf.GGUFReader(path) as r:
        for qtype in {t.qtype for t in r.tensors.values()}:
            reason = missing_kernels(qtype)
            if reason:
                pytest.skip(f"{path.name}: {reason}")


def greedy(model, logits, n_steps, stop=()):
    """argmax decoding (lowest id on ties, as numpy's argmax) -> ids, and every step's logits"""
    ids, steps = [], []
    for _ in range(n_steps):
        steps.append(logits.copy())
        ids.append(int(logits.argmax()))
        if ids[-1] in stop:
            break
        logits = model.eval([ids[-1]])
    return ids, steps


def compare_greedy(ours, steps, ref_ids, margins, small, runner_up=None):
    for i, (got, want) in enumerate(zip(ours, ref_ids)):
        if margins[i] < small:
            allowed = {want, runner_up[i]} if runner_up else {want}
            assert runner_up is None or got in allowed, f"step {i}: {got} not in llama.cpp's top two {allowed}"
            return i
        assert got == want, f"step {i}: token {got}, llama.cpp {want} (its margin {margins[i]:.3f})"
    return len(ref_ids)


# Left out of ../shared for size; rebuilt from the F16 file with our quantizer, which must give
# llama-quantize's bytes (checked against the recorded sha256 of every tensor).
REBUILT = {"tiny-codellama-Q8_0.gguf", "tiny-codellama-Q5_K_M.gguf", "tiny-codellama-Q6_K.gguf"}


def rebuild(fname, tmp_path):
    from model_factory import write_gguf_raw
    listing = json.loads((TINY / "quant_tensors_tiny_codellama.json").read_text())["files"][fname]
    tensors = {}
    with gguf.GGUFReader(TINY / "tiny-codellama-F16.gguf") as src:
        metadata = {k: v for k, v in src.metadata.items() if not k.startswith("tokenizer.")}
        for t in listing["tensors"]:
            qtype = by_name(t["type"])
            skip_unless_runnable_type(qtype)
            x = kernels.dequantize(src.tensors[t["name"]].qtype, src.tensors[t["name"]].data, int(np.prod(t["shape"])))
            raw = x.view(np.uint8) if qtype.name == "F32" else kernels.quantize(qtype, x)
            assert hashlib.sha256(raw.tobytes()).hexdigest() == t["sha256"], f"{t['name']}: not llama-quantize's bytes"
            tensors[t["name"]] = (raw, qtype, tuple(t["shape"]))
    path = tmp_path / fname
    write_gguf_raw(path, metadata, tensors)
    return path


def skip_unless_runnable_type(qtype):
    reason = missing_kernels(qtype)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("fname", TINY_FILES)
def test_tiny_codellama_matches_llama_cpp(fname, tmp_path):
    if not REFS:
        pytest.skip("../shared/ref/tiny is absent (reference data measured with llama.cpp)")
    ref = REFS["files"][fname]
    path = TINY / fname
    if fname in REBUILT:
        path = rebuild(fname, tmp_path)
    elif not ref["file_present_in_this_directory"] or not path.exists():
        pytest.skip(f"{fname} is not in ../shared/ref/tiny (only its refs are)")
    skip_unless_runnable(path)
    is_f16 = "F16" in fname
    max_tol, rms_tol, small_margin = (0.03, 0.01, 0.05) if is_f16 else (0.6, 0.12, 0.5)
    ids = REFS["sequence"]["ids"]
    with Runner(Model.load(path, n_ctx=64, n_threads=2)) as m:
        logits = m.eval_all(ids)
        last = np.load(TINY / ref["last_logits_npy"])
        diff = logits[-1] - last
        assert np.abs(diff).max() < max_tol
        assert np.sqrt(np.mean(diff ** 2)) < rms_tol
        for pos, top in enumerate(ref["top20"]):
            want_ids, want = np.array([t[0] for t in top]), np.array([t[1] for t in top])
            assert np.abs(logits[pos, want_ids] - want).max() < max_tol, f"position {pos}"
        g = ref["greedy"]
        ours, steps = greedy(m, logits[-1], N_STEPS)
    compare_greedy(ours, steps, g["ids"], g["top1_minus_top2"], small_margin, g["runner_up_ids"])


SMOL_SMALL_MARGIN = 0.15   # llama.cpp's own flash-attention CLI departs at margins up to ~0.1 on Q4_1
# SmolLM2's logits are ~6x larger than tiny-codellama's (top-1 near 17), and its 8-bit activations
# amplify rounding just as much: our own scalar and AVX2 paths, both checked against references,
# differ by up to 0.72 in these top-10 logits (1.65 over all 49152), and llama.cpp's Q4_1 and F32
# files by up to 0.95. Measured against llama.cpp: 0.12-0.65.
SMOL_TOP10_TOL = 1.0
EOG = (0, 2, 4)            # SmolLM2's end-of-generation ids
SMOL_MAX_STEPS = 12        # per prompt, to keep the test fast


def test_smollm2_q4_1_greedy_and_top10():
    if SHARED is None:
        pytest.skip("../shared is absent (reference data measured with llama.cpp)")
    path = default_model_path()
    if not path.exists():
        pytest.skip(f"{path} is absent: run `make model`")
    skip_unless_runnable(path)
    data = json.loads((SHARED / "ref" / "greedy_smollm2.json").read_text())
    run = next(r for r in data["runs"] if r["model_file"] == path.name)
    compared = 0
    with Runner(Model.load(path, n_ctx=256, n_threads=2)) as m:
        for case in run["results"]:
            m.reset()
            logits = m.eval(case["prompt_ids"])
            top = case["top10_last_prompt_pos"]
            diffs = [abs(logits[t["id"]] - t["logit"]) for t in top]
            assert max(diffs) < SMOL_TOP10_TOL, case["prompt"]
            assert len({t["id"] for t in top} & set(np.argsort(logits)[-10:].tolist())) >= 8
            margins = case["greedy_margin_top1_minus_top2_per_step"]
            n = next((i for i, x in enumerate(margins) if x < SMOL_SMALL_MARGIN), len(margins))
            n = min(n + 1, len(case["generated_ids"]), SMOL_MAX_STEPS)
            ours, steps = greedy(m, logits, n, stop=EOG)
            compared += compare_greedy(ours, steps, case["generated_ids"][:n], margins, SMOL_SMALL_MARGIN)
    assert compared >= 20, "too few greedy steps were above the small-margin threshold to mean anything"
