"""How the modules of ``mmoda_local`` import each other: the graph is read, and the gallery's layers import downwards.

That no module is in an import cycle is checked for all of lib/ by ``tests/test_architecture.py``.
"""

from __future__ import annotations

from ..test_architecture import import_graph as lib_import_graph

PACKAGE = "mmoda_local"


def in_package(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports: the graph of all of lib/ (``tests/test_architecture.py``,
    which also checks that no module of lib/ is in an import cycle), restricted to ``mmoda_local``."""
    return {
        module: {target for target in targets if in_package(target)}
        for module, targets in lib_import_graph().items()
        if in_package(module)
    }


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


def test_the_gallery_layers_import_downwards_only():
    # store (SQLite and files) < serialisation < API and site: the store knows nothing of HTTP
    graph = import_graph()
    assert (
        not {"mmoda_local.gallery_api", "mmoda_local.gallery_site", "mmoda_local.gallery_hal", "mmoda_local.backend"}
        & graph["mmoda_local.gallery_store"]
    )
    assert "mmoda_local.gallery_site" not in graph["mmoda_local.gallery_api"]
    assert "mmoda_local.gallery_api" not in graph["mmoda_local.gallery_site"]
