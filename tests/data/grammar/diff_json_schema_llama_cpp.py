"""Differential check of pygguf/grammar/json_schema.py against llama.cpp's own converter.

    python tests/data/grammar/diff_json_schema_llama_cpp.py SDIST [COUNT] [SEED]

SDIST is a source archive holding llama.cpp (the llama-cpp-python sdist, as `make vocab` fetches
it). The script compiles llama.cpp's converter (common/json-schema-to-grammar.cpp and what it
needs, from the archive, in a temporary folder, with g++) behind a small driver that reads one
schema per line; then it draws COUNT random schemas (types, bounds, lengths, formats, patterns
with supported and unsupported syntax, properties with colliding names, additionalProperties,
tuples, anyOf / oneOf / allOf, enum / const with awkward values, $ref and cycles, and some invalid
ones) and compares the two grammars, or the two error messages, exactly. It prints the first
differences and a count. Not a pytest test: it needs the archive and a C++ compiler.

Expected differences (pygguf's on purpose): a multi-byte character before a quantifier in a
pattern (llama.cpp splits its bytes), and an allOf over a $ref cycle (llama.cpp overflows its stack;
reported as a crash).
"""
from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pygguf.grammar.json_schema import SchemaError, schema_to_grammar

DRIVER = r"""
#include "json-schema-to-grammar.h"
#include "common.h"
#include <cstdarg>
#include <iostream>
#include <sstream>
// the three string helpers of common.cpp, which would bring the whole library
std::string string_join(const std::vector<std::string> & v, const std::string & sep) {
    std::ostringstream r; for (size_t i = 0; i < v.size(); ++i) { if (i) r << sep; r << v[i]; } return r.str(); }
std::vector<std::string> string_split(const std::string & s, const std::string & d) {
    std::vector<std::string> parts; size_t start = 0, end = s.find(d);
    while (end != std::string::npos) { parts.push_back(s.substr(start, end - start)); start = end + d.size(); end = s.find(d, start); }
    parts.push_back(s.substr(start)); return parts; }
std::string string_repeat(const std::string & s, size_t n) { std::string r; while (n--) r += s; return r; }
extern "C" void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "%s:%d\n", file, line); abort(); }
int main() {
    std::string line;
    while (std::getline(std::cin, line)) {
        try {
            std::cout << json_schema_to_grammar(common_json::parse(line), true);
        } catch (const std::exception & e) {
            std::string m = e.what();
            for (auto & c : m) if (c == '\n') c = ' ';
            std::cout << "ERROR " << m << "\n";
        }
        std::cout << "\x1e\n" << std::flush;
    }
}
"""
SOURCES = ["json-schema-to-grammar.cpp", "json-schema.cpp", "json.cpp", "trie.cpp", "unicode.cpp"]


def build_oracle(sdist: Path, work: Path) -> Path:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name and any(
            part in m.name for part in ("/common/", "/include/", "/ggml/include/", "/vendor/nlohmann/"))
            and "/tools/" not in m.name]
        tar.extractall(work, members=members, filter="data")
    root = next(work.rglob("vendor/llama.cpp"))
    (work / "driver.cpp").write_text(DRIVER)
    oracle = work / "oracle"
    subprocess.run(["g++", "-O1", "-std=c++17", f"-I{root}/common", f"-I{root}/include", f"-I{root}/ggml/include",
                    f"-I{root}/vendor", str(work / "driver.cpp"), *[str(root / "common" / s) for s in SOURCES],
                    "-o", str(oracle)], check=True)
    return oracle


def run_oracle(oracle: Path, schemas: list) -> list[str]:
    """llama.cpp's answer for each schema; "CRASH" where it died (and the rest is run again)."""
    outs: list[str] = []
    while len(outs) < len(schemas):
        rest = schemas[len(outs):]
        lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in rest) + "\n"
        res = subprocess.run([str(oracle)], input=lines.encode(), capture_output=True, check=False)
        got = res.stdout.decode("utf-8", "surrogateescape").split("\x1e\n")[:-1]
        outs += got
        if len(outs) < len(schemas):
            outs.append("CRASH")
    return outs


NAMES = ["", "a", "aa", "ab", "ac", "b", "root", "number", "string", "item", "additional", "value", "é", "a b", "*",
         "x-kv", "char", "date", "tuple-0", "alternative-0", "ref", "1", "and", "also", 'q"t', "n\nl"]
R = random.Random(0)


def rjson(d=0):
    c = R.randrange(9 if d < 2 else 6)
    if c == 0: return None
    if c == 1: return R.choice([True, False])
    if c == 2: return R.choice([0, 1, -7, 42, 10**15, 2**53, -2**40, 123456789012345678])
    if c == 3: return R.choice([0.0, -0.0, 0.1, 1.5, 1e15, 1e16, 1e-5, 1e-4, 123.456, 1e100, -2.5e-7, 3.0, 1e14, 12345678.9])
    if c in (4, 5): return R.choice(["", "foo", 'a"b', "back\\slash", "tab\t", "nl\n", "cr\r", "\x01\x1f", "é€😀", "\x7f", "]-["])
    if c in (6, 7): return [rjson(d + 1) for _ in range(R.randrange(3))]
    return {R.choice(NAMES): rjson(d + 1) for _ in range(R.randrange(3))}

PAT_TOKENS = ["a", "b", "abc", "é", "0", "x", '"', "\\\\", "\\.", "\\-", "\\d", "\\w", "\\s", "\\x41", "\\u00e9", "\\n", "\\t", "\\\"",
              "\\[", "\\]", "\\{", "\\(", "[a-z]", "[^0-9]", "[\\]x]", "[a\\-z]", "[\\d]", "[é-ê]", ".", "|", "*", "+", "?",
              "{2}", "{1,3}", "{,2}", "{2,}", "{x}", "{}", "{1,2,3}", "(", ")", "(?:", "(?=", "(?<n>", "]", "}", "^", "$", " ", "-", ",", ":"]

def rpattern():
    body = "".join(R.choice(PAT_TOKENS) for _ in range(R.randrange(1, 8)))
    if R.random() < 0.85:
        return "^" + body + "$"
    return R.choice([body, "^" + body, body + "$", "", "^$", "^"])

def rint():
    return R.choice([0, 1, 3, 9, 10, 15, 25, 99, 100, 101, 300, 999, 1000, 12345, 2**31, 10**16, -1, -5, -10, -123, -1000, -99999,
                     0.5, -0.5, 2.7, -3.2, 1e3, R.randrange(-100000, 100000), R.randrange(-30, 30), 10**17 + 3])

def rschema(d=0, defs=None):
    c = R.randrange(22 if d < 3 else 12)
    s = {}
    if R.random() < 0.1: s["description"] = "d"
    if c == 0: s["type"] = "integer"; [s.__setitem__(k, rint()) for k in R.sample(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"], R.randrange(3))]
    elif c == 1: s["type"] = R.choice(["number", "boolean", "null", "kaboom" if R.random() < 0.1 else "null", 123 if R.random() < 0.05 else "number", ""])
    elif c in (2, 3):
        if R.random() < 0.8: s["type"] = "string"
        for k in R.sample(["minLength", "maxLength", "format", "pattern"], R.randrange(4)):
            s[k] = {"minLength": R.choice([0, 1, 3, -1 if R.random() < 0.05 else 2]), "maxLength": R.choice([0, 1, 4, 2.0 if R.random() < 0.05 else 5]),
                    "format": R.choice(["date", "time", "date-time", "uuid", "uuid4", "uuid6", "email", ""]), "pattern": rpattern()}[k]
    elif c == 4: s["const"] = rjson()
    elif c == 5: s["enum"] = [rjson() for _ in range(R.randrange(0 if R.random() < 0.05 else 1, 4))]
    elif c == 6: pass  # any
    elif c == 7 and defs: s["$ref"] = "#/$defs/" + R.choice(list(defs) + ["missing"] * (R.random() < 0.05))
    elif c == 8: s["type"] = R.choice(["integer", "string", "null", "boolean"]); s["enum"] = [rjson() for _ in range(2)]
    elif c in (12, 13, 14):  # object
        if R.random() < 0.8: s["type"] = "object"
        if R.random() < 0.8:
            s["properties"] = {R.choice(NAMES): rschema(d + 1, defs) for _ in range(R.randrange(4))}
            names = list(s["properties"])
            s["required"] = R.sample(names, R.randrange(len(names) + 1)) + (["zz"] if R.random() < 0.1 else [])
        if R.random() < 0.6: s["additionalProperties"] = R.choice([True, False, {}, rschema(d + 1, defs), 1])
    elif c in (15, 16):  # array
        if R.random() < 0.7: s["type"] = "array"
        k = R.choice(["items", "prefixItems", "both", None])
        if k in ("items", "both"): s["items"] = R.choice([rschema(d + 1, defs), [rschema(d + 1, defs) for _ in range(R.randrange(3))], {}])
        if k in ("prefixItems", "both"): s["prefixItems"] = R.choice([rschema(d + 1, defs), [rschema(d + 1, defs) for _ in range(2)]])
        for key in R.sample(["minItems", "maxItems"], R.randrange(3)): s[key] = R.choice([0, 1, 2, 3, 5])
    elif c in (17, 18):
        s[R.choice(["anyOf", "oneOf"])] = [rschema(d + 1, defs) for _ in range(R.randrange(1, 4))]
        if R.random() < 0.3: s["type"] = "object"
    elif c == 19:
        s["allOf"] = [R.choice([rschema(d + 1, defs), {"anyOf": [rschema(d + 1, defs) for _ in range(2)]},
                                {"$ref": "#/$defs/" + R.choice(list(defs))} if defs else {}]) for _ in range(R.randrange(1, 4))]
        s["type"] = R.choice(["object", "string", None]) or "object"
        if R.random() < 0.5: del s["type"]
    elif c == 20: s["type"] = R.sample(["string", "null", "integer", "array", "object", "number"], R.randrange(1, 3)); s["minLength"] = 1; s["items"] = {"type": "boolean"}
    elif c == 21: s = R.choice([True, False, {"$ref": "http://x/y"}, {"$ref": "#/definitions/x/0"}, {"$ref": "#/$defs"}, {"items": True}])
    return s

def rtop():
    defs = {}
    names = R.sample(["foo", "bar", "node", "a-b", "x y", "root"], R.randrange(4))
    top = rschema(0, names)
    if names:
        defs = {n: rschema(1, names) for n in names}
        if not isinstance(top, dict): top = {"anyOf": [{"type": "null"}]}
        top["$defs"] = defs
        if R.random() < 0.3:
            top["definitions"] = {"x": [rschema(2)]}
    return top


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    count = int(argv[1]) if len(argv) > 1 else 2000
    R.seed(int(argv[2]) if len(argv) > 2 else 0)
    logging.disable(logging.CRITICAL)
    schemas = [rtop() for _ in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        outs = run_oracle(build_oracle(Path(argv[0]), Path(tmp)), schemas)
    differ = crashes = errors = 0
    for schema, want in zip(schemas, outs):
        try:
            got = schema_to_grammar(json.loads(json.dumps(schema, ensure_ascii=False)))
        except SchemaError as e:
            got = "ERROR " + str(e).replace("; ", " ") + "\n"
        errors += want.startswith("ERROR")
        if want == "CRASH":
            crashes += 1
            print("llama.cpp crashed on", json.dumps(schema, ensure_ascii=False)[:200])
        elif got != want:
            differ += 1
            if differ <= 5:
                print("=== schema:", json.dumps(schema, ensure_ascii=False))
                print("--- llama.cpp:\n" + want + "--- pygguf:\n" + got)
    print(f"{count} schemas ({errors} llama.cpp errors, {crashes} llama.cpp crashes): {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
