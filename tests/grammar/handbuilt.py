"""Grammars built by hand in llama.cpp's rule encoding (src/llama-grammar.h), without the GBNF
parser: a few combinators that emit what llama.cpp's parser emits for the same construct (a
parenthesized group becomes a rule of its own; `x*`, `x+`, `x?`, `x{m,n}` are rewritten as in
llama_grammar_parser::parse_sequence's handle_repetitions). `Rules` stands in for
pygguf.grammar.gbnf.ParsedGrammar (rules, symbol_ids, root, text)."""
from __future__ import annotations

from dataclasses import dataclass, field

END, ALT, RULE_REF, CHAR, CHAR_NOT, CHAR_RNG_UPPER, CHAR_ALT, CHAR_ANY, TOKEN, TOKEN_NOT = range(10)


@dataclass(frozen=True)
class Rules:
    rules: tuple
    symbol_ids: dict
    root: int
    text: str = ""


# ---- expressions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Lit:                 # "abc"
    text: str


@dataclass(frozen=True)
class Chars:               # [abc0-9] or [^...]: items are characters or (low, high) pairs
    items: tuple
    negate: bool = False


@dataclass(frozen=True)
class Any:                 # .
    pass


@dataclass(frozen=True)
class Ref:                 # rule-name
    name: str


@dataclass(frozen=True)
class Tok:                 # <[id]> (or !<[id]> with negate)
    id: int
    negate: bool = False


@dataclass(frozen=True)
class Seq:
    items: tuple = ()

    def __init__(self, *items):
        object.__setattr__(self, "items", items)


@dataclass(frozen=True)
class Alt:                 # ( a | b | ... ) inside a sequence: a rule of its own
    alts: tuple = ()

    def __init__(self, *alts):
        object.__setattr__(self, "alts", alts)


@dataclass(frozen=True)
class Rep:                 # x{lo,hi}; hi None: no maximum
    item: object
    lo: int
    hi: int | None


def Star(x):
    return Rep(x, 0, None)


def Plus(x):
    return Rep(x, 1, None)


def Opt(x):
    return Rep(x, 0, 1)


def chars(spec: str, negate: bool = False) -> Chars:
    """chars("a-z_") -> Chars(("a","z"), "_"): a-b is a range, as inside [...]"""
    items, i = [], 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            items.append((spec[i], spec[i + 2]))
            i += 3
        else:
            items.append(spec[i])
            i += 1
    return Chars(tuple(items), negate)


def _cp(c) -> int:
    return c if isinstance(c, int) else ord(c)


@dataclass
class Builder:
    ids: dict = field(default_factory=dict)
    bodies: dict = field(default_factory=dict)

    def id(self, name: str) -> int:
        return self.ids.setdefault(name, len(self.ids))

    def _generate(self, base: str) -> int:
        return self.id(f"{base}_{len(self.ids)}")

    def define(self, name: str, body) -> "Builder":
        rid = self.id(name)
        alts = body.alts if isinstance(body, Alt) else (body,)
        self.bodies[rid] = self._alternatives(alts, name)
        return self

    def _alternatives(self, alts, name: str) -> list:
        out = []
        for k, a in enumerate(alts):
            if k:
                out.append((ALT, 0))
            out += self._sequence(a, name)
        out.append((END, 0))
        return out

    def _sequence(self, x, name: str) -> list:
        if isinstance(x, Seq):
            out = []
            for item in x.items:
                out += self._item(item, name)
            return out
        return self._item(x, name)

    def _group(self, alts, name: str) -> list:
        rid = self._generate(name)
        self.bodies[rid] = self._alternatives(alts, name)
        return [(RULE_REF, rid)]

    def _item(self, x, name: str) -> list:
        if isinstance(x, Lit):
            return [(CHAR, ord(c)) for c in x.text]
        if isinstance(x, Chars):
            out = []
            for k, item in enumerate(x.items):
                lo, hi = (item if isinstance(item, tuple) else (item, None))
                out.append(((CHAR_NOT if x.negate else CHAR) if k == 0 else CHAR_ALT, _cp(lo)))
                if hi is not None:
                    out.append((CHAR_RNG_UPPER, _cp(hi)))
            return out
        if isinstance(x, Any):
            return [(CHAR_ANY, 0)]
        if isinstance(x, Ref):
            return [(RULE_REF, self.id(x.name))]
        if isinstance(x, Tok):
            return [(TOKEN_NOT if x.negate else TOKEN, x.id)]
        if isinstance(x, Alt):
            return self._group(x.alts, name)
        if isinstance(x, Seq):
            return self._group((x,), name)       # ( a b ) as one item
        if isinstance(x, Rep):
            return self._repeat(x, name)
        raise TypeError(x)

    def _repeat(self, x: Rep, name: str) -> list:
        # handle_repetitions: S{m,n} -> S..S (m times) S'(n-m); S'(k) ::= S S'(k-1) | ; S{m,} -> S..S S'
        prev = self._item(x.item, name)
        out = prev * x.lo
        no_max = x.hi is None
        n_opt = 1 if no_max else x.hi - x.lo
        last = None
        for i in range(n_opt):
            rid = self._generate(name)
            rec = list(prev)
            if i > 0 or no_max:
                rec.append((RULE_REF, rid if no_max else last))
            rec += [(ALT, 0), (END, 0)]
            self.bodies[rid] = rec
            last = rid
        if n_opt > 0:
            out.append((RULE_REF, last))
        return out

    def build(self, root: str = "root", text: str = "") -> Rules:
        missing = [n for n, i in self.ids.items() if i not in self.bodies]
        assert not missing, f"undefined rules {missing}"
        rules = tuple(tuple(self.bodies[i]) for i in range(len(self.ids)))
        return Rules(rules, dict(self.ids), self.ids[root], text)


def raw(rules, root: int = 0) -> Rules:
    """Rules given directly as element tuples."""
    return Rules(tuple(tuple(r) for r in rules), {}, root)


# ---- a JSON grammar ------------------------------------------------------------------------

JSON_GBNF = r'''root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws
array  ::= "[" ws ( value ( "," ws value )* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\"" ws
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )? ws
ws     ::= ( " " | "\n" [ \t]{0,20} )?
'''


def json_grammar() -> Rules:
    """JSON_GBNF, built by hand (the rules llama.cpp's parser makes of it, up to rule numbering)."""
    b = Builder()
    ws = Ref("ws")
    b.define("root", Ref("object"))
    b.define("value", Alt(Ref("object"), Ref("array"), Ref("string"), Ref("number"),
                          Seq(Alt(Lit("true"), Lit("false"), Lit("null")), ws)))
    member = Seq(Ref("string"), Lit(":"), ws, Ref("value"))
    b.define("object", Seq(Lit("{"), ws,
                           Opt(Seq(*member.items, Star(Seq(Lit(","), ws, *member.items)))),
                           Lit("}"), ws))
    b.define("array", Seq(Lit("["), ws, Opt(Seq(Ref("value"), Star(Seq(Lit(","), ws, Ref("value"))))),
                          Lit("]"), ws))
    escape = Seq(Lit("\\"), Alt(chars('"\\/bfnrt'), Seq(Lit("u"), Rep(chars("0-9a-fA-F"), 4, 4))))
    b.define("string", Seq(Lit('"'), Star(Alt(Chars(('"', "\\", "\x7f", ("\x00", "\x1f")), negate=True), escape)),
                           Lit('"'), ws))
    b.define("number", Seq(Opt(Lit("-")), Alt(Lit("0"), Seq(chars("1-9"), Star(chars("0-9")))),
                           Opt(Seq(Lit("."), Plus(chars("0-9")))),
                           Opt(Seq(chars("eE"), Opt(chars("-+")), Plus(chars("0-9")))), ws))
    b.define("ws", Opt(Alt(Lit(" "), Seq(Lit("\n"), Rep(chars(" \t"), 0, 20)))))
    return b.build(text=JSON_GBNF)
