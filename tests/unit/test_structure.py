"""The shape of the package, checked: no import cycles, small modules, no kind names outside the models,
no test or benchmark code imported by the package."""

import ast
import re
from pathlib import Path

import pytest

from explorer import models

PACKAGE = Path(__file__).resolve().parents[2] / "explorer"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every explorer module this file imports, at any depth (function-level and TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            if subs:
                found |= subs
            elif node.module in MODULES:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & MODULES.keys()
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    # a package's own __init__ importing its children is how packages work; a child importing its
    # parent package back is the cycle we forbid
    edges = {m: {t for t in _imports(p) if not t.startswith(m + ".")} for m, p in MODULES.items()}
    assert _cycles(edges) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_no_kind_names_outside_the_models():
    """Behaviour that differs by kind lives on the model classes (hooks), not in branches elsewhere."""
    names = "|".join(map(re.escape, models.kinds()))
    pattern = re.compile(rf"""kind\s*(==|!=|in)\s*[\(\[]?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("explorer.models"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []


def test_package_imports_no_test_or_benchmark_code():
    for path in MODULES.values():
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            for mod in mods:
                root = mod.split(".")[0]
                assert root not in ("tests", "conftest", "benchmarks"), f"{path} imports {mod}"
        assert "sys.path.insert" not in text, f"{path} edits sys.path"
