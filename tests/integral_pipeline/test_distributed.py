"""Runs as Dask tasks on a 2-worker LocalCluster: parallel runs, progress events, killed workers, one local server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import dask
import pytest
from distributed import Client

import integral_pipeline
from integral_pipeline.clusters import local_cluster
from integral_pipeline.progress import Progress
from integral_workflows.hosts import process_alive

from .helpers import CRAB_ISGRI, PROJECT, crab_file, run, write_file

#: Generous bound for things that happen within seconds (a liveness bound, not a performance assertion).
PATIENCE_S = 120


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {PATIENCE_S} s")
        time.sleep(0.1)


@pytest.fixture
def cluster_of():
    """Start a local cluster of N worker processes (no dashboard); close it after the test."""
    started = []

    def start(n_workers: int) -> Client:
        cluster = local_cluster(n_workers, dashboard_address=None)
        client = Client(cluster)
        started.append((cluster, client))
        return client

    yield start
    for cluster, client in started:
        client.close()
        cluster.close()


def waiting_file(folder: Path, *sources: str) -> Path:
    names = ", ".join(f'"{source}"' for source in sources)
    return write_file(
        folder,
        "waiting",
        f"""
        workflow: waiting
        parameters:
          @period
        matrix:
          src_name: [{names}]
        """,
    )


def test_a_matrix_runs_on_two_workers_at_once_with_progress_and_failures_kept_apart(workflows, tmp_path, cluster_of):
    client = cluster_of(2)
    out = tmp_path / "out"
    # Two runs that each wait for a GO file: both reach the waiting cell only if they run at the same time.
    runs = integral_pipeline.plan_runs([str(waiting_file(tmp_path, "Crab", "Vela"))], output_root=out, project=PROJECT)
    results = []
    batch = threading.Thread(target=lambda: results.extend(integral_pipeline.execute_runs(runs, client=client)))
    batch.start()
    started = [run.run_dir / "wait.started" for run in runs]
    wait_for(lambda: all(path.is_file() for path in started), "both runs waiting at once")
    for run_ in runs:
        (run_.run_dir / "GO").touch()
    batch.join(timeout=PATIENCE_S)
    assert [result.status for result in results] == ["ok", "ok"]

    # A 4-run matrix with a failing run: the others finish, each run's folder holds its own manifest.
    path = crab_file(tmp_path, extra="matrix:\n  src_name: [Crab, FailSource, Vela, 1A 0535+262]")
    planned = integral_pipeline.plan_runs([str(path)], output_root=out, project=PROJECT)
    with Progress(planned, bar=False) as progress:
        results = integral_pipeline.execute_runs(planned, client=client, reporter=progress)
    assert [result.status for result in results] == ["ok", "failed", "ok", "ok"]
    assert results[1].failed_step == "product" and "deliberate failure for FailSource" in results[1].error
    for result in results:
        manifest = json.loads((result.run.run_dir / "manifest.json").read_text())
        assert manifest["status"] == result.status and manifest["run"] == result.run.label
    assert (progress.runs_ok, progress.runs_failed, progress.steps_done, progress.steps_failed) == (3, 1, 8, 1)
    assert not progress.running_runs and not progress.running_steps

    # Incremental skips hold whichever worker executes a run: nothing to do the second time.
    again = integral_pipeline.execute_runs([planned[0], planned[2]], client=client)
    assert [(result.steps_run, result.steps_skipped) for result in again] == [(0, 2), (0, 2)]


def test_a_run_whose_worker_is_killed_resumes_at_the_interrupted_step_next_time(workflows, tmp_path, cluster_of):
    out = tmp_path / "out"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # no rescheduling: the next invocation
        client = cluster_of(1)
    [worker_pid] = client.run(os.getpid).values()
    [planned] = integral_pipeline.plan_runs([str(waiting_file(tmp_path, "Crab"))], output_root=out, project=PROJECT)
    folder = planned.run_dir
    results = []
    batch = threading.Thread(target=lambda: results.extend(integral_pipeline.execute_runs([planned], client=client)))
    batch.start()
    wait_for(lambda: (folder / "wait.started").is_file(), "the wait step started")
    kernel_pid = int((folder / "wait.started").read_text())
    os.kill(worker_pid, signal.SIGKILL)
    batch.join(timeout=PATIENCE_S)
    [killed] = results
    assert killed.status == "failed" and "died" in killed.error and "resume" in killed.error
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert [step["status"] for step in manifest["steps"]] == ["ok"]  # the wait step never finished
    # The orphaned kernel notices that its worker is gone and exits by itself.
    wait_for(lambda: not process_alive(kernel_pid), "the orphaned kernel exiting")

    (folder / "GO").touch()
    [resumed] = integral_pipeline.execute_runs([planned])
    assert (resumed.status, resumed.steps_skipped, resumed.steps_run) == ("ok", 1, 1)
    steps = json.loads((folder / "manifest.json").read_text())["steps"]
    assert [(step["name"], step["status"]) for step in steps] == [("select", "skipped-up-to-date"), ("wait", "ok")]
    assert steps[1]["reason"] == "never executed in this folder"


def test_a_run_rescheduled_after_its_worker_died_resumes_in_the_same_invocation(workflows, tmp_path, cluster_of):
    client = cluster_of(1)
    [worker_pid] = client.run(os.getpid).values()
    [planned] = integral_pipeline.plan_runs(
        [str(waiting_file(tmp_path, "Crab"))], output_root=tmp_path / "out", project=PROJECT
    )
    folder = planned.run_dir
    results = []
    batch = threading.Thread(target=lambda: results.extend(integral_pipeline.execute_runs([planned], client=client)))
    batch.start()
    wait_for(lambda: (folder / "wait.started").is_file(), "the wait step started")
    kernel_pid = int((folder / "wait.started").read_text())
    os.kill(worker_pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(kernel_pid), "the orphaned kernel exiting")
    (folder / "GO").touch()  # the nanny's new worker executes the run again
    batch.join(timeout=PATIENCE_S)
    [result] = results
    assert (result.status, result.steps_skipped, result.steps_run) == ("ok", 1, 1)
    assert [step["status"] for step in json.loads((folder / "manifest.json").read_text())["steps"]] == [
        "skipped-up-to-date",
        "ok",
    ]


def _start_local_server() -> tuple[int, bool]:
    from integral_workflows import hosts

    server = hosts.ensure_local_server(timeout_s=PATIENCE_S)
    return server.pid, server.started


def test_workers_starting_the_local_mmoda_at_once_share_one_server(tmp_path, monkeypatch, cluster_of):
    from integral_workflows import hosts

    home = tmp_path / "mmoda"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(home))  # before the workers start: they inherit it
    client = cluster_of(2)
    try:
        answers = list(client.run(_start_local_server).values())
        assert len(answers) == 2
        assert len({pid for pid, _ in answers}) == 1, answers
        assert sorted(started for _, started in answers) == [False, True]
    finally:
        hosts.stop_local_server(home)


def test_runs_keep_their_folders_apart_from_the_folder_of_another_run(workflows, tmp_path):
    """Two runs of one invocation never write one folder (identical runs run once); checked without a cluster."""
    path = crab_file(tmp_path, extra="matrix:\n  src_name: [Crab, Crab]")
    results = run([path], tmp_path / "out")
    assert len(results) == 1 and results[0].run.run_dir.name == CRAB_ISGRI
