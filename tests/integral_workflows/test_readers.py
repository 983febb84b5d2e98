"""The products of a small long-term run read by the tools astronomers use: fitsverify, stingray, astropy, sherpa.

One run of ``run_all.py`` (Crab, ISGRI 28-40 keV, six weeks of 2005, local MMODA in a private folder) makes the
mosaic, light curves and spectra; each test reads them with a reader nobody here wrote. The truth of each check
comes from outside the writer: the ScW list of the run (times), the simulated sky's documented Crab index, the
notebook's own fit (which sherpa must reproduce with the standard OGIP steps of docs/science_notes.md).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from integral_workflows import hosts

from .fitsverify import assert_fitsverify_clean
from .test_long_term_end_to_end import run_all, write_parameter_file

#: The simulated Crab's photon index (docs/simulated_sky.md, "The Crab is one power law ... Γ = 2.13").
CRAB_INDEX = 2.13


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """The run folder of one small long-term run (every product of the workflow)."""
    root = tmp_path_factory.mktemp("readers")
    parameter_file = write_parameter_file(root)  # the Crab with ISGRI, 28-40 keV, 2005-03-01 to 2005-04-15
    home = root / "mmoda"
    env = {
        **os.environ,
        "MMODA_LOCAL_HOME": str(home),
        "INTEGRAL_WORKFLOWS_CACHE": str(root / "chunks"),
        "OPENBLAS_NUM_THREADS": "1",
    }
    try:
        finished = run_all(parameter_file, "--output-root", root / "out", env=env)
    finally:
        hosts.stop_local_server(home)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    (folder,) = [path.parent for path in (root / "out").rglob("manifest.json")]
    return folder


def test_fitsverify_finds_nothing_in_any_product(run_folder):
    products = sorted(run_folder.glob("*.fits"))
    kinds = {re.sub(r"_.*", "", path.stem) for path in products}
    assert {"mosaic", "lightcurve", "spectrum"} <= kinds, [p.name for p in products]
    assert_fitsverify_clean(products)


def test_mosaic_images_are_distinct_with_their_own_units_and_the_whole_span(run_folder):
    scws = Table.read(run_folder / "scws.ecsv")
    with fits.open(run_folder / "mosaic.fits") as hdul:
        images = hdul[1:]
        assert [(hdu.name, hdu.ver) for hdu in images] == [("ISGR-MOSA-IMA", version) for version in (1, 2, 3, 4)]
        units = {hdu.header["IMATYPE"]: hdu.header.get("BUNIT") for hdu in images}
        assert units == {"INTENSITY": "count/s", "VARIANCE": "count2/s2", "SIGNIFICANCE": None, "EXPOSURE": "s"}
        for hdu in images:
            header = hdu.header
            # the whole mosaic's times: they span the run's ScWs (IJD), not the first chunk's
            assert header["TSTART"] <= float(np.min(scws["tstart"])) + 1e-6
            assert header["TSTOP"] >= float(np.max(scws["tstop"])) - 1e-6
            assert header["TELAPSE"] == pytest.approx(header["TSTOP"] - header["TSTART"])
            assert header["MJD-OBS"] == pytest.approx(Time(header["DATE-OBS"], scale="utc").mjd)
        exposure = images[3].data
        intensity = images[0].data
        cut = exposure < images[0].header["EXPCUT"] * np.nanmax(exposure)
        assert np.all(np.isnan(intensity[cut]))
        # no edge pixel seen for milliseconds passes for a 1e6 ct/s source
        assert np.nanmax(np.abs(intensity)) < 1e3


def light_curve_files(run_folder) -> list[Path]:
    files = sorted(run_folder.glob("lightcurve_*.fits"))
    assert files, "the run made no light curve"
    return files


def test_each_light_curve_and_spectrum_names_its_own_source(run_folder):
    files = light_curve_files(run_folder) + sorted(
        path for path in run_folder.glob("spectrum_*.fits") if not path.stem.endswith(("_arf", "_rmf"))
    )
    for path in files:
        with fits.open(path) as hdul:
            name = hdul[1].header["NAME"]
            assert hdul[0].header["OBJECT"] == hdul[1].header["OBJECT"] == name, path.name
            assert path.stem.endswith(name.replace(" ", "_")), path.name


def test_stingray_reads_light_curves_with_absolute_times(run_folder):
    from stingray import Lightcurve

    scws = Table.read(run_folder / "scws.ecsv")
    first_scw_mjd = float(np.min(scws["tstart"])) + 51544.0
    last_scw_mjd = float(np.max(scws["tstop"])) + 51544.0
    for path in light_curve_files(run_folder):
        with warnings.catch_warnings():
            # stingray warns that its FITS light-curve reading "is still under testing"
            warnings.simplefilter("ignore")
            curve = Lightcurve.read(str(path), fmt="hea")
        mjd = curve.mjdref + np.asarray(curve.time, dtype=float) / 86400.0
        with fits.open(path) as hdul:
            header, data = hdul[1].header, hdul[1].data
        # the bins lie within the run's ScWs (the ScW list is the truth, not the writer)
        assert first_scw_mjd - 1.0 <= mjd.min() and mjd.max() <= last_scw_mjd + 1.0, path.name
        # and where the file's own DATE-OBS (TT, TIMESYS; whole seconds) says the curve starts
        start = Time(header["DATE-OBS"], scale="tt").mjd
        assert mjd[0] - float(data["XAX_E"][0]) / 86400.0 == pytest.approx(start, abs=1.5 / 86400.0), path.name


def test_astropy_reads_light_curves_as_time_series_with_absolute_times(run_folder):
    from astropy.timeseries import TimeSeries

    scws = Table.read(run_folder / "scws.ecsv")
    for path in light_curve_files(run_folder):
        with warnings.catch_warnings():
            # the time reference position (INTEGRAL, TREFPOS TOPOCENTER) has no OBSGEO: astropy says it ignores it
            warnings.simplefilter("ignore")
            series = TimeSeries.read(path, hdu=1, format="fits", time_column="TIME", astropy_native=True)
        assert isinstance(series.time, Time) and series.time.scale == "tt"
        mjd = series.time.mjd
        assert float(np.min(scws["tstart"])) + 51544.0 - 1.0 <= mjd.min(), path.name
        assert mjd.max() <= float(np.max(scws["tstop"])) + 51544.0 + 1.0, path.name
        with fits.open(path) as hdul:
            start = Time(hdul[1].header["DATE-OBS"], scale="tt")
            half = float(hdul[1].data["XAX_E"][0])
        assert (series.time[0] - start).sec - half == pytest.approx(0.0, abs=1.5)


def test_sherpa_fit_with_the_standard_ogip_steps_reproduces_the_notebook(run_folder):
    from sherpa.astro import ui

    summary = Table.read(run_folder / "spectra.ecsv")
    row = summary[summary["source"] == "Crab"][0]
    ui.clean()
    try:
        # the steps written in notebooks/spectrum.ipynb and docs/science_notes.md
        # ARF and RMF from ANCRFILE/RESPFILE, the GROUPING column applied; STAT_ERR and SYS_ERR used
        ui.load_pha(1, str(run_folder / "spectrum_Crab.fits"), use_errors=True)
        ui.set_analysis(1, "energy")
        high = float(row["fit_band_max_keV"])  # FIT_EMAX, INF when the band is open
        ui.notice_id(1, float(row["fit_band_min_keV"]), high if np.isfinite(high) else None)
        ui.ignore_bad(1)  # drop the channels flagged QUALITY != 0 (after notice: sherpa 4.19 fails the other way)
        ui.set_stat("chi2")  # STAT_ERR ⊕ SYS_ERR × rate
        model = ui.create_model_component("powlaw1d", "pl")
        ui.set_source(1, model)
        model.ref = float(row["pivot_keV"])
        model.gamma = 2.0
        model.ampl = 1e-2
        ui.fit(1)
        ui.covar(1)
        errors = ui.get_covar_results()
        gamma, ampl = float(model.gamma.val), float(model.ampl.val)
        gamma_error = float(errors.parmaxes[0])
        fit = ui.get_fit_results()
    finally:
        ui.clean()
    assert fit.dof == int(row["dof"])
    assert fit.statval == pytest.approx(float(row["chi2"]), rel=0.2)
    assert gamma == pytest.approx(float(row["gamma"]), abs=0.2 * float(row["gamma_error"]))
    assert gamma_error == pytest.approx(float(row["gamma_error"]), rel=0.2)
    assert ampl == pytest.approx(float(row["norm"]), abs=0.2 * float(row["norm_error"]))
    # the sky's Crab, within the fit's errors
    assert abs(gamma - CRAB_INDEX) < 4 * gamma_error + 0.02
