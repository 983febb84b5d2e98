"""The architecture as the imports show it: no import cycle anywhere in lib/, and the packages' boundaries.

The module import graph is built from the source with ``ast`` (every import statement, in functions too),
so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

LIB = REPO / "lib"
PACKAGES = ("integral_workflows", "integral_pipeline", "mmoda_local")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def lib_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in sorted(LIB.rglob("*.py"))
        if not any(part.startswith(".") or part.endswith(".egg-info") for part in path.relative_to(LIB).parts)
    }


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name an import statement of ``path`` names (``from a import b`` names ``a`` and ``a.b``)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of lib/ it imports (a name that is not a module counts as its package)."""
    modules = lib_modules()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name in imported_names(path, module):
            # "from pkg import name": the module pkg.name if there is one, else pkg itself
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.add(name)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle through them."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
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
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, sorted(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A cycle through the first module of a strongly connected component: a → ... → a."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for successor in sorted(graph[node] & members):
            if successor == start:
                return paths[node] + [start]
            if successor not in paths:
                paths[successor] = paths[node] + [successor]
                frontier.append(successor)
    return component


def test_the_graph_sees_every_kind_of_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    modules = import_graph()
    assert "integral_pipeline.run" in modules and "integral_pipeline.execute" in modules["integral_pipeline.run"]
    # a lazy import inside a function counts
    assert "integral_workflows.gallery" in modules["integral_pipeline.hooks"]


def test_no_import_cycle_anywhere_in_lib():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


@pytest.mark.parametrize(
    "importer, forbidden",
    [
        ("integral_workflows", "integral_pipeline"),  # the science library does not know how it is batched
        ("integral_workflows", "mmoda_local"),  # the client talks to the local MMODA over HTTP only
        ("mmoda_local", "integral_workflows"),  # the local MMODA shares no code with the client
        ("mmoda_local", "integral_pipeline"),
    ],
)
def test_package_boundaries(importer, forbidden):
    offenders = []
    for module, path in lib_modules().items():
        if module.split(".")[0] != importer:
            continue
        names = imported_names(path, module)
        offenders += [
            f"{module} imports {name}"
            for name in sorted(names)
            if name == forbidden or name.startswith(forbidden + ".")
        ]
    assert not offenders, "\n".join(offenders)


def test_every_package_of_lib_is_checked():
    assert {module.split(".")[0] for module in lib_modules()} == set(PACKAGES)
