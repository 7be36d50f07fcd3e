"""llama.cpp's GBNF parser as test data for pygguf.grammar (tests/data/grammar/, its README.md says
more), and a differential fuzzer of the two parsers.

    python bench/record_gbnf_parses.py --llama-cpp DIR [--llama-lib DIR] [--fuzz N] [--seed S]

DIR is vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist (`make record-gbnf-parses` extracts it).

1. parser_cases.json: the cases of DIR/tests/test-grammar-parser.cpp (each grammar with the symbol
   ids and rule elements it states, and the grammars it expects to fail) and the failing-grammar
   cases of DIR/tests/test-grammar-integration.cpp (plus the grammars of its test_grammar calls,
   which must parse), read out of the C++ source.
2. With --llama-lib (the compare venv's llama_cpp/lib): bench/llama_cpp_grammar_oracle.cpp is
   compiled against DIR's headers and that libllama.so, and llama.cpp's own parse is recorded into
   llama_cpp_parses.json: for hand-written grammars (below) and the grammars of 1., the symbol ids,
   rules and print_grammar output; for hand-written bad grammars, llama.cpp's error message and the
   byte offset it names; for DIR/grammars/*.gbnf (not committed: MIT files that `make vocab`
   extracts), their sha256 and the sha256 of llama.cpp's rules and print output.
3. --fuzz N: N random grammars, mutations and byte strings (tests/grammar_fuzz.py) through both
   parsers; prints every input on which they disagree (rules, ids, error reason or position).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import grammar_fuzz

from pygguf.grammar import GrammarError, parse, to_text

DATA = REPO / "tests" / "data" / "grammar"
SOURCE = "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp (MIT licence, Copyright (c) 2023-2024 The ggml authors)"
TYPES = {"END": 0, "ALT": 1, "RULE_REF": 2, "CHAR": 3, "CHAR_NOT": 4, "CHAR_RNG_UPPER": 5, "CHAR_ALT": 6,
         "CHAR_ANY": 7, "TOKEN": 8, "TOKEN_NOT": 9}

# Grammars written here to reach every construct; llama.cpp's parse of each is recorded.
VALID = [
    'root ::= "a"',
    'root ::= [a-z] [^0-9] [abc] [a-cx-z_] [-a] [a-] [\\-] [\\]] [\\[] . "\\"" [^"\\\\]',
    'root ::= "\\x41\\u00e9\\U0001F600\\t\\r\\n\\\\\\"\\[\\]\\-"',
    'root ::= "é日😀" [é-😀] [^日]',
    'root ::= x-y n1\nx-y ::= "x"\nn1 ::= "1"',
    'root ::= ( "a" | "b" )* ("c" ("d" | "e")+)? ("f"){2} ("g"){1,3} ("h"){2,} ("i"){0,2}',
    'root ::= "a"{0} "b"{0,0} "c"{ 3 } "d"{ 1 , 2 } "e"{0,}',
    'root ::= "a"{2,3000} "b"{0,2000} "c"{2000}',
    'root ::= "a"+? ("c"?)*',
    'root ::= (\n  "a" # comment\n  | "b"\n)\n# trailing comment',
    'root ::= "a" |\n  "b" |\n  # note\n  "c"',
    'root ::= "a"\r\nb ::= "b"\r\nc ::= b\rd ::= c',
    'root ::= <[0]> !<[7]> <[4294967295]> (<[1]> | !<[2]>)*',
    'root ::= a\na ::= "x"\na ::= "y"',
    'root ::= | "a" |',
    'root ::= "" "a"',
    'root ::= ...',
    'root ::= [a.] . "b" .',
    'foo ::= "a"\nroot ::= foo bar\nbar ::= foo*',
    'root ::= ((((("a")))))',
    'root ::= ([^x]*){0,99}',
    'root ::= a b\na ::= | "a"\nb ::= a "b"',
    'root ::= e root-2\ne ::= | "e"\nroot-2 ::= "x"',
    "  \n# leading comment\n\nroot ::= \"a\"   \n\n\n",
    'root ::= "a"\n',
    'root::="a"',
]

# Bad grammars: every message llama.cpp's parser and llama_grammar_init_impl give.
INVALID = [
    'root ::= "a"\n::= "b"',
    'root ::= "a"\n| "b"',
    'root := "a"',
    'root ::= "a" )',
    'root ::= ("a"',
    'root ::= ("a"\n',
    'root ::= "abc',
    'root ::= [abc',
    'root ::= [a-',
    'root ::= "\\',
    'root ::= "\\q"',
    'root ::= "\\x4"',
    'root ::= "\\u12G4"',
    'root ::= "\\U0001F60"',
    'root ::= *',
    'root ::= "a" | +"b"',
    'root ::= "" *',
    'root ::= "a"{,}',
    'root ::= "a"{2;}',
    'root ::= "a"{2,3',
    'root ::= "a"{2001}',
    'root ::= "a"{2001,}',
    'root ::= ("a"{0,50}){50}',
    'root ::= "a"{99999999999999999999999}',
    'root ::= "a"{1,99999999999999999999999}',
    'root ::= <[x]>',
    'root ::= <[12>',
    'root ::= <[12]',
    'root ::= !x',
    'root ::= <[4294967296]>',
    'root ::= <[99999999999999999999999]>',
    'root ::= <think>',
    'root ::= x',
    'root ::= foo*',
    'root ::= a\na ::= b\nb ::= c',
    'foo ::= "a"',
    '# nothing\n',
    '',
    'root ::= "a" | root "a"',
    'root ::= a\na ::= b "x"\nb ::= | a',
    'root ::= ("a" | root)',
    'root ::= "a"* root',
    'root ::= "b"*+',
    'root ::= [a-z]+ x\nx ::= x',
]


# ---- reading the C++ tests ------------------------------------------------------------------------

RAW = r'R"""\((.*?)\)"""'


def char_literal(text: str) -> int:
    """'a', '\\n', ... -> code point."""
    body = text[1:-1]
    escapes = {"\\n": 10, "\\t": 9, "\\r": 13, "\\0": 0, "\\\\": 92, "\\'": 39, '\\"': 34}
    return escapes[body] if body.startswith("\\") else ord(body)


def braced(text: str, pos: int) -> tuple[str, int]:
    """The balanced { ... } block starting at text[pos] (char literals skipped), and the end."""
    assert text[pos] == "{", text[pos:pos + 40]
    depth, i = 0, pos
    while True:
        c = text[i]
        if c == "'":
            i = text.index("'", i + 2 if text[i + 1] == "\\" else i + 1) + 1
            continue
        depth += (c == "{") - (c == "}")
        i += 1
        if depth == 0:
            return text[pos + 1:i - 1], i


def parser_cases(cpp: str) -> dict:
    """verify_parsing(grammar, {symbol ids}, {elements}) and verify_failure(grammar) calls."""
    failures = re.findall(r"verify_failure\(" + RAW + r"\);", cpp, re.DOTALL)
    parsing = []
    for m in re.finditer(r"\n\s*verify_parsing\(" + RAW + r",\s*", cpp, re.DOTALL):
        symbols, end = braced(cpp, m.end())
        elements, _ = braced(cpp, re.compile(r",\s*").match(cpp, end).end())
        symbol_ids = {name: int(i) for name, i in re.findall(r'\{"([^"]+)",\s*(\d+)\}', symbols)}
        flat = []
        for kind, value in re.findall(r"\{LLAMA_GRETYPE_(\w+),\s*(?:/\*.*?\*/\s*)?('(?:\\.|[^'\\])'|\d+)\}",
                                      elements):
            flat.append([TYPES[kind], char_literal(value) if value.startswith("'") else int(value)])
        assert len(flat) == elements.count("LLAMA_GRETYPE_"), elements
        assert len(symbol_ids) == symbols.count("{"), symbols
        parsing.append({"grammar": m.group(1), "symbol_ids": symbol_ids, "elements": flat})
    return {"parsing": parsing, "failures": failures}


def function_body(cpp: str, name: str) -> str:
    start = cpp.index(f"static void {name}()")
    end = cpp.index("\nstatic void ", start + 1)
    return cpp[start:end]


def integration_cases(cpp: str) -> dict:
    """The grammar-only failures (the functions named here; what each expects is transcribed from
    them), and every test_grammar() grammar, which must parse."""
    raw = {name: re.findall(RAW, function_body(cpp, name), re.DOTALL)
           for name in ("test_failure_missing_root", "test_failure_missing_reference",
                        "test_failure_left_recursion", "test_failure_missing_root_symbol",
                        "test_custom_root_symbol_check")}
    failures = [
        {"test": "test_failure_missing_root", "grammar": raw["test_failure_missing_root"][0], "root": "root",
         "expect": "parses, but has no root rule"},
        {"test": "test_failure_missing_reference", "grammar": raw["test_failure_missing_reference"][0],
         "root": "root", "expect": "parse fails: undefined rule"},
        *({"test": "test_failure_left_recursion", "grammar": g, "root": "root", "expect": "build fails: left recursion"}
          for g in raw["test_failure_left_recursion"]),
        {"test": "test_failure_missing_root_symbol", "grammar": raw["test_failure_missing_root_symbol"][0],
         "root": "nonexistent", "expect": "build fails: no such root"},
        {"test": "test_custom_root_symbol_check", "grammar": raw["test_custom_root_symbol_check"][0],
         "root": "root", "expect": "build fails: no such root"},
    ]
    successes = [{"test": "test_custom_root_symbol_check", "grammar": raw["test_custom_root_symbol_check"][0],
                  "root": "foobar"}]
    grammars = [{"test": desc, "grammar": g} for desc, g in
                re.findall(r'test_grammar\(\s*"((?:[^"\\]|\\.)*)",\s*(?://[^\n]*\s*)*' + RAW, cpp, re.DOTALL)]
    return {"failures": failures, "successes": successes, "grammars": grammars}


# ---- llama.cpp's parser through the oracle --------------------------------------------------------

class Oracle:
    """bench/llama_cpp_grammar_oracle.cpp, built into a temporary folder."""

    def __init__(self, llama_cpp: Path, llama_lib: Path, workdir: Path):
        self.exe = workdir / "oracle"
        self.input = workdir / "input.gbnf"
        include = llama_cpp / "include"
        subprocess.run(["g++", "-O1", "-std=c++17", f"-I{include}", f"-I{llama_cpp / 'ggml' / 'include'}",
                        f"-I{llama_cpp / 'src'}", str(HERE / "llama_cpp_grammar_oracle.cpp"),
                        f"-L{llama_lib}", "-lllama", f"-Wl,-rpath,{llama_lib}", "-o", str(self.exe)], check=True)

    def run(self, data: bytes, root: str = "root", timeout: float = 10) -> dict:
        """llama.cpp's verdict: its JSON, plus "error" (parse's message), "init_error" (init's log
        line) and "offset" (the byte offset a message's "at <rest>" names), or {"hang": True} if it
        did not finish (it runs out of memory on some inputs: 1 GB of address space at most)."""
        self.input.write_bytes(data)

        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            proc = subprocess.run([str(self.exe), str(self.input), root], check=False, capture_output=True,
                                  timeout=timeout, preexec_fn=limit)
        except subprocess.TimeoutExpired:
            return {"hang": True}
        if proc.returncode != 0 or not proc.stdout.endswith(b"}\n"):
            return {"hang": True, "returncode": proc.returncode}
        out = json.loads(proc.stdout.decode("latin-1"))
        out["print"] = out["print"].encode("latin-1").decode("utf-8", "replace")
        src = data.split(b"\0", 1)[0]
        err = proc.stderr
        prefix, tail = b"parse: error parsing grammar: ", b"\n\n" + src + b"\n"
        if not out["parsed"] and err.startswith(prefix) and err.endswith(tail):
            what = err[len(prefix):len(err) - len(tail)]
            reason, sep, rest = what.partition(b" at ")
            out["error"] = reason.decode("utf-8", "replace")
            if out["error"] == "std::bad_alloc":
                return {"hang": True, "error": "std::bad_alloc"}
            if sep and src.endswith(rest):
                out["offset"] = len(src) - len(rest)
            elif sep:
                out["error"] = what.decode("utf-8", "replace")
        elif not out["init"] and err:
            out["init_error"] = err.decode("utf-8", "replace").strip().splitlines()[-1]
        return out


def dump(obj: dict) -> str:
    """JSON with one line per list item (a grammar, an error, a case): diffable, not sprawling."""
    parts = []
    for key, value in obj.items():
        if isinstance(value, list):
            items = ",\n  ".join(json.dumps(v, ensure_ascii=False) for v in value)
            parts.append(f"{json.dumps(key)}: [\n  {items}\n ]")
        elif isinstance(value, dict) and value and all(isinstance(v, (list, dict)) for v in value.values()):
            parts.append(f"{json.dumps(key)}: " + dump(value).replace("\n", "\n "))
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n " + ",\n ".join(parts) + "\n}"


def canonical(symbols: dict, rules) -> str:
    return json.dumps({"symbols": dict(sorted(symbols.items())), "rules": [list(map(list, r)) for r in rules]},
                      separators=(",", ":"))


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def record(oracle: Oracle, cases: dict, grammars_dir: Path) -> dict:
    valid = [{"grammar": g, "root": "root"} for g in VALID]
    valid += [{"grammar": c["grammar"], "root": "root", "test": c["test"]} for c in cases["integration"]["grammars"]]
    valid += [{"grammar": c["grammar"], "root": c["root"], "test": c["test"]} for c in cases["integration"]["successes"]]
    valid += [{"grammar": c["grammar"], "root": "root", "test": "test-grammar-parser"}
              for c in cases["parser"]["parsing"]]
    grammars = []
    for case in valid:
        out = oracle.run(case["grammar"].encode(), case["root"])
        if not (out.get("parsed") and out.get("init")):
            raise SystemExit(f"llama.cpp refuses a grammar recorded as valid: {case['grammar']!r}: {out}")
        if sum(map(len, out["rules"])) > 400:   # big expansions: their hashes only
            grammars.append({**case, "rules_sha256": sha256(canonical(out["symbols"], out["rules"])),
                             "print_sha256": sha256(out["print"])})
        else:
            grammars.append({**case, "symbol_ids": out["symbols"], "rules": out["rules"], "print": out["print"]})
    errors = []
    for grammar in INVALID:
        out = oracle.run(grammar.encode())
        if out.get("hang") or (out["parsed"] and out["init"]):
            raise SystemExit(f"llama.cpp does not refuse {grammar!r}: {out}")
        stage = "parse" if not out["parsed"] else "init"
        errors.append({"grammar": grammar, "stage": stage,
                       "message": out.get("error") if stage == "parse" else out.get("init_error", "failed to parse grammar"),
                       "offset": out.get("offset")})
    files = {}
    for path in sorted(grammars_dir.glob("*.gbnf")):
        data = path.read_bytes()
        out = oracle.run(data)
        files[path.name] = {"sha256": sha256(data), "parsed": bool(out["parsed"] and out["init"]),
                            "n_rules": len(out["rules"]), "n_elements": sum(map(len, out["rules"])),
                            "rules_sha256": sha256(canonical(out["symbols"], out["rules"])),
                            "print_sha256": sha256(out["print"])}
    return {"source": SOURCE, "recorded_with": "bench/record_gbnf_parses.py, bench/llama_cpp_grammar_oracle.cpp",
            "grammars": grammars, "errors": errors, "files": files}


# ---- differential fuzzing -------------------------------------------------------------------------

def compare(data: bytes, llama: dict) -> str | None:
    """None if pygguf agrees with llama.cpp on this input, else what differs."""
    try:
        ours = parse(data)
    except GrammarError as e:
        ours = e
    except Exception as e:      # noqa: BLE001 -- exactly what the fuzzer looks for
        return f"pygguf raised {type(e).__name__}: {e}"
    if llama.get("hang"):
        return None if isinstance(ours, GrammarError) else "llama.cpp did not finish but pygguf parsed it"
    if llama["parsed"] and llama["init"]:
        if isinstance(ours, GrammarError) and "through rules that match the empty string" in str(ours):
            # llama.cpp builds it, but its matcher runs out of memory once it expands that rule
            # (the test's test_indirectly_nullable_left_recursion): pygguf refuses it up front
            return None
        if isinstance(ours, GrammarError):
            return f"llama.cpp parses it, pygguf: {ours}"
        if ours.symbol_ids != llama["symbols"] or [list(map(list, r)) for r in ours.rules] != llama["rules"]:
            return "rules or symbol ids differ"
        if to_text(ours) != llama["print"]:
            return f"to_text differs:\n{to_text(ours)}\nllama.cpp:\n{llama['print']}"
        return None
    if not isinstance(ours, GrammarError):
        return f"llama.cpp refuses it ({llama.get('error') or llama.get('init_error')}), pygguf parses it"
    if not llama["parsed"]:
        expected = llama.get("error", "")
        if not (ours.reason or "").startswith(expected):
            return f"reason {ours.reason!r}, llama.cpp {expected!r}"
        if llama.get("offset") is not None and ours.offset != llama["offset"]:
            return f"offset {ours.offset}, llama.cpp {llama['offset']} ({expected})"
    elif "left recursion" in llama.get("init_error", ""):
        index = llama["init_error"].rsplit(" ", 1)[-1]
        if f"at index {index} " not in str(ours):
            return f"pygguf: {ours}; llama.cpp: {llama['init_error']}"
    return None


def fuzz(oracle: Oracle, n: int, seed: int, corpus: list[bytes]) -> int:
    start, bad, kinds = time.time(), 0, {"ok": 0, "error": 0, "hang": 0, "loops": 0}
    for i, data in enumerate(grammar_fuzz.cases(seed, n, corpus)):
        llama = oracle.run(data, timeout=3)
        kind = "hang" if llama.get("hang") else "ok" if llama["parsed"] and llama["init"] else "error"
        problem = compare(data, llama)
        if problem:
            bad += 1
            print(f"case {i}: {data!r}\n    {problem}")
        elif kind == "ok":
            try:
                parse(data)
            except GrammarError:
                kind = "loops"
        kinds[kind] += 1
    print(f"fuzz: {n} inputs (llama.cpp: {kinds['ok']} valid, {kinds['error']} refused, {kinds['hang']} "
          f"did not finish, {kinds['loops']} built but left-recursive through empty-matching rules, "
          f"refused by pygguf), {bad} disagreements, {time.time() - start:.0f} s")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", type=Path, required=True, help="vendor/llama.cpp of the 0.3.36 sdist")
    ap.add_argument("--llama-lib", type=Path, help="the compare venv's site-packages/llama_cpp/lib")
    ap.add_argument("--grammars", type=Path, help="the *.gbnf folder (default: DIR/grammars)")
    ap.add_argument("--fuzz", type=int, default=0, help="inputs to fuzz both parsers with")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="record nothing (with --fuzz)")
    args = ap.parse_args()
    grammars_dir = args.grammars or args.llama_cpp / "grammars"

    cases = {"parser": parser_cases((args.llama_cpp / "tests" / "test-grammar-parser.cpp").read_text()),
             "integration": integration_cases((args.llama_cpp / "tests" / "test-grammar-integration.cpp").read_text())}
    DATA.mkdir(parents=True, exist_ok=True)
    if not args.no_write:
        out = {"source": SOURCE + ": tests/test-grammar-parser.cpp and tests/test-grammar-integration.cpp",
               "written_by": "bench/record_gbnf_parses.py", **cases}
        (DATA / "parser_cases.json").write_text(dump(out) + "\n")
        print(f"parser_cases.json: {len(cases['parser']['parsing'])} parsing cases, "
              f"{len(cases['parser']['failures'])} failures (test-grammar-parser.cpp); "
              f"{len(cases['integration']['failures'])} failures, {len(cases['integration']['grammars'])} grammars "
              "(test-grammar-integration.cpp)")
    if not args.llama_lib:
        return
    with tempfile.TemporaryDirectory() as tmp:
        oracle = Oracle(args.llama_cpp, args.llama_lib, Path(tmp))
        if not args.no_write:
            recorded = record(oracle, cases, grammars_dir)
            (DATA / "llama_cpp_parses.json").write_text(dump(recorded) + "\n")
            print(f"llama_cpp_parses.json: {len(recorded['grammars'])} grammars, {len(recorded['errors'])} errors, "
                  f"{len(recorded['files'])} .gbnf files")
        if args.fuzz:
            corpus = [p.read_bytes() for p in sorted(grammars_dir.glob("*.gbnf"))]
            corpus += [c["grammar"].encode() for c in cases["parser"]["parsing"]] + [g.encode() for g in VALID]
            if fuzz(oracle, args.fuzz, args.seed, corpus):
                sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
