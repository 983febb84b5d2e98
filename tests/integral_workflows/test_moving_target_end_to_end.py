"""The moving_target workflow end to end: run_all.py on a local MMODA with a Jupiter injected.

One command: Jupiter's ScWs along its track (scw_selection with a body as src_name), the Crab calibration,
one image per ScW stacked in Jupiter's frame, fluxes in mCrab and erg/cm²/s; every executed notebook beside
its products. A real ``python -m mmoda_local serve --inject jupiter=5`` subprocess serves it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from integral_workflows import hosts

from .fitsverify import assert_fitsverify_clean
from .test_long_term_end_to_end import files_under, local_home, mint_token, run_all  # noqa: F401 - fixture

PERIOD = {"T1": "2021-05-01T00:00:00", "T2": "2021-05-16T00:00:00"}


def write_parameter_file(folder, **changes):
    parameters = {
        "src_name": "Jupiter",
        "RA": 0.0,
        "DEC": 0.0,
        "host_type": "local",
        "instrument": "isgri",
        "E1_keV": 28.0,
        "E2_keV": 40.0,
        "radius": 8.0,
        "crab_scws_per_period": 3,
        **PERIOD,
        **changes,
    }
    lines = ["workflow: moving_target", "description: Jupiter test run", "parameters:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in parameters.items()]
    path = folder / "jupiter_test.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_all_recovers_an_injected_jupiter_in_mcrab_and_erg(local_home, tmp_path):  # noqa: F811 - fixture
    hosts.ensure_local_server(data_dir=local_home, serve_args=["--inject", "jupiter=5", "--workers", "2"])
    token = mint_token(local_home)
    env = dict(os.environ, ODA_TOKEN=token)
    output_root = tmp_path / "outputs"
    finished = run_all(write_parameter_file(tmp_path), "--output-root", output_root, env=env, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    run_dir = output_root / "moving_target" / "Jupiter" / "isgri_28-40keV_2021-05-01_2021-05-16"
    assert_fitsverify_clean(sorted(output_root.rglob("*.fits")))
    for name in (
        "01_scw_selection.ipynb",
        "02_crab_calibration.ipynb",
        "03_moving_target.ipynb",
        "scws.ecsv",
        "crab_calibration.ecsv",
        "crab_rates.ecsv",
        "crab_calibration.png",
        "stack_all.fits",
        "stack_2021.fits",
        "body_fluxes.ecsv",
        "body_scws.ecsv",
        "stack.png",
        "significance.png",
        "body_flux_time.png",
        "moving_target_jobs.ecsv",
        "manifest.json",
    ):
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and [s["status"] for s in manifest["steps"]] == ["ok", "ok", "ok"]
    selected = Table.read(run_dir / "scws.ecsv")
    assert 20 < len(selected) < 80 and np.all(selected["offaxis_deg"] < 8.0)
    step = next(s for s in manifest["steps"] if s["name"] == "moving_target")
    assert set(step["jobs"]["scws"]) == set(selected["scw_id"]), "every ScW accounted for"
    fluxes = Table.read(run_dir / "body_fluxes.ecsv")
    assert fluxes.meta["unit"] == "mCrab"
    body = fluxes[(fluxes["kind"] == "all") & (fluxes["where"] == "body")][0]
    control = fluxes[(fluxes["kind"] == "all") & (fluxes["where"] == "control")][0]
    assert abs(body["fit"] - 5.0) < 3 * body["fit_error"] and body["fit_error"] < 2.5
    assert abs(control["fit"]) < 3 * control["fit_error"]
    calibration = Table.read(run_dir / "crab_calibration.ecsv")
    expected_erg = body["fit"] * calibration.meta["band_energy_flux"] / 1000.0
    assert body["fit_erg"] == pytest.approx(expected_erg, rel=1e-9)
    scws = Table.read(run_dir / "body_scws.ecsv")
    assert np.all(scws["parallax_arcsec"] > 1.0) and np.all(scws["parallax_arcsec"] < 62.0)
    with fits.open(run_dir / "stack_all.fits") as hdus:
        assert hdus[1].header["BODYFRAM"] and "SIMULATED" in hdus[0].header["ORIGIN"]
        assert any(hdu.header.get("IMATYPE") == "PSF_TEMPLATE" for hdu in hdus[1:])
    assert "SIMULATED DATA" in (run_dir / "03_moving_target.ipynb").read_text()
    leaks = [path for path in files_under(output_root) if token.encode() in path.read_bytes()]
    assert leaks == []
