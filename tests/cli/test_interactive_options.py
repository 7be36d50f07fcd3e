"""The Click option bundle of the interactive modes: llama.cpp spellings parse to InteractiveParams."""
from __future__ import annotations

import json

import click
from click.testing import CliRunner

from pygguf_cli.interactive_options import interactive_options, params_from_options, plan_from_options

# the keys the bundle declares
INTERACTIVE_KEYS = ("interactive", "interactive_first", "reverse_prompt", "in_prefix", "in_suffix",
                    "in_prefix_bos", "instruct", "chatml", "conversation", "system_prompt", "chat_template",
                    "chat_template_file", "verbose_prompt", "print_prompt", "multiline_input", "system_prompt_file",
                    "single_turn", "simple_io")

# A stand-in command: the main CLI declares -r, --verbose-prompt and --color itself (options.py).
reverse_prompt_option = click.option(
    "-r", "--reverse-prompt", "--reverse_prompt", "reverse_prompt", multiple=True, metavar="PROMPT",
    help="Hand control back to the user when the output ends with PROMPT (repeatable).")
verbose_prompt_option = click.option(
    "--verbose-prompt", "--verbose_prompt", "verbose_prompt", is_flag=True,
    help="Print the rendered prompt and each turn's tokens with their ids, and the template source.")

color_option = click.option("-co", "--color", "color", type=click.Choice(["on", "off", "auto"]),
                            default="auto", is_flag=False, flag_value="on", show_default=True,
                            help="Colourise output (only ever on a terminal).")


def pop_interactive_kwargs(kwargs: dict) -> dict:
    """Remove this bundle's values from a command's kwargs (so the rest can go elsewhere)."""
    return {key: kwargs.pop(key) for key in INTERACTIVE_KEYS if key in kwargs}


@click.command()
@click.option("-p", "--prompt", default=None)
@interactive_options
@reverse_prompt_option
@verbose_prompt_option
@color_option
def fake_main(prompt, color, **kwargs):
    options = pop_interactive_kwargs(kwargs)
    assert kwargs == {}
    params = params_from_options(options, prompt=prompt or "", prompt_given=prompt is not None)
    out = {k: v for k, v in vars(params).items()}
    out["color"] = color
    click.echo(json.dumps(out))


def parse(*args):
    result = CliRunner().invoke(fake_main, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_defaults():
    p = parse()
    assert p["conversation"] is None and not p["interactive"] and p["color"] == "auto"
    assert p["reverse_prompts"] == [] and p["chat_template"] is None


def test_llama_cpp_spellings():
    p = parse("-i", "-if", "-r", "User:", "--reverse_prompt", "Q:", "--in-prefix", " ", "--in_suffix", "A:",
              "--in-prefix-bos", "-ins", "-sys", "be nice", "--chat-template", "llama2", "--print-prompt",
              "-mli", "--color")
    assert p["interactive"] and p["interactive_first"] and p["in_prefix_bos"] and p["instruct"]
    assert p["reverse_prompts"] == ["User:", "Q:"]
    assert p["in_prefix"] == " " and p["in_suffix"] == "A:"
    assert p["system_prompt"] == "be nice" and p["chat_template"] == "llama2"
    assert p["verbose_prompt"] and p["multiline_input"] and p["color"] == "on"


def test_conversation_flags():
    assert parse("-cnv")["conversation"] is True
    assert parse("-no-cnv")["conversation"] is False
    assert parse("--conversation")["conversation"] is True
    assert parse("-cml")["chatml"] is True
    assert parse("--color", "off")["color"] == "off"


def test_chat_template_file(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("{{ messages[0].content }}")
    assert parse("--chat-template-file", str(path))["chat_template"] == "{{ messages[0].content }}"


def test_plan_from_options_prompt_disables_auto_conversation():
    meta = {"tokenizer.chat_template": "{{ x }}"}
    assert plan_from_options({}, meta, stdin_is_tty=True).conversation
    assert not plan_from_options({}, meta, stdin_is_tty=True, prompt="hi", prompt_given=True).interactive


def test_values_from_the_commands_own_options():
    params = params_from_options({"print_prompt": True}, reverse_prompts=("User:",), n_predict=7)
    assert params.verbose_prompt and params.reverse_prompts == ("User:",) and params.n_predict == 7


def test_bundle_alone_leaves_r_and_verbose_prompt_to_the_command():
    @click.command()
    @click.option("-r", "--reverse-prompt", "reverse_prompts", multiple=True)
    @click.option("--verbose-prompt", "verbose_prompt", is_flag=True)
    @interactive_options
    def cmd(reverse_prompts, verbose_prompt, **kwargs):
        options = pop_interactive_kwargs(kwargs)
        params = params_from_options(options, reverse_prompts=reverse_prompts, verbose_prompt=verbose_prompt)
        click.echo(f"{params.reverse_prompts} {params.verbose_prompt} {params.instruct}")

    result = CliRunner().invoke(cmd, ["-r", "X:", "--verbose-prompt", "-ins"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "('X:',) True True"


def test_escapes_in_prefix_suffix_system_prompt():
    p = parse("--in-prefix", "\\n[INST] ", "--in-suffix", " [/INST]\\n", "-sys", "a\\tb", "-r", "User:\\n")
    assert p["in_prefix"] == "\n[INST] " and p["in_suffix"] == " [/INST]\n"
    assert p["system_prompt"] == "a\tb" and p["reverse_prompts"] == ["User:\n"]
    raw = params_from_options({"in_prefix": "\\n"}, escape=False)
    assert raw.in_prefix == "\\n"


def test_unset_display_prompt_means_on():
    assert params_from_options({}, display_prompt=None).display_prompt
    assert not params_from_options({}, display_prompt=False).display_prompt
