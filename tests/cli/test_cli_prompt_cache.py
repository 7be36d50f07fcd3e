"""`pygguf --prompt-cache FILE` (and -all, -ro) on SmolLM2, as llama.cpp main's session file: the
second run evaluates one prompt token and prints the same text with the same seed, a longer prompt
evaluates only its extension, llama.cpp's log lines, refusals in one line, a damaged file never
a traceback, and the read-only and save-all variants."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from pygguf_cli import paths
from pygguf_cli.main import cli

MODEL = paths.default_model_path()
PROMPT = ("The llama is a domesticated South American camelid, widely used as a meat and pack animal "
          "by Andean cultures since the pre-Columbian era. Llamas are social animals and")
ARGS = ["-m", str(MODEL), "-c", "256", "-t", "2", "-n", "12", "-s", "11", "--temp", "0.8"]

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"default model absent ({MODEL}); run `make model`")


def pygguf(*args, prompt=PROMPT):
    return CliRunner().invoke(cli, [*ARGS, *args, "-p", prompt])


def prompt_evaluated(result) -> int:
    return int(re.search(r"prompt eval time = +[\d.]+ ms / +(\d+) tokens", result.stderr).group(1))


@pytest.fixture(scope="module")
def plain():
    result = pygguf()
    assert result.exit_code == 0, result.stderr
    return result


def test_second_run_reuses_the_prompt_and_prints_the_same_text(tmp_path, plain):
    cache = tmp_path / "p.bin"
    first = pygguf("--prompt-cache", str(cache))
    assert first.exit_code == 0, first.stderr
    assert f"main: attempting to load saved session from '{cache}'" in first.stderr
    assert "main: session file does not exist, will create." in first.stderr
    assert first.stdout == plain.stdout and cache.stat().st_size > 0
    second = pygguf("--prompt-cache", str(cache))
    assert second.exit_code == 0, second.stderr
    n_prompt = prompt_evaluated(plain)
    assert f"main: loaded a session with prompt size of {n_prompt} tokens" in second.stderr
    assert "main: session file has exact match for prompt!" in second.stderr
    assert prompt_evaluated(second) == 1
    assert second.stdout == plain.stdout


def test_a_longer_prompt_evaluates_only_its_extension(tmp_path, plain):
    cache = tmp_path / "p.bin"
    assert pygguf("--prompt-cache", str(cache)).exit_code == 0
    longer = PROMPT + " they hum to each other when they are"
    scratch, cached = pygguf(prompt=longer), pygguf("--prompt-cache", str(cache), prompt=longer)
    assert cached.exit_code == 0, cached.stderr
    n_old, n_new = prompt_evaluated(plain), prompt_evaluated(scratch)
    assert f"main: session file matches {n_old} / {n_new} tokens of prompt" in cached.stderr
    assert prompt_evaluated(cached) == n_new - n_old
    assert cached.stdout == scratch.stdout
    assert f"prompt size of {n_new} tokens" in pygguf("--prompt-cache", str(cache), prompt=longer).stderr


def test_low_similarity_is_warned(tmp_path):
    cache = tmp_path / "p.bin"
    assert pygguf("--prompt-cache", str(cache)).exit_code == 0
    other = pygguf("--prompt-cache", str(cache), prompt="Something else entirely, about boats and the sea.")
    assert other.exit_code == 0
    assert re.search(r"session file has low similarity to prompt \(\d+ / \d+ tokens\); will mostly be reevaluated",
                     other.stderr)


@pytest.mark.parametrize("flags,named", [
    (["-c", "128"], "saved with context size -c 256, this run has 128"),
    (["-ctk", "q8_0"], "saved with K cache type -ctk f16, this run has q8_0"),
    (["-m", str(MODEL.with_name("SmolLM2-135M-Instruct.Q8_0.gguf"))], "saved by another model"),
])
def test_other_settings_are_refused_in_one_line(tmp_path, flags, named):
    if "-m" in flags and not MODEL.with_name("SmolLM2-135M-Instruct.Q8_0.gguf").is_file():
        pytest.skip("SmolLM2 Q8_0 absent")
    cache = tmp_path / "p.bin"
    assert pygguf("--prompt-cache", str(cache)).exit_code == 0
    saved = cache.read_bytes()
    result = pygguf("--prompt-cache", str(cache), *flags)
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"main: error: --prompt-cache {cache}: ") and named in last
    assert "Traceback" not in result.stderr and cache.read_bytes() == saved


def test_damaged_files_are_refused_never_a_traceback(tmp_path):
    cache = tmp_path / "p.bin"
    assert pygguf("--prompt-cache", str(cache)).exit_code == 0
    good = cache.read_bytes()
    damaged = [good[:n] for n in (1, 8, 100, len(good) // 2, len(good) - 1)]
    damaged += [good[:n] + bytes([good[n] ^ 0x10]) + good[n + 1:] for n in (9, 60, 130, len(good) // 3, len(good) - 3)]
    for data in damaged:
        cache.write_bytes(data)
        result = pygguf("--prompt-cache", str(cache))
        assert result.exit_code == 1 and "Traceback" not in result.stderr
        assert re.fullmatch(rf"main: error: --prompt-cache {re.escape(str(cache))}: "
                            r"(not a pygguf state file|state format version .*|truncated .*|corrupt \(checksum mismatch\))",
                            result.stderr.strip().splitlines()[-1])


def test_an_empty_file_starts_a_new_session(tmp_path, plain):
    cache = tmp_path / "p.bin"
    cache.write_bytes(b"")
    result = pygguf("--prompt-cache", str(cache))
    assert "main: The session file is empty. A new session will be initialized." in result.stderr
    assert result.stdout == plain.stdout and cache.stat().st_size > 0


def test_read_only_never_writes(tmp_path, plain):
    cache = tmp_path / "p.bin"
    result = pygguf("--prompt-cache", str(cache), "--prompt-cache-ro")
    assert result.exit_code == 0 and not cache.exists()
    assert pygguf("--prompt-cache", str(cache)).exit_code == 0
    saved = cache.read_bytes()
    longer = pygguf("--prompt-cache", str(cache), "--prompt-cache-ro", prompt=PROMPT + " they hum")
    assert longer.exit_code == 0 and cache.read_bytes() == saved
    assert pygguf("--prompt-cache", str(cache), "--prompt-cache-all", "--prompt-cache-ro").exit_code == 0
    assert cache.read_bytes() == saved


def test_prompt_cache_all_saves_the_generated_part(tmp_path, plain):
    cache = tmp_path / "p.bin"
    result = pygguf("--prompt-cache", str(cache), "--prompt-cache-all")
    assert result.exit_code == 0, result.stderr
    n_prompt = prompt_evaluated(plain)
    match = re.search(rf"saved final session to {re.escape(str(cache))}, n_tokens = (\d+)", result.stderr)
    assert f"main: saving final output to session file '{cache}'" in result.stderr
    assert int(match.group(1)) == n_prompt + 11        # 12 generated, the last one never evaluated
    again = pygguf("--prompt-cache", str(cache))
    assert f"prompt size of {n_prompt + 11} tokens" in again.stderr
    assert again.stdout == plain.stdout and prompt_evaluated(again) == 1


def test_prompt_cache_all_is_refused_in_interactive_mode(tmp_path):
    result = CliRunner().invoke(cli, [*ARGS, "-i", "--prompt-cache", str(tmp_path / "p.bin"), "--prompt-cache-all"],
                                input="")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "main: error: --prompt-cache-all not supported in interactive mode yet"


def test_interactive_mode_reuses_and_saves_the_first_prompt(tmp_path):
    """as llama.cpp: the first prompt is saved once evaluated (before the first input); the next
    session evaluates one token of it"""
    cache = tmp_path / "p.bin"
    args = [*ARGS, "-i", "-no-cnv", "--prompt-cache", str(cache), "-p", PROMPT]
    first = CliRunner().invoke(cli, args, input="")
    assert first.exit_code == 0, first.stderr
    assert "session file does not exist, will create." in first.stderr and cache.stat().st_size > 0
    second = CliRunner().invoke(cli, args, input="")
    assert second.exit_code == 0, second.stderr
    assert "main: session file has exact match for prompt!" in second.stderr
    assert prompt_evaluated(second) == 1
    assert second.stdout == first.stdout
