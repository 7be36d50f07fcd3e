"""pygguf-dump through click's CliRunner, on files our writer makes (and the real model if present)."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from pygguf_cli import paths
from pygguf.gguf import GGUFReader, GGUFWriter
from pygguf_cli.dump import main, print_rich


@pytest.fixture
def small_gguf(tmp_path):
    path = tmp_path / "small.gguf"
    w = GGUFWriter(path, arch="llama")
    w.add("llama.block_count", 2, "uint32")
    w.add("llama.rope.freq_base", 10000.0)
    w.add("tokenizer.ggml.tokens", [f"tok{i}" for i in range(100)])
    w.add("tokenizer.ggml.scores", np.linspace(0, 1, 100, dtype=np.float32))
    w.add("tokenizer.ggml.add_bos_token", True)
    w.add_tensor("token_embd.weight", np.ones((100, 32), np.float32), (32, 100), "F32")
    w.add_tensor("blk.0.attn_q.weight", np.zeros(2 * 34, np.uint8), (64, 1), "Q8_0")
    w.write()
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_plain_output_lists_metadata_and_tensors(small_gguf):
    res = run(small_gguf)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "GGUF v3, 6 metadata keys, 2 tensors" in out
    assert re.search(r"uint32 +\| llama\.block_count = 2\n", out)
    assert re.search(r"float32 +\| llama\.rope\.freq_base = 10000\.0\n", out)
    assert re.search(r"bool +\| tokenizer\.ggml\.add_bos_token = True\n", out)
    # long arrays abbreviated
    assert "['tok0', 'tok1', 'tok2', 'tok3', 'tok4', 'tok5', 'tok6', 'tok7', ... (100 total)]" in out
    assert "tok99" not in out
    assert "token_embd.weight" in out and "[32, 100]" in out and "12,800 bytes" in out
    assert "blk.0.attn_q.weight" in out and "Q8_0" in out and "68 bytes" in out
    assert "\x1b[" not in out           # no terminal escapes when piped


def test_no_tensors_flag(small_gguf):
    res = run(small_gguf, "--no-tensors")
    assert res.exit_code == 0
    assert "llama.block_count" in res.stdout
    assert "token_embd.weight" not in res.stdout


def test_json_output_is_complete(small_gguf):
    res = run(small_gguf, "--json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    meta = {m["key"]: m for m in doc["metadata"]}
    assert meta["tokenizer.ggml.tokens"]["type"] == "array[string]"
    assert meta["tokenizer.ggml.tokens"]["value"] == [f"tok{i}" for i in range(100)]
    assert meta["llama.block_count"] == {"key": "llama.block_count", "type": "uint32", "value": 2}
    assert doc["tensors"][1] == {"name": "blk.0.attn_q.weight", "type": "Q8_0", "shape": [64, 1],
                                 "n_elements": 64, "offset": doc["tensors"][1]["offset"], "n_bytes": 68}
    with GGUFReader(small_gguf) as r:
        assert [t["offset"] for t in doc["tensors"]] == [t.offset for t in r.tensors.values()]
    assert "tensors" not in json.loads(run(small_gguf, "--json", "--no-tensors").stdout)


def test_rich_tables_on_a_terminal(small_gguf):
    buf = io.StringIO()
    with GGUFReader(small_gguf) as r:
        print_rich(r, True, Console(file=buf, force_terminal=True, width=160))
    text = buf.getvalue()
    assert "\x1b[" in text and "┃" in text
    assert "llama.block_count" in text and "blk.0.attn_q.weight" in text and "12,800" in text


@pytest.mark.parametrize("content, words", [
    (b"", "truncated header"),
    (b"GGUF\x03\x00\x00\x00" + (2**62).to_bytes(8, "little") + bytes(8), "absurd tensor count"),
    (b"not a gguf file at all, sorry", "not a GGUF file"),
])
def test_bad_file_is_one_line_on_stderr_and_exit_1(tmp_path, content, words):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    res = run(path)
    assert res.exit_code == 1
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and str(path) in lines[0]
    assert "Traceback" not in res.stderr


def test_missing_file_exit_1(tmp_path):
    res = run(tmp_path / "missing.gguf")
    assert res.exit_code == 1
    assert "cannot open" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_real_model_dump():
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"{path} is absent (run `{paths.FETCH_MODEL_COMMAND}`)")
    res = run(path)
    assert res.exit_code == 0
    assert "272 tensors" in res.stdout and "(49152 total)" in res.stdout
