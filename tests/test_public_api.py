"""The library's shape: the notebooks use only its public surface, and its modules import one
another without a circle."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import htlib
import htlib.experiments

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"htlib", "htlib.experiments", "htlib.report", "htlib.summaries", "htlib.plots", "htlib.course"}


@pytest.mark.parametrize("module", [htlib, htlib.experiments], ids=lambda m: m.__name__)
def test_every_public_name_is_there(module):
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing and len(module.__all__) == len(set(module.__all__))


def test_the_notebooks_import_from_the_public_surface_only():
    found = {}
    for path in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                for module in re.findall(r"^\s*(?:from|import) (htlib[\w.]*)", "".join(cell["source"]), re.MULTILINE):
                    found.setdefault(module, set()).add(path.name[:2])
    assert set(found) <= PUBLIC, {m: sorted(n) for m, n in found.items() if m not in PUBLIC}
    assert {"htlib", "htlib.experiments", "htlib.report", "htlib.plots"} <= set(found)


def _module_imports() -> dict[str, set[str]]:
    """Module -> the htlib modules it imports, at load time or inside a function (a package that
    holds the module is not counted: importing a submodule loads it first anyway)."""
    modules = {}
    for path in (ROOT / "htlib").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def test_no_module_imports_itself_back_through_others():
    graph = _module_imports()
    for start in graph:  # depth-first from each module: a path back to it is a circle
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                assert nxt != start, " -> ".join(path + [nxt])
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
