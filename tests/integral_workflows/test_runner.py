"""The runner and run_all.py: plans, validation, execution, incremental runs, failures, reruns, tokens.

The notebooks executed here are the tiny fixtures of ``tests/integral_workflows/notebooks`` (each writes a
text file and calls ``provenance.record_step``), chained by test workflows registered through the registry
API; the real notebooks are never touched.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from integral_workflows import params, provenance, runner
from integral_workflows.runner import PlanError, Step, Upstream

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "notebooks"
RUN_ALL = REPO / "run_all.py"
FAKE_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYWtlLXVzZXIiLCJleHAiOjQxMDI0NDQ4MDB9.ZmFrZS1zaWduYXR1cmU"

CRAB_ISGRI = "isgri_28-40keV_2004-01-01_2004-02-01"
#: Written in parameter files as the line "@period"; expanded, with its indentation, by write_file.
PERIOD = ('T1: "2004-01-01T00:00:00"', 'T2: "2004-02-01T00:00:00"')

REGISTRATION = f"""
from integral_workflows.runner import Step, Upstream, register_workflow
selection = Upstream("selection_file", "select", "selection.txt")
register_workflow("fixture", [Step("select", "select.ipynb"), Step("product", "product.ipynb", (selection,))],
                  notebooks_dir={str(FIXTURES)!r}, description="test chain", replace=True)
"""


@pytest.fixture
def workflows():
    """Register the test workflows; remove them afterwards."""
    exec(REGISTRATION, {})  # the same registration the subprocess tests import with --workflow-module
    runner.register_workflow("leaky", [Step("leaky", "leaky.ipynb")], notebooks_dir=FIXTURES, replace=True)
    runner.register_workflow("forgetful", [Step("no_record", "no_record.ipynb")], notebooks_dir=FIXTURES,
                             replace=True)
    runner.register_workflow("broken", [Step("no_output_dir", "no_output_dir.ipynb")], notebooks_dir=FIXTURES,
                             replace=True)
    yield
    for name in ("fixture", "leaky", "forgetful", "broken"):
        runner.unregister_workflow(name)


def write_file(folder: Path, name: str, text: str) -> Path:
    lines = []
    for line in textwrap.dedent(text).lstrip().splitlines():
        indent = line[:len(line) - len(line.lstrip())]
        lines += [indent + entry for entry in PERIOD] if line.strip() == "@period" else [line]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def crab_file(folder: Path, *, extra: str = "", workflow: str = "fixture") -> Path:
    """parameters/crab.yaml: Crab over January 2004, plus ``extra`` top-level YAML (a matrix)."""
    return write_file(folder, "crab", f"workflow: {workflow}\nparameters:\n  src_name: Crab\n  @period\n{extra}")


def run(paths, out, **options):
    overrides = options.pop("overrides", None)
    planned = runner.plan_runs([str(p) for p in paths], overrides=overrides, output_root=out)
    return runner.execute_runs(planned, **options)


def all_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


# -- registry and plans (no execution) ------------------------------------------------------------------------

def test_long_term_workflow_is_registered_with_explicit_upstream_products():
    workflow = runner.get_workflow("long_term")
    assert [(s.name, s.notebook) for s in workflow.steps] == [
        ("scw_selection", "scw_selection.ipynb"), ("mosaic", "mosaic.ipynb"), ("lightcurve", "lightcurve.ipynb"),
        ("spectrum", "spectrum.ipynb")]
    scws = Upstream("scw_table_file", "scw_selection", "scws.ecsv")
    sources = Upstream("source_catalog_file", "mosaic", "sources.ecsv")
    assert [step.upstream for step in workflow.steps[1:]] == [(scws,), (scws, sources), (scws, sources)]
    assert workflow.notebook_path(workflow.steps[1]) == REPO / "notebooks" / "mosaic.ipynb"


def test_registry_refuses_inconsistent_chains(workflows):
    with pytest.raises(ValueError, match="not an earlier step"):
        runner.register_workflow("bad", [Step("a", "a.ipynb", (Upstream("x_file", "b", "x"),)), Step("b", "b.ipynb")])
    with pytest.raises(ValueError, match="shadow a workflow parameter"):
        runner.register_workflow("bad", [Step("a", "a.ipynb"), Step("b", "b.ipynb", (Upstream("T1", "a", "x"),))])
    with pytest.raises(ValueError, match="already registered"):
        runner.register_workflow("fixture", [Step("a", "a.ipynb")])
    with pytest.raises(PlanError, match="registered workflows: .*fixture"):
        runner.get_workflow("nope")


def test_plan_expands_the_matrix_into_named_folders(workflows, tmp_path):
    path = write_file(tmp_path, "sources", f"""
        workflow: fixture
        description: two instruments, two sources
        parameters:
          @period
        matrix:
          instruments:
            - {{instrument: isgri, E1_keV: 28, E2_keV: 40}}
            - {{instrument: jemx}}
          src_name: [Crab, "1A 0535+262"]
        """)
    runs = runner.plan_runs([path], output_root=tmp_path / "out")
    assert [r.folder_text for r in runs] == [
        f"fixture/Crab/{CRAB_ISGRI}", f"fixture/1A_0535+262/{CRAB_ISGRI}",
        "fixture/Crab/jemx1_3-20keV_2004-01-01_2004-02-01", "fixture/1A_0535+262/jemx1_3-20keV_2004-01-01_2004-02-01"]
    jemx = runs[3]
    assert jemx.parameters["E1_keV"] == 3.0 and jemx.parameters["src_name"] == "1A 0535+262"
    assert jemx.label == "sources.yaml run 4/4 [instrument=jemx, src_name='1A 0535+262']"
    assert jemx.description == "two instruments, two sources"
    select, product = jemx.steps
    # Only declared parameters are injected; output_dir and the upstream product are absolute paths.
    assert set(select.parameters) == {"src_name", "T1", "T2", "instrument", "output_dir"}
    assert select.parameters["output_dir"] == str(jemx.run_dir) and jemx.run_dir.is_absolute()
    assert product.parameters["selection_file"] == str(jemx.run_dir / "selection.txt")
    assert "note" not in product.parameters
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_run_folder_names_are_sanitised():
    values = params.resolve({"src_name": "Cyg X-1: flare", "T1": "2004-01-01T12:30:00", "T2": "2004-01-02T00:00:00",
                             "instrument": "jemx", "jemx_unit": 2, "E1_keV": 3.5})
    folder = runner.run_folder("long_term", values, output_root="outputs")
    assert folder.parts[-3:] == ("long_term", "Cyg_X-1_flare", "jemx2_3.5-20keV_2004-01-01T123000_2004-01-02")
    assert " " not in str(folder.relative_to(folder.parents[2])) and ":" not in folder.name


def test_runs_sharing_a_folder_get_a_suffix_and_identical_runs_run_once(workflows, tmp_path):
    path = crab_file(tmp_path, extra="matrix:\n  radius: [5, 8]")
    twice = write_file(tmp_path, "again", f"""
        workflow: fixture
        parameters:
          src_name: Crab
          radius: 5.0
          @period
        """)
    runs = runner.plan_runs([path, twice], output_root=tmp_path / "out")
    assert [r.run_dir.name for r in runs] == [f"{CRAB_ISGRI}_radius-5", f"{CRAB_ISGRI}_radius-8"]


def test_invalid_parameters_are_reported_before_anything_runs(workflows, tmp_path):
    path = write_file(tmp_path, "bad", f"""
        workflow: fixture
        parameters:
          @period
        matrix:
          instruments:
            - {{instrument: isgri}}
            - {{instrument: jemx, E1_keV: 50}}
        """)
    with pytest.raises(PlanError) as caught:
        runner.plan_runs([path], output_root=tmp_path / "out")
    error = caught.value
    assert error.file == "bad.yaml" and error.run == "run 2/2 [instrument=jemx, E1_keV=50]"
    assert error.parameter == "E1_keV" and "JEM-X range" in str(error)
    assert not (tmp_path / "out").exists()


def test_every_problem_is_reported_at_once(workflows, tmp_path):
    typo = write_file(tmp_path, "typo", "workflow: fixture\nparameters:\n  E1_kev: 30\n")
    axis = write_file(tmp_path, "axis", "workflow: fixture\nmatrix:\n  sources: [Crab, Vela]\n")
    unknown = write_file(tmp_path, "unknown", "workflow: nothing\n")
    toplevel = write_file(tmp_path, "toplevel", "workflow: fixture\nT1: '2004-01-01T00:00:00'\n")
    with pytest.raises(PlanError) as caught:
        runner.plan_runs([typo, axis, unknown, toplevel, "missing"], output_root=tmp_path / "out")
    text = str(caught.value)
    assert len(caught.value.problems) == 5
    assert "typo.yaml, run 1/1" in text and "did you mean 'E1_keV'" in text
    assert "matrix axis 'sources' has plain values" in text
    assert "unknown workflow 'nothing'" in text
    assert "go under 'parameters:'" in text
    assert "no parameter file 'missing'" in text


def test_token_parameters_and_overrides_are_refused(workflows, tmp_path):
    path = crab_file(tmp_path)
    with pytest.raises(PlanError, match="token"):
        runner.plan_runs([path], overrides={"token": "x"}, output_root=tmp_path / "out")
    with pytest.raises(PlanError, match=r"from -p"):
        runner.plan_runs([path], overrides={"E1_keV": 900.0}, output_root=tmp_path / "out")


def test_notebooks_must_declare_output_dir(workflows, tmp_path):
    path = crab_file(tmp_path, workflow="broken")
    with pytest.raises(PlanError, match="must declare output_dir") as caught:
        runner.plan_runs([path], output_root=tmp_path / "out")
    assert caught.value.parameter == "output_dir"


def test_overrides_are_read_with_the_parameter_files_yaml_rules():
    assert runner.parse_override("bad_revolutions", "[0044, '0045']") == ("bad_revolutions", ["0044", "0045"])
    assert runner.parse_override("T1", "2004-01-01T00:00:00") == ("T1", "2004-01-01T00:00:00")
    assert runner.parse_override("E1_keV", "28") == ("E1_keV", 28)
    assert runner.parse_override("src_name", "1A 0535+262") == ("src_name", "1A 0535+262")
    assert runner.parse_override("make_image", "false") == ("make_image", False)
    with pytest.raises(PlanError):
        runner.parse_override("src_name", "a: b")


# -- execution --------------------------------------------------------------------------------------------------

def test_a_run_executes_its_steps_and_records_them(workflows, tmp_path, caplog):
    out = tmp_path / "out"
    path = crab_file(tmp_path)
    [result] = run([path], out)
    assert (result.status, result.steps_run, result.steps_skipped) == ("ok", 2, 0)
    folder = out / "fixture" / "Crab" / CRAB_ISGRI
    names = {p.name for p in folder.iterdir()}
    assert {"01_select.ipynb", "02_product.ipynb", "selection.txt", "product.txt", "select.step.json",
            "product.step.json", "manifest.json", "parameters.yaml"} <= names
    # Steps ran in order, in the run folder, with the upstream product passed explicitly.
    expected = "Crab|2004-01-01T00:00:00|2004-02-01T00:00:00|isgri|28-40keV|r=10.5\n"
    assert (folder / "product.txt").read_text() == expected
    executed = nbformat.read(folder / "02_product.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["selection_file"] == str(folder / "selection.txt")
    assert "note" not in executed.metadata.papermill.parameters

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["workflow"] == "fixture" and manifest["status"] == "ok"
    assert manifest["run_folder"] == f"fixture/Crab/{CRAB_ISGRI}" and manifest["parameter_file"] == "crab.yaml"
    assert manifest["parameters"]["E1_keV"] == 28.0 and manifest["parameters_given"]["src_name"] == "Crab"
    assert manifest["parameter_digest"] == provenance.parameter_digest(result.run.parameters)
    assert set(manifest["versions"]) >= {"integral_workflows", "oda_api", "astropy", "numpy", "papermill", "python"}
    assert len(manifest["git"]["commit"]) == 40 and isinstance(manifest["git"]["dirty"], bool)
    select, product = manifest["steps"]
    assert [select["name"], product["name"]] == ["select", "product"]
    assert [select["executed_notebook"], product["executed_notebook"]] == ["01_select.ipynb", "02_product.ipynb"]
    assert select["ended_utc"] <= product["started_utc"] and product["duration_s"] > 0
    assert product["notebook"] == "tests/integral_workflows/notebooks/product.ipynb"
    assert product["parameters"]["output_dir"] == "." and product["parameters"]["selection_file"] == "selection.txt"
    assert product["upstream"]["selection_file"]["sha256"] == provenance.file_checksum(folder / "selection.txt")
    assert product["products"] == [{"path": "product.txt", "sha256": hashlib.sha256(
        (folder / "product.txt").read_bytes()).hexdigest(), "size_bytes": (folder / "product.txt").stat().st_size}]
    assert select["jobs"]["scws"]["004400020010.001"] == {"status": "skipped", "reason": "in radiation belts",
                                                          "job_id": "job-1"}
    assert product["extra"] == {"note": "notebook-only knob"}
    # Host- and user-independent: no absolute path of this machine in the manifest.
    assert str(tmp_path) not in (folder / "manifest.json").read_text()
    assert params.resolve(params.read_parameter_file(folder / "parameters.yaml")) == result.run.parameters

    # Second run: nothing to do, and the log says so.
    with caplog.at_level(logging.INFO, logger="integral_workflows.runner"):
        [again] = run([path], out)
    assert (again.status, again.steps_run, again.steps_skipped) == ("ok", 0, 2)
    assert caplog.text.count("is up to date") == 2 and "skipped" in caplog.text
    statuses = [s["status"] for s in json.loads((folder / "manifest.json").read_text())["steps"]]
    assert statuses == ["skipped-up-to-date", "skipped-up-to-date"]

    # A parameter outside the folder name re-runs the steps that take it, in the same folder.
    [changed] = run([path], out, overrides={"radius": 5.0})
    assert (changed.run.run_dir, changed.steps_run, changed.steps_skipped) == (folder, 1, 1)
    assert json.loads((folder / "manifest.json").read_text())["steps"][1]["reason"] == "parameters changed: radius"

    # A modified product is noticed; --force re-executes everything.
    (folder / "product.txt").write_text("tampered")
    [repaired] = run([path], out, overrides={"radius": 5.0})
    assert repaired.steps_run == 1
    assert "product.txt modified" in json.loads((folder / "manifest.json").read_text())["steps"][1]["reason"]
    [forced] = run([path], out, overrides={"radius": 5.0}, force=True)
    assert (forced.steps_run, forced.steps_skipped) == (2, 0)


def test_a_failing_step_stops_its_run_only_and_a_rerun_resumes_there(workflows, tmp_path):
    out = tmp_path / "out"
    path = crab_file(tmp_path, extra="matrix:\n  src_name: [FailSource, Crab]")
    cwd = os.getcwd()
    failed, ok = run([path], out, jobs=2)
    assert os.getcwd() == cwd  # kernels get their folder without os.chdir, which parallel runs would race on
    assert (failed.status, failed.failed_step, ok.status, ok.steps_run) == ("failed", "product", "ok", 2)
    assert "product.ipynb" in failed.error and "RuntimeError: deliberate failure for FailSource" in failed.error
    folder = failed.run.run_dir
    # The partial notebook is kept, with the traceback, next to what the step made before failing.
    partial = nbformat.read(folder / "02_product.ipynb", as_version=4)
    assert partial.metadata.papermill.exception is True and (folder / "product.txt").is_file()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["steps"][1]["status"] == "failed" and manifest["steps"][1]["error"]["type"] == "RuntimeError"
    assert not (folder / "product.step.json").exists()
    summary = runner.format_summary([failed, ok])
    assert "FAILED" in summary and "partial notebook" in summary and "1/2 run(s) ok, 1 failed" in summary


def test_a_rerun_of_a_failed_run_resumes_at_the_failed_step(workflows, tmp_path):
    out = tmp_path / "out"
    path = crab_file(tmp_path)
    folder = out / "fixture" / "Crab" / CRAB_ISGRI
    folder.mkdir(parents=True)
    (folder / "FAIL").touch()  # the fixture's product step fails while this file exists
    [first] = run([path], out)
    assert (first.status, first.failed_step) == ("failed", "product")
    (folder / "FAIL").unlink()
    [second] = run([path], out)
    assert (second.status, second.steps_run, second.steps_skipped) == ("ok", 1, 1)
    assert json.loads((folder / "manifest.json").read_text())["steps"][1]["reason"] == "its last attempt failed"


def test_a_notebook_that_does_not_record_its_step_fails(workflows, tmp_path):
    [result] = run([crab_file(tmp_path, workflow="forgetful")], tmp_path / "out")
    assert result.status == "failed" and "MissingStepRecord" in result.error and "record_step" in result.error


def test_rerun_of_an_archived_notebook_records_its_parent(workflows, tmp_path):
    out = tmp_path / "out"
    [parent] = run([crab_file(tmp_path)], out)
    archived = parent.run.run_dir / "02_product.ipynb"

    rerun = runner.plan_rerun(archived, overrides={"E1_keV": 30.0})
    assert rerun.run_dir == out / "fixture" / "Crab" / "isgri_30-40keV_2004-01-01_2004-02-01"
    [result] = runner.execute_runs([rerun])
    assert (result.status, result.steps_run, result.steps_reused) == ("ok", 1, 1)
    manifest = json.loads((rerun.run_dir / "manifest.json").read_text())
    assert manifest["parent"]["notebook"] == f"../{CRAB_ISGRI}/02_product.ipynb"
    assert manifest["parent"]["sha256"] == provenance.file_checksum(archived)
    assert manifest["parent"]["diff"] == {"E1_keV": {"old": 28.0, "new": 30.0}}
    assert manifest["parent"]["parameters"]["E1_keV"] == 28.0
    # select does not take E1_keV: its products are reused from the parent folder, not recomputed.
    assert manifest["steps"][0]["status"] == "reused-from-parent"
    assert manifest["steps"][1]["parameters"]["selection_file"] == f"../{CRAB_ISGRI}/selection.txt"
    assert (rerun.run_dir / "product.txt").read_text().endswith("|30-40keV|r=10.5\n")
    assert not (rerun.run_dir / "selection.txt").exists()

    # Same parameters: a new folder with a suffix, never the parent's.
    same = runner.plan_rerun(archived)
    assert same.run_dir.name == f"{CRAB_ISGRI}_rerun-1"

    # A change that select takes: select runs again in the new folder.
    moved = runner.plan_rerun(archived, overrides={"T2": "2004-03-01T00:00:00"})
    [result] = runner.execute_runs([moved])
    assert (result.status, result.steps_run, result.steps_reused) == ("ok", 2, 0)
    assert (moved.run_dir / "product.txt").read_text().startswith("Crab|2004-01-01T00:00:00|2004-03-01T00:00:00")


def test_rerun_refuses_notebooks_without_provenance(workflows, tmp_path):
    loose = tmp_path / "loose.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), loose)
    with pytest.raises(PlanError, match="not a notebook executed by papermill"):
        runner.plan_rerun(loose)


def test_no_file_of_a_run_holds_the_token(workflows, tmp_path, monkeypatch):
    monkeypatch.setenv("ODA_TOKEN", FAKE_JWT)
    out = tmp_path / "out"
    results = run([crab_file(tmp_path), write_file(tmp_path, "leaky", "workflow: leaky\n")], out)
    assert [r.status for r in results] == ["ok", "ok"]
    files = all_files(out)
    assert len(files) > 10
    for path in files:
        assert FAKE_JWT.encode() not in path.read_bytes(), path
    # The careless notebook printed the token and handed it to record_step: both were redacted.
    leaky = results[1].run.run_dir
    assert provenance.REDACTED in (leaky / "01_leaky.ipynb").read_text()
    assert provenance.REDACTED in (leaky / "leaky.step.json").read_text()


# -- run_all.py ------------------------------------------------------------------------------------------------

def run_all(*arguments, cwd):
    environment = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.run([sys.executable, str(RUN_ALL), *map(str, arguments)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_run_all_exit_status_for_invalid_input_and_failed_runs(tmp_path):
    module = tmp_path / "fixture_workflows.py"
    module.write_text(REGISTRATION)
    invalid = write_file(tmp_path, "invalid", "workflow: fixture\nparameters:\n  E1_keV: 2\n")
    completed = run_all("--workflow-module", module, "--output-root", "out", invalid, cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert "nothing executed" in completed.stderr and "invalid.yaml, run 1/1" in completed.stderr
    assert "E1_keV" in completed.stderr and not (tmp_path / "out").exists()

    mixed = crab_file(tmp_path, extra="matrix:\n  src_name: [FailSource, Crab]")
    completed = run_all("--workflow-module", module, "--output-root", "out", "--jobs", "2", mixed, cwd=tmp_path)
    assert completed.returncode == 1, completed.stderr
    assert "FAILED crab.yaml run 1/2 [src_name=FailSource]" in completed.stdout
    assert "RuntimeError: deliberate failure" in completed.stdout and "1/2 run(s) ok" in completed.stdout
    assert (tmp_path / "out" / "fixture" / "Crab" / CRAB_ISGRI / "02_product.ipynb").is_file()


@pytest.fixture
def run_all_module(monkeypatch, tmp_path):
    """run_all.py imported in-process, with parameters/main.yaml pointed into tmp_path."""
    spec = importlib.util.spec_from_file_location("run_all_under_test", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "MAIN_PARAMETER_FILE", tmp_path / "parameters" / "main.yaml")
    return module


def test_run_all_dry_run_list_main_and_rerun(workflows, tmp_path, run_all_module, capsys):
    path = crab_file(tmp_path, extra="matrix:\n  src_name: [Crab, Vela]")
    assert run_all_module.main(["--dry-run", "--output-root", "out", str(path)]) == 0
    plan = capsys.readouterr().out
    assert "2 run(s) planned" in plan and f"out/fixture/Vela/{CRAB_ISGRI}" in plan
    assert "never executed" in plan and "selection_file" in plan
    assert not (tmp_path / "out").exists()

    assert run_all_module.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "long_term" in listing and "scw_table_file <- scw_selection:scws.ecsv" in listing

    assert run_all_module.main(["--main"]) == 2
    assert "main.yaml does not exist" in capsys.readouterr().err

    main_file = tmp_path / "parameters" / "main.yaml"
    main_file.parent.mkdir()
    write_file(main_file.parent, "main", "workflow: fixture\nparameters:\n  src_name: Crab\n  @period\n")
    assert run_all_module.main(["--main", "--output-root", "out"]) == 0
    assert "products of" in capsys.readouterr().out
    archived = tmp_path / "out" / "fixture" / "Crab" / CRAB_ISGRI / "02_product.ipynb"
    assert run_all_module.main(["rerun", str(archived), "-p", "E2_keV", "35"]) == 0
    assert "isgri_28-35keV_2004-01-01_2004-02-01" in capsys.readouterr().out
