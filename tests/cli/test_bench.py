"""pygguf-bench: llama-bench's table, csv and json, and the machine figures beside them."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from pygguf.model import Model
from pygguf.tools import benchmark
from pygguf.tools.benchmark import BenchTest, ModelFacts, Result
from pygguf_cli import bench
from pygguf_cli.paths import default_model_path

MODEL = default_model_path()
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason=f"default model absent ({MODEL}); run `make model`")


def facts(**overrides) -> ModelFacts:
    base = dict(path="m.gguf", arch="llama", label="7B", ftype="Q4_K_M", size=4 << 30, params=6_740_000_000,
                step_bytes=4_000_000_000, macs_per_token=6_600_000_000)
    return ModelFacts(**{**base, **overrides})


def test_result_statistics_and_what_it_reached():
    tg = Result(facts(), 2, BenchTest("tg", 128), [5.0, 6.0, 7.0], read_gbps=30.0)
    assert tg.mean == 6.0 and tg.std == pytest.approx(1.0)
    assert tg.weights_gbps == pytest.approx(24.0)
    assert bench.reached(tg) == "24.0 GB/s = 80% of 30.0"
    pp = Result(facts(), 2, BenchTest("pp", 512), [10.0, 10.0])
    assert pp.std == 0.0 and bench.reached(pp) == "66.0 GMAC/s"
    assert bench.md_cells(tg)[:7] == ["llama 7B Q4_K_M", "4.00 GiB", "6.74 B", "CPU", "2", "tg128", "6.00 ± 1.00"]


def test_size_labels_round_as_model_cards_do():
    assert [benchmark.size_label(p) for p in (134_515_008, 1_100_048_384, 6_738_415_616, 13_016_028_160)] == \
        ["135M", "1B", "7B", "13B"]


def test_tests_follow_llama_bench_order_and_zero_turns_one_off():
    assert [t.name for t in bench.tests_of([512, 0], [128, 32])] == ["pp512", "tg128", "tg32"]


@needs_model
def test_model_facts_count_the_tied_output_once():
    model = Model.load(MODEL, n_ctx=16, n_threads=1)
    try:
        f = benchmark.model_facts(MODEL, model)
    finally:
        model.close()
    # SmolLM2 ties its output to the embedding: a decode step reads the table as the output matrix
    embd = model.tensors["token_embd.weight"]
    layers = sum(t.nbytes for n, t in model.tensors.items() if n.startswith("blk.") and len(t.shape) > 1)
    assert f.step_bytes == layers + embd.nbytes
    assert (f.arch, f.label, f.ftype) == ("llama", "135M", "Q4_1")


def test_model_facts_count_only_the_experts_a_token_uses(tmp_path):
    from model_factory import synthetic_small_moe_shape
    from tokenizer_vectors import vocab_path

    from pygguf.tools import synthetic
    from pygguf.tools.quant_mix import file_type
    vocab = vocab_path("llama-spm")
    if not vocab.exists():
        pytest.skip(f"{vocab} not found (run `make vocab`)")
    path = synthetic.build(synthetic_small_moe_shape(), file_type("Q4_0"), tmp_path / "moe.gguf", vocab)
    model = Model.load(path, n_ctx=16, n_threads=1, repack=False)
    try:
        f = benchmark.model_facts(path, model)
    finally:
        model.close()
    matrices = {n: t for n, t in model.tensors.items() if len(t.shape) > 1 and n != "token_embd.weight"}
    experts = sum(t.nbytes for n, t in matrices.items() if "_exps" in n)
    assert experts and f.step_bytes == sum(t.nbytes for t in matrices.values()) - experts + experts * 2 // 4
    assert f.params == sum(int(np.prod(t.shape)) for t in model.tensors.values())     # all of them


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(bench.main, list(args))
    return result.exit_code, result.output


@needs_model
def test_markdown_table_has_a_row_per_thread_count_and_test():
    code, out = run("-m", str(MODEL), "-p", "8", "-n", "4", "-t", "1,2", "-r", "2", "--no-read-rate")
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[1].strip() == "model" and "t/s" in lines[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert [(r[4], r[5]) for r in rows] == [("1", "pp8"), ("1", "tg4"), ("2", "pp8"), ("2", "tg4")]
    assert all(r[0] == "llama 135M Q4_1" and " ± " in r[6] for r in rows)


@needs_model
def test_cache_types_get_their_columns():
    code, out = run("-m", str(MODEL), "-p", "0", "-n", "2", "-t", "1", "-r", "1", "--no-read-rate",
                    "-ctk", "q8_0", "-ctv", "q4_0")
    assert code == 0, out
    header, _, row = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("|")]
    assert header[5:7] == ["type_k", "type_v"] and row[5:8] == ["q8_0", "q4_0", "tg2"]


@needs_model
def test_json_and_csv_carry_the_samples():
    code, out = run("-m", str(MODEL), "-p", "0", "-n", "3", "-t", "1", "-r", "2", "--no-read-rate", "-o", "json")
    assert code == 0, out
    (record,) = json.loads(out)
    assert record["n_gen"] == 3 and record["n_prompt"] == 0 and len(record["samples_ts"]) == 2
    assert record["weights_gbps"] > 0 and record["avg_ts"] > 0
    code, out = run("-m", str(MODEL), "-p", "4", "-n", "0", "-t", "1", "-r", "1", "--no-read-rate", "-o", "csv")
    assert code == 0, out
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["n_prompt"] == "4" and float(row["gmacs"]) > 0


def test_usage_errors():
    assert run("-p", "0", "-n", "0", "-m", __file__)[0] == 2
    code, out = run("-p", "8")
    assert code == 2 and "give a model" in out
    code, out = run("--synthetic", "gpt-9:Q4_K_M", "--no-read-rate")
    assert code == 1 and "unknown model shape 'gpt-9'" in out


def test_stream_read_rate_is_measured():
    assert benchmark.stream_read_gbps(1, reps=2, nbytes=8 << 20) > 0.1


def test_a_synthetic_model_is_built_on_first_use_and_benchmarked(tmp_path, monkeypatch):
    from model_factory import synthetic_small_shape
    from tokenizer_vectors import vocab_path

    from pygguf.tools import synthetic
    SMALL, VOCAB = synthetic_small_shape(), vocab_path("llama-spm")
    if not VOCAB.exists():
        pytest.skip(f"{VOCAB} not found (run `make vocab`)")
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / VOCAB.name).symlink_to(VOCAB)
    monkeypatch.setenv("PYGGUF_CACHE", str(tmp_path))
    monkeypatch.setitem(synthetic.SHAPES, SMALL.name, SMALL)
    args = ["--synthetic", f"{SMALL.name}:Q4_K_M", "-p", "4", "-n", "2", "-t", "1", "-r", "1", "--no-read-rate"]
    code, out = run(*args)
    assert code == 0, out
    assert (tmp_path / "synthetic" / "synthetic-test-small.Q4_K_M.gguf").is_file()
    assert "llama" in out and "tg2" in out
