"""llama.cpp's command-line flags as test data for pygguf's argv tokeniser (tests/data/cli/llamacpp_flags.json).

    python bench/record_llama_flags.py --llama-cpp DIR     (or: make record-llama-flags)

DIR is vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist. Every `add_opt(common_arg(...))` of
DIR/common/arg.cpp is read out of the C++ source: its spellings, its negative spellings (the
`--no-...` of a boolean), its value hints (none, one or two values; a value parsed as an int is
marked so), and the examples (programs) it belongs to (LLAMA_EXAMPLE_COMMON when it names none).
A fresh clone has no llama.cpp source; the test of pygguf_cli.llama_flags walks this list.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "data" / "cli" / "llamacpp_flags.json"
OPENERS = {"(": ")", "{": "}", "[": "]"}
NAMED_EXAMPLE_SETS = {"mmproj_examples": ["MTMD", "SERVER", "CLI", "TTS"]}   # arg.cpp's one named set


def skip_literal(text: str, i: int) -> int:
    """Index just past the string/char literal or comment starting at i (i itself when none does)."""
    if text.startswith("//", i):
        return text.index("\n", i)
    if text.startswith("/*", i):
        return text.index("*/", i) + 2
    if text.startswith('R"(', i):
        return text.index(')"', i) + 2
    if text[i] in "\"'":
        quote, j = text[i], i + 1
        while text[j] != quote:
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return i


def split_call(text: str, start: int) -> tuple[list[str], int]:
    """The top-level, comma-separated arguments of the call whose '(' is at `start`, and the index
    just past its ')'."""
    args, depth, i, begin = [], 0, start, start + 1
    while True:
        j = skip_literal(text, i)
        if j != i:
            i = j
            continue
        c = text[i]
        if c in OPENERS:
            depth += 1
        elif c in ")}]":
            depth -= 1
            if depth == 0:
                args.append(text[begin:i].strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(text[begin:i].strip())
            begin = i + 1
        i += 1


def without_comments(arg: str) -> str:
    return re.sub(r"^\s*//.*$", "", arg, flags=re.MULTILINE).strip()


def strings_of(braced: str) -> list[str]:
    return re.findall(r'"([^"]*)"', braced)


def c_string(arg: str) -> str:
    """The value of adjacent string literals (a value hint); the expression itself when it is one."""
    if not arg.startswith('"'):
        return arg
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', arg))


def examples_of(chain: str) -> list[str]:
    found = re.search(r"\.set_examples\(\s*(\{[^}]*\}|\w+)\s*\)", chain)
    if not found:
        return ["COMMON"]
    body = found.group(1)
    if body in NAMED_EXAMPLE_SETS:
        return NAMED_EXAMPLE_SETS[body]
    return [name.removeprefix("LLAMA_EXAMPLE_") for name in re.findall(r"LLAMA_EXAMPLE_\w+", body)]


def record(arg_cpp: str) -> list[dict]:
    flags = []
    for match in re.finditer(r"add_opt\(common_arg\(", arg_cpp):
        args, end = split_call(arg_cpp, match.end() - 1)
        args = [without_comments(arg) for arg in args]
        _, add_opt_end = split_call(arg_cpp, match.start() + len("add_opt"))
        chain = arg_cpp[end:add_opt_end]
        lambda_at = next(i for i, a in enumerate(args) if a.startswith("["))
        before = args[:lambda_at]          # spellings, [negatives | hint [, hint2]], help
        entry = {"spellings": strings_of(before[0]), "negatives": [], "values": []}
        if len(before) == 3 and before[1].startswith("{"):
            entry["negatives"] = strings_of(before[1])
        elif len(before) >= 3:
            entry["values"] = [c_string(hint) for hint in before[1:-1]]
        handler = args[lambda_at]
        entry["int_value"] = bool(re.search(r"\(\s*common_params\s*&\s*\w*\s*,\s*int\s+\w+\s*\)", handler))
        entry["examples"] = examples_of(chain)
        excludes = re.search(r"\.set_excludes\(\s*\{([^}]*)\}", chain)
        entry["excludes"] = [n.removeprefix("LLAMA_EXAMPLE_") for n in re.findall(r"LLAMA_EXAMPLE_\w+",
                                                                                 excludes.group(1))] if excludes else []
        flags.append(entry)
    return flags


def one_flag_a_line(document: dict) -> str:
    """JSON with one flag per line, so a diff of two recordings reads flag by flag."""
    lines = ",\n  ".join(json.dumps(flag) for flag in document["flags"])
    return f'{{"source": {json.dumps(document["source"])},\n "flags": [\n  {lines}\n ]\n}}\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", required=True, type=Path, help="vendor/llama.cpp of the llama-cpp-python sdist")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    flags = record((args.llama_cpp / "common" / "arg.cpp").read_text(encoding="utf-8"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"source": "common/arg.cpp of vendor/llama.cpp in the llama-cpp-python 0.3.36 sdist",
                "flags": flags}
    args.out.write_text(one_flag_a_line(document), encoding="utf-8")
    print(f"{len(flags)} options, {sum(len(f['spellings']) + len(f['negatives']) for f in flags)} spellings "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
