"""llama.cpp's way of reading a command line, before Click sees it.

llama.cpp looks every argument up whole in its table of flags: `-fa`, `-ctk`, `-np` are words, never
clusters of one-letter flags as Click's parser would read them, and a flag that takes a value takes
the next argument whatever it looks like (`-n -1`, `-p "-x"`). `tokenise` does the same with a table
of `Flag`s (pygguf_cli.llama_flags) and answers each flag one of three ways:
- implemented: handed on to Click (which still does --help, types and defaults), rewritten to the
  spelling Click declares, a value attached as `--long=value` so Click cannot mistake it for a flag;
- ignored: dropped with its value(s), and one notice saying why;
- refused: `unsupported: FLAG (reason)`, exit status 1.
A flag in no table is `error: invalid argument: FLAG`, as in llama.cpp.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

# llama.cpp's spellings of on / off / auto (common_arg_utils::is_truthy, is_falsey, is_autoy)
ON_OFF_AUTO = ("on", "enabled", "true", "1", "off", "disabled", "false", "0", "auto", "-1")
_INTEGER = re.compile(r"[+-]?\d+\Z")


class Answer(Enum):
    IMPLEMENTED = "implemented"
    IGNORED = "ignored"
    REFUSED = "refused"


@dataclass(frozen=True)
class Flag:
    """One option of llama.cpp (or of pygguf): its spellings and the values that follow it."""
    spellings: tuple[str, ...]
    answer: Answer = Answer.IMPLEMENTED
    reason: str = ""                    # why it is ignored or refused (shown to the user)
    values: int = 0                     # values that always follow: 0, 1 or 2
    optional: tuple[str, ...] = ()      # a value taken only when it is one of these (`--color on`)
    optional_int: bool = False          # ... or when it is an integer (`-lv 4`)
    implied: str | None = None          # the value Click gets when the optional one is absent
    bare: Flag | None = None            # what the flag is when its optional value is absent (-lv alone)
    click: str | None = None            # Click's spelling when it differs (`--usage` -> `--help`)

    @property
    def takes_optional(self) -> bool:
        return bool(self.optional) or self.optional_int

    def accepts_optional(self, arg: str) -> bool:
        return arg in self.optional or (self.optional_int and bool(_INTEGER.match(arg)))


class ArgvError(Exception):
    """A command line that cannot run: one line for stderr, exit status 1."""


@dataclass
class Parsed:
    click_args: list[str] = field(default_factory=list)    # what Click parses
    notices: list[str] = field(default_factory=list)       # one line per ignored flag
    typed: dict[str, str] = field(default_factory=dict)    # Click spelling -> what the user typed


def normalise(name: str) -> str:
    """llama.cpp reads `_` as `-` in long names (`--repeat_penalty`)."""
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


def flag_table(flags: Iterable[Flag]) -> dict[str, Flag]:
    """Spelling -> Flag; a spelling listed twice is a bug in the table."""
    table: dict[str, Flag] = {}
    for flag in flags:
        for spelling in flag.spellings:
            if spelling in table:
                raise ValueError(f"{spelling} is in the flag table twice")
            table[spelling] = flag
    return table


def tokenise(argv: list[str], table: Mapping[str, Flag], click_long: Mapping[str, str]) -> Parsed:
    """Read argv with `table`; `click_long` maps a spelling to the `--long` spelling of the Click
    option it stands for (where the value goes)."""
    parsed = Parsed()
    i = 0
    while i < len(argv):
        name, inline = _split_inline(argv[i])
        flag = table.get(normalise(name)) if name.startswith("-") and name != "-" else None
        if flag is None:
            raise ArgvError(f"error: invalid argument: {name}")
        values, i = _take_values(flag, name, inline, argv, i + 1)
        if flag.takes_optional and not values and flag.bare is not None:
            flag = flag.bare
        if flag.answer is Answer.REFUSED:
            raise ArgvError(f"unsupported: {name} ({flag.reason})")
        if flag.answer is Answer.IGNORED:
            notice = f"ignored: {name} ({flag.reason})"
            if notice not in parsed.notices:
                parsed.notices.append(notice)
            continue
        _hand_to_click(parsed, flag, name, values, click_long)
    return parsed


def _split_inline(arg: str) -> tuple[str, str | None]:
    """`--temp=0.7` -> ('--temp', '0.7'); only long names carry a value after '=' (as in Click)."""
    if arg.startswith("--") and "=" in arg:
        name, value = arg.split("=", 1)
        return name, value
    return arg, None


def _take_values(flag: Flag, name: str, inline: str | None, argv: list[str], i: int) -> tuple[list[str], int]:
    """The flag's values and the index of the next argument. A value that always follows is taken
    whatever it looks like (`-n -1`); an optional one only when the flag accepts it (`--color on`)."""
    if inline is not None:
        return _inline_values(flag, name, inline, argv, i)
    if flag.takes_optional:
        taken = i < len(argv) and flag.accepts_optional(argv[i])
        return (argv[i:i + 1], i + 1) if taken else ([], i)
    if i + flag.values > len(argv):
        raise ArgvError(f"error: expected value for argument: {name}")
    return argv[i:i + flag.values], i + flag.values


def _inline_values(flag: Flag, name: str, inline: str, argv: list[str], i: int) -> tuple[list[str], int]:
    """`--long=value` (and, for a flag of two values, the next argument)."""
    if flag.takes_optional:
        if not flag.accepts_optional(inline):
            accepted = ", ".join(flag.optional) if flag.optional else "an integer"
            raise ArgvError(f"error: invalid value for {name}: {inline!r} (expected {accepted})")
        return [inline], i
    if not flag.values:
        raise ArgvError(f"error: {name} takes no value")
    more = flag.values - 1
    if i + more > len(argv):
        raise ArgvError(f"error: expected value for argument: {name}")
    return [inline] + argv[i:i + more], i + more


def _hand_to_click(parsed: Parsed, flag: Flag, name: str, values: list[str], click_long: Mapping[str, str]) -> None:
    spelling = flag.click or normalise(name)
    if not values and flag.implied is not None:
        values = [flag.implied]
    if values:
        spelling = click_long.get(spelling, spelling)
        parsed.click_args += [f"{spelling}={value}" for value in values]
    else:
        parsed.click_args.append(spelling)
    parsed.typed[spelling] = name


def with_click_options(flags: list[Flag], options: Iterable[tuple[list[str], bool]]) -> list[Flag]:
    """`flags` plus, as implemented, every Click option spelling they do not name (pygguf's own,
    such as --json). `options`: (spellings, takes_value) per Click option."""
    known = {spelling for flag in flags for spelling in flag.spellings}
    extra = []
    for spellings, takes_value in options:
        new = tuple(dict.fromkeys(s for s in map(normalise, spellings) if s not in known))
        if new:
            extra.append(Flag(new, values=int(takes_value)))
            known.update(new)
    return flags + extra
