"""Crab calibration: band fluxes of the documented spectrum, period means, the calibration against the simulation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.table import Table

from integral_workflows import calibration, moving, parameters, photometry, scw

from .test_moving import InProcessSession


@pytest.mark.parametrize(
    "band, photon, energy",
    [((15, 30), 0.254, 8.43e-9), ((20, 80), 0.268, 1.55e-8), ((30, 60), 0.116, 7.70e-9), ((60, 100), 0.0429, 5.25e-9)],
)
def test_the_crab_band_fluxes_are_those_of_the_science_notes(band, photon, energy):
    spectrum = calibration.CRAB_SPECTRUM
    assert spectrum.photon_flux(*band) == pytest.approx(photon, rel=0.01)
    assert spectrum.energy_flux(*band) == pytest.approx(energy, rel=0.01)


def test_period_labels_bounds_and_sampling():
    ijd = np.array([1830.0, 2000.0, 2100.0, 2200.5])  # 2005-01, 2005-06, 2005-09, 2006-01
    assert list(calibration.period_labels(ijd, "year")) == ["2005", "2005", "2005", "2006"]
    assert list(calibration.period_labels(ijd, "half-year")) == ["2005H1", "2005H1", "2005H2", "2006H1"]
    assert list(calibration.period_labels(ijd, "month")) == ["2005-01", "2005-06", "2005-09", "2006-01"]
    start, stop = calibration.period_bounds("2005H2")
    assert calibration.period_labels([start + 1e-6], "half-year")[0] == "2005H2"
    assert calibration.period_labels([stop + 1e-6], "half-year")[0] == "2006H1"
    table = Table({"mjd_mid": np.linspace(53370.0, 54100.0, 300), "scw_id": [f"{i:012d}.001" for i in range(300)]})
    drawn = calibration.sample_per_period(table, 5, period="half-year", seed=1)
    assert 10 < len(drawn) <= 25
    counts = np.unique(
        calibration.period_labels(np.asarray(drawn["mjd_mid"]) - 51544.0, "half-year"), return_counts=True
    )[1]
    assert np.all(counts <= 5)
    again = calibration.sample_per_period(table, 5, period="half-year", seed=1)
    assert list(again["scw_id"]) == list(drawn["scw_id"])


def test_period_means_inflate_errors_when_the_scatter_exceeds_them():
    ijd = np.array([1830.0, 1840.0, 1850.0, 2100.0, 2110.0])
    means = calibration.period_means(ijd, [100.0, 102.0, 98.0, 90.0, 90.0], [0.1, 0.1, 0.1, 1.0, 1.0], period="year")
    assert list(means["period"]) == ["2005"]
    row = means[0]
    assert row["n"] == 5 and row["chi2"] > row["dof"]
    assert row["rate_error"] > 1.0 / np.sqrt(np.sum(1.0 / np.array([0.1, 0.1, 0.1, 1.0, 1.0]) ** 2))


def test_the_calibration_file_round_trips_and_converts(tmp_path, caplog):
    table = calibration.period_means([1830.0, 1840.0, 2300.0], [160.0, 162.0, 170.0], [1.0, 1.0, 1.0], period="year")
    crab = calibration.CrabCalibration(table, instrument="isgri", e1_keV=28.0, e2_keV=40.0, method="psf_fit")
    path = crab.write(tmp_path / "crab_calibration.ecsv")
    again = calibration.CrabCalibration.read(path)
    assert list(again.table["period"]) == ["2005", "2006"] and again.method == "psf_fit"
    assert again.band_energy_flux == pytest.approx(crab.band_energy_flux)
    mcrab, error = again.to_mcrab([1.61], [0.161], [1835.0])
    assert mcrab[0] == pytest.approx(10.0) and error[0] == pytest.approx(1.0, rel=0.01)
    flux, _ = again.to_energy_flux([161.0], [1.0], [1835.0])
    assert flux[0] == pytest.approx(again.band_energy_flux)
    with caplog.at_level(logging.WARNING, logger="integral_workflows.calibration"):
        rate, _, period, inside = again.crab_rate_at([4000.0])
    assert period[0] == "2006" and not inside[0] and "outside every calibrated period" in caplog.text
    with pytest.raises(ValueError, match="not isgri 30-60 keV"):
        again.check_band("isgri", 30.0, 60.0)


def test_compare_methods():
    first = Table({"scw_id": ["a", "b", "c"], "rate": [100.0, 101.0, 99.0], "rate_error": [1.0, 1.0, 1.0]})
    second = Table({"scw_id": ["b", "c", "d"], "rate": [100.0, 100.0, 5.0], "rate_error": [1.0, 1.0, 1.0]})
    result = calibration.compare_methods(first, second)
    assert result["n"] == 2 and result["mean_ratio"] == pytest.approx(1.0, abs=0.01)


def test_a_year_of_crab_images_calibrates_the_simulated_crab_spectrum_within_three_percent(server, tmp_path):
    from mmoda_local.instrument import instrument_for, power_law_bin_flux

    crab_ra, crab_dec = calibration.CRAB_POSITION
    p = parameters.validate(
        "mosaic",
        {
            "src_name": "Crab",
            "RA": crab_ra,
            "DEC": crab_dec,
            "T1": "2010-01-01T00:00:00",
            "T2": "2011-01-01T00:00:00",
            "radius": 4.5,
            "E1_keV": 28.0,
            "E2_keV": 40.0,
        },
    )
    table, _ = scw.select_scws(p, url=server.url)
    chosen = calibration.sample_per_period(table, 6, period="half-year", seed=0)
    assert 6 <= len(chosen) <= 12
    record = moving.fetch_scw_images(InProcessSession(server.url, tmp_path / "chunks"), p, chosen)
    times = dict(zip(scw.scw_ids(chosen), np.asarray(chosen["mjd_mid"]) - scw.IJD_MJD_OFFSET))
    rows = [
        (ijd, fit.amplitude, fit.amplitude_error)
        for _, ijd, image in moving.images_from_pieces(record.pieces, times)
        for fit in [photometry.fit_psf(image, (crab_ra, crab_dec))]
    ]
    ijd, rate, error = (np.array(column) for column in zip(*rows))
    crab = calibration.CrabCalibration(
        calibration.period_means(ijd, rate, error, period="year"),
        instrument="isgri",
        e1_keV=28.0,
        e2_keV=40.0,
        method="psf_fit",
    )
    isgri = instrument_for("isgri")
    truth_rate = np.mean([isgri.crab_band_rate(28.0, 40.0, t) for t in ijd])
    assert crab.table["rate"][0] == pytest.approx(truth_rate, rel=0.02)
    # The simulated Crab's band energy flux, integrated numerically from its spectrum on the instrument's grid.
    edges = np.geomspace(28.0, 40.0, 2001)
    photons = power_law_bin_flux(edges, 2.13, 6.2e-4)
    simulated_energy_flux = np.sum(photons * np.sqrt(edges[:-1] * edges[1:])) * calibration.KEV_TO_ERG
    assert crab.band_energy_flux == pytest.approx(simulated_energy_flux, rel=1e-3)
    # A Crab-like source at the Crab's true rate comes out at the simulated band flux within 3 %.
    converted, _ = crab.to_energy_flux([truth_rate], [1.0], [float(np.mean(ijd))])
    assert converted[0] == pytest.approx(simulated_energy_flux, rel=0.03)
    mcrab, _ = crab.to_mcrab([0.005 * truth_rate], [0.0], [float(np.mean(ijd))])
    assert mcrab[0] == pytest.approx(5.0, rel=0.03)
