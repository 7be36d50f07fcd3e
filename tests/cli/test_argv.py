"""pygguf_cli.argv on a small table: words not clusters, values to their flag, the three answers."""
from __future__ import annotations

import pytest

from pygguf_cli.argv import ON_OFF_AUTO, Answer, ArgvError, Flag, flag_table, tokenise

TABLE = flag_table([
    Flag(("-n", "--n-predict"), values=1),
    Flag(("-nkvo",), Answer.IGNORED, "no GPU"),
    Flag(("-hf",), Answer.REFUSED, "no downloads", values=1),
    Flag(("--range",), values=2),
    Flag(("-co", "--color"), optional=ON_OFF_AUTO, implied="on"),
    Flag(("-lv", "--verbosity"), optional_int=True, bare=Flag(("-lv",), Answer.IGNORED, "low vram")),
    Flag(("--in-prefix",), values=1),
])
LONG = {"-n": "--n-predict", "--n-predict": "--n-predict", "-co": "--color", "--color": "--color",
        "-lv": "--verbosity", "--verbosity": "--verbosity"}


def read(*argv):
    return tokenise(list(argv), TABLE, LONG)


def test_single_dash_words_are_flags_not_clusters():
    parsed = read("-nkvo", "-n", "3")
    assert parsed.click_args == ["--n-predict=3"] and parsed.notices == ["ignored: -nkvo (no GPU)"]


def test_a_value_that_looks_like_a_flag_goes_to_its_flag():
    assert read("-n", "-nkvo").click_args == ["--n-predict=-nkvo"]
    assert read("--in-prefix", "--color").click_args == ["--in-prefix=--color"]


def test_two_values_and_inline_values():
    assert read("--range", "1", "-2").click_args == ["--range=1", "--range=-2"]
    assert read("--range=1", "2").click_args == ["--range=1", "--range=2"]
    assert read("--n_predict=5").click_args == ["--n-predict=5"]
    assert read("--in-prefix=").click_args == ["--in-prefix="]


def test_optional_value_taken_only_when_accepted():
    assert read("--color", "-n", "1").click_args == ["--color=on", "--n-predict=1"]
    assert read("-co", "off").click_args == ["--color=off"]
    assert read("--color=auto").click_args == ["--color=auto"]
    assert read("-lv", "4").click_args == ["--verbosity=4"]
    assert read("-lv", "-n", "1").notices == ["ignored: -lv (low vram)"]


def test_typed_spellings_are_remembered_for_messages():
    assert read("-n", "1", "-co").typed == {"--n-predict": "-n", "--color": "-co"}


@pytest.mark.parametrize("argv, message", [
    (["-hf", "x"], "unsupported: -hf (no downloads)"),
    (["-hf"], "error: expected value for argument: -hf"),
    (["--range", "1"], "error: expected value for argument: --range"),
    (["-nk"], "error: invalid argument: -nk"),
    (["stray"], "error: invalid argument: stray"),
    (["-"], "error: invalid argument: -"),
    (["--"], "error: invalid argument: --"),
    (["--color=purple"], ("error: invalid value for --color: 'purple' (expected on, enabled, true, 1, off, "
                          "disabled, false, 0, auto, -1)")),
    (["--verbosity=x"], "error: invalid value for --verbosity: 'x' (expected an integer)"),
    (["-nkvo=1"], "error: invalid argument: -nkvo=1"),
])
def test_errors(argv, message):
    with pytest.raises(ArgvError) as e:
        read(*argv)
    assert str(e.value) == message


def test_a_spelling_twice_in_the_table_is_a_bug():
    with pytest.raises(ValueError, match="-x is in the flag table twice"):
        flag_table([Flag(("-x",)), Flag(("--y", "-x"))])
