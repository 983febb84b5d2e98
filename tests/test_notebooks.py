"""The notebooks keep the suite's conventions: what JupyterLab, papermill and run_all.py all rely on.

A markdown header, one cell tagged ``parameters`` holding literals with a help
comment each, a last cell tagged ``outputs``, no outputs committed, valid
nbformat (cell ids included), and parameter values the schema accepts.
"""

from __future__ import annotations

import ast
import warnings

import nbformat
import pytest

from integral_workflows import params

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8


@pytest.fixture(params=NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def notebook(request):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a cell without an id
        node = nbformat.read(request.param, as_version=4)
        nbformat.validate(node)
    return node


def _tagged(node, tag):
    return [i for i, cell in enumerate(node.cells) if tag in cell.metadata.get("tags", [])]


def test_header_parameters_and_outputs_cells(notebook):
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert len(_tagged(notebook, "parameters")) == 1
    assert _tagged(notebook, "outputs") == [len(notebook.cells) - 1]


def test_committed_without_outputs(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_parameters_are_literals_with_a_help_comment_and_valid_values(notebook):
    cell = notebook.cells[_tagged(notebook, "parameters")[0]]
    tree = ast.parse(cell.source)
    lines = cell.source.splitlines()
    namespace = {}
    for statement in tree.body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, ast.unparse(statement)
        name = statement.targets[0].id
        namespace[name] = ast.literal_eval(statement.value)  # a literal, so papermill can replace it
        assert "  # " in lines[statement.lineno - 1], f"{name}: no help comment"
    assert not any(name.lower().endswith("token") for name in namespace), "the token is never a parameter"
    params.from_namespace(namespace)
