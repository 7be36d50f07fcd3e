"""The package's layering, enforced: imports only point down, and no two modules import each other
(directly or around a loop). Every import counts, the ones inside functions too.

    pygguf_cli (cli/)           the commands
    pygguf.tools                batch runs, Ray, perplexity, quantization
    pygguf.api                  Llama
    pygguf.generation           the one engine: sequences, the token loop, timings
    pygguf.model                config, Model.decode(batch), kernel wrappers
    pygguf.{tokenizer, chat, gguf, sampling}   independent of each other
    pygguf.grammar              GBNF, JSON schemas, the grammar matcher (the sampler's grammar stage)
    pygguf.errors               PyggufError and the C status messages
    pygguf.atomic_file          files replaced whole (temporary file, fsync, rename)
    pygguf._native              the C extension (csrc/)
`pygguf` itself (its __init__) only re-exports Llama, lazily.
"""
from __future__ import annotations

import ast
from pathlib import Path

from testpaths import REPO

LAYERS = [
    {"pygguf_cli"},
    {"pygguf.tools"},
    {"pygguf.api"},
    {"pygguf.generation"},
    {"pygguf.model"},
    {"pygguf.tokenizer", "pygguf.chat", "pygguf.gguf", "pygguf.sampling"},
    {"pygguf.grammar"},
    {"pygguf.errors", "pygguf.atomic_file"},
    {"pygguf._native"},
]


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted((REPO / "pygguf").rglob("*.py")) + sorted((REPO / "cli").glob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        parts[0] = "pygguf_cli" if parts[0] == "cli" else parts[0]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def imports_of(name: str, path: Path) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)   # `from pkg import submodule`
    return {m for m in found if m.split(".")[0] in ("pygguf", "pygguf_cli")}


def layer_of(module: str) -> int | None:
    for depth, group in enumerate(LAYERS):
        if any(module == unit or module.startswith(unit + ".") for unit in group):
            return depth
    return None


def unit_of(module: str) -> str:
    return next(u for group in LAYERS for u in group if module == u or module.startswith(u + "."))


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: {m for m in imports_of(name, path) if m in files} for name, path in files.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in module_files() if m != "pygguf" and layer_of(m) is None]
    assert unplaced == [], f"modules outside every layer: {unplaced}"


def test_imports_only_point_down():
    upward = []
    for module, targets in graph().items():
        if module == "pygguf":
            continue
        for target in targets:
            here, there = layer_of(module), layer_of(target)
            if target == "pygguf":
                continue                                      # the package's version string
            if there < here or (there == here and unit_of(target) != unit_of(module)):
                upward.append(f"{module} -> {target}")
    assert upward == [], "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(g[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"
    for m in sorted(g):
        if m not in state:
            visit(m)
    # a package importing its own submodules (its __init__ re-exporting them) is not a cycle
    real = [c for c in cycles if not all(step == c.split(" -> ")[0] or step.startswith(c.split(" -> ")[0] + ".")
                                         for step in c.split(" -> "))]
    assert real == [], "import cycles:\n" + "\n".join(real)


def test_the_checks_catch_what_they_are_for():
    assert layer_of("pygguf.sampling.fast") > layer_of("pygguf.generation.engine")
    assert layer_of("pygguf.tokenizer.vocab") == layer_of("pygguf.gguf.reader")
    assert unit_of("pygguf.tokenizer.vocab") != unit_of("pygguf.gguf.reader")
    assert "pygguf.tokenizer.special" in imports_of("pygguf.tokenizer.vocab",
                                                     REPO / "pygguf" / "tokenizer" / "vocab.py")
