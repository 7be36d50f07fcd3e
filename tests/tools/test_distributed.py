"""pygguf-batch --ray: records spread over Ray workers give the same results file as one machine,
--resume and duplicate ids behave the same, and a missing Ray is a clear error. The end-to-end test
starts a local Ray instance (Ray is installed by `make test`) and runs SmolLM2 on two workers."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pygguf_cli import paths
from pygguf.tools.batch import BadRecord, BatchSummary, Record, ResultWriter
from pygguf.tools.distributed import chunks
from pygguf_cli.batch import main as batch_cli


def test_chunks_skip_resumed_ids_and_flag_duplicates():
    records = [Record(i, rid, prompt="p") for i, rid in enumerate(["a", "b", "a", "c", "d", "e"])]
    written = []
    writer = ResultWriter(written.append)
    summary = BatchSummary()
    got = list(chunks(records, writer, skip={'"b"'}, summary=summary, size=2))
    assert [[r.id for r in c] for c in got] == [["a", "a"], ["c", "d"], ["e"]]
    assert isinstance(got[0][1], BadRecord) and "duplicate" in got[0][1].error
    assert summary.skipped == 1 and writer.pending == {1: None}      # b is done, a (index 0) not yet


def test_missing_ray_is_a_clear_error(tmp_path, monkeypatch):
    inp = tmp_path / "in.txt"
    inp.write_text("hello\n")
    monkeypatch.setitem(sys.modules, "ray", None)                   # import ray raises ImportError
    result = CliRunner().invoke(batch_cli, ["-m", "x.gguf", "-i", str(inp), "--ray", "local"])
    assert result.exit_code == 1 and "pip install" in result.stderr


def batch(*args):
    return subprocess.run([sys.executable, "-m", "pygguf_cli.batch", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_smollm2_on_a_local_ray_instance_matches_one_machine(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (`make test` installs it: pip install 'pygguf[ray]')")
    model = paths.default_model_path()
    if not model.exists():
        pytest.skip(f"SmolLM2 not found at {model} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    recs = [{"id": i, "prompt": f"Tell me about the number {i}:", "seed": i} for i in range(20)]
    recs.insert(15, {"id": 12, "prompt": "a duplicate id"})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    common = ["-m", model, "-i", inp, "-n", 6, "-c", 128, "-t", 1]
    local = batch(*common, "-o", tmp_path / "local.jsonl", "--parallel", 4)
    assert local.returncode == 1, local.stderr                       # the duplicate id fails on both
    out = tmp_path / "ray.jsonl"
    lines = (tmp_path / "local.jsonl").read_text().splitlines()
    out.write_text("\n".join(lines[:7]) + "\n")                     # as if a first run had stopped here
    spread = batch(*common, "-o", out, "--resume", "--parallel", 2, "--ray", "local", "--ray-workers", 2)
    assert spread.returncode == 1, spread.stderr
    strip = lambda r: {k: v for k, v in r.items() if k not in ("timings", "cached_prompt_tokens")}  # noqa: E731
    want = [strip(json.loads(x)) for x in lines]
    got = [strip(json.loads(x)) for x in out.read_text().splitlines()]
    assert got == want
    assert sum("error" in r for r in got) == 1
