"""Execution in this process: steps in order, manifests, incremental runs, failures, resumes, reruns, hooks, tokens."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import nbformat
import pytest

import integral_pipeline
from integral_pipeline import Hook, PlanError, Step, Upstream
from integral_pipeline.progress import Progress
from integral_workflows import provenance

from .helpers import CRAB_ISGRI, FAKE_JWT, FIXTURES, PROJECT, all_files, crab_file, run, write_file


def statuses(folder):
    return [step["status"] for step in json.loads((folder / "manifest.json").read_text())["steps"]]


def test_a_run_executes_its_steps_and_records_them(workflows, tmp_path):
    out = tmp_path / "out"
    path = crab_file(tmp_path)
    [result] = run([path], out)
    assert (result.status, result.steps_run, result.steps_skipped) == ("ok", 2, 0)
    folder = out / "fixture" / "Crab" / CRAB_ISGRI
    names = {p.name for p in folder.iterdir()}
    assert {
        "01_select.ipynb",
        "02_product.ipynb",
        "selection.txt",
        "product.txt",
        "select.step.json",
        "product.step.json",
        "manifest.json",
        "parameters.yaml",
    } <= names
    # Steps ran in order, in the run folder, with the upstream product passed explicitly.
    expected = "Crab|2004-01-01T00:00:00|2004-02-01T00:00:00|isgri|28-40keV|r=10.5\n"
    assert (folder / "product.txt").read_text() == expected
    executed = nbformat.read(folder / "02_product.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["selection_file"] == str(folder / "selection.txt")
    assert "note" not in executed.metadata.papermill.parameters

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2
    assert manifest["workflow"] == "fixture" and manifest["status"] == "ok"
    assert manifest["run_folder"] == f"fixture/Crab/{CRAB_ISGRI}" and manifest["parameter_file"] == "crab.yaml"
    assert manifest["parameters"]["E1_keV"] == 28.0 and manifest["parameters_given"]["src_name"] == "Crab"
    assert manifest["parameter_digest"] == result.run.parameters.digest
    assert set(manifest["versions"]) >= {"integral_workflows", "oda_api", "astropy", "numpy", "papermill", "python"}
    assert len(manifest["git"]["commit"]) == 40 and isinstance(manifest["git"]["dirty"], bool)
    select, product = manifest["steps"]
    assert [select["name"], product["name"]] == ["select", "product"]
    assert [select["executed_notebook"], product["executed_notebook"]] == ["01_select.ipynb", "02_product.ipynb"]
    assert select["ended_utc"] <= product["started_utc"] and product["duration_s"] > 0
    assert product["notebook"] == "tests/integral_pipeline/notebooks/product.ipynb"
    assert product["parameters"]["output_dir"] == "." and product["parameters"]["selection_file"] == "selection.txt"
    assert product["upstream"]["selection_file"]["sha256"] == provenance.file_checksum(folder / "selection.txt")
    assert product["products"] == [
        {
            "path": "product.txt",
            "sha256": hashlib.sha256((folder / "product.txt").read_bytes()).hexdigest(),
            "size_bytes": (folder / "product.txt").stat().st_size,
        }
    ]
    assert select["jobs"]["scws"]["004400020010.001"] == {
        "status": "skipped",
        "reason": "in radiation belts",
        "job_id": "job-1",
    }
    assert product["extra"] == {"note": "notebook-only knob"}
    # Host- and user-independent: no absolute path of this machine in the manifest.
    assert str(tmp_path) not in (folder / "manifest.json").read_text()
    # The typed manifest reads back what was written.
    assert integral_pipeline.load_manifest(folder).as_dict() == manifest

    # parameters.yaml is a parameter file of the very same run: everything is up to date.
    [again] = run([folder / "parameters.yaml"], out)
    assert (again.run.run_dir, again.status, again.steps_run, again.steps_skipped) == (folder, "ok", 0, 2)
    assert [(step.status, step.reason) for step in again.steps] == [("skipped-up-to-date", "up to date")] * 2
    assert statuses(folder) == ["skipped-up-to-date", "skipped-up-to-date"]

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


def test_progress_logs_what_each_step_does(workflows, tmp_path, caplog):
    path = crab_file(tmp_path)
    planned = integral_pipeline.plan_runs([str(path)], output_root=tmp_path / "out", project=PROJECT)
    with caplog.at_level(logging.INFO, logger="integral_pipeline.progress"), Progress(planned, bar=False) as progress:
        integral_pipeline.execute_runs(planned, reporter=progress)
        integral_pipeline.execute_runs(planned, reporter=progress)  # events of another batch: counted again
    assert caplog.text.count("executing (never executed in this folder)") == 2
    assert caplog.text.count("is up to date") == 2 and "step 2/2 product done in" in caplog.text
    assert (progress.runs_ok, progress.steps_done, progress.steps_failed) == (2, 4, 0)
    assert not progress.running_runs and not progress.running_steps


def test_a_failing_step_stops_its_run_only_and_a_rerun_resumes_there(workflows, tmp_path):
    out = tmp_path / "out"
    path = crab_file(tmp_path, extra="matrix:\n  src_name: [FailSource, Crab]")
    cwd = os.getcwd()
    failed, ok = run([path], out)
    assert os.getcwd() == cwd  # kernels get their folder without os.chdir
    assert (failed.status, failed.failed_step, ok.status, ok.steps_run) == ("failed", "product", "ok", 2)
    assert "product.ipynb" in failed.error and "RuntimeError: deliberate failure for FailSource" in failed.error
    folder = failed.run.run_dir
    # The partial notebook is kept, with the traceback, next to what the step made before failing.
    partial = nbformat.read(folder / "02_product.ipynb", as_version=4)
    assert partial.metadata.papermill.exception is True and (folder / "product.txt").is_file()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["steps"][1]["status"] == "failed" and manifest["steps"][1]["error"]["type"] == "RuntimeError"
    assert manifest["steps"][1]["error"]["cell"] is not None
    assert not (folder / "product.step.json").exists()
    summary = integral_pipeline.format_summary([failed, ok])
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


def test_a_run_folder_written_by_another_process_is_not_touched(workflows, tmp_path):
    from integral_pipeline.locks import run_folder_lock

    out = tmp_path / "out"
    folder = out / "fixture" / "Crab" / CRAB_ISGRI
    folder.mkdir(parents=True)
    with run_folder_lock(folder):
        [busy] = run([crab_file(tmp_path)], out)
    assert busy.status == "failed" and "being written by another" in busy.error
    assert not (folder / "manifest.json").exists()


def test_a_notebook_that_does_not_record_its_step_fails(workflows, tmp_path):
    [result] = run([crab_file(tmp_path, workflow="forgetful")], tmp_path / "out")
    assert result.status == "failed" and "MissingStepRecord" in result.error and "record" in result.error


def test_rerun_of_an_archived_notebook_records_its_parent(workflows, tmp_path):
    out = tmp_path / "out"
    [parent] = run([crab_file(tmp_path)], out)
    archived = parent.run.run_dir / "02_product.ipynb"

    rerun = integral_pipeline.plan_rerun(archived, overrides={"E1_keV": 30.0}, project=PROJECT)
    assert rerun.run_dir == out / "fixture" / "Crab" / "isgri_30-40keV_2004-01-01_2004-02-01"
    [result] = integral_pipeline.execute_runs([rerun])
    assert (result.status, result.steps_run, result.steps_reused) == ("ok", 1, 1)
    manifest = json.loads((rerun.run_dir / "manifest.json").read_text())
    assert manifest["parent"]["notebook"] == f"../{CRAB_ISGRI}/02_product.ipynb"
    assert manifest["parent"]["sha256"] == provenance.file_checksum(archived)
    assert manifest["parent"]["diff"] == {"E1_keV": {"old": 28.0, "new": 30.0}}
    assert manifest["parent"]["parameters"]["E1_keV"] == 28.0
    # select does not take E1_keV: its products are reused from the parent folder, not recomputed.
    assert manifest["steps"][0]["status"] == "reused-from-parent"
    assert manifest["steps"][0]["location"] == f"../{CRAB_ISGRI}"
    assert manifest["steps"][1]["parameters"]["selection_file"] == f"../{CRAB_ISGRI}/selection.txt"
    assert (rerun.run_dir / "product.txt").read_text().endswith("|30-40keV|r=10.5\n")
    assert not (rerun.run_dir / "selection.txt").exists()

    # Same parameters: a new folder with a suffix, never the parent's.
    same = integral_pipeline.plan_rerun(archived, project=PROJECT)
    assert same.run_dir.name == f"{CRAB_ISGRI}_rerun-1"

    # A change that select takes: select runs again in the new folder.
    moved = integral_pipeline.plan_rerun(archived, overrides={"T2": "2004-03-01T00:00:00"}, project=PROJECT)
    [result] = integral_pipeline.execute_runs([moved])
    assert (result.status, result.steps_run, result.steps_reused) == ("ok", 2, 0)
    assert (moved.run_dir / "product.txt").read_text().startswith("Crab|2004-01-01T00:00:00|2004-03-01T00:00:00")

    with pytest.raises(PlanError, match="did you mean 'E1_keV'"):
        integral_pipeline.plan_rerun(archived, overrides={"E1_kev": 30.0}, project=PROJECT)


def test_rerun_refuses_notebooks_without_provenance(workflows, tmp_path):
    loose = tmp_path / "loose.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), loose)
    with pytest.raises(PlanError, match="not a notebook executed by papermill"):
        integral_pipeline.plan_rerun(loose, project=PROJECT)


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


# -- hooks --------------------------------------------------------------------------------------------------------

CALLS = []


def remember(context):
    """A hook: remembers what it saw; returns a summary for the manifest."""
    CALLS.append(context)
    text = (context.run_dir / "product.txt").read_text(encoding="utf-8")
    return {"product": text.strip(), "radius": context.parameters["radius"]}


def refuse(context):
    """A hook that fails."""
    raise PermissionError("the gallery said no")


@pytest.fixture
def hooked_workflows(workflows):
    selection = Upstream("selection_file", "select", "selection.txt")
    remembering = Hook("remember", remember, notebook_values={"radius": 1.0})
    refusing = Hook("refuse", refuse)
    for name, hooks in (("hooked", (remembering,)), ("refused", (refusing, remembering))):
        integral_pipeline.register_workflow(
            name,
            [
                Step("select", "select.ipynb", model="scw_selection"),
                Step("product", "product.ipynb", (selection,), after=hooks, model="mosaic"),
            ],
            notebooks_dir=FIXTURES,
        )
    CALLS.clear()
    yield
    for name in ("hooked", "refused"):
        integral_pipeline.unregister_workflow(name)


def test_a_hook_runs_after_its_step_with_what_it_takes_over_and_is_recorded(hooked_workflows, tmp_path):
    out = tmp_path / "out"
    [result] = run([crab_file(tmp_path, workflow="hooked")], out)
    assert result.status == "ok"
    folder = result.run.run_dir
    [context] = CALLS
    assert (context.step, context.run_dir, context.executed_notebook) == (
        "product",
        folder,
        folder / "02_product.ipynb",
    )
    assert context.record["products"][0]["path"] == "product.txt"
    # The notebook ran with the value the hook takes over; the hook and the manifest see the run's value.
    assert (folder / "product.txt").read_text().endswith("|r=1\n")
    assert context.parameters["radius"] == 10.5
    entry = json.loads((folder / "manifest.json").read_text())["steps"][1]
    assert entry["parameters"]["radius"] == 10.5
    assert entry["hooks"] == {
        "remember": {"product": "Crab|2004-01-01T00:00:00|2004-02-01T00:00:00|isgri|28-40keV|r=1", "radius": 10.5}
    }
    # An up-to-date step does not run its hooks again.
    [again] = run([crab_file(tmp_path, workflow="hooked")], out)
    assert again.steps_skipped == 2 and len(CALLS) == 1


def test_a_failing_hook_fails_its_step_and_stops_the_next_hooks(hooked_workflows, tmp_path):
    [result] = run([crab_file(tmp_path, workflow="refused")], tmp_path / "out")
    assert (result.status, result.failed_step) == ("failed", "product")
    assert "(hook refuse): PermissionError: the gallery said no" in result.error
    entry = json.loads((result.run.run_dir / "manifest.json").read_text())["steps"][1]
    assert entry["error"] == {
        "type": "PermissionError",
        "message": "the gallery said no",
        "cell": None,
        "hook": "refuse",
    }
    assert CALLS == []
    # the next invocation executes the step again (its last attempt failed) and tries the hooks again
    [again] = run([crab_file(tmp_path, workflow="refused")], tmp_path / "out")
    assert again.steps_run == 1 and again.failed_step == "product"


def test_the_gallery_hook_uploads_the_finished_steps_products_only_when_asked(monkeypatch, tmp_path):
    from integral_pipeline.hooks import GALLERY_UPLOAD, StepContext
    from integral_workflows import gallery

    calls = []

    class Result:
        product_id, link, updated = "abc", "http://gallery/abc", False

    monkeypatch.setattr(
        gallery, "upload_run_products", lambda folder, **options: calls.append((folder, options)) or [Result()]
    )
    context = StepContext(
        workflow="long_term",
        step="mosaic",
        run_label="r",
        run_dir=tmp_path,
        parameters={"upload_to_gallery": False},
        record={},
        executed_notebook=tmp_path / "02_m.ipynb",
    )
    assert GALLERY_UPLOAD(context) is None and calls == []
    asked = StepContext(**{**context.__dict__, "parameters": {"upload_to_gallery": True}})
    assert GALLERY_UPLOAD(asked) == [{"product_id": "abc", "link": "http://gallery/abc", "updated": False}]
    assert calls == [(tmp_path, {"steps": ["mosaic"], "notebooks": {"mosaic": tmp_path / "02_m.ipynb"}})]
    # the notebook itself is told not to upload: the hook does it with the complete executed notebook
    assert GALLERY_UPLOAD.notebook_values == {"upload_to_gallery": False}
