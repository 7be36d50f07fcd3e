"""Messages name ../shared as `../shared/...`, never by the absolute path of the directory the
checkout happens to live in."""
from __future__ import annotations

import ast

from testpaths import REPO, SHARED, TESTS, shown


def test_a_path_under_shared_is_shown_relative():
    assert shown(SHARED / "ref" / "tiny" / "x.gguf") == "../shared/ref/tiny/x.gguf"
    assert shown(REPO.parent / "elsewhere" / "y") == str(REPO.parent / "elsewhere" / "y")


def test_no_skip_message_spells_out_an_absolute_shared_path():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("skip", "skipif", "importorskip"):
                for part in ast.walk(node):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) and "/work/" in part.value:
                        found.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert found == []
