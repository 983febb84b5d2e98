"""Helpers of the pipeline's tests: tiny notebooks chained by test workflows, parameter files written on the fly.

The notebooks executed here are those of ``tests/integral_pipeline/notebooks`` (each writes a text file and
records its step); the real notebooks are never executed by these tests.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import integral_pipeline
from integral_pipeline import Project, Step

from ..conftest import REPO

FIXTURES = Path(__file__).resolve().parent / "notebooks"
PROJECT = Project.at(REPO)
FAKE_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYWtlLXVzZXIiLCJleHAiOjQxMDI0NDQ4MDB9.ZmFrZS1zaWduYXR1cmU"
CRAB_ISGRI = "isgri_28-40keV_2004-01-01_2004-02-01"
#: Written in parameter files as the line "@period"; expanded, with its indentation, by write_file.
PERIOD = ('T1: "2004-01-01T00:00:00"', 'T2: "2004-02-01T00:00:00"')

#: The test workflows, as a module run_all.py imports with --workflow-module (and the tests exec in-process).
REGISTRATION = f"""
from integral_pipeline import Step, Upstream, register_workflow
selection = Upstream("selection_file", "select", "selection.txt")
register_workflow("fixture", [Step("select", "select.ipynb", model="scw_selection"),
                              Step("product", "product.ipynb", (selection,), model="mosaic")],
                  notebooks_dir={str(FIXTURES)!r}, description="test chain", replace=True)
register_workflow("waiting", [Step("select", "select.ipynb", model="scw_selection"),
                              Step("wait", "wait.ipynb", (selection,), model="mosaic")],
                  notebooks_dir={str(FIXTURES)!r}, description="waits for a GO file", replace=True)
"""
TEST_WORKFLOWS = ("fixture", "waiting", "leaky", "forgetful", "broken")


def write_file(folder: Path, name: str, text: str) -> Path:
    """Write ``<folder>/<name>.yaml``, expanding the line ``@period`` into T1 and T2."""
    lines = []
    for line in textwrap.dedent(text).lstrip().splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        lines += [indent + entry for entry in PERIOD] if line.strip() == "@period" else [line]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def crab_file(folder: Path, *, extra: str = "", workflow: str = "fixture") -> Path:
    """parameters/crab.yaml: Crab over January 2004, plus ``extra`` top-level YAML (a matrix)."""
    return write_file(folder, "crab", f"workflow: {workflow}\nparameters:\n  src_name: Crab\n  @period\n{extra}")


def run(paths, out, **options):
    """Plan the parameter files into ``out`` and execute the runs (in this process unless a client is given)."""
    overrides = options.pop("overrides", None)
    planned = integral_pipeline.plan_runs(
        [str(p) for p in paths], overrides=overrides, output_root=out, project=PROJECT
    )
    return integral_pipeline.execute_runs(planned, **options)


def all_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted."""
    return sorted(path for path in folder.rglob("*") if path.is_file())


def register_test_workflows() -> None:
    """Register the test workflows (:data:`TEST_WORKFLOWS`)."""
    exec(REGISTRATION, {})  # the same registration the subprocess tests import with --workflow-module
    integral_pipeline.register_workflow(
        "leaky", [Step("leaky", "leaky.ipynb", model="scw_selection")], notebooks_dir=FIXTURES, replace=True
    )
    integral_pipeline.register_workflow(
        "forgetful", [Step("no_record", "no_record.ipynb", model="scw_selection")], notebooks_dir=FIXTURES, replace=True
    )
    integral_pipeline.register_workflow(
        "broken",
        [Step("no_output_dir", "no_output_dir.ipynb", model="scw_selection")],
        notebooks_dir=FIXTURES,
        replace=True,
    )
