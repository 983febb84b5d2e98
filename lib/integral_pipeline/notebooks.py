"""What the pipeline reads in a notebook before running it: its declared parameters, checks, code digest."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import threading
from pathlib import Path

import nbformat

from .errors import PlanError
from .project import display_path

log = logging.getLogger(__name__)

__all__ = ["KERNEL_NAME", "notebook_parameters", "notebook_digest", "notebook_imports"]

#: The Jupyter kernel every step runs in.
KERNEL_NAME = "python3"

_INSPECTION_CACHE: dict[tuple, dict] = {}
_IMPORTS_CACHE: dict[tuple, tuple[str, ...]] = {}
_INSPECTION_LOCK = threading.Lock()


def _file_signature(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def notebook_parameters(path: str | Path, *, shown: str | None = None) -> dict[str, dict]:
    """Return the parameters a notebook declares in its ``parameters`` cell (papermill's ``inspect_notebook``).

    Parameters
    ----------
    path : str or Path
        The notebook.
    shown : str, optional
        How messages name it.

    Returns
    -------
    dict
        Name → ``{name, inferred_type_name, default, help}``.

    Raises
    ------
    PlanError
        If the notebook is missing, unreadable, has no kernelspec, or not exactly one cell
        tagged ``parameters``.
    """
    import papermill

    path = Path(path).resolve()
    shown = shown or display_path(path)
    if not path.is_file():
        raise PlanError(f"notebook {shown} does not exist", file=shown)
    signature = _file_signature(path)
    with _INSPECTION_LOCK:
        if signature in _INSPECTION_CACHE:
            return _INSPECTION_CACHE[signature]
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several unrelated types for unreadable files
        raise PlanError(f"notebook {shown} cannot be read: {type(error).__name__}: {error}", file=shown) from None
    tagged = [index for index, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise PlanError(
            f"notebook {shown} must have exactly one cell tagged 'parameters', found {len(tagged)}", file=shown
        )
    if not notebook.metadata.get("kernelspec", {}).get("name"):
        raise PlanError(
            f"notebook {shown} has no kernelspec: papermill cannot run it (jupytext --set-kernel {KERNEL_NAME})",
            file=shown,
        )
    if not any("outputs" in cell.metadata.get("tags", []) for cell in notebook.cells):
        log.warning("notebook %s has no cell tagged 'outputs' (the cell that records the step)", shown)
    try:
        declared = dict(papermill.inspect_notebook(str(path)))
    except Exception as error:  # papermill's translators raise plain exceptions on odd cells
        raise PlanError(
            f"notebook {shown}: its parameters cell cannot be read: {type(error).__name__}: {error}", file=shown
        ) from None
    with _INSPECTION_LOCK:
        _INSPECTION_CACHE[signature] = declared
    return declared


def notebook_digest(path: str | Path) -> str:
    """Return the sha256 of a notebook's code: cell types and sources, not outputs or metadata.

    Parameters
    ----------
    path : str or Path
        The notebook.

    Returns
    -------
    str
        64 hex digits; saving the notebook with other outputs does not change it.
    """
    notebook = nbformat.read(Path(path), as_version=4)
    code = [[cell.cell_type, cell.source] for cell in notebook.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(code, ensure_ascii=False).encode("utf-8")).hexdigest()


def _cell_imports(source: str) -> list[str]:
    # IPython magics and shell escapes are not Python: blanked before parsing.
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    names = []
    for node in tree.body:  # top-level statements only: a conditional import (e.g. the gallery's) is not taken
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # ``from package import name``: ``name`` may be a submodule (tried) or an attribute.
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")]
    return names


def notebook_imports(path: str | Path) -> tuple[str, ...]:
    """Return the modules a notebook's code cells import at their top level (what its kernel will import).

    Parameters
    ----------
    path : str or Path
        The notebook.

    Returns
    -------
    tuple of str
        Dotted names in order of appearance, without repeats; ``from package import name`` gives
        ``package`` and ``package.name`` (which may be an attribute rather than a module). Empty if the
        notebook cannot be read.
    """
    path = Path(path).resolve()
    try:
        signature = _file_signature(path)
    except OSError:
        return ()
    with _INSPECTION_LOCK:
        if signature in _IMPORTS_CACHE:
            return _IMPORTS_CACHE[signature]
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # nbformat raises several unrelated types for unreadable files; running it will say why
        return ()
    names = [name for cell in notebook.cells if cell.cell_type == "code" for name in _cell_imports(cell.source)]
    imports = tuple(dict.fromkeys(names))
    with _INSPECTION_LOCK:
        _IMPORTS_CACHE[signature] = imports
    return imports
