"""`pygguf` on the real default model (SmolLM2-135M-Instruct Q4_1): greedy -n 8 against llama.cpp."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pygguf_cli import paths
MODEL = paths.default_model_path()
PROMPT = "The capital of France is"

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"default model absent ({MODEL}); run `make model`")


@pytest.fixture(scope="module")
def llama_cpp_greedy():
    """llama.cpp's greedy ids for PROMPT on this file, cut where its top-2 margin gets thin."""
    shared = paths.shared_dir()
    if shared is None:
        pytest.skip("../shared (llama.cpp reference outputs) is absent")
    ref = json.loads((shared / "ref" / "greedy_smollm2.json").read_text())
    run = next(r for r in ref["runs"] if r["model_file"] == MODEL.name)
    case = next(c for c in run["results"] if c["prompt"] == PROMPT)
    return case["prompt_ids"], case["generated_ids"][:case["safe_prefix_tokens"]]


def run_cli(args):
    pytest.importorskip("pygguf.model", reason="the Model is not merged yet")
    pytest.importorskip("pygguf.sampling", reason="the Sampler is not merged yet")
    from pygguf_cli.main import cli
    return CliRunner().invoke(cli, args)


def test_greedy_json_matches_llama_cpp(llama_cpp_greedy):
    prompt_ids, greedy_ids = llama_cpp_greedy
    result = run_cli(["--temp", "0", "-n", "8", "-t", "2", "--json", "-p", PROMPT])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["prompt_tokens"] == prompt_ids
    n = min(8, len(greedy_ids))
    assert out["tokens"][:n] == greedy_ids[:n]
    assert out["stop_reason"] in ("length", "eos")
    t = out["timings"]
    assert t["prompt_tokens"] == len(prompt_ids) and t["sample_runs"] == len(out["tokens"])


def test_streamed_run_through_the_entry_point():
    pytest.importorskip("pygguf.model", reason="the Model is not merged yet")
    pytest.importorskip("pygguf.sampling", reason="the Sampler is not merged yet")
    proc = subprocess.run([sys.executable, "-m", "pygguf_cli.main", "--temp", "0", "-n", "8", "-t", "2",
                           "-ngl", "99", "-p", PROMPT], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert out.startswith(PROMPT) and len(out) > len(PROMPT) + 1
    assert "--gpu-layers option will be ignored" in err
    assert "sampler chain: logits ->" in err
    for label in ("load time", "prompt eval time", "eval time", "total time"):
        assert f"{label} =" in err
    assert "Traceback" not in err


def test_prompt_too_long_for_the_context():
    result = run_cli(["-c", "16", "-p", "word " * 40])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("main: prompt is too long (")
    assert result.stderr.strip().endswith("tokens, max 12)")


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    result = run_cli(["-m", str(bad), "-p", "x"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("main: error: ") and "Traceback" not in result.stderr


def test_logit_bias_bans_the_greedy_token(llama_cpp_greedy):
    _, greedy_ids = llama_cpp_greedy
    result = run_cli(["--temp", "0", "-n", "1", "--json", "-l", f"{greedy_ids[0]}-inf", "-p", PROMPT])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["tokens"][0] != greedy_ids[0]


def test_bad_logit_bias_is_one_line():
    result = run_cli(["-l", "abc", "-p", "x"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: invalid value for -l: invalid logit bias 'abc'")


def test_fixed_seed_replays_the_same_sample():
    args = ["-s", "7", "--temp", "0.8", "-n", "6", "--json", "-p", PROMPT]
    first, second = run_cli(args), run_cli(args)
    assert first.exit_code == 0 and second.exit_code == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["seed"] == b["seed"] == 7
    assert a["tokens"] == b["tokens"] and len(a["tokens"]) == 6
