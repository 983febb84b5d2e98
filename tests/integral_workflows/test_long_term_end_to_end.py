"""The long-term workflow end to end on the local MMODA: papermill, run_all.py, reruns, kills, faults, tokens.

These tests start real ``python -m mmoda_local serve`` subprocesses (through
``integral_workflows.hosts``, as the notebooks do) in a temporary data folder,
and run the real notebooks under papermill and ``run_all.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from astropy.table import Table

from integral_workflows import hosts

from ..conftest import REPO

SHORT_PERIOD = {"T1": "2005-03-01T00:00:00", "T2": "2005-04-15T00:00:00"}


@pytest.fixture
def local_home(tmp_path, monkeypatch):
    """Environment of a workflow run: a private local MMODA folder and chunk cache; the server stopped after."""
    home = tmp_path / "mmoda"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(home))
    monkeypatch.setenv("INTEGRAL_WORKFLOWS_CACHE", str(tmp_path / "chunks"))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    yield home
    hosts.stop_local_server(home)


def mint_token(home: Path, roles: str = "general") -> str:
    """A token the local server of ``home`` accepts (its secret is created if needed)."""
    return subprocess.run(
        [sys.executable, "-m", "mmoda_local", "token", "--roles", roles, "--data-dir", str(home)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def write_parameter_file(folder: Path, name: str = "crab.yaml", **changes) -> Path:
    parameters = {
        "src_name": "Crab",
        "RA": 83.63308,
        "DEC": 22.0145,
        "host_type": "local",
        "s_max": 10,
        "instrument": "isgri",
        "E1_keV": 28.0,
        "E2_keV": 40.0,
        **SHORT_PERIOD,
    }
    parameters.update(changes)
    lines = ["workflow: long_term", "description: test run", "parameters:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in parameters.items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def run_all(*arguments, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "run_all.py"), *map(str, arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def server_stats(home: Path) -> dict:
    state = json.loads((home / "server.json").read_text())
    return requests.get(f"{state['url']}/local/stats", timeout=10).json()["counters"]


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_a_notebook_runs_under_the_plain_papermill_cli(local_home, tmp_path):
    out = tmp_path / "selection"
    executed = tmp_path / "scw_selection.ipynb"
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(REPO / "notebooks" / "scw_selection.ipynb"),
        str(executed),
        "-p",
        "output_dir",
        str(out),
        "-p",
        "T1",
        SHORT_PERIOD["T1"],
        "-p",
        "T2",
        SHORT_PERIOD["T2"],
        "-p",
        "src_name",
        "Crab",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    table = Table.read(out / "scws.ecsv")
    assert 20 < len(table) < 200
    assert "SIMULATED DATA" in executed.read_text()


def test_run_all_makes_every_product_records_them_and_never_writes_the_token(local_home, tmp_path):
    token = mint_token(local_home)
    env = dict(os.environ, ODA_TOKEN=token)
    parameter_file = write_parameter_file(tmp_path)
    output_root = tmp_path / "outputs"
    first = run_all(parameter_file, "--output-root", output_root, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = output_root / "long_term" / "Crab" / "isgri_28-40keV_2005-03-01_2005-04-15"
    for name in (
        "01_scw_selection.ipynb",
        "02_mosaic.ipynb",
        "03_lightcurve.ipynb",
        "04_spectrum.ipynb",
        "scws.ecsv",
        "mosaic.fits",
        "mosaic.png",
        "sources.reg",
        "lightcurve_Crab.fits",
        "spectrum_Crab.fits",
        "spectrum_Crab_arf.fits",
        "spectrum_Crab_rmf.fits",
        "manifest.json",
    ):
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    selected = Table.read(run_dir / "scws.ecsv")
    mosaic_step = next(step for step in manifest["steps"] if step["name"] == "mosaic")
    outcomes = mosaic_step["jobs"]["scws"]
    assert set(outcomes) == set(selected["scw_id"]), "every selected ScW has an outcome in the manifest"
    assert {o["status"] for o in outcomes.values()} <= {"done", "skipped", "failed"}
    assert all(product["sha256"] for product in mosaic_step["products"])
    assert manifest["versions"]["oda_api"] == "1.3.5"

    leaks = [path for path in files_under(output_root) if token.encode() in path.read_bytes()]
    assert leaks == []

    computed = server_stats(local_home)["jobs_computed"]
    second = run_all(parameter_file, "--output-root", output_root, env=env)
    assert second.returncode == 0
    assert "up to date" in second.stdout + second.stderr
    assert server_stats(local_home)["jobs_computed"] == computed

    rerun = run_all(
        "rerun", run_dir / "02_mosaic.ipynb", "-p", "detection_threshold", "12", "--output-root", output_root, env=env
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    rerun_dir = Path(str(run_dir) + "_rerun-1")
    rerun_manifest = json.loads((rerun_dir / "manifest.json").read_text())
    assert rerun_manifest["parent"]["diff"] == {"detection_threshold": {"old": 7.0, "new": 12.0}}
    assert rerun_manifest["parent"]["step"] == "mosaic"
    assert (rerun_dir / "02_mosaic.ipynb").exists() and (rerun_dir / "mosaic.fits").exists()


def test_bad_parameters_stop_before_any_job(local_home, tmp_path):
    parameter_file = write_parameter_file(tmp_path, E1_keV=10.0)
    finished = run_all(parameter_file, "--output-root", tmp_path / "outputs")
    assert finished.returncode == 2
    assert "E1_keV" in finished.stdout + finished.stderr
    assert not (tmp_path / "outputs").exists()
    assert not (local_home / "server.json").exists(), "no server was even started"


def test_a_killed_run_resumes_without_recomputing_finished_chunks(local_home, tmp_path):
    hosts.ensure_local_server(data_dir=local_home, serve_args=["--latency-per-scw", "0.15", "--workers", "1"])
    parameter_file = write_parameter_file(tmp_path, s_max=5)
    output_root = tmp_path / "outputs"
    chunks = tmp_path / "chunks"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "run_all.py"), str(parameter_file), "--output-root", str(output_root)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(chunks.glob("*.json.gz"))) < 3:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    finished_before = len(list(chunks.glob("*.json.gz")))
    assert finished_before >= 3
    time.sleep(2)  # the orphaned kernel notices its parent is gone

    resumed = run_all(parameter_file, "--output-root", output_root)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    stats = server_stats(local_home)
    distinct_chunks = len(list(chunks.glob("*.json.gz")))
    # every chunk was computed once by the server, although the first run was killed mid-way
    assert stats["jobs_computed"] == distinct_chunks
    assert stats.get("jobs_resubmitted", 0) == 0


def test_faults_at_a_high_rate_still_deliver_every_good_scw(local_home, tmp_path):
    """Every kind of fault at once; which request is hit depends on timing, the outcome must not.

    Retries are bounded by a time budget (15 min per chunk on the local backend), not a count, and no path
    gives up on a transient fault earlier (ScW lists and time conversion go through the same session), so
    the probability that a chunk exhausts its budget at these rates is far below 1e-9 (bench/soak_faults.py).
    """
    hosts.ensure_local_server(
        data_dir=local_home,
        serve_args=[
            "--fault-http500",
            "0.2",
            "--fault-drop",
            "0.1",
            "--fault-fail",
            "0.2",
            "--fault-stall",
            "0.1",
            "--seed",
            "5",
        ],
    )
    parameter_file = write_parameter_file(tmp_path, s_max=8)
    output_root = tmp_path / "outputs"
    finished = run_all(parameter_file, "--output-root", output_root)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    run_dir = output_root / "long_term" / "Crab" / "isgri_28-40keV_2005-03-01_2005-04-15"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    selected = set(Table.read(run_dir / "scws.ecsv")["scw_id"])
    for step in manifest["steps"][1:]:
        statuses = {scw: outcome["status"] for scw, outcome in step["jobs"]["scws"].items()}
        assert set(statuses) == selected
        assert set(statuses.values()) == {"done"}, step["name"]
    stats = server_stats(local_home)
    assert stats.get("faults_http_500", 0) + stats.get("faults_failed_jobs", 0) > 0


def test_a_server_killed_mid_step_fails_the_step_and_the_run(local_home, tmp_path):
    """The dead-server case: no "ok" step built from the ScWs that happened to finish, but a clear failure."""
    server = hosts.ensure_local_server(data_dir=local_home, serve_args=["--latency-per-scw", "0.3", "--workers", "1"])
    parameter_file = write_parameter_file(tmp_path, s_max=4)
    output_root = tmp_path / "outputs"
    chunks = tmp_path / "chunks"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "run_all.py"), str(parameter_file), "--output-root", str(output_root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and len(list(chunks.glob("*.json.gz"))) < 2:
            time.sleep(0.2)
        os.kill(server.pid, signal.SIGKILL)  # the server was started by this test, not by the notebooks
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0, output[-3000:]
    assert "BackendUnavailable" in output and ("stopped answering" in output or "has exited" in output), output[-3000:]
    run_dir = output_root / "long_term" / "Crab" / "isgri_28-40keV_2005-03-01_2005-04-15"
    assert not (run_dir / "mosaic.fits").exists(), "no mosaic is made from the ScWs that happened to finish"


def test_a_belt_scw_in_a_chunk_ends_skipped_with_the_backend_reason_in_the_manifest(local_home, tmp_path):
    """Belt pointings kept in the selection reach MMODA; the backend reports them and the manifest says so."""
    parameter_file = write_parameter_file(tmp_path, exclude_radiation_belts=False, min_good_time_s=0, s_max=20)
    output_root = tmp_path / "outputs"
    finished = run_all(parameter_file, "--output-root", output_root)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    run_dir = next((output_root / "long_term" / "Crab").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    mosaic_step = next(step for step in manifest["steps"] if step["name"] == "mosaic")
    outcomes = mosaic_step["jobs"]["scws"]
    skipped = {scw: o for scw, o in outcomes.items() if o["status"] == "skipped"}
    assert skipped, "the selection held belt pointings: some ScW must be skipped"
    # each with the backend's reason and the job that reported it
    assert all(o["reason"] and o["job_id"] for o in skipped.values()), skipped
    assert any("radiation belt" in o["reason"] for o in skipped.values()), skipped
    assert "done" in {o["status"] for o in outcomes.values()}
