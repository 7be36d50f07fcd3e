"""Re-create json_schema_cases.json from llama.cpp's tests/test-json-schema-to-grammar.cpp.

    python tests/data/grammar/extract_json_schema_cases.py SOURCE [OUT]

SOURCE is the .cpp file, or a source archive (.tar.gz, e.g. the llama-cpp-python sdist) holding
it under vendor/llama.cpp/tests/ or tests/. Every `test({STATUS, NAME, SCHEMA, GRAMMAR})` call in it
becomes one case: the schema parsed as JSON (key order kept), the expected grammar as llama.cpp's
test compares it (its trim(): outer whitespace and each line's indentation removed).
"""
from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

CPP_NAME = "test-json-schema-to-grammar.cpp"
HERE = Path(__file__).resolve().parent


def read_source(source: Path) -> tuple[str, str]:
    """(the .cpp text, where it came from)."""
    if source.suffix == ".cpp":
        return source.read_text(encoding="utf-8"), source.name
    with tarfile.open(source) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith("/tests/" + CPP_NAME)]
        if not members:
            raise SystemExit(f"{source}: no tests/{CPP_NAME} inside")
        member = min(members, key=lambda m: len(m.name))
        return tar.extractfile(member).read().decode("utf-8"), f"{source.name}:{member.name}"


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}


class Lexer:
    def __init__(self, text: str, pos: int):
        self.text, self.pos = text, pos

    def skip(self) -> None:
        while True:
            m = re.compile(r"\s+|//[^\n]*|/\*.*?\*/", re.DOTALL).match(self.text, self.pos)
            if not m or not m.group():
                return
            self.pos = m.end()

    def expect(self, token: str) -> None:
        self.skip()
        if not self.text.startswith(token, self.pos):
            raise SyntaxError(f"expected {token!r} at {self.text[self.pos:self.pos + 40]!r}")
        self.pos += len(token)

    def identifier(self) -> str:
        self.skip()
        m = re.compile(r"[A-Za-z_]\w*").match(self.text, self.pos)
        if not m:
            raise SyntaxError(f"expected an identifier at {self.text[self.pos:self.pos + 40]!r}")
        self.pos = m.end()
        return m.group()

    def string(self) -> str:
        """One C++ string literal, or several adjacent ones (concatenated)."""
        parts = []
        while True:
            self.skip()
            t, p = self.text, self.pos
            if t.startswith('R"', p):
                open_paren = t.index("(", p)
                delim = t[p + 2:open_paren]
                close = t.index(")" + delim + '"', open_paren)
                parts.append(t[open_paren + 1:close])
                self.pos = close + len(delim) + 2
            elif t.startswith('"', p):
                out, p = [], p + 1
                while t[p] != '"':
                    if t[p] == "\\":
                        out.append(_SIMPLE_ESCAPES[t[p + 1]])
                        p += 2
                    else:
                        out.append(t[p])
                        p += 1
                parts.append("".join(out))
                self.pos = p + 1
            elif parts:
                return "".join(parts)
            else:
                raise SyntaxError(f"expected a string at {t[p:p + 40]!r}")


def llama_trim(text: str) -> str:
    """llama.cpp's trim() in that test: outer whitespace off, then each line's leading blanks."""
    return re.sub(r"(^|\n)[ \t]+", r"\1", text.strip(" \n\r\t"))


def extract(text: str) -> list[dict]:
    cases = []
    for m in re.finditer(r"\btest\(\{", text):
        lex = Lexer(text, m.end())
        status = lex.identifier()
        if status not in ("SUCCESS", "FAILURE"):
            raise SyntaxError(f"unknown status {status}")
        lex.expect(",")
        name = lex.string()
        lex.expect(",")
        schema_text = lex.string()
        lex.expect(",")
        grammar = lex.string()
        lex.skip()
        if text.startswith(",", lex.pos):
            lex.expect(",")
        lex.expect("}")
        lex.expect(")")
        cases.append({
            "name": name,
            "status": status.lower(),
            "schema": json.loads(schema_text),
            "grammar": llama_trim(grammar) if status == "SUCCESS" else "",
        })
    return cases


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    text, origin = read_source(Path(argv[0]))
    out = Path(argv[1]) if len(argv) == 2 else HERE / "json_schema_cases.json"
    cases = extract(text)
    doc = {
        "source": f"{origin}: every test({{...}}) case of test_all, extracted by "
                  "tests/data/grammar/extract_json_schema_cases.py",
        "compare": "llama.cpp's trim() of the converter's output equals `grammar`",
        "cases": cases,
    }
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(cases)} cases -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
