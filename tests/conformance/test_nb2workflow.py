"""nb2workflow 1.3.118, which turns gallery notebooks into MMODA services, reads every notebook and runs one.

nb2workflow runs in a subprocess (``nb2workflow_driver.py``) whose HTTP goes through an offline proxy: it loads the
odahub.io ontology when imported (and so does the output-gathering cell it adds to an executed notebook), which
the proxy serves from the committed copy in ``tests/data/odahub_ontology/``; any other request is refused and
fails the test. Every notebook of ``notebooks/`` is inspected, so a new notebook is covered without listing it.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import rdflib
from astropy.table import Table

from integral_workflows import hosts, parameters

from ..conftest import REPO, TEST_DATA
from .offline_proxy import OfflineProxy

ODA = "http://odahub.io/ontology#"
#: Where nb2workflow 1.3.118 reads the ontology (``nbadapter.oda_ontology_path``), and our copy of it.
ONTOLOGY_URL = "http://odahub.io/ontology/ontology.ttl"
ONTOLOGY_FILE = TEST_DATA / "odahub_ontology" / "ontology.ttl"
ONTOLOGY_SHA256 = "a60657bef0896bafc3be8057d6ffe6b1a3a0e26af53ecffdc66c85aa23b7cb9d"
DRIVER = Path(__file__).with_name("nb2workflow_driver.py")
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
#: Request values as a service receives them (text), turned into parameters by nb2workflow.
CASTS = {"rev_num": "0300", "bad_revolutions": '["0301"]'}
#: Products nb2workflow outputs may be (odahub.io classes).
OUTPUT_CLASSES = {"ODAAstropyTable", "Image", "LightCurve", "Spectrum"}
#: nb2workflow's python types and the JSON-schema types of the models.
JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array"}
INSPECTION_TIMEOUT_S = 1500
RUN_TIMEOUT_S = 1200


@pytest.fixture(scope="module")
def offline_proxy():
    with OfflineProxy({ONTOLOGY_URL: (ONTOLOGY_FILE, "text/turtle")}) as proxy:
        yield proxy


def _environment(proxy: OfflineProxy, home: Path, **extra: str) -> dict[str, str]:
    drop = ("ODA_TOKEN", "MMODA_LOCAL_HOME", "LOGSTASH_ENTRYPOINT", "PYTEST_ADDOPTS")
    env = {key: value for key, value in os.environ.items() if key not in drop}
    # SENTRY_URL empty: nb2workflow would otherwise report execution errors to sentry.io
    env.update(proxy.environment(), SENTRY_URL="", HOME=str(home), OPENBLAS_NUM_THREADS="1", **extra)
    return env


def _drive(proxy: OfflineProxy, work: Path, *arguments: str, timeout: float, **extra_env: str) -> dict:
    """Run the driver with ``arguments``; its JSON answer."""
    out = work / f"{arguments[0]}.json"
    (work / "home").mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [sys.executable, str(DRIVER), arguments[0], str(out), *arguments[1:]],
        cwd=work,
        env=_environment(proxy, work / "home", **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0 and out.exists(), completed.stderr[-5000:]
    answer = json.loads(out.read_text())
    assert "driver_error" not in answer, answer["driver_error"]
    # nb2workflow read the real ontology (through the proxy) and nothing else left the machine
    assert answer["ontology"]["available"] and answer["ontology"]["triples"] > 500, answer["ontology"]
    assert proxy.refused == [], f"requests to the network: {proxy.refused}"
    return answer


@pytest.fixture(scope="module")
def inspection(offline_proxy, tmp_path_factory) -> dict:
    """What nb2workflow reads from every notebook (one process: importing it parses the ontology)."""
    work = tmp_path_factory.mktemp("nb2workflow-inspect")
    casts = [f"--cast={name}={value}" for name, value in CASTS.items()]
    answer = _drive(offline_proxy, work, "inspect", *map(str, NOTEBOOKS), *casts, timeout=INSPECTION_TIMEOUT_S)
    return answer["notebooks"]


@pytest.fixture(scope="module")
def ontology_classes() -> set[str]:
    graph = rdflib.Graph().parse(ONTOLOGY_FILE, format="turtle")
    return {str(s)[len(ODA) :] for s in graph.subjects(rdflib.RDF.type, rdflib.OWL.Class) if str(s).startswith(ODA)}


def test_the_ontology_copy_is_the_one_recorded():
    assert hashlib.sha256(ONTOLOGY_FILE.read_bytes()).hexdigest() == ONTOLOGY_SHA256


def _outputs_cell_names(path: Path) -> list[str]:
    node = nbformat.read(path, as_version=4)
    cell = next(cell for cell in node.cells if "outputs" in cell.metadata.get("tags", []))
    return [statement.targets[0].id for statement in ast.parse(cell.source).body]


def _schema_types(schema: dict) -> list[str]:
    """JSON types a property of the model's schema allows, in order (``anyOf`` unrolled)."""
    if "type" in schema:
        return [schema["type"]]
    return [item["type"] for item in schema.get("anyOf", []) if "type" in item]


@pytest.mark.timeout(INSPECTION_TIMEOUT_S + 120)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_nb2workflow_reads_each_parameter_with_its_type_and_ontology_term(path, inspection, ontology_classes):
    name = path.stem
    read = inspection[name]
    assert "error" not in read, f"nb2workflow cannot read {path.name}: {read['error']}"
    model = parameters.model_for(name)
    schema = model.model_json_schema()["properties"]
    assert list(read["parameters"]) == parameters.declared_names(name)
    for field_name, par in read["parameters"].items():
        field = model.model_fields[field_name]
        term = field.json_schema_extra["ontology"]
        assert par["owl_type"] == term, f"{field_name}: nb2workflow read {par['owl_type']}, the model says {term}"
        assert term[len(ODA) :] in ontology_classes, f"{field_name}: {term} is not a class of the odahub.io ontology"
        assert field.description in par["comment"], f"{field_name}: the help text is lost"
        # the type nb2workflow casts request values to is one the model's JSON schema allows
        allowed = _schema_types(schema[field_name])
        assert JSON_TYPES[par["python_type"]] in allowed, f"{field_name}: {par['python_type']}, the model: {allowed}"
        assert par["is_optional"] == (field.default is None), f"{field_name}: optional {par['is_optional']}"
        if field.default is not None and allowed[0] == "string":
            assert par["python_type"] == "str", f"{field_name}: text read by nb2workflow as {par['python_type']}"


@pytest.mark.timeout(INSPECTION_TIMEOUT_S + 120)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_nb2workflow_outputs_are_the_declared_products(path, inspection, ontology_classes):
    read = inspection[path.stem]
    assert "error" not in read, read.get("error")
    assert list(read["outputs"]) == _outputs_cell_names(path)
    assert read["outputs"], "no output declared"
    for output_name, out in read["outputs"].items():
        assert out["owl_type"] and out["owl_type"].startswith(ODA), f"{output_name}: untyped output"
        term = out["owl_type"][len(ODA) :]
        assert term in OUTPUT_CLASSES and term in ontology_classes, f"{output_name}: {out['owl_type']}"


@pytest.mark.timeout(INSPECTION_TIMEOUT_S + 120)
def test_request_text_stays_text(inspection):
    """A service gets text: a revolution '0300' stays '0300' (not 300), and a list of them stays a list of text."""
    assert inspection["revolution_mosaics"]["cast"] == {
        "issues": [],
        "values": {"rev_num": {"value": "0300", "type": "str"}},
    }
    assert inspection["scw_selection"]["cast"] == {
        "issues": [],
        "values": {"bad_revolutions": {"value": ["0301"], "type": "list"}},
    }


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
def test_nb2workflow_runs_scw_selection_on_the_local_mmoda(offline_proxy, tmp_path):
    """``NotebookAdapter.execute`` as the service does: papermill in a copy of the folder, outputs gathered."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy2(REPO / "notebooks" / "scw_selection.ipynb", folder)
    request = {
        "T1": "2005-03-01T00:00:00",
        "T2": "2005-04-15T00:00:00",
        "host_type": "local",
        "bad_revolutions": CASTS["bad_revolutions"],
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    home = tmp_path / "mmoda"
    (tmp_path / "tmp").mkdir()
    try:
        answer = _drive(
            offline_proxy,
            tmp_path,
            "run",
            str(folder / "scw_selection.ipynb"),
            str(tmp_path / "request.json"),
            timeout=RUN_TIMEOUT_S,
            MMODA_LOCAL_HOME=str(home),
            INTEGRAL_WORKFLOWS_CACHE=str(tmp_path / "chunks"),
            TMPDIR=str(tmp_path / "tmp"),
        )
    finally:
        hosts.stop_local_server(home)
    assert answer["issues"] == [] and answer["exceptions"] == [], answer
    assert answer["parameters"]["bad_revolutions"] == {"value": ["0301"], "type": "list"}
    outputs = answer["outputs"]
    assert set(outputs) == {"scw_table_file", "scw_table_file_content"}
    workdir = Path(answer["workdir"])
    written = (workdir / outputs["scw_table_file"]).read_bytes()
    assert base64.b64decode(outputs["scw_table_file_content"]) == written  # the file itself, gathered
    kept = Table.read(written.decode(), format="ascii.ecsv")
    removed = Table.read(workdir / "scws_removed.ecsv")
    # the period covers revolutions 0300-0304; the one asked for as text ("0301") is cut, the others kept
    revolutions = {str(scw)[:4] for scw in kept["scw_id"]}
    assert len(kept) > 0 and "0301" not in revolutions and {"0300", "0304"} <= revolutions
    cut_here = {str(row["scw_id"])[:4] for row in removed if row["cut"] == "bad revolutions"}
    assert cut_here == {"0301"}, removed
