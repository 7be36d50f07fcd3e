"""Record llama.cpp's logits on the tiny family models (tests/families/models.py) into
tests/data/families/, the reference data of tests/model/test_families_llamacpp.py.

    python bench/record_families.py --llama-python .venv-compare/bin/python [--families a,b] [--types F16,Q8_0]

For each family and file type: the model is built (F16, then quantized by pygguf's quantizer) into
a temporary folder; llama.cpp (llama-cpp-python 0.3.36, in its own venv through
bench/llama_cpp_families_side.py) quantizes the same F16 file itself, and every tensor of the two
quantized files must be byte-identical; then llama.cpp evaluates pygguf's file: the logits of
every position of the prompt (tests.families.models.prompt(): 32 tokens from BOS, as one batch),
the greedy continuation (16 tokens, one at a time), and for MoE models every layer's router
probabilities (the experts chosen must be those models.routing() designed). Saved per model in <family>-<type>.npz (logits float32 for F16 files, float16 for
quantized ones, where the tolerances are 20x coarser), with the file's sha256; manifest.json
holds the settings and summary statistics.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from families import models

from pygguf.gguf import GGUFReader
from pygguf.tools.quant_mix import file_type

DATA = REPO / "tests" / "data" / "families"
N_PROMPT, N_GREEDY, TOP = 32, 16, 8
# llama.cpp context settings: one batch holds the whole prompt; flash attention off (its F32
# KQ path; on CPU the flash path rounds Q to F16); F16 KV cache (the default); n_ctx 64, which
# llama.cpp pads to 256 (llama_context: GGML_PAD(n_ctx, 256)): the test runs pygguf at the
# padded context, which also decides phi3's long/short rope factors.
SETTINGS = {"n_ctx": 64, "n_batch": 64, "n_ubatch": 64, "n_threads": 2, "flash_attn": False}


def compare_quantized(ours: Path, theirs: Path) -> list[str]:
    """Differences between two quantized files' tensors (name, type, shape, bytes)."""
    problems = []
    with GGUFReader(ours) as a, GGUFReader(theirs) as b:
        if set(a.tensors) != set(b.tensors):
            problems.append(f"tensor names differ: {sorted(set(a.tensors) ^ set(b.tensors))}")
        for name in sorted(set(a.tensors) & set(b.tensors)):
            ta, tb = a.tensors[name], b.tensors[name]
            if ta.qtype != tb.qtype or tuple(ta.shape) != tuple(tb.shape):
                problems.append(f"{name}: {ta.qtype.name}{list(ta.shape)} vs llama.cpp {tb.qtype.name}{list(tb.shape)}")
            elif not np.array_equal(np.asarray(ta.data), np.asarray(tb.data)):
                problems.append(f"{name} ({ta.qtype.name}): bytes differ from llama-quantize's")
    return problems


def margins(rows: np.ndarray):
    """top-1 minus top-2 of each row, and each row's top TOP ids and values."""
    order = np.argsort(-rows, axis=1, kind="stable")[:, :TOP]
    top = np.take_along_axis(rows, order, axis=1)
    return top[:, 0] - top[:, 1], order.astype(np.int32), top.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-python", required=True, help="python of the venv with llama-cpp-python 0.3.36")
    ap.add_argument("--families", default=",".join(models.FAMILIES))
    ap.add_argument("--types", default=",".join(models.FILE_TYPES))
    ap.add_argument("--out", default=str(DATA))
    args = ap.parse_args()
    families, types = args.families.split(","), args.types.split(",")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = models.prompt(N_PROMPT)

    with tempfile.TemporaryDirectory(prefix="families-") as tmp:
        tmp = Path(tmp)
        job = {"settings": SETTINGS, "tokens": tokens, "n_greedy": N_GREEDY, "quantize": [], "eval": []}
        built = {}
        for fam in families:
            f = models.FAMILIES[fam]
            for t in types:
                path = models.build(fam, t, tmp)
                built[fam, t] = path
                if t != "F16":
                    job["quantize"].append({"src": str(tmp / models.file_name(fam, "F16")),
                                            "dst": str(tmp / f"llamacpp-{fam}-{t}.gguf"),
                                            "ftype": file_type(t).ftype_id})
                job["eval"].append({"path": str(path), "out": str(tmp / f"{fam}-{t}.npz"),
                                    "n_expert": f.n_expert, "n_layer": f.n_layer})
        (tmp / "job.json").write_text(json.dumps(job))
        run = subprocess.run([args.llama_python, str(HERE / "llama_cpp_families_side.py"), str(tmp / "job.json")],
                             check=False, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"llama.cpp side failed:\n{run.stderr[-4000:]}")
        lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
        facts = {x["path"]: x for x in lines if "path" in x}
        versions = lines[-1]

        for q in job["quantize"]:
            fam_t = Path(q["dst"]).stem.removeprefix("llamacpp-")
            fam, t = fam_t.rsplit("-", 1)
            problems = compare_quantized(built[fam, t], Path(q["dst"]))
            if problems:
                sys.exit(f"{fam} {t}: pygguf's quantized file is not llama-quantize's:\n  " + "\n  ".join(problems))

        manifest = {"llama_cpp_python": versions["llama_cpp_python"], "system_info": versions["system_info"],
                    "settings": SETTINGS, "tokens": tokens, "n_greedy": N_GREEDY, "models": {}}
        old = out_dir / "manifest.json"
        if old.exists():                              # a partial re-record keeps the other entries
            manifest["models"] = json.loads(old.read_text()).get("models", {})
        for (fam, t), path in built.items():
            f = models.FAMILIES[fam]
            ref = np.load(tmp / f"{fam}-{t}.npz")
            fact = facts[str(path)]
            logits = ref["logits"]
            pos_margin, _, _ = margins(logits)
            g_margin, g_top_ids, g_top = margins(ref["greedy_logits"])
            assert np.array_equal(g_top_ids[:, 0], ref["greedy_ids"])
            store = np.float32 if t == "F16" else np.float16
            record = {
                "tokens": np.array(tokens, dtype=np.int32), "logits": logits.astype(store),
                "greedy_ids": ref["greedy_ids"], "greedy_margins": g_margin.astype(np.float32),
                "greedy_top_ids": g_top_ids, "greedy_top_logits": g_top,
                "sha256": np.array(models.sha256(path)), "n_ctx": np.array(fact["n_ctx"], dtype=np.int32),
                "settings": np.array(json.dumps(SETTINGS)), "llama_cpp_python": np.array(versions["llama_cpp_python"]),
            }
            entry = {"file": path.name, "sha256": models.sha256(path), "bytes": path.stat().st_size,
                     "n_ctx": fact["n_ctx"],
                     "logits_std": round(float(logits.std()), 3),
                     "logits_abs_max": round(float(np.abs(logits).max()), 3),
                     "position_margin_min": round(float(pos_margin.min()), 4),
                     "position_margin_median": round(float(np.median(pos_margin)), 4),
                     "greedy_ids": ref["greedy_ids"].tolist(),
                     "greedy_margin_min": round(float(g_margin.min()), 4)}
            if f.n_expert:
                probs = ref["router_probs"]              # (n_layer, prompt + greedy tokens, n_expert)
                order = np.argsort(-probs, axis=2, kind="stable")
                chosen = order[:, :, :f.n_expert_used].astype(np.int8)
                logp = np.log(np.take_along_axis(probs.astype(np.float64), order, axis=2))
                gap = logp[:, :, f.n_expert_used - 1] - logp[:, :, f.n_expert_used]   # in router logits
                want, _ = models.routing(f)
                seq = np.concatenate([tokens, ref["greedy_ids"]])
                if not np.array_equal(np.sort(chosen, axis=2), np.sort(want[:, seq], axis=2)):
                    sys.exit(f"{fam} {t}: llama.cpp chose other experts than the router design says")
                record["router_probs"] = probs.astype(np.float32)
                record["experts"] = chosen
                entry["probe_logits_identical"] = fact["probe_logits_identical"]
                entry["experts_used_per_layer"] = [sorted({int(e) for e in chosen[i].ravel()})
                                                   for i in range(f.n_layer)]
                entry["distinct_expert_sets_per_layer"] = [len({tuple(sorted(r)) for r in chosen[i].tolist()})
                                                           for i in range(f.n_layer)]
                entry["router_logit_gap_min"] = round(float(gap.min()), 3)
            np.savez_compressed(out_dir / f"{fam}-{t}.npz", **record)
            manifest["models"][f"{fam}-{t}"] = entry
            print(f"{fam:14s} {t:7s} std {entry['logits_std']:6.3f} max|l| {entry['logits_abs_max']:7.3f} "
                  f"margin min/med {entry['position_margin_min']:.4f}/{entry['position_margin_median']:.3f} "
                  f"greedy min margin {entry['greedy_margin_min']:.4f}"
                  + (f" expert sets {entry['distinct_expert_sets_per_layer']} router gap {entry['router_logit_gap_min']}"
                     if f.n_expert else ""))
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
