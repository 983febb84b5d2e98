"""The modules of ``mmoda_local`` import each other without a cycle (read from the sources with ``ast``).

Imports inside functions count too: a lazy import hides a cycle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mmoda_local

PACKAGE = "mmoda_local"
ROOT = Path(mmoda_local.__file__).resolve().parent


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (``mmoda_local`` for its ``__init__``)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from . import x` imports the module x when there is one, else a name of the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    modules = module_names()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a directed graph, one per strongly connected component of more than one node (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_is_read_from_every_module():
    graph = import_graph()
    assert {
        "mmoda_local.app",
        "mmoda_local.dispatcher",
        "mmoda_local.gallery_store",
        "mmoda_local.gallery_site",
    } <= set(graph)
    # the reading itself: relative imports of modules and of names, absolute and lazy imports
    assert {"mmoda_local.dispatcher", "mmoda_local.gallery_api", "mmoda_local.backend"} <= graph["mmoda_local.app"]
    assert "mmoda_local.gallery_store" in graph["mmoda_local.gallery_api"]
    assert "mmoda_local" in graph["mmoda_local.backend"]  # from . import __version__


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_mmoda_local_has_no_import_cycle():
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_gallery_layers_import_downwards_only():
    # store (SQLite and files) < serialisation < API and site: the store knows nothing of HTTP
    graph = import_graph()
    assert (
        not {"mmoda_local.gallery_api", "mmoda_local.gallery_site", "mmoda_local.gallery_hal", "mmoda_local.backend"}
        & graph["mmoda_local.gallery_store"]
    )
    assert "mmoda_local.gallery_site" not in graph["mmoda_local.gallery_api"]
    assert "mmoda_local.gallery_api" not in graph["mmoda_local.gallery_site"]
