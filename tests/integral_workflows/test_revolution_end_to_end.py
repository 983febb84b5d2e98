"""The revolution workflow end to end on the local MMODA: run_all.py over a range of revolutions.

A real ``python -m mmoda_local serve`` subprocess (started through ``integral_workflows.hosts``, as the
notebooks do) in a temporary data folder, and the real ``revolution_mosaics`` notebook under ``run_all.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from astropy.io import fits
from astropy.table import Table

from integral_workflows import hosts

from ..conftest import REPO
from .fitsverify import assert_fitsverify_clean

PARAMETER_FILE = """\
workflow: revolution
description: two revolutions, one of them the current (last) one
parameters:
  host_type: local
  use_jemx2: false
  s_max: 50
matrix:
  runs:
    - {rev_num: "0300", to_exclude_from_title: Crab}
    - {rev_num: 0, use_jemx1: false, extract_source_products: true}
"""


@pytest.fixture
def local_home(tmp_path, monkeypatch):
    """A private local MMODA folder and chunk cache; the server is stopped after the test."""
    home = tmp_path / "mmoda"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(home))
    monkeypatch.setenv("INTEGRAL_WORKFLOWS_CACHE", str(tmp_path / "chunks"))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    yield home
    hosts.stop_local_server(home)


def run_all(*arguments, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "run_all.py"), *map(str, arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def jobs_computed(home: Path) -> int:
    state = json.loads((home / "server.json").read_text())
    return requests.get(f"{state['url']}/local/stats", timeout=10).json()["counters"].get("jobs_computed", 0)


def test_a_range_of_revolutions_makes_mosaics_per_observation_and_instrument(local_home, tmp_path):
    token = subprocess.run(
        [sys.executable, "-m", "mmoda_local", "token", "--roles", "general", "--data-dir", str(local_home)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = dict(os.environ, ODA_TOKEN=token)
    parameter_file = tmp_path / "revolutions.yaml"
    parameter_file.write_text(PARAMETER_FILE)
    output_root = tmp_path / "outputs"
    first = run_all(parameter_file, "--output-root", output_root, "--jobs", "2", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert_fitsverify_clean(sorted(output_root.rglob("*.fits")))

    # Revolution 0300: the Galactic Centre observations with ISGRI and JEM-X1, the Crab's left out by title.
    run_dir = output_root / "revolution" / "0300" / "isgri_28-40keV_jemx1_3-20keV_CONS"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["workflow"] == "revolution"
    observations = Table.read(run_dir / "revolution_observations.ecsv")
    excluded = observations[observations["excluded"]]
    assert list(excluded["obs_id"]) == ["07700030001"] and list(excluded["title"]) == ["Crab"]
    assert not list(run_dir.glob("07700030001_*"))
    summary = Table.read(run_dir / "revolution_summary.ecsv")
    assert set(summary["instrument"]) == {"isgri", "jemx1"}
    assert set(summary["obs_id"]) <= set(observations["obs_id"][~observations["excluded"]])
    assert "Galactic Center" in set(summary["title"])
    for row in summary:
        stem = f"{row['obs_id']}_{row['instrument']}"
        for suffix in ("_mosaic.fits", "_mosaic.png", "_sources.ecsv", "_sources.reg"):
            assert (run_dir / f"{stem}{suffix}").is_file(), stem + suffix
        assert row["n_done"] == row["n_scw"] > 0
        with fits.open(run_dir / f"{stem}_mosaic.fits") as hdus:
            header = hdus[0].header
            assert "SIMULATED" in header["ORIGIN"] and header["OBJECT"] == row["title"]
    sources = Table.read(run_dir / "revolution_sources.ecsv")
    assert {"obs_id", "instrument", "name", "rate", "rate_error", "significance"} <= set(sources.colnames)
    assert len(sources) == sum(summary["n_sources"]) > 0
    galactic_centre = sources[(sources["instrument"] == "isgri") & (sources["title"] == "Galactic Center")]
    assert "1E 1740.7-2942" in set(galactic_centre["name"])
    jobs = Table.read(run_dir / "revolution_jobs.ecsv")
    assert set(jobs["status"]) == {"done"} and len(jobs) == sum(summary["n_scw"])
    step = manifest["steps"][0]
    assert step["name"] == "revolution_mosaics" and step["extra"]["revolution"] == "0300"
    # The notebook recorded what each product is (descriptors in its step record): one image per mosaic.
    descriptors = json.loads((run_dir / "revolution_mosaics.step.json").read_text())["descriptors"]
    images = [product for product in descriptors if product["kind"] == "image"]
    assert len(images) == len(summary)
    assert all(product["details"]["obsids"] and product["period"][0] < product["period"][1] for product in images)

    # rev_num 0: the current revolution, i.e. the last of the mission, with light curves and spectra.
    current = output_root / "revolution" / "current" / "isgri_28-40keV_CONS"
    manifest = json.loads((current / "manifest.json").read_text())
    extra = manifest["steps"][0]["extra"]
    assert extra["revolution"] == "2885" and extra["instruments"] == ["isgri"]
    descriptors = json.loads((current / "revolution_mosaics.step.json").read_text())["descriptors"]
    shown = [product for product in descriptors if product["kind"] in ("image", "light_curve", "spectrum")]
    assert {product["kind"] for product in shown} == {"image", "light_curve", "spectrum"}
    for product in shown:
        files = [product["path"], *product["companions"]]
        assert all((current / name).is_file() for name in files), product["title"]
        if product["kind"] == "spectrum":
            assert [
                Path(name).name.endswith(suffix) for name, suffix in zip(files, (".fits", "_arf.fits", "_rmf.fits"))
            ] == [True] * 3

    leaks = [path for path in output_root.rglob("*") if path.is_file() and token.encode() in path.read_bytes()]
    assert leaks == []

    computed = jobs_computed(local_home)
    second = run_all(parameter_file, "--output-root", output_root, env=env)
    assert second.returncode == 0
    assert (second.stdout + second.stderr).count("up to date") >= 2
    assert jobs_computed(local_home) == computed
