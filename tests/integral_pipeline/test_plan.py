"""Plans, without executing anything: registry, parameter files, matrices, validation, folders, overrides."""

from __future__ import annotations

import pytest

import integral_pipeline
from integral_pipeline import GALLERY_UPLOAD, PlanError, Step, Upstream
from integral_pipeline.layout import revolution_folder_name, run_folder
from integral_pipeline.validation import validate_run_values
from integral_workflows import parameters

from ..conftest import REPO
from .helpers import CRAB_ISGRI, PROJECT, crab_file, write_file


def plan(paths, out, **options):
    return integral_pipeline.plan_runs([str(p) for p in paths], output_root=out, project=PROJECT, **options)


def test_long_term_workflow_is_registered_with_explicit_upstream_products_and_upload_hooks():
    workflow = integral_pipeline.get_workflow("long_term")
    assert [(s.name, s.notebook) for s in workflow.steps] == [
        ("scw_selection", "scw_selection.ipynb"),
        ("mosaic", "mosaic.ipynb"),
        ("lightcurve", "lightcurve.ipynb"),
        ("spectrum", "spectrum.ipynb"),
    ]
    scws = Upstream("scw_table_file", "scw_selection", "scws.ecsv")
    sources = Upstream("source_catalog_file", "mosaic", "sources.ecsv")
    assert [step.upstream for step in workflow.steps[1:]] == [(scws,), (scws, sources), (scws, sources)]
    assert [step.after for step in workflow.steps] == [(), (GALLERY_UPLOAD,), (GALLERY_UPLOAD,), (GALLERY_UPLOAD,)]
    assert (
        workflow.notebook_path(workflow.steps[1], notebooks_dir=PROJECT.notebooks_dir)
        == REPO / "notebooks" / "mosaic.ipynb"
    )


def test_registry_refuses_inconsistent_chains(workflows):
    with pytest.raises(ValueError, match="not an earlier step"):
        integral_pipeline.register_workflow(
            "bad", [Step("a", "a.ipynb", (Upstream("x_file", "b", "x"),)), Step("b", "b.ipynb")]
        )
    with pytest.raises(ValueError, match="cannot be output_dir"):
        integral_pipeline.register_workflow(
            "bad", [Step("a", "a.ipynb"), Step("b", "b.ipynb", (Upstream("output_dir", "a", "x"),))]
        )
    with pytest.raises(ValueError, match="inside the run folder"):
        integral_pipeline.register_workflow(
            "bad", [Step("a", "a.ipynb"), Step("b", "b.ipynb", (Upstream("x_file", "a", "../x"),))]
        )
    with pytest.raises(ValueError, match="Hook objects"):
        integral_pipeline.register_workflow("bad", [Step("a", "a.ipynb", after=(print,))])
    with pytest.raises(ValueError, match="already registered"):
        integral_pipeline.register_workflow("fixture", [Step("a", "a.ipynb")])
    with pytest.raises(PlanError, match="registered workflows: .*fixture"):
        integral_pipeline.get_workflow("nope")
    assert "bad" not in integral_pipeline.registered_workflows()


def test_plan_expands_the_matrix_into_named_folders(workflows, tmp_path):
    path = write_file(
        tmp_path,
        "sources",
        """
        workflow: fixture
        description: two instruments, two sources
        parameters:
          @period
        matrix:
          instruments:
            - {instrument: isgri, E1_keV: 28, E2_keV: 40}
            - {instrument: jemx}
          src_name: [Crab, "1A 0535+262"]
        """,
    )
    runs = plan([path], tmp_path / "out")
    assert [r.folder_text for r in runs] == [
        f"fixture/Crab/{CRAB_ISGRI}",
        f"fixture/1A_0535+262/{CRAB_ISGRI}",
        "fixture/Crab/jemx1_3-20keV_2004-01-01_2004-02-01",
        "fixture/1A_0535+262/jemx1_3-20keV_2004-01-01_2004-02-01",
    ]
    jemx = runs[3]
    assert jemx.parameters["E1_keV"] == 3.0 and jemx.parameters["src_name"] == "1A 0535+262"
    assert jemx.label == "sources.yaml run 4/4 [instrument=jemx, src_name='1A 0535+262']"
    assert jemx.description == "two instruments, two sources"
    assert jemx.parameters.given == {
        "T1": "2004-01-01T00:00:00",
        "T2": "2004-02-01T00:00:00",
        "instrument": "jemx",
        "src_name": "1A 0535+262",
    }
    select, product = jemx.steps
    # Only what the notebook declares is passed; output_dir and the upstream product are absolute paths.
    assert set(select.parameters) == {"src_name", "T1", "T2", "instrument", "output_dir"}
    assert select.parameters["output_dir"] == str(jemx.run_dir) and jemx.run_dir.is_absolute()
    assert product.parameters["selection_file"] == str(jemx.run_dir / "selection.txt")
    assert product.parameters["radius"] == 3.5  # the mosaic model's JEM-X default
    assert "note" not in product.parameters  # a notebook-only knob, in no model
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_each_step_of_the_real_workflows_receives_exactly_its_notebooks_parameters(tmp_path):
    for name in ("main", "jupiter", "revolutions", "crab_whole_mission"):
        for run in plan([name], tmp_path / "out"):
            for step in run.steps:
                declared = set(parameters.declared_names(step.step.model_name))
                assert set(step.parameters) == declared, (name, step.name, set(step.parameters) ^ declared)
                assert step.parameters["output_dir"] == str(run.run_dir)


def test_run_folder_names_are_sanitised():
    workflow = integral_pipeline.get_workflow("long_term")
    values = validate_run_values(
        workflow,
        {
            "src_name": "Cyg X-1: flare",
            "T1": "2004-01-01T12:30:00",
            "T2": "2004-01-02T00:00:00",
            "instrument": "jemx",
            "jemx_unit": 2,
            "E1_keV": 3.5,
        },
    ).values
    folder = run_folder(workflow, values, output_root="outputs")
    assert folder.parts[-3:] == ("long_term", "Cyg_X-1_flare", "jemx2_3.5-20keV_2004-01-01T123000_2004-01-02")
    assert " " not in str(folder.relative_to(folder.parents[2])) and ":" not in folder.name


def test_revolution_runs_are_named_by_revolution(tmp_path):
    runs = plan([REPO / "parameters" / "revolutions.yaml"], tmp_path)
    assert [run.parameters["rev_num"] for run in runs] == ["0300", "0301", "0302"]
    assert [run.run_dir.relative_to(tmp_path).as_posix() for run in runs] == [
        f"revolution/{rev}/isgri_28-40keV_jemx1_3-20keV_CONS" for rev in ("0300", "0301", "0302")
    ]
    revolution = integral_pipeline.get_workflow("revolution")
    current = validate_run_values(
        revolution, {"rev_num": -1, "use_isgri": False, "J_E1_keV": 5, "data_version": "NRT"}
    ).values
    assert revolution_folder_name(current) == "current-1/jemx1+jemx2_5-20keV_NRT"
    assert revolution_folder_name(validate_run_values(revolution, {"rev_num": 0}).values).startswith("current/")


def test_the_shipped_jupiter_file_plans_the_three_moving_target_steps(tmp_path):
    [run] = plan(["jupiter"], tmp_path)
    assert [step.name for step in run.steps] == ["scw_selection", "crab_calibration", "moving_target"]
    assert run.run_dir.parts[-3:] == ("moving_target", "Jupiter", "isgri_28-40keV_2019-01-01_2020-01-01")
    last = run.steps[-1]
    assert set(last.upstream) == {"scw_table_file", "crab_calibration_file"}
    assert last.parameters["src_name"] == "Jupiter" and "ephemeris" in last.parameters


def test_runs_sharing_a_folder_get_a_suffix_and_identical_runs_run_once(workflows, tmp_path):
    path = crab_file(tmp_path, extra="matrix:\n  radius: [5, 8]")
    twice = write_file(
        tmp_path,
        "again",
        """
        workflow: fixture
        parameters:
          src_name: Crab
          radius: 5.0
          @period
        """,
    )
    runs = plan([path, twice], tmp_path / "out")
    assert [r.run_dir.name for r in runs] == [f"{CRAB_ISGRI}_radius-5", f"{CRAB_ISGRI}_radius-8"]


def test_invalid_parameters_are_reported_before_anything_runs(workflows, tmp_path):
    path = write_file(
        tmp_path,
        "bad",
        """
        workflow: fixture
        parameters:
          @period
        matrix:
          instruments:
            - {instrument: isgri}
            - {instrument: jemx, E1_keV: 50}
        """,
    )
    with pytest.raises(PlanError) as caught:
        plan([path], tmp_path / "out")
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
        plan([typo, axis, unknown, toplevel, "missing"], tmp_path / "out")
    text = str(caught.value)
    assert len(caught.value.problems) == 5
    assert "typo.yaml, run 1/1" in text and "did you mean 'E1_keV'" in text
    assert "matrix axis 'sources' has plain values" in text
    assert "unknown workflow 'nothing'" in text
    assert "go under 'parameters:'" in text
    assert "no parameter file 'missing'" in text


def test_an_override_no_step_declares_is_refused_once_with_the_closest_name(workflows, tmp_path):
    path = crab_file(tmp_path, extra="matrix:\n  src_name: [Crab, Vela]")
    with pytest.raises(PlanError) as caught:
        plan([path], tmp_path / "out", overrides={"detection_treshold": 5})
    assert len(caught.value.problems) == 1 and caught.value.parameter == "detection_treshold"
    assert "no step of workflow fixture declares 'detection_treshold'" in str(caught.value)
    assert "did you mean 'detection_threshold'" in str(caught.value)
    # A name some notebook knows but no step of this workflow declares never reaches a notebook silently.
    with pytest.raises(PlanError, match="no step of workflow revolution declares 'scw_source'"):
        plan(["revolutions"], tmp_path / "out", overrides={"scw_source": "heasarc"})


def test_the_pipelines_own_parameters_cannot_be_given(workflows, tmp_path):
    with pytest.raises(PlanError) as caught:
        plan([crab_file(tmp_path)], tmp_path / "out", overrides={"output_dir": "x", "selection_file": "y"})
    text = str(caught.value)
    assert "output_dir is set by the pipeline" in text and "selection_file is set by the pipeline" in text


def test_token_parameters_and_overrides_are_refused(workflows, tmp_path):
    path = crab_file(tmp_path)
    with pytest.raises(PlanError, match="token"):
        plan([path], tmp_path / "out", overrides={"token": "x"})
    with pytest.raises(PlanError, match=r"(?s)\(with -p E1_keV\): .*ISGRI range"):
        plan([path], tmp_path / "out", overrides={"E1_keV": 900.0})


def test_notebooks_must_declare_output_dir(workflows, tmp_path):
    path = crab_file(tmp_path, workflow="broken")
    with pytest.raises(PlanError, match="must declare output_dir") as caught:
        plan([path], tmp_path / "out")
    assert caught.value.parameter == "output_dir"


def test_overrides_are_read_with_the_parameter_files_yaml_rules():
    parse = integral_pipeline.parse_override
    assert parse("bad_revolutions", "[0044, '0045']") == ("bad_revolutions", ["0044", "0045"])
    assert parse("T1", "2004-01-01T00:00:00") == ("T1", "2004-01-01T00:00:00")
    assert parse("E1_keV", "28") == ("E1_keV", 28)
    assert parse("src_name", "1A 0535+262") == ("src_name", "1A 0535+262")
    assert parse("make_image", "false") == ("make_image", False)
    with pytest.raises(PlanError):
        parse("src_name", "a: b")


def test_plan_errors_survive_pickling():
    import pickle

    error = PlanError.collect([PlanError("a", file="f.yaml", parameter="T1"), PlanError("b", run="run 1/2")])
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.file == "f.yaml" and len(again.problems) == 2
