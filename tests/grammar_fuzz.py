"""Random GBNF inputs for fuzzing the grammar parser: random grammars built from every construct,
mutations of real grammars, and raw random bytes. Shared by tests/grammar/test_gbnf_fuzz.py (pygguf
alone: only GrammarError may come out) and bench/record_gbnf_parses.py --fuzz (pygguf against
llama.cpp's own parser)."""
from __future__ import annotations

import random

# the bytes GBNF gives a meaning to, weighted above the rest when mutating
SYNTAX = b'()[]{}"\\|*+?.-^<>!#:=,_ \t\r\n0123456789abxuUnrtAZ'
NAMES = ("root", "a", "b", "expr", "term", "ws", "x-y", "n1")


def random_char(rng: random.Random, in_class: bool) -> str:
    """One character of a literal or class: plain, escaped, or multi-byte."""
    r = rng.random()
    if r < 0.5:
        return rng.choice("abcxyz019 _=+-*/")
    if r < 0.7:
        return rng.choice(["\\n", "\\t", "\\r", "\\\\", '\\"', "\\[", "\\]", "\\-"])
    if r < 0.8:
        return rng.choice(["\\x41", "\\u00e9", "\\U0001F600", "\\xFF", "\\u0000"])
    if r < 0.9:
        return rng.choice(["é", "日", "😀", "ß"])
    return rng.choice(["^", ".", "(", ")", "|", "#", "<", "!"]) if in_class else rng.choice(["'", "[", "]", "(", "-"])


def random_item(rng: random.Random, depth: int, valid: bool) -> str:
    """One item; with `valid`, never one llama.cpp refuses by itself."""
    r = rng.random()
    if r < 0.25:
        return '"' + "".join(random_char(rng, False) for _ in range(rng.randint(1 if valid else 0, 4))) + '"'
    if r < 0.45:
        body = []
        for _ in range(rng.randint(1, 4)):
            body.append(random_char(rng, True))
            if rng.random() < 0.3:
                body.append("-" + random_char(rng, True))
        return "[" + ("^" if rng.random() < 0.3 else "") + "".join(body) + "]"
    if r < 0.65:
        return rng.choice(NAMES[:4]) if valid or rng.random() < 0.9 else rng.choice(NAMES)
    if r < 0.8 and depth < 4:
        sep = rng.choice([" | ", "\n  | ", " |\n "])
        inner = sep.join(random_sequence(rng, depth + 1, valid) for _ in range(rng.randint(1, 3)))
        return "(" + rng.choice(["", " ", "\n "]) + inner + rng.choice(["", " ", "\n"]) + ")"
    if r < 0.9:
        return "."
    if valid:
        return rng.choice(["<[0]>", "!<[7]>", "<[4294967295]>"])
    return rng.choice(["<[0]>", "!<[7]>", "<[4294967296]>", "<think>", "!<x>", "<[1", "!x"])


def random_repetition(rng: random.Random, valid: bool) -> str:
    r = rng.random()
    if r < 0.6:
        return ""
    if r < 0.8:
        return rng.choice("*+?")
    m = rng.randint(0, 5)
    n = m + rng.randint(0, 4) if valid or rng.random() < 0.8 else rng.randint(0, 5)   # sometimes n < m
    if rng.random() < 0.05:
        m, n = rng.choice([(2000, 2001), (0, 5000), (1999, 2000)] if valid else [(2001, 3000), (3, 2)])
    forms = [f"{{{m}}}", f"{{{m},}}", f"{{{m},{n}}}", f"{{ {m} , {n} }}"]
    return rng.choice(forms if valid else forms + ["{,}", f"{{{m},{n}", f"{{{m};}}"])


def random_sequence(rng: random.Random, depth: int, valid: bool) -> str:
    return " ".join(random_item(rng, depth, valid) + random_repetition(rng, valid) for _ in range(rng.randint(0, 4)))


def random_grammar(rng: random.Random) -> str:
    """A grammar of rules over NAMES. Seven in ten are written to be valid (they may still be left
    recursive, or repeat too much); the rest may hold any mistake."""
    valid = rng.random() < 0.7
    lines = []
    names = ["root", *NAMES[1:4]] if valid or rng.random() < 0.8 else [rng.choice(NAMES) for _ in range(5)]
    rng.shuffle(names)
    for name in names:
        alts = [random_sequence(rng, 0, valid) for _ in range(rng.randint(1, 3))]
        if valid and not alts[-1].strip():      # a rule ending in "| " would run on into the next line
            alts[-1] = random_item(rng, 0, valid)
        comment = rng.choice(["", "", "  # note", "# only a comment\n"])
        lines.append(f"{name} ::= {' | '.join(alts)}{comment}")
    return rng.choice(["\n", "\r\n", "\n\n"]).join(lines) + rng.choice(["", "\n"])


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-4 random edits: delete, insert (mostly GBNF syntax), replace, duplicate a slice."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(data))
        op = rng.random()
        if op < 0.3 and data:
            del data[pos:pos + rng.randint(1, 8)]
        elif op < 0.6:
            byte = rng.choice(SYNTAX) if rng.random() < 0.8 else rng.randrange(256)
            data[pos:pos] = bytes([byte])
        elif op < 0.8 and pos < len(data):
            data[pos] = rng.choice(SYNTAX) if rng.random() < 0.8 else rng.randrange(256)
        else:
            start = rng.randint(0, len(data))
            data[pos:pos] = data[start:start + rng.randint(1, 40)]
    return bytes(data)


def random_bytes(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    return b"root ::= " + bytes(rng.choice(SYNTAX) for _ in range(rng.randint(0, 48)))


def cases(seed: int, n: int, corpus: list[bytes]):
    """n fuzz inputs (bytes): a third random grammars, a third mutations of `corpus` (real
    grammars), the rest mutations of random grammars and random bytes."""
    rng = random.Random(seed)
    for i in range(n):
        kind = i % 6
        if kind in (0, 1):
            yield random_grammar(rng).encode("utf-8")
        elif kind in (2, 3) and corpus:
            yield mutate(rng.choice(corpus), rng)
        elif kind == 4:
            yield mutate(random_grammar(rng).encode("utf-8"), rng)
        else:
            yield random_bytes(rng)
