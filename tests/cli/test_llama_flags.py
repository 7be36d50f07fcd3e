"""Every flag of llama.cpp gets exactly one answer, and no value is ever taken by the wrong flag.

The flags: tests/data/cli/llamacpp_flags.json (every add_opt of today's common/arg.cpp, recorded by
bench/record_llama_flags.py) and tests/data/cli/llama2023_main_flags.json (2023 main's usage). Each
spelling is put on a command line with its value(s) and a following flag, and read with the `pygguf`
command's table: implemented -> handed to Click with its value, ignored -> one notice and nothing
for Click, refused -> `unsupported: FLAG (reason)`."""
from __future__ import annotations

import json

import pytest
from testpaths import TESTS

from pygguf_cli.argv import Answer, ArgvError, normalise, tokenise
from pygguf_cli.llama_flags import LLAMA_FLAGS, click_options, command_table
from pygguf_cli.main import cli

DATA = TESTS / "data" / "cli"
ARG_CPP = json.loads((DATA / "llamacpp_flags.json").read_text())["flags"]
MAIN_2023 = json.loads((DATA / "llama2023_main_flags.json").read_text())["flags"]
TABLE, CLICK_LONG = command_table(cli)

# implemented, but declared by another part of issue #17 (none left: the prompt cache and
# --mmap/--no-mmap/--mlock are declared in the command's options)
DECLARED_ELSEWHERE: set[str] = set()


def underscored(spelling: str) -> list[str]:
    """llama.cpp also reads `_` for `-` in long names."""
    twin = "--" + spelling[2:].replace("-", "_")
    return [twin] if spelling.startswith("--") and twin != spelling else []


def cases(flags, negatives: bool):
    for entry in flags:
        values = len(entry["values"]) if isinstance(entry["values"], list) else entry["values"]
        for spelling in entry["spellings"]:
            for typed in [spelling] + underscored(spelling):
                yield pytest.param(typed, values, id=typed)
        for spelling in entry.get("negatives", []) if negatives else ():
            yield pytest.param(spelling, 0, id=spelling)


def follower(spelling: str) -> tuple[list[str], str]:
    """A flag to put after the one tested, and what Click must get for it."""
    if TABLE[normalise(spelling)] is TABLE["-s"]:
        return ["-n", "3"], "--n-predict=3"
    return ["-s", "7"], "--seed=7"


def answer_of(spelling: str, argv_values: list[str]):
    flag = TABLE[normalise(spelling)]
    if flag.takes_optional and not argv_values and flag.bare is not None:
        flag = flag.bare
    return flag


def check_one_answer(spelling: str, values: list[str]) -> None:
    after, after_click = follower(spelling)
    flag = answer_of(spelling, values)
    assert flag.answer in (Answer.IMPLEMENTED, Answer.IGNORED, Answer.REFUSED)
    if flag.answer is Answer.REFUSED:
        with pytest.raises(ArgvError) as e:
            tokenise([spelling, *values, *after], TABLE, CLICK_LONG)
        assert str(e.value) == f"unsupported: {spelling} ({flag.reason})" and flag.reason
        return
    parsed = tokenise([spelling, *values, *after], TABLE, CLICK_LONG)
    assert parsed.click_args[-1] == after_click                 # the next flag kept its own value
    if flag.answer is Answer.IGNORED:
        assert parsed.notices == [f"ignored: {spelling} ({flag.reason})"] and flag.reason
        assert parsed.click_args == [after_click]               # nothing of it reaches Click
        return
    assert parsed.notices == []
    mine = parsed.click_args[:-1]
    if values:
        long = CLICK_LONG.get(normalise(spelling), normalise(spelling))
        assert mine == [f"{long}={value}" for value in values]   # its value(s), attached to it
    else:
        assert len(mine) == 1 and "=" not in mine[0] or flag.implied is not None


def sample_values(spelling: str, n: int) -> list[str]:
    """Values starting with '-' where any value goes (they must still go to the flag); one the flag
    accepts where the value is optional."""
    flag = TABLE[normalise(spelling)]
    if flag.takes_optional:
        return [flag.optional[0] if flag.optional else "4"]
    return ["-7"] * n


@pytest.mark.parametrize("spelling, n_values", list(cases(ARG_CPP, negatives=True)))
def test_every_arg_cpp_flag_gets_one_answer(spelling, n_values):
    known = normalise(spelling) in TABLE
    assert known, f"{spelling} (llama.cpp's arg.cpp) is not in pygguf_cli/llama_flags.py"
    check_one_answer(spelling, sample_values(spelling, n_values))
    if TABLE[normalise(spelling)].takes_optional:
        check_one_answer(spelling, [])                          # the value is optional: bare, then a flag


@pytest.mark.parametrize("spelling, n_values", list(cases(MAIN_2023, negatives=False)))
def test_every_2023_main_flag_gets_one_answer(spelling, n_values):
    known = normalise(spelling) in TABLE
    assert known, f"{spelling} (2023 main) is not in pygguf_cli/llama_flags.py"
    flag = TABLE[normalise(spelling)]
    if flag.takes_optional:
        check_one_answer(spelling, [])                          # the 2023 switch
    elif flag.answer is not Answer.REFUSED:                     # (a refused flag's values don't matter)
        check_one_answer(spelling, ["-7"] * n_values)
        assert flag.values == n_values, f"{spelling}: 2023 main took {n_values} value(s), the table {flag.values}"


def test_the_table_knows_no_flag_the_lists_do_not():
    """Every spelling of the table is llama.cpp's (today's or 2023's), or a flag the pygguf command
    declares itself; and where arg.cpp gives a flag values, the table agrees on how many."""
    recorded: dict[str, int] = {}
    for entry in ARG_CPP:
        for spelling in entry["spellings"]:
            recorded[spelling] = len(entry["values"])
        for spelling in entry["negatives"]:
            recorded[spelling] = 0
    of_2023 = {s for entry in MAIN_2023 for s in entry["spellings"]}
    declared = {normalise(s) for spellings, _ in click_options(cli) for s in spellings}
    for flag in LLAMA_FLAGS:
        for spelling in flag.spellings:
            known = spelling in recorded or spelling in of_2023 or spelling in declared | DECLARED_ELSEWHERE
            assert known, f"{spelling} is in the table but neither llama.cpp's nor pygguf's"
            if spelling in recorded and not flag.takes_optional:
                assert flag.values == recorded[spelling], f"{spelling}: arg.cpp {recorded[spelling]} values, table {flag.values}"
            if spelling in recorded and flag.takes_optional:
                assert recorded[spelling] == 1, spelling        # a value today, optional for 2023's switch


def test_implemented_flags_are_declared_in_click_with_their_arity():
    options = {normalise(s): takes_value for spellings, takes_value in click_options(cli) for s in spellings}
    for flag in LLAMA_FLAGS:
        if flag.answer is not Answer.IMPLEMENTED:
            continue
        for spelling in flag.spellings:
            name = flag.click or spelling
            if name == "--help":
                continue                                        # Click's own help option
            if name not in options:
                assert name in DECLARED_ELSEWHERE, f"{spelling} is implemented but Click does not declare it"
                continue
            takes_value = bool(flag.values) or flag.takes_optional
            assert options[name] == takes_value, f"{spelling}: Click and the table disagree on its value"


def test_ignored_and_refused_flags_are_not_declared_in_click():
    """Click must not see them (it would read them differently from the table)."""
    declared = {normalise(s) for spellings, _ in click_options(cli) for s in spellings}
    for flag in LLAMA_FLAGS:
        if flag.answer is not Answer.IMPLEMENTED:
            assert not declared & set(flag.spellings), flag.spellings


def test_counts_of_the_three_answers():
    """(the numbers the README quotes)"""
    counts = {answer: sum(flag.answer is answer for flag in LLAMA_FLAGS) for answer in Answer}
    assert sum(counts.values()) == len(LLAMA_FLAGS)
    assert all(counts.values())
