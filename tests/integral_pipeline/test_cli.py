"""run_all.py and integral_pipeline.cli: exit statuses, dry runs, listings, --main, rerun, -j and --scheduler."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from distributed import Client

from integral_pipeline import cli
from integral_pipeline.clusters import local_cluster

from ..conftest import REPO
from .helpers import CRAB_ISGRI, REGISTRATION, crab_file, write_file

RUN_ALL = REPO / "run_all.py"


def run_all(*arguments, cwd):
    environment = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.run(
        [sys.executable, str(RUN_ALL), *map(str, arguments)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_all_exit_status_for_invalid_input_and_failed_runs_on_a_two_worker_cluster(tmp_path):
    module = tmp_path / "fixture_workflows.py"
    module.write_text(REGISTRATION)
    invalid = write_file(tmp_path, "invalid", "workflow: fixture\nparameters:\n  E1_keV: 2\n")
    completed = run_all("--workflow-module", module, "--output-root", "out", invalid, cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert "nothing executed" in completed.stderr and "invalid.yaml, run 1/1" in completed.stderr
    assert "E1_keV" in completed.stderr and not (tmp_path / "out").exists()

    mixed = crab_file(tmp_path, extra="matrix:\n  src_name: [FailSource, Crab]")
    typo = run_all(
        "--workflow-module", module, "--output-root", "out", mixed, "-p", "detection_treshold", "5", cwd=tmp_path
    )
    assert typo.returncode == 2 and "did you mean 'detection_threshold'" in typo.stderr
    assert not (tmp_path / "out").exists()

    # The workflows of a --workflow-module file reach the Dask workers too.
    completed = run_all("--workflow-module", module, "--output-root", "out", "--jobs", "2", mixed, cwd=tmp_path)
    assert completed.returncode == 1, completed.stderr
    assert "local Dask cluster of 2 worker process(es); dashboard: http" in completed.stdout
    assert "FAILED crab.yaml run 1/2 [src_name=FailSource]" in completed.stdout
    assert "RuntimeError: deliberate failure" in completed.stdout and "1/2 run(s) ok" in completed.stdout
    assert (tmp_path / "out" / "fixture" / "Crab" / CRAB_ISGRI / "02_product.ipynb").is_file()
    # A kernel over Unix sockets has nothing to warn about.
    assert "without encryption" not in completed.stderr


@pytest.fixture
def run_all_module():
    """run_all.py imported in-process."""
    spec = importlib.util.spec_from_file_location("run_all_under_test", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
    assert "then gallery_upload" in listing and "main                 workflow long_term, 4 run(s)" in listing

    # --main runs <project>/parameters/main.yaml
    assert cli.main(["--main"], project_root=tmp_path) == 2
    assert "parameters/main.yaml does not exist" in capsys.readouterr().err
    main_file = tmp_path / "parameters" / "main.yaml"
    main_file.parent.mkdir()
    write_file(main_file.parent, "main", "workflow: fixture\nparameters:\n  src_name: Crab\n  @period\n")
    assert cli.main(["--main", "--output-root", "out", "--no-progress"], project_root=tmp_path) == 0
    assert "products of" in capsys.readouterr().out
    archived = tmp_path / "out" / "fixture" / "Crab" / CRAB_ISGRI / "02_product.ipynb"
    assert run_all_module.main(["rerun", str(archived), "-p", "E2_keV", "35"]) == 0
    assert "isgri_28-35keV_2004-01-01_2004-02-01" in capsys.readouterr().out


def test_run_all_executes_on_an_existing_scheduler(workflows, tmp_path, capsys):
    path = crab_file(tmp_path, extra="matrix:\n  src_name: [Crab, Vela]")
    with local_cluster(2, dashboard_address=None) as cluster, Client(cluster):
        status = cli.main(
            ["--scheduler", cluster.scheduler_address, "--output-root", "out", str(path)], project_root=REPO
        )
        prefixes = set(cluster.scheduler.task_prefixes)
    assert status == 0 and "run" in prefixes  # the runs were tasks of that cluster
    output = capsys.readouterr().out
    assert f"Dask scheduler {cluster.scheduler_address}" in output and "2/2 run(s) ok" in output
    assert (tmp_path / "out" / "fixture" / "Vela" / CRAB_ISGRI / "manifest.json").is_file()
