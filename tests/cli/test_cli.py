"""The `pygguf` command through Click's CliRunner, on a fake model, tokenizer and sampler."""
from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner

from cli_fakes import BOS, EOS, FakeModel, FakeSampler, FakeSamplerParams, FakeTokenizer, tokens_of
from pygguf_cli.escapes import process_escapes
from pygguf_cli.main import CommandError, cli, main, tokenize_prompt
from pygguf_cli.system import physical_cores, resolve_threads
from pygguf_cli.output import ANSI_PROMPT, ANSI_RESET, TextOut
from pygguf_cli.runtime import Runtime

PERF_LINES = ("llama_perf_sampler_print:    sampling time =", "llama_perf_context_print:        load time =",
              "llama_perf_context_print: prompt eval time =", "llama_perf_context_print:        eval time =",
              "llama_perf_context_print:       total time =")


class LoadFailed(Exception):
    pass


class Harness:
    """A Runtime whose loader hands out FakeModels and records what the command asked for."""

    def __init__(self, script=None, **model_kwargs):
        self.script = script if script is not None else tokens_of(" there") + [EOS]
        self.model_kwargs = model_kwargs
        self.load_calls: list[tuple] = []
        self.models: list[FakeModel] = []
        self.samplers: list[FakeSampler] = []
        self.fail_with: BaseException | None = None

    def load(self, path, **kwargs):
        self.load_calls.append((path, kwargs))
        if self.fail_with is not None:
            raise self.fail_with
        model = FakeModel(self.script, **self.model_kwargs)
        self.models.append(model)
        return model

    def sampler(self, params, n_vocab, eog_ids=(), **kwargs):
        sampler = FakeSampler(params, n_vocab, eog_ids, **kwargs)
        self.samplers.append(sampler)
        return sampler

    def runtime(self) -> Runtime:
        return Runtime(load_model=self.load, make_sampler=self.sampler, sampler_params=FakeSamplerParams,
                       errors=(LoadFailed,))


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF")
    return path


def invoke(args, harness=None):
    harness = harness or Harness()
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=harness.runtime())
    return result, harness


def test_prompt_then_text_on_stdout_and_logs_on_stderr(model_file):
    result, h = invoke(["-m", model_file, "-p", "Hello", "-n", "-1"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello there\n"
    err = result.stderr
    assert "sampler seed: 1234" in err
    assert "sampler chain: logits -> greedy" in err
    assert "generate: n_ctx = 64, n_batch = 2048, n_predict = -1, n_keep = 1" in err
    assert "[end of text]" in err
    assert [line for line in err.splitlines() if line.startswith("llama_perf")] == [
        line for line in err.splitlines() if line.startswith(PERF_LINES)]
    assert sum(line.startswith(PERF_LINES) for line in err.splitlines()) == 5
    assert h.models[0].closed


def test_no_display_prompt(model_file):
    result, _ = invoke(["-m", model_file, "-p", "Hello", "--no-display-prompt"])
    assert result.stdout == " there\n"


@pytest.mark.parametrize("dashed, underscored, field, value", [
    ("--repeat-penalty", "--repeat_penalty", "repeat_penalty", 1.1),
    ("--top-k", "--top_k", "top_k", 7),
    ("--top-p", "--top_p", "top_p", 0.5),
    ("--min-p", "--min_p", "min_p", 0.1),
    ("--repeat-last-n", "--repeat_last_n", "repeat_last_n", 32),
    ("--presence-penalty", "--presence_penalty", "presence_penalty", 0.25),
    ("--frequency-penalty", "--frequency_penalty", "frequency_penalty", 0.5),
])
def test_sampling_flags_and_their_underscore_aliases(model_file, dashed, underscored, field, value):
    for spelling in (dashed, underscored):
        result, h = invoke(["-m", model_file, spelling, value])
        assert result.exit_code == 0, result.output
        assert h.samplers[0].params == {field: value}


def test_sampling_flags_reach_sampler_params(model_file):
    result, h = invoke(["-m", model_file, "--temp", "0.7", "--typical", "0.9", "-s", "42"])
    assert result.exit_code == 0, result.output
    assert h.samplers[0].params == {"temp": 0.7, "typical_p": 0.9, "seed": 42}
    assert h.samplers[0].eog_ids == {EOS, 258}


def test_sampling_defaults_are_left_to_sampler_params(model_file):
    _, h = invoke(["-m", model_file])
    assert h.samplers[0].params == {}


def test_model_flags_reach_the_loader(model_file):
    result, h = invoke(["-m", model_file, "-c", "4096", "-t", "1", "-tb", "1", "-b", "64", "-ub", "32",
                        "--rope-freq-base", "1e6", "--rope_freq_scale", "0.5"])
    assert result.exit_code == 0, result.output
    path, kwargs = h.load_calls[0]
    assert path == model_file
    assert kwargs == {"n_ctx": 4096, "n_threads": 1, "n_batch": 32, "rope_freq_base": 1e6, "rope_freq_scale": 0.5,
                      "type_k": "f16", "type_v": "f16", "use_mmap": True, "use_mlock": False}
    assert "warning: changing RoPE frequency base to 1e+06." in result.stderr
    assert "warning: scaling RoPE frequency by 0.5." in result.stderr


def test_model_card_command_line_is_accepted(model_file):
    """The TheBloke model-card line, with pygguf in place of ./main."""
    result, h = invoke(["-t", "10", "-ngl", "32", "-m", model_file, "--color", "-c", "4096", "--temp", "0.7",
                        "--repeat_penalty", "1.1", "-n", "-1", "-p",
                        "### Instruction: Write a story about llamas\\n### Response:"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("### Instruction: Write a story about llamas\n### Response:")
    assert "warning: not compiled with GPU offload support, --gpu-layers option will be ignored" in result.stderr
    assert h.load_calls[0][1]["n_threads"] <= 10


@pytest.mark.parametrize("spelling", ["-ngl", "--gpu-layers", "--n-gpu-layers", "--n_gpu_layers"])
def test_gpu_layers_warns_and_carries_on(model_file, spelling):
    result, _ = invoke(["-m", model_file, spelling, "0"])
    assert result.exit_code == 0
    assert "--gpu-layers option will be ignored" in result.stderr


def test_threads_are_capped_at_the_cpu_count():
    assert resolve_threads(10, 2) == (2, "-t 10 is more than the 2 CPUs available; using 2 threads")
    assert resolve_threads(2, 2) == (2, None)
    assert resolve_threads(-1, 4) == (4, None)
    assert resolve_threads(0, 4, 2) == (2, None)


def test_default_threads_count_physical_cores(tmp_path):
    for cpu, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(siblings + "\n")
    assert physical_cores([0, 1, 2, 3], tmp_path) == 2
    assert physical_cores([0, 2], tmp_path) == 1
    assert physical_cores([0, 7], tmp_path) == 2          # no topology for cpu7: count every CPU


def test_tiny_context_is_raised_to_eight(model_file):
    result, h = invoke(["-m", model_file, "-c", "3"])
    assert h.load_calls[0][1]["n_ctx"] == 8
    assert "minimum context size is 8" in result.stderr


def test_context_beyond_training_warns(model_file):
    result, _ = invoke(["-m", model_file, "-c", "64"], Harness(n_ctx=64, n_ctx_train=32))
    assert "model was trained on only 32 context tokens (64 specified)" in result.stderr


@pytest.mark.parametrize("args, bad", [(["--bogus"], "--bogus"), (["--top-k", "3", "-zz"], "-zz"),
                                       (["stray"], "stray")])
def test_unknown_arguments_are_llama_cpp_errors(args, bad):
    result, h = invoke(args)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: invalid argument: {bad}"
    assert h.load_calls == []


def test_bad_value_is_one_line_exit_1():
    result, _ = invoke(["-n", "many"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_main_entry_point_exits_1_on_unknown_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-flag"])
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip() == "error: invalid argument: --no-such-flag"


# ---- prompt sources and escapes -----------------------------------------------------------------

def test_escapes_are_processed_by_default(model_file):
    result, h = invoke(["-m", model_file, "-p", "a\\tb\\nc\\\\d\\x41\\q"])
    assert h.models[0].calls[0] == [BOS] + tokens_of("a\tb\nc\\dA\\q")


def test_no_escape_keeps_backslashes(model_file):
    result, h = invoke(["-m", model_file, "--no-escape", "-p", "a\\nb"])
    assert h.models[0].calls[0] == [BOS] + tokens_of("a\\nb")


@pytest.mark.parametrize("raw, expected", [
    ("plain", "plain"), ("\\n\\r\\t\\'\\\"\\\\", "\n\r\t'\"\\"), ("\\x41\\x4a", "AJ"),
    ("\\xe2\\x82\\xac", "€"), ("\\xZZ", "\\xZZ"), ("\\x4", "\\x4"), ("\\q", "\\q"), ("end\\", "end\\"),
    ("\\xff", "\ufffd"), ("héllo\\n", "héllo\n"),
])
def test_process_escapes(raw, expected):
    assert process_escapes(raw) == expected


def test_prompt_file_strips_one_trailing_newline_and_is_escaped(model_file, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("line\\tone\n\n", encoding="utf-8")
    _, h = invoke(["-m", model_file, "-f", prompt])
    assert h.models[0].calls[0] == [BOS] + tokens_of("line\tone\n")


def test_later_of_p_and_f_wins(model_file, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("from file", encoding="utf-8")
    _, h = invoke(["-m", model_file, "-p", "inline", "-f", prompt])
    assert h.models[0].calls[0] == [BOS] + tokens_of("from file")
    _, h = invoke(["-m", model_file, "-f", prompt, "-p", "inline"])
    assert h.models[0].calls[0] == [BOS] + tokens_of("inline")


def test_missing_prompt_file_is_one_line_error(model_file, tmp_path):
    result, _ = invoke(["-m", model_file, "-f", tmp_path / "nope.txt"])
    assert result.exit_code == 1
    assert "nope.txt" in result.stderr and "Traceback" not in result.stderr


def test_empty_prompt_starts_from_bos(model_file, capsys):
    result, h = invoke(["-m", model_file])
    assert h.models[0].calls[0] == [BOS]                  # the tokenizer's own BOS
    no_bos = FakeTokenizer()
    no_bos.add_bos = False
    assert tokenize_prompt(no_bos, "") == [BOS]
    assert "embd_inp was considered empty and bos was added" in capsys.readouterr().err
    no_bos.bos_id = None
    with pytest.raises(CommandError, match="input is empty"):
        tokenize_prompt(no_bos, "")


def test_verbose_prompt_lists_tokens(model_file):
    result, _ = invoke(["-m", model_file, "-p", "Hi", "--verbose-prompt", "-r", "!"])
    assert "main: number of tokens in prompt = 3" in result.stderr
    assert "   256 -> '<s>'" in result.stderr
    assert "    72 -> 'H'" in result.stderr
    assert "Reverse prompt: '!'" in result.stderr


# ---- stopping -------------------------------------------------------------------------------------

def test_reverse_prompts_are_repeatable_and_escaped(model_file):
    h = Harness(script=tokens_of("one\ntwo\nthree"))
    result, _ = invoke(["-m", model_file, "-p", "Q", "-r", "zzz", "-r", "two\\n"], h)
    assert result.exit_code == 0
    assert result.stdout == "Qone\ntwo\n\n"


def test_n_predict_limits_tokens(model_file):
    h = Harness(script=tokens_of("abcdefgh"))
    result, _ = invoke(["-m", model_file, "-p", "Q", "-n", "3"], h)
    assert result.stdout == "Qabc\n"
    assert "[end of text]" not in result.stderr


def test_ignore_eos_flag(model_file):
    h = Harness(script=[EOS])
    result, _ = invoke(["-m", model_file, "-p", "Q", "-n", "4", "--ignore-eos", "--json"], h)
    out = json.loads(result.stdout)
    assert out["stop_reason"] == "length" and len(out["tokens"]) == 4


def test_no_context_shift_message(model_file):
    h = Harness(script=tokens_of("a"), n_ctx=16)
    result, _ = invoke(["-m", model_file, "-p", "Q", "--no-context-shift"], h)
    assert result.exit_code == 0
    assert "main: context full and context shift is disabled => stopping" in result.stderr
    assert h.models[0].shifts == []


def test_context_shift_by_default_in_minus_one_mode(model_file):
    h = Harness(script=tokens_of("abcdefghijklmnopqrstuvwxyz") + [EOS], n_ctx=16)
    result, _ = invoke(["-m", model_file, "-p", "Q", "--keep", "1"], h)
    assert result.stdout == "Qabcdefghijklmnopqrstuvwxyz\n"
    assert h.models[0].shifts[0] == (2, 6)               # BOS + 1 kept, (14 - 2) // 2 dropped... at n_past 15
    assert "generate: n_ctx = 16, n_batch = 2048, n_predict = -1, n_keep = 2" in result.stderr


def test_prompt_too_long_is_refused(model_file):
    h = Harness(n_ctx=8)
    result, _ = invoke(["-m", model_file, "-p", "abcdef"], h)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "main: prompt is too long (7 tokens, max 4)"
    assert "Traceback" not in result.stderr
    assert h.models[0].calls == [] and h.models[0].closed
    assert result.stdout == ""


# ---- output modes ---------------------------------------------------------------------------------

def test_json_output(model_file):
    result, _ = invoke(["-m", model_file, "-p", "Hello", "--json"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["text"] == " there"
    assert out["tokens"] == tokens_of(" there")
    assert out["prompt_tokens"] == [BOS, 259]
    assert out["stop_reason"] == "eos"
    assert out["seed"] == 1234
    assert out["timings"]["prompt_tokens"] == 2 and out["timings"]["eval_runs"] == len(tokens_of(" there"))
    assert set(out["timings"]) >= {"load_ms", "prompt_eval_ms", "eval_ms", "sample_ms", "total_ms"}
    assert "llama_perf_context_print: prompt eval time" in result.stderr


def test_utf8_split_across_tokens_reaches_stdout_whole(model_file):
    h = Harness(script=tokens_of("é😀") + [EOS])
    result, _ = invoke(["-m", model_file, "-p", "Q"], h)
    assert result.stdout_bytes == "Qé😀\n".encode("utf-8")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_color_only_on_a_terminal():
    tty = FakeTerminal()
    out = TextOut(tty, color=True)
    out.prompt("P")
    out.generated("G")
    out.end()
    assert tty.getvalue() == f"{ANSI_PROMPT}P{ANSI_RESET}G\n"
    pipe = io.StringIO()
    out = TextOut(pipe, color=True)
    out.prompt("P")
    out.generated("G")
    out.end()
    assert pipe.getvalue() == "PG\n"


def test_color_flag_on_a_pipe_writes_no_escapes(model_file):
    result, _ = invoke(["-m", model_file, "-p", "Hello", "--color"])
    assert "\x1b[" not in result.stdout


def test_version_prints_system_info_with_active_isa():
    from pygguf.model.kernels import active_isa, amx_available
    result, _ = invoke(["--version"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("version: ")
    assert lines[1].startswith("system_info: ") and f"ISA = {active_isa()}" in lines[1]
    assert f"AMX_INT8 = {int(amx_available())}" in lines[1]


# ---- failures -------------------------------------------------------------------------------------

def test_ctrl_c_exits_130_with_timings(model_file):
    h = Harness(script=tokens_of("abcdef"), interrupt_at=3)
    result, _ = invoke(["-m", model_file, "-p", "Q"], h)
    assert result.exit_code == 130
    assert result.stdout == "Qabc\n"
    err = result.stderr.splitlines()
    assert sum(line.startswith(PERF_LINES) for line in err) == 5
    assert err[-1] == "Interrupted by user"


def test_ctrl_c_with_json_still_prints_the_object(model_file):
    h = Harness(script=tokens_of("abcdef"), interrupt_at=2)
    result, _ = invoke(["-m", model_file, "-p", "Q", "--json"], h)
    assert result.exit_code == 130
    assert json.loads(result.stdout)["stop_reason"] == "interrupted"


def test_ctrl_c_while_loading(model_file):
    h = Harness()
    h.fail_with = KeyboardInterrupt()
    result, _ = invoke(["-m", model_file], h)
    assert result.exit_code == 130
    assert result.stderr.strip().endswith("Interrupted by user")


def test_load_error_is_one_line(model_file):
    h = Harness()
    h.fail_with = LoadFailed(f"{model_file}: not a GGUF file (bad magic)")
    result, _ = invoke(["-m", model_file], h)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"main: error: {model_file}: not a GGUF file (bad magic)"
    assert "Traceback" not in result.stderr


def test_missing_model_file(tmp_path):
    result, h = invoke(["-m", tmp_path / "absent.gguf"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"main: error: model file not found: {tmp_path / 'absent.gguf'}"
    assert h.load_calls == []


def test_missing_default_model_says_make_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PYGGUF_CACHE", str(tmp_path))
    result, h = invoke(["-p", "x"])
    assert result.exit_code == 1
    assert "`make model`" in result.stderr and "Traceback" not in result.stderr
    assert h.load_calls == []


def test_default_model_is_used_without_m(tmp_path, monkeypatch):
    monkeypatch.setenv("PYGGUF_CACHE", str(tmp_path))
    default = tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    default.parent.mkdir()
    default.write_bytes(b"GGUF")
    result, h = invoke(["-p", "x"])
    assert result.exit_code == 0
    assert h.load_calls[0][0] == default


def test_broken_pipe_stops_quietly(model_file, monkeypatch):
    import pygguf_cli.output as output

    def closed_pipe(text, stream=None):
        raise BrokenPipeError
    monkeypatch.setattr(output, "write_stdout", closed_pipe)
    h = Harness(script=tokens_of("abc"))
    result, _ = invoke(["-m", model_file, "-p", "Q"], h)
    assert result.exit_code == 141
    assert "Traceback" not in result.stderr and h.models[0].closed


def test_more_llama_cpp_sampling_flags(model_file):
    result, h = invoke(["-m", model_file, "--mirostat", "2", "--mirostat_lr", "0.2", "--mirostat-ent", "4",
                        "--dynatemp-range", "0.5", "--dynatemp_exp", "2", "--xtc-probability", "0.5",
                        "--xtc-threshold", "0.2", "--top-nsigma", "1.5", "--dry-multiplier", "0.8",
                        "--dry-base", "2", "--dry-allowed-length", "3", "--dry-penalty-last-n", "-1",
                        "--dry-sequence-breaker", "\n", "--dry-sequence-breaker", "*", "--sampling-seq", "kpt"])
    assert result.exit_code == 0, result.output
    assert h.samplers[0].params == {
        "mirostat": 2, "mirostat_lr": 0.2, "mirostat_ent": 4.0, "dynatemp_range": 0.5, "dynatemp_exponent": 2.0,
        "xtc_probability": 0.5, "xtc_threshold": 0.2, "top_n_sigma": 1.5, "dry_multiplier": 0.8, "dry_base": 2.0,
        "dry_allowed_length": 3, "dry_penalty_last_n": -1, "dry_sequence_breakers": ["\n", "*"],
        "samplers": "kpt"}


def test_samplers_wins_over_sampling_seq_and_none_clears_breakers(model_file):
    _, h = invoke(["-m", model_file, "--samplers", "top_k;temperature", "--sampling-seq", "kpt",
                   "--dry-sequence-breaker", "none"])
    assert h.samplers[0].params == {"samplers": "top_k;temperature", "dry_sequence_breakers": []}


def test_ignore_eos_also_reaches_the_sampler_and_it_gets_the_tokenizer(model_file):
    _, h = invoke(["-m", model_file, "--ignore-eos", "-n", "2"])
    sampler = h.samplers[0]
    assert sampler.params == {"ignore_eos": True}
    assert sampler.kwargs["detokenize"](259) == "Hello"
    assert sampler.kwargs["detokenize"](BOS) == ""
    assert sampler.kwargs["tokenize"]("Hello") == [259]
    assert sampler.kwargs["n_ctx_train"] == 64


def test_sampler_lines_on_stderr(model_file):
    result, _ = invoke(["-m", model_file])
    err = result.stderr.splitlines()
    i = err.index("sampler seed: 1234")
    assert err[i + 1:i + 4] == ["sampler params: ", "\tgreedy", "sampler chain: logits -> greedy"]


def test_bad_value_found_while_building_params_is_one_line(model_file, monkeypatch):
    import pygguf_cli.options as options

    def refuse(spec):
        raise options.click.BadParameter("no good", param_hint="'-l'")
    monkeypatch.setattr(options, "_parse_bias", refuse)
    result, h = invoke(["-m", model_file, "-l", "1+1"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: invalid value for -l: no good"
    assert h.load_calls == []


def test_n_minus_two_and_keep_minus_one_parse_as_numbers(model_file):
    h = Harness(script=tokens_of("a"), n_ctx=16)
    result, _ = invoke(["-m", model_file, "-p", "Hello", "-n", "-2", "--keep", "-1"], h)
    assert result.exit_code == 0, result.output
    assert "main: context full and n_predict == -2 => stopping" in result.stderr
    assert "n_predict = -2, n_keep = 2" in result.stderr


# ---- the interactive modes (pygguf_cli.interactive, wired into this command) ---------------------------

def test_piped_stdin_is_the_prompt_without_p(model_file):
    h = Harness(script=tokens_of("ab") + [EOS])
    result = CliRunner().invoke(cli, ["-m", str(model_file)], obj=h.runtime(), input="piped\\n\n")
    assert result.exit_code == 0, result.output
    assert h.models[0].calls[0] == [BOS] + tokens_of("piped\n")     # one newline stripped, escapes processed
    assert result.stdout == "piped\nab\n"


def test_interactive_first_reads_a_turn_then_ends_on_eof(model_file):
    h = Harness(script=tokens_of(" there") + [EOS])
    result = CliRunner().invoke(cli, ["-m", str(model_file), "-if", "-n", "20"], obj=h.runtime(), input="abc\n")
    assert result.exit_code == 0, result.output
    assert " there" in result.stdout
    assert h.models[0].calls[0][-3:] == tokens_of("abc")
    assert sum(line.startswith(PERF_LINES) for line in result.stderr.splitlines()) == 5


def test_interactive_flags_are_in_help():
    result, _ = invoke(["--help"])
    for flag in ("--interactive", "--interactive-first", "--instruct", "--conversation", "--in-prefix"):
        assert flag in result.stdout
