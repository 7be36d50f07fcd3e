"""SmolLM2's own vocabulary against what llama.cpp's llama-tokenize gave (/work/shared/ref)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pygguf_cli import paths
from pygguf.gguf import GGUFReader
from pygguf.tokenizer import Tokenizer
from pygguf_cli.tokenize import main as tokenize_main


@pytest.fixture(scope="module")
def model_path():
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"{path} not found (run `make model`)")
    return path


@pytest.fixture(scope="module")
def tok(model_path):
    with GGUFReader(model_path) as reader:
        return Tokenizer.from_metadata(reader.metadata)


@pytest.fixture(scope="module")
def reference():
    shared = paths.shared_dir()
    if shared is None or not (shared / "ref" / "tokenizer_smollm2.json").exists():
        pytest.skip("../shared/ref/tokenizer_smollm2.json not found (reference data from llama.cpp)")
    with open(shared / "ref" / "tokenizer_smollm2.json", encoding="utf-8") as fh:
        return json.load(fh)["strings"]


def test_special_ids_and_flags(tok):
    assert (tok.bos_id, tok.eos_id, tok.unk_id, tok.pad_id) == (1, 2, 0, 2)
    assert not tok.add_bos and not tok.add_eos
    assert tok.eog_ids == {0, 2, 4}          # <|endoftext|>, <|im_end|>, <reponame>
    assert tok.is_eog(2) and not tok.is_eog(1)
    assert tok.n_vocab == 49152


def test_ids_match_llama_tokenize(tok, reference):
    for case in reference:
        assert tok.encode(case["text"]) == case["ids"], case["name"]
        assert len(case["ids"]) == case["n_tokens"]


def test_ids_without_parse_special_match(tok, reference):
    for case in reference:
        got = tok.encode(case["text"], parse_special=False)
        assert got == case["ids_with_no_parse_special"], case["name"]


def test_round_trip(tok, reference):
    for case in reference:
        assert tok.decode(case["ids"], special=True) == case["text"], case["name"]
        assert tok.decode(tok.encode(case["text"], parse_special=False)) == case["text"]


def test_control_tokens_hidden_unless_special(tok):
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
    assert tok.decode(ids) == "user\nhi"
    assert tok.decode(ids, special=True) == "<|im_start|>user\nhi<|im_end|>"


def test_stream_decoder_rebuilds_split_characters(tok, reference):
    for case in reference:
        stream = tok.stream_decoder(special=True)
        chunks = [stream.push(i) for i in case["ids"]]
        chunks.append(stream.flush())
        assert "".join(chunks) == case["text"], case["name"]
        assert all("\ufffd" not in c for c in chunks), case["name"]


def test_stream_decoder_on_three_byte_characters(tok):
    # 日本語 comes out of SmolLM2 as byte tokens; nothing may appear before a character is whole
    ids = tok.encode("日本語", add_special=False)
    assert len(ids) > 3
    stream = tok.stream_decoder()
    outs = [stream.push(i) for i in ids]
    assert "".join(outs) + stream.flush() == "日本語"
    assert all(len(o) in (0, 1, 2, 3) and "\ufffd" not in o for o in outs)


def test_cli_prints_like_llama_tokenize(model_path, reference):
    runner = CliRunner()
    for case in reference:
        result = runner.invoke(tokenize_main, ["-m", str(model_path), "-p", case["text"],
                                               "--no-escape", "--log-disable"])
        assert result.exit_code == 0, result.output
        # the reference capture read the output as text, which dropped carriage returns
        expected = case["llama_tokenize_pieces_output"]
        assert result.output.replace("\r", "") == expected.replace("\r", ""), case["name"]


def test_cli_ids_and_count(model_path, reference):
    case = reference[0]
    result = CliRunner().invoke(tokenize_main, ["-m", str(model_path), "-p", case["text"],
                                                "--ids", "--show-count", "--log-disable"])
    assert result.exit_code == 0, result.output
    ids_line, count_line = result.output.splitlines()
    assert ids_line == "[" + ", ".join(map(str, case["ids"])) + "]"
    assert count_line == f"Total number of tokens: {len(case['ids'])}"


def test_cli_escapes_and_no_parse_special(model_path, tok):
    runner = CliRunner()
    result = runner.invoke(tokenize_main, ["-m", str(model_path), "-p", r"<|im_end|>\n", "--ids"])
    assert result.exit_code == 0
    assert result.output.strip() == str(tok.encode("<|im_end|>\n"))
    result = runner.invoke(tokenize_main, ["-m", str(model_path), "-p", "<|im_end|>", "--ids",
                                           "--no-parse-special"])
    assert result.exit_code == 0
    assert "2" not in result.output.strip("[]\n").split(", ")


def test_cli_bad_file_is_status_1(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    result = CliRunner().invoke(tokenize_main, ["-m", str(bad), "-p", "x"])
    assert result.exit_code == 1
    assert "pygguf-tokenize:" in result.output
