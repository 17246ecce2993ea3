"""The import rule written at the top of explorer/__init__.py, checked: light modules import neither torch nor
a heavy module at module level (read from the source), and what a person meets first, the app's first map and
the command line's help, imports no torch (run in fresh processes)."""

import ast
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "explorer"

# the rule's two lists, as paths under the repository
HEAVY = [
    "explorer/models/*", "explorer/importers/*", "explorer/train.py", "explorer/maps/ops.py",
    "explorer/maps/mosaic.py", "explorer/quality/features.py",
]  # fmt: skip
LIGHT = [
    "explorer/*.py",
    "explorer/data/*",
    "explorer/maps/*",
    "explorer/quality/*",
    "explorer/figures/*",
    "explorer/untrusted/*",
    "explorer/cli/*",
    "explorer/ui/*",
    "app.py",
]  # fmt: skip (a file in both lists is heavy)
HEAVY_LIBRARIES = {"torch", "torchvision", "umap", "pynndescent", "sklearn", "numba", "onnxruntime", "keras", "faiss"}

# (light file, module it imports at module level) -> why it still does. Each entry is a fix still to make in the
# named file; the test after the check fails once one is fixed, so the list only shrinks. Empty: keep it so.
KNOWN: dict[tuple[str, str], str] = {}


def _files(patterns: list[str]) -> list[str]:
    everything = [p.relative_to(ROOT).as_posix() for p in [*PACKAGE.rglob("*.py"), ROOT / "app.py"]]
    return sorted(f for f in everything if any(fnmatch.fnmatch(f, pat) for pat in patterns))


def _module_of(file: str) -> str:
    parts = Path(file).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_heavy(module: str) -> bool:
    """An explorer module the rule calls heavy, or a heavy library (by its top-level name)."""
    if module.split(".")[0] in HEAVY_LIBRARIES:
        return True
    heavy = {_module_of(f) for f in _files(HEAVY)}
    return module in heavy


def module_level_imports(source: str, package: str) -> list[str]:
    """Every module imported when the file is imported: statements outside functions and classes' methods, in
    any if/try/with at the top, but not under ``if TYPE_CHECKING:``. ``from a import b`` counts a and a.b."""
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                test = node.test
                if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
                ):
                    visit(node.orelse)
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.ClassDef)):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the file's package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.append(base)
                found.extend(f"{base}.{alias.name}" for alias in node.names)

    visit(ast.parse(source).body)
    return found


def _violations() -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for file in _files(LIGHT):
        if file in _files(HEAVY):
            continue
        module = _module_of(file)
        package = module if file.endswith("__init__.py") else module.rpartition(".")[0]
        source = (ROOT / file).read_text()
        heavy = {name for name in module_level_imports(source, package) if is_heavy(name)}
        # "from explorer.quality import probe" names both; the module imported is the more precise one
        out |= {(file, name) for name in heavy if not any(other.startswith(name + ".") for other in heavy)}
    return out


def test_the_lists_name_real_modules():
    """A renamed module must not make the check vacuous: every listed file or folder exists."""
    for pattern in LIGHT + HEAVY:
        assert _files([pattern]), f"{pattern} matches nothing"
    assert {"explorer/store.py", "explorer/maps/encode.py", "explorer/quality/metrics.py"} <= set(_files(LIGHT))


def test_the_reader_sees_imports_as_python_runs_them():
    source = """
from __future__ import annotations
import os
from typing import TYPE_CHECKING
from explorer.maps import ops
from . import sibling
try:
    import torch
except ImportError:
    torch = None
if TYPE_CHECKING:
    from explorer.models import Autoencoder
def later():
    import umap
class Thing:
    import sklearn
    def method(self):
        import numba
"""
    found = module_level_imports(source, "explorer.ui")
    assert {"os", "explorer.maps", "explorer.maps.ops", "explorer.ui.sibling", "torch", "sklearn"} <= set(found)
    assert not {"explorer.models", "explorer.models.Autoencoder", "umap", "numba"} & set(found)
    assert is_heavy("explorer.maps.ops") and is_heavy("torch.nn") and is_heavy("explorer.models.vae")
    assert not is_heavy("explorer.maps.projection") and not is_heavy("explorer.maps")


def test_light_modules_import_nothing_heavy_at_module_level():
    new = sorted(_violations() - KNOWN.keys())
    assert not new, "light modules importing torch or a heavy module at module level (import it inside the " + (
        f"function that needs it; explorer/__init__.py): {new}"
    )


def test_every_known_exception_is_still_needed():
    fixed = sorted(KNOWN.keys() - _violations())
    assert not fixed, f"fixed, so no longer an exception: remove from KNOWN {fixed}"


def _fresh_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


# The first run draws the map, then loads the model so the first click finds it ready (explorer/ui/views.py): the
# map must be on its way before torch is imported. Every chart the page draws records what was imported by then.
FIRST_MAP = """
import json, sys
import streamlit
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

drawn = []
plotly_chart = DeltaGenerator.plotly_chart

def recorded(self, *args, **kwargs):
    drawn.append(sorted(sys.modules))
    return plotly_chart(self, *args, **kwargs)

DeltaGenerator.plotly_chart = recorded
streamlit.plotly_chart = lambda *args, **kwargs: recorded(streamlit._main, *args, **kwargs)
at = AppTest.from_file(APP, default_timeout=180).run()
charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
print(json.dumps({
    "exception": [str(e.value) for e in at.exception], "error": [e.value for e in at.error],
    "charts": len(charts), "traces": sum("customdata" in t for c in charts for t in c["data"]),
    "imported_when_drawn": drawn,
}))
"""


def test_the_first_map_is_drawn_before_torch_is_imported(tmp_path):
    """The app's first page in a fresh process (AppTest runs app.py as the server would): the default
    checkpoint's map comes from its shipped bundle, and neither torch nor a module that needs it had been
    imported when the map was drawn (the model is loaded after it, for the first click)."""
    env = {**os.environ, "EXPLORER_WARM_UMAP": "0", "EXPLORER_CACHE_DIR": str(tmp_path / "cache")}
    shown = json.loads(_fresh_python(FIRST_MAP.replace("APP", repr(str(ROOT / "app.py"))), env, timeout=300))
    assert shown["exception"] == [] and shown["error"] == [], shown
    assert shown["charts"] == 1 and shown["traces"] >= 10, shown  # the map: one trace per Fashion-MNIST class
    (imported,) = shown["imported_when_drawn"]
    assert "torch" not in imported
    # a heavy module imported by then is one of the known exceptions above (or its package), none that imports torch
    known = {module.rsplit(".", i)[0] for _, module in KNOWN for i in range(module.count("."))}
    assert {m for m in imported if is_heavy(m)} <= known, sorted({m for m in imported if is_heavy(m)} - known)


HELP = """
import sys
from explorer.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("torch" in sys.modules, sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["project", "--help"]], ids=["explorer", "project"])
def test_help_imports_no_torch(argv):
    """``python -m explorer --help`` and a light command's help: no torch, no heavy library."""
    code = HELP.format(argv=argv, heavy=sorted(HEAVY_LIBRARIES))
    assert _fresh_python(code) == "False []"
