"""The transient follow-up: field geometry, bad notices refused, the notebook and the ``transient`` workflow.

The end-to-end tests run a real ``python -m mmoda_local serve`` (started through ``integral_workflows.hosts``,
as the notebooks do) in a private folder shared by this module's tests, with the real notebook under papermill
and under ``run_all.py``. Their truth is the local MMODA's configuration (the injected burst's time and
position, the simulated list's burst) and geometry computed here with astropy, not the module's own frame.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import papermill
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from integral_workflows import hosts, parameters, transient
from integral_workflows.parameters import ParameterError

from ..conftest import REPO
from .fitsverify import assert_fitsverify_clean

NOTEBOOK = REPO / "notebooks" / "transient_followup.ipynb"
#: The local MMODA's default injection (mmoda_local.spiacs.DEFAULT_INJECTIONS): T0, position, 0.8 s long.
INJECTED = {"event_name": "GRB 180312 (injected)", "t0_utc": "2018-03-12T14:45:00.000", "RA": 264.0, "DEC": -31.0}
#: A burst of the local MMODA's simulated list, 141° from the pointing at its time.
LISTED = {"event_name": "GRB 090510", "t0_utc": "2009-05-10T00:22:59.970", "RA": 333.552, "DEC": -26.583}
#: Short windows keep the runs fast.
WINDOWS = {"before_s": 20.0, "after_s": 30.0, "search_before_s": 2.0, "search_after_s": 8.0}


# -- geometry ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instrument, y, z, expected",
    [
        ("ISGRI", 0.0, 0.0, 1.0),
        ("ISGRI", 4.5, -4.5, 1.0),  # corner of the 9°×9° fully coded square
        ("ISGRI", 9.5, 0.0, 0.5),  # half-way to the 29°×29° zero-response square
        ("ISGRI", 9.5, 9.5, 0.25),
        ("ISGRI", 14.5, 0.0, 0.0),
        ("ISGRI", 0.0, 20.0, 0.0),
        ("JEM-X", 2.4, 0.0, 1.0),  # 4.8° fully coded diameter
        ("JEM-X", 3.0, 4.0, (6.6 - 5.0) / (6.6 - 2.4)),
        ("JEM-X", 6.6, 0.0, 0.0),
        ("SPI", 8.0, 0.0, 1.0),  # 16° fully coded diameter
        ("SPI", 0.0, 15.5, 0.0),  # 31° zero response
    ],
)
def test_coded_fraction_of_the_approximate_fields(instrument, y, z, expected):
    field = transient.INSTRUMENT_FIELDS[instrument]
    assert float(transient.coded_fraction(field, y, z)) == pytest.approx(expected, abs=1e-12)


def _attitude(distance_km=100_000.0, integral=(0.0, 0.0)):
    """Pointing at RA 0, Dec 0 with Z towards the north pole (Y then points to RA 90°)."""
    return transient.Attitude(
        utc="2010-01-01T00:00:00",
        x=(0.0, 0.0),
        y=(90.0, 0.0),
        z=(0.0, 90.0),
        integral_ra=integral[0],
        integral_dec=integral[1],
        distance_km=distance_km,
        revolution=None,
        answer={},
    )


def test_spacecraft_frame_and_earth_occultation():
    attitude = _attitude()
    theta, y, z = transient.instrument_frame(attitude, [5.0, 0.0, 180.0], [0.0, 3.0, 0.0])
    assert theta == pytest.approx([5.0, 3.0, 180.0])
    assert y[:2] == pytest.approx([5.0, 0.0]) and z[:2] == pytest.approx([0.0, 3.0])
    # INTEGRAL 100 000 km from the Earth towards RA 0: the Earth (and 100 km of air) covers asin(6478/1e5) = 3.71°
    # around RA 180, Dec 0 seen from it
    radius = np.degrees(np.arcsin((6378.137 + 100.0) / 100_000.0))
    assert attitude.earth_angular_radius_deg == pytest.approx(radius)
    assert transient.earth_occulted(attitude, [180.0, 180.0], [radius - 0.1, radius + 0.1]).tolist() == [True, False]


def test_exposure_uses_the_best_place_of_the_error_circle():
    attitude = _attitude()
    outside = transient.Event("e", "2010-01-01T00:00:00", 16.0, 0.0, None, "GRB")
    circle = transient.Event("e", "2010-01-01T00:00:00", 16.0, 0.0, 3.0, "GRB")
    point = transient.exposure(attitude, outside)["instruments"]["ISGRI"]
    assert point.coded_fraction == 0.0 and not point.exposed and point.verdict == "outside the field"
    # the circle reaches 13° from the axis: (14.5 − 13) / 10 of ISGRI's coding
    wide = transient.exposure(attitude, circle)["instruments"]["ISGRI"]
    assert wide.coded_fraction == 0.0 and wide.best_coded_fraction == pytest.approx(0.15, abs=1e-6)
    assert wide.exposed and "partly in the field" in wide.verdict
    nowhere = transient.exposure(attitude, transient.Event("e", "2010-01-01T00:00:00", None, None, None, "GW"))
    assert nowhere["theta_deg"] is None and all(v.coded_fraction is None for v in nowhere["instruments"].values())


# -- bad notices ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, name, words",
    [
        ({"event_kind": "XYZ"}, "event_kind", "'GRB', 'GW', 'neutrino', 'FRB', 'other'"),
        ({"t0_utc": "2019-04-25 noon"}, "t0_utc", "not a valid UTC time"),
        ({"before_s": -10.0}, "before_s", "0 < before_s"),
        ({"after_s": 0.0}, "after_s", "0 < after_s"),
        ({"search_after_s": 500.0}, "search_after_s", "must not exceed after_s"),
    ],
)
def test_bad_notice_is_refused_naming_the_parameter(values, name, words):
    with pytest.raises(ParameterError) as caught:
        parameters.validate("transient_followup", values)
    assert name in caught.value.names and words in str(caught.value)


def test_event_kind_is_case_insensitive_and_zero_position_means_none():
    p = parameters.validate("transient_followup", {"event_kind": "neutrino".upper(), "RA": 0.0, "DEC": 0.0})
    event = transient.event_from(p)
    assert p.event_kind == "neutrino" and not event.has_position and event.radius is None


def test_run_all_refuses_bad_events_before_anything_runs(tmp_path):
    parameter_file = tmp_path / "bad.yaml"
    parameter_file.write_text(
        "workflow: transient\nparameters:\n  host_type: local\nmatrix:\n  events:\n"
        '    - {event_name: "A", t0_utc: "2019-04-25T08:18:05", event_kind: XYZ}\n'
        '    - {event_name: "B", t0_utc: "yesterday", event_kind: GRB}\n'
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "run_all.py"), str(parameter_file), "--output-root", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, MMODA_LOCAL_HOME=str(tmp_path / "no-server")),
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    message = done.stdout + done.stderr
    assert "event_kind" in message and "XYZ" in message and "t0_utc" in message and "yesterday" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "no-server").exists()  # no job, no server


# -- end to end on the local MMODA -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    """One private local MMODA folder for this module's end-to-end tests; the server is stopped at the end."""
    home = tmp_path_factory.mktemp("transient-mmoda")
    yield home
    hosts.stop_local_server(home)


@pytest.fixture
def local_home(shared_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(shared_home))
    monkeypatch.setenv("INTEGRAL_WORKFLOWS_CACHE", str(shared_home / "chunks"))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    return shared_home


def _separation(event, ra, dec) -> float:
    return float(SkyCoord(event["RA"] * u.deg, event["DEC"] * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg)).deg)


def _run_notebook(tmp_path, event):
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "executed.ipynb"),
        parameters={**event, **WINDOWS, "radius": 0.1, "output_dir": str(out)},
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
    )
    return out, json.loads((out / "transient_summary.json").read_text())


def test_notebook_for_a_burst_inside_the_ibis_field(local_home, tmp_path):
    out, record = _run_notebook(tmp_path, INJECTED)
    scw = record["scw"]
    assert scw["scw_id"] == "192900460010.001" and scw["data_level"] == "CONS"
    # θ against the ScW list's pointing, computed here
    theta = record["position_in_spacecraft_frame"]["theta_deg"]
    assert theta == pytest.approx(_separation(INJECTED, scw["pointing_ra_deg"], scw["pointing_dec_deg"]), abs=0.01)
    assert theta < 4.5 and record["position_in_spacecraft_frame"]["earth_occulted"] is False
    assert {name: facts["verdict"] for name, facts in record["instruments"].items()} == {
        "ISGRI": "fully coded",
        "JEM-X": "fully coded",
        "SPI": "fully coded",
    }
    assert record["integral"]["distance_km"] > 9000 and record["simulated"] is True
    # the injected 0.8 s burst is found where it was put, and is far above the background's noise
    spiacs = record["spiacs"]
    best = spiacs["best_excess"]
    assert spiacs["detected"] and best["significance"] > 6.0
    assert -0.1 <= best["start_s"] <= 0.8 and best["timescale_s"] <= 1.0
    # ISGRI saw the position: image, sources and light curve of that ScW; the burst is not in ISGRI's sky
    isgri = record["isgri"]
    assert isgri["made"] and isgri["upper_limit_3sigma_ct_s"] > 0 and abs(isgri["significance"]) < 5
    for name in ("isgri_image.fits", "isgri_image.png", "isgri_lc.fits", "spiacs_lc.fits", "transient_summary.txt"):
        assert (out / name).is_file(), name
    text = (out / "transient_summary.txt").read_text()
    assert "GRB 180312 (injected)" in text and "SIMULATED" in text and "192900460010" in text
    step = json.loads((out / "transient_followup.step.json").read_text())
    gallery = [d for d in step["descriptors"] if d["kind"] in ("image", "light_curve")]
    assert {d["instrument"] for d in gallery} == {"spi_acs", "isgri"}


def test_notebook_for_a_burst_outside_the_ibis_field(local_home, tmp_path):
    out, record = _run_notebook(tmp_path, LISTED)
    scw = record["scw"]
    theta = record["position_in_spacecraft_frame"]["theta_deg"]
    assert theta == pytest.approx(_separation(LISTED, scw["pointing_ra_deg"], scw["pointing_dec_deg"]), abs=0.01)
    assert theta > 90 and not any(facts["exposed"] for facts in record["instruments"].values())
    assert not record["isgri"]["made"] and "outside the IBIS field" in record["isgri"]["reason"]
    assert not (out / "isgri_image.fits").exists()
    best = record["spiacs"]["best_excess"]
    assert record["spiacs"]["detected"] and -0.1 <= best["start_s"] <= 0.3
    limits = record["spiacs"]["fluence_upper_limits_3sigma_erg_cm2"]
    assert set(limits) == {"short-hard", "long-soft"}
    for by_scale in limits.values():
        assert all(low == high > 0 for low, high in by_scale.values())  # one direction: one value


def test_workflow_processes_three_events_incrementally(local_home, tmp_path):
    text = (REPO / "parameters" / "transients.yaml").read_text()
    text = text.replace("  before_s: 100\n  after_s: 300\n", "  before_s: 20\n  after_s: 30\n  search_after_s: 8\n")
    text = text.replace("search_before_s: 10, search_after_s: 10", "search_before_s: 5, search_after_s: 5")
    parameter_file = tmp_path / "transients.yaml"
    parameter_file.write_text(text)
    command = [sys.executable, str(REPO / "run_all.py"), str(parameter_file), "--output-root", str(tmp_path / "o")]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    folders = sorted((tmp_path / "o" / "transient").glob("*/*"))
    assert_fitsverify_clean(sorted((tmp_path / "o").rglob("*.fits")))
    assert [f.parent.name for f in folders] == ["GRB_090510", "GRB_180312_injected", "S190425z"]
    records = {f.parent.name: json.loads((f / "transient_summary.json").read_text()) for f in folders}
    for folder in folders:
        assert (folder / "transient_summary.txt").is_file()
        assert json.loads((folder / "manifest.json").read_text())["status"] == "ok"
    assert records["GRB_180312_injected"]["isgri"]["made"] and not records["GRB_090510"]["isgri"]["made"]
    gw = records["S190425z"]
    assert gw["event"]["ra_deg"] is None and gw["position_in_spacecraft_frame"]["theta_deg"] is None
    for by_scale in gw["spiacs"]["fluence_upper_limits_3sigma_erg_cm2"].values():
        assert all(0 < low < high for low, high in by_scale.values())  # the range over directions
    assert "no position" in (folders[2] / "transient_summary.txt").read_text()

    # in this process (-j 0): nothing to run, no cluster to start
    again = subprocess.run(
        [*command, "-j", "0"], cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ)
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for folder in folders:
        steps = json.loads((folder / "manifest.json").read_text())["steps"]
        assert [step["status"] for step in steps] == ["skipped-up-to-date"]
