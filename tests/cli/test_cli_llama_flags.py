"""llama.cpp command lines through the `pygguf` command (CliRunner, fake model): single-dash words
are flags, values go to their flag, ignored flags say why, refused ones exit 1; and the flags
implemented with the tokeniser (--color, --log-*, -v, -lv, -sysf, -sp, -st, --jinja)."""
from __future__ import annotations

import pytest
from cli_fakes import BOS, EOS, tokens_of
from click.testing import CliRunner
from test_cli import Harness, invoke

from pygguf_cli.main import cli

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF")
    return path


class ChatHarness(Harness):
    """Models with a chat template, so conversation mode works."""

    def load(self, path, **kwargs):
        model = super().load(path, **kwargs)
        model.metadata = {"tokenizer.chat_template": TEMPLATE}
        return model


def run(args, harness=None, stdin=None):
    harness = harness or Harness()
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=harness.runtime(), input=stdin)
    return result, harness


# ---- the command lines -----------------------------------------------------------------

def test_hf_is_refused_not_help():
    result, h = invoke(["-hf", "user/repo"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == "unsupported: -hf (pygguf never downloads: give a local GGUF file with -m)"
    assert h.load_calls == []


def test_fa_on_is_ignored_and_n_keeps_its_value(model_file):
    result, _ = invoke(["-m", model_file, "-fa", "on", "-n", "3", "-p", "Hi"], Harness(script=tokens_of("abcdef")))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hiabc\n"                                     # n_predict 3
    assert result.stderr.count("ignored: -fa (") == 1


def test_cache_type_k_word(model_file):
    result, h = invoke(["-m", model_file, "-ctk", "q8_0", "-p", "Hi"])
    assert result.exit_code == 0, result.output
    assert h.load_calls[0][1]["type_k"] == "q8_0"


@pytest.mark.parametrize("flag, value", [("-np", "4"), ("-sm", "none"), ("-md", "x.gguf"), ("-lm", "mmap")])
def test_flags_with_a_value_are_ignored_with_their_value(model_file, flag, value):
    result, _ = invoke(["-m", model_file, flag, value, "-p", "hi"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("hi")
    assert [line for line in result.stderr.splitlines() if line.startswith("ignored:")] == \
        [line for line in result.stderr.splitlines() if line.startswith(f"ignored: {flag} (")]


def test_nkvo_st_sp_are_not_swallowed_by_later_n_and_s(model_file):
    result, h = invoke(["-m", model_file, "-nkvo", "-st", "-sp", "-n", "2", "-s", "5", "-p", "Hi"])
    assert result.exit_code == 0, result.output
    assert "ignored: -nkvo (" in result.stderr
    assert h.samplers[0].params == {"seed": 5}


@pytest.mark.parametrize("value", ["32", "auto", "all"])
def test_gpu_layers_take_todays_values_and_warn(model_file, value):
    result, _ = invoke(["-m", model_file, "-ngl", value, "-p", "x"])
    assert result.exit_code == 0, result.output
    assert "--gpu-layers option will be ignored" in result.stderr


def test_empty_values_reach_their_flag(model_file):
    result, h = invoke(["-m", model_file, "-p", "", "--in-prefix", "", "-n", "1"])
    assert result.exit_code == 0, result.output
    assert h.models[0].calls[0] == [BOS]                   # the prompt is empty
    assert "n_predict = 1" in result.stderr


def test_value_starting_with_a_dash_goes_to_its_flag(model_file):
    result, _ = invoke(["-m", model_file, "-p", "-x", "-n", "-1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("-x there")
    assert "n_predict = -1" in result.stderr


def test_underscore_spellings_still_work(model_file):
    result, h = invoke(["-m", model_file, "--repeat_penalty", "1.1", "--ctx_size", "32", "-p", "x"])
    assert result.exit_code == 0, result.output
    assert h.samplers[0].params == {"repeat_penalty": 1.1} and h.load_calls[0][1]["n_ctx"] == 32


def test_ignored_flag_given_twice_has_one_notice(model_file):
    result, _ = invoke(["-m", model_file, "--numa", "--numa", "distribute", "-p", "x"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("ignored: --numa") == 1


@pytest.mark.parametrize("args, message", [
    (["-c", "abc"], "error: invalid value for -c: 'abc' is not a valid integer"),
    (["--ctx_size", "abc"], "error: invalid value for --ctx_size: 'abc' is not a valid integer"),
    (["--temp=warm"], "error: invalid value for --temp: 'warm' is not a valid float"),
    (["-n"], "error: expected value for argument: -n"),
    (["--ignore-eos=1"], "error: --ignore-eos takes no value"),
    (["--lora", "a.gguf"], "unsupported: --lora (no LoRA adapters yet)"),
    (["-fab"], "error: invalid argument: -fab"),
])
def test_errors_name_the_flag_as_typed(args, message):
    result, h = invoke(args)
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert h.load_calls == []


def test_help_and_usage_still_print_help():
    for flag in ("-h", "--help", "--usage"):
        result, _ = invoke([flag])
        assert result.exit_code == 0 and "--color [on|off|auto]" in result.stdout
        assert "always rendered with Jinja" in result.stdout


# ---- --color ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--color"], ["-co"], ["--color", "on"], ["--color", "auto"], ["--color", "off"],
                                  ["--color=off"]])
def test_color_values_and_the_bare_switch(model_file, args):
    result, _ = invoke(["-m", model_file, *args, "-p", "Hi"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi there\n"                  # not a terminal: never colour codes


def test_bad_color_value_is_not_taken_and_is_then_an_argument(model_file):
    result, _ = invoke(["-m", model_file, "--color", "purple"])
    assert result.exit_code == 1 and result.stderr.strip() == "error: invalid argument: purple"


# ---- logging ------------------------------------------------------------------------------------

def test_log_disable_drops_log_lines_but_not_text(model_file):
    result, _ = invoke(["-m", model_file, "-p", "Hi", "--log-disable", "-fa", "on"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi there\n" and result.stderr == ""


def test_log_disable_keeps_the_error_line(tmp_path):
    result, _ = invoke(["-m", tmp_path / "absent.gguf", "--log-disable"])
    assert result.exit_code == 1 and result.stderr.strip().startswith("main: error: model file not found")


def test_log_file_gets_the_log_lines_too(model_file, tmp_path):
    log = tmp_path / "run.log"
    result, _ = invoke(["-m", model_file, "-p", "Hi", "--log-file", log, "--numa"])
    assert result.exit_code == 0, result.output
    written = log.read_text()
    assert "sampler seed: 1234" in written and "ignored: --numa (" in written
    assert written.splitlines() == result.stderr.splitlines()
    assert "there" not in written                           # the text stays on stdout only


def test_log_file_with_log_disable_gets_them_alone(model_file, tmp_path):
    log = tmp_path / "run.log"
    result, _ = invoke(["-m", model_file, "-p", "Hi", "--log-file", log, "--log-disable"])
    assert result.exit_code == 0 and result.stderr == ""
    assert "sampler seed: 1234" in log.read_text()


@pytest.mark.parametrize("args", [["-v"], ["--verbose"], ["--log-verbose"], ["-lv", "4"], ["--verbosity", "5"]])
def test_verbose_prints_the_prompt_tokens(model_file, args):
    result, _ = invoke(["-m", model_file, "-p", "Hi", *args])
    assert result.exit_code == 0, result.output
    assert "main: number of tokens in prompt = 3" in result.stderr


def test_verbose_turns_on_pygguf_debug_messages_for_the_run_only(model_file, monkeypatch):
    import logging
    seen = []
    monkeypatch.setattr(logging.getLogger("pygguf"), "level", logging.NOTSET)
    original = Harness.load

    def load(self, path, **kwargs):
        seen.append(logging.getLogger("pygguf").getEffectiveLevel())
        return original(self, path, **kwargs)
    monkeypatch.setattr(Harness, "load", load)
    invoke(["-m", model_file, "-p", "Hi", "-v"])
    invoke(["-m", model_file, "-p", "Hi"])
    assert seen[0] == logging.DEBUG and seen[1] != logging.DEBUG


def test_low_verbosity_drops_log_lines_and_default_changes_nothing(model_file):
    quiet, _ = invoke(["-m", model_file, "-p", "Hi", "-lv", "1"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == "Hi there\n"
    normal, _ = invoke(["-m", model_file, "-p", "Hi", "-lv", "3"])
    assert "sampler seed" in normal.stderr and "number of tokens in prompt" not in normal.stderr


def test_lv_alone_is_2023s_low_vram(model_file):
    result, _ = invoke(["-m", model_file, "-lv", "-p", "Hi"])
    assert result.exit_code == 0, result.output
    assert "ignored: -lv (2023's --low-vram: pygguf runs on the CPU only)" in result.stderr


# ---- -sp, -sysf, -st, --jinja -----------------------------------------------------------------------

def test_special_prints_special_tokens(model_file):
    script = tokens_of("a") + [BOS] + tokens_of("b") + [EOS]
    plain, _ = invoke(["-m", model_file, "-p", "Q"], Harness(script=script))
    special, _ = invoke(["-m", model_file, "-p", "Q", "-sp"], Harness(script=script))
    assert plain.stdout == "Qab\n"
    assert special.stdout.startswith("<s>Qa<s>b")


def test_system_prompt_file_is_the_system_turn(model_file, tmp_path):
    system = tmp_path / "system.txt"
    system.write_text("Be brief.\n")
    h = ChatHarness(script=tokens_of("ok") + [EOS])
    result, _ = run(["-m", model_file, "-cnv", "-sysf", system], h, stdin="hi\n")
    assert result.exit_code == 0, result.output
    fed = h.models[0].tokenizer.decode(h.models[0].cache, special=True)
    assert "<|system|>Be brief.\n<|user|>hi\n<|assistant|>" in fed       # one trailing newline dropped


def test_system_prompt_file_unreadable(model_file, tmp_path):
    result, h = invoke(["-m", model_file, "--system-prompt-file", tmp_path / "none.txt"])
    assert result.exit_code == 1 and h.load_calls == []
    assert result.stderr.strip().startswith("error: invalid value for --system-prompt-file: cannot read ")


def test_single_turn_answers_once_then_exits(model_file):
    h = ChatHarness(script=tokens_of("ok") + [EOS])
    result, _ = run(["-m", model_file, "-cnv", "-st"], h, stdin="first\nsecond\n")
    assert result.exit_code == 0, result.output
    fed = h.models[0].tokenizer.decode(h.models[0].cache, special=True)
    assert "first" in fed and "second" not in fed
    assert "EOF by user" not in result.stdout
    cut, _ = run(["-m", model_file, "-cnv", "-st", "-n", "1"], ChatHarness(script=tokens_of("ok") + [EOS]),
                 stdin="first\n")
    assert cut.exit_code == 0 and cut.stdout.endswith("o\n")    # cut by -n: still ends the line
    many = ChatHarness(script=tokens_of("ok") + [EOS])
    result, _ = run(["-m", model_file, "-cnv"], many, stdin="first\n")
    assert "EOF by user" in result.stdout                   # without -st the session waits for more


@pytest.mark.parametrize("flag", ["--jinja", "--no-jinja"])
def test_jinja_is_accepted(model_file, flag):
    result, _ = invoke(["-m", model_file, flag, "-p", "Hi"])
    assert result.exit_code == 0 and result.stdout == "Hi there\n"
    assert "ignored" not in result.stderr
