"""The notebooks keep the suite's conventions: what JupyterLab, papermill, nb2workflow and the pipeline rely on.

A markdown header; one cell tagged ``parameters`` holding literals whose names and defaults are the
notebook's model's fields (rendered from the model), each with a comment nb2workflow 1.3.118 reads
(a bare ontology URI, then ``. #`` and the help text); one setup call right after it; a last cell
tagged ``outputs`` that declares outputs only; no outputs committed; valid nbformat.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import typing
import warnings

import nbformat
import pytest

from integral_workflows import notebook as notebook_helpers
from integral_workflows import parameters
from integral_workflows.parameters import ParameterError, docs

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# nb2workflow 1.3.118 (nbadapter.parse_source_multiline + semantics.understand_comment_references): the comment of
# an assignment's last line, stripped of '# ', has each "http..." run up to a blank turned into <...>, then must
# parse as turtle "<param> a <comment> ." ; a bare URI followed by " . # text" parses (the rest is a turtle
# comment), and the URI becomes the parameter's owl_type. Text right after the URI would not parse.
NB2WORKFLOW_COMMENT = re.compile(r"^http://odahub\.io/ontology#[A-Za-z_]+ \. # \S.*$")
# Terms of the odahub.io ontology (oda-hub/ontology ontology.ttl) the notebooks use.
ONTOLOGY_TERMS = {
    "AstrophysicalObject",
    "PointOfInterestRA",
    "PointOfInterestDEC",
    "AngleDegrees",
    "StartTime",
    "EndTime",
    "String",
    "Integer",
    "Float",
    "Boolean",
    "Energy_keV",
    "ISGRIEnergy",
    "JEMXEnergy",
    "TimeIntervalSeconds",
    "StructuredParameter",
}
# Product classes of the odahub.io ontology an output may be (there is no "ODATable": tables are ODAAstropyTable).
OUTPUT_TERMS = {"ODAAstropyTable", "Image", "LightCurve", "Spectrum"}


def test_every_notebook_has_a_model():
    assert [path.stem for path in NOTEBOOKS] == sorted(parameters.notebook_names())


@pytest.fixture(params=NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def notebook(request):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a cell without an id
        node = nbformat.read(request.param, as_version=4)
        nbformat.validate(node)
    node.metadata["name"] = request.param.stem
    return node


def _tagged(node, tag):
    return [i for i, cell in enumerate(node.cells) if tag in cell.metadata.get("tags", [])]


def _parameters_cell(node):
    return node.cells[_tagged(node, "parameters")[0]]


def test_header_parameters_and_outputs_cells(notebook):
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert len(_tagged(notebook, "parameters")) == 1
    assert _tagged(notebook, "outputs") == [len(notebook.cells) - 1]


def test_committed_without_outputs(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_parameters_cell_is_the_model(notebook):
    name = notebook.metadata["name"]
    cell = _parameters_cell(notebook)
    assert cell.source == docs.parameters_cell(name), (
        "the parameters cell is stale: python -m integral_workflows.parameters.docs --notebooks notebooks"
    )
    literals = {}
    for statement in ast.parse(cell.source).body:
        assert isinstance(statement, (ast.Assign, ast.AnnAssign)), ast.unparse(statement)
        target = statement.targets[0] if isinstance(statement, ast.Assign) else statement.target
        literals[target.id] = ast.literal_eval(statement.value)  # literals only, so papermill can replace them
    model = parameters.model_for(name)
    assert list(literals) == parameters.declared_names(name)
    for field_name, value in literals.items():
        default = model.model_fields[field_name].default
        assert json.dumps(value) == json.dumps(list(default) if isinstance(default, tuple) else default), field_name
    assert not any(field_name.casefold() in parameters.TOKEN_PARAMETER_NAMES for field_name in literals)


def test_parameter_comments_are_what_nb2workflow_reads(notebook):
    cell = _parameters_cell(notebook)
    lines = cell.source.splitlines()
    for statement in ast.parse(cell.source).body:
        line = lines[statement.end_lineno - 1]
        name = ast.unparse(statement.targets[0] if isinstance(statement, ast.Assign) else statement.target)
        comment = line.split("  # ", 1)[1] if "  # " in line else ""
        assert NB2WORKFLOW_COMMENT.match(comment), f"{name}: {comment!r}"
        assert comment.split(" ", 1)[0].rsplit("#", 1)[1] in ONTOLOGY_TERMS, name
        value = ast.literal_eval(statement.value)
        if value is None:
            # nb2workflow needs a type for a None default: the annotation gives it, optional.
            # (quoted Optional[...], which papermill's inspection parses too, and Python leaves unevaluated).
            assert isinstance(statement, ast.AnnAssign), name
            assert re.fullmatch(r"Optional\[(float|str|int)\]", ast.literal_eval(statement.annotation)), name


def test_string_parameters_stay_strings(notebook):
    # nb2workflow takes the default's type: a revolution "0300" must be a str literal, or it becomes int 300.
    name = notebook.metadata["name"]
    model = parameters.model_for(name)
    for statement in ast.parse(_parameters_cell(notebook).source).body:
        target = ast.unparse(statement.targets[0] if isinstance(statement, ast.Assign) else statement.target)
        value = ast.literal_eval(statement.value)
        annotation = model.model_fields[target].annotation
        if annotation is str or (
            typing.get_origin(annotation) is typing.Annotated and typing.get_args(annotation)[0] is str
        ):
            assert isinstance(value, str), target
    if name == "revolution_mosaics":
        assert isinstance(literal_of(notebook, "rev_num"), str)


def literal_of(node, name):
    for statement in ast.parse(_parameters_cell(node).source).body:
        target = statement.targets[0] if isinstance(statement, ast.Assign) else statement.target
        if target.id == name:
            return ast.literal_eval(statement.value)
    raise KeyError(name)


def test_one_setup_call_right_after_the_parameters(notebook):
    name = notebook.metadata["name"]
    following = [cell for cell in notebook.cells[_tagged(notebook, "parameters")[0] + 1 :] if cell.cell_type == "code"]
    assert f'notebook.setup(globals(), "{name}"' in following[0].source
    everything = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert everything.count("notebook.setup(") == 1
    assert "integral_workflows import params" not in everything and "params." not in everything
    assert "logging.basicConfig" not in everything and "Session(" not in everything


def test_outputs_cell_declares_outputs_only(notebook):
    # nb2workflow turns every assignment of the outputs cell into an output: nothing else may be there.
    cell = notebook.cells[-1]
    lines = cell.source.splitlines()
    for statement in ast.parse(cell.source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, ast.unparse(statement)
        comment = lines[statement.end_lineno - 1].split("  # ", 1)[1]
        assert re.fullmatch(r"http://odahub\.io/ontology#[A-Za-z_]+", comment), comment
        assert comment.rsplit("#", 1)[1] in OUTPUT_TERMS


def test_thin_notebooks_have_no_function_definitions_or_long_loops(notebook):
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda)), cell.source[:80]
            if isinstance(node, (ast.For, ast.While)):
                assert len(node.body) <= 3, f"a loop belongs in lib/: {ast.unparse(node)[:120]}"


# -- the setup call -------------------------------------------------------------------------------------------------


def parameters_namespace(name, **changes):
    """The globals of notebook ``name`` right after its parameters cell (and IPython's own), with ``changes``."""
    namespace = {"__name__": "__main__", "In": [""], "Out": {}, "get_ipython": object(), "_": None, "_i1": "x"}
    cell = docs.parameters_cell(name)
    exec(cell, namespace)  # noqa: S102 - our own literals
    namespace.update(changes)
    return namespace


def run_papermill(name, tmp_path, values):
    """Run ``notebooks/<name>.ipynb`` with papermill's command line, ``-p`` for each of ``values``.

    Returns
    -------
    subprocess.CompletedProcess
        What papermill did and said.
    list of str
        The names of the errors shown in the executed notebook (``tmp_path / "o.ipynb"``).
    """
    pairs = [item for key, value in values.items() for item in ("-p", key, str(value))]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(REPO / "notebooks" / f"{name}.ipynb"),
            str(tmp_path / "o.ipynb"),
            *pairs,
            "--cwd",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    executed = nbformat.read(tmp_path / "o.ipynb", as_version=4)
    errors = [
        output.ename
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    return result, errors


def test_setup_reads_the_parameters_from_the_globals():
    model = notebook_helpers.parameters_from(parameters_namespace("mosaic", instrument="jemx", s_max=10), "mosaic")
    assert (model.instrument, model.E1_keV, model.s_max) == ("jemx", 3.0, 10)


@pytest.mark.parametrize(
    "typo, right", [("detection_treshold", "detection_threshold"), ("radius_deg", "radius"), ("E1_kev", "E1_keV")]
)
def test_setup_refuses_an_undeclared_parameter_with_the_closest_name(typo, right):
    with pytest.raises(ParameterError) as caught:
        notebook_helpers.parameters_from(parameters_namespace("mosaic", **{typo: 5}), "mosaic")
    assert caught.value.names == (typo,)
    assert f"did you mean {right!r}" in str(caught.value)


def test_setup_reports_undeclared_and_invalid_parameters_together():
    namespace = parameters_namespace("scw_selection", lc_time_bin=100.0, min_good_time_s=-1.0, token="x")
    with pytest.raises(ParameterError) as caught:
        notebook_helpers.parameters_from(namespace, "scw_selection")
    assert set(caught.value.names) == {"lc_time_bin", "min_good_time_s", "token"}
    assert "ODA_TOKEN" in str(caught.value)


def test_ipython_and_non_literal_globals_are_not_parameters():
    namespace = parameters_namespace("mosaic", display=print, np=sys, _private=3)
    assert notebook_helpers.undeclared_parameters(namespace, "mosaic") == []


def test_papermill_typo_stops_the_notebook(tmp_path):
    """The issue's case: ``papermill notebooks/mosaic.ipynb o.ipynb -p detection_treshold 5`` must fail clearly."""
    result, errors = run_papermill("mosaic", tmp_path, {"detection_treshold": 5})
    assert result.returncode != 0
    assert "did you mean 'detection_threshold'" in result.stdout + result.stderr
    assert errors == ["ParameterError"]


# -- the outputs record -----------------------------------------------------------------------------------------------


def test_record_outputs_keeps_each_products_descriptor(tmp_path):
    from integral_workflows import provenance
    from integral_workflows.products import Product, describe

    params = parameters.validate("spectrum", {"output_dir": str(tmp_path)})
    run = notebook_helpers.NotebookRun(name="spectrum", params=params, session=None, out=tmp_path)
    for name in (
        "spectrum_Crab.fits",
        "spectrum_Crab_arf.fits",
        "spectrum_Crab_rmf.fits",
        "spectrum_Crab.png",
        "spectra.ecsv",
    ):
        (tmp_path / name).write_text(name)
    spectrum = Product(
        path=tmp_path / "spectrum_Crab.fits",
        kind="spectrum",
        instrument="isgri",
        source="Crab",
        band=(28.0, 40.0),
        period=(params.T1, params.T2),
        plot=tmp_path / "spectrum_Crab.png",
        companions=(tmp_path / "spectrum_Crab_arf.fits", tmp_path / "spectrum_Crab_rmf.fits"),
    )
    recorded = run.record_outputs([spectrum, describe(tmp_path / "spectra.ecsv", "table")], extra={"sources": 1})
    assert recorded.paths("spectrum") == [str(tmp_path / "spectrum_Crab.fits")]
    assert recorded.path("table") == str(tmp_path / "spectra.ecsv")
    with pytest.raises(LookupError):
        recorded.path("image")
    record = provenance.read_step_record(tmp_path, "spectrum")
    assert [entry["path"] for entry in record["products"]] == [
        "spectrum_Crab.fits",
        "spectrum_Crab_arf.fits",
        "spectrum_Crab_rmf.fits",
        "spectrum_Crab.png",
        "spectra.ecsv",
    ]
    assert record["parameters"] == parameters.to_papermill(params)
    assert record["extra"] == {"sources": 1, "simulated": False}
    again = Product.from_dict(record["descriptors"][0], base=tmp_path)
    assert again == spectrum and record["descriptors"][0]["companions"] == [
        "spectrum_Crab_arf.fits",
        "spectrum_Crab_rmf.fits",
    ]
