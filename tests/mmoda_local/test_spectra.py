"""Spectra, ARFs and RMFs: OGIP form, forward folding, combination, agreement with the band products."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from astropy.io import fits
from scipy import optimize

from mmoda_local import CREATOR, ORIGIN, lightcurves, spectra
from mmoda_local.instrument import (CRAB_NORM_100KEV, CRAB_PHOTON_INDEX, instrument_for, power_law_bin_flux,
                                    year_to_ijd)
from mmoda_local.sky import Sky

from .test_instrument import CRAB_DEC, CRAB_RA, scw_table


@pytest.fixture(scope="module")
def sky():
    return Sky.default(seed=0)


def read_back(hdulist):
    buffer = io.BytesIO()
    hdulist.writeto(buffer)
    buffer.seek(0)
    return fits.open(buffer)


def load_files(products):
    """Spectrum table, ARF table, dense RMF matrix and channel bounds, read back from FITS bytes."""
    spectrum, arf, rmf = (read_back(h) for h in products)
    matrix_table = rmf["SPECRESP MATRIX"].data
    n_channels = rmf["SPECRESP MATRIX"].header["DETCHANS"]
    matrix = np.zeros((len(matrix_table), n_channels))
    first_channel = rmf["SPECRESP MATRIX"].header["TLMIN4"]
    for k, row in enumerate(matrix_table):
        start = row["F_CHAN"] - first_channel
        matrix[k, start:start + row["N_CHAN"]] = row["MATRIX"][:row["N_CHAN"]]
    edges = np.append(arf["SPECRESP"].data["ENERG_LO"], arf["SPECRESP"].data["ENERG_HI"][-1]).astype(float)
    return spectrum[1].data, arf["SPECRESP"].data["SPECRESP"].astype(float), matrix, edges, rmf, spectrum, arf


def fit_power_law(spectrum, arf, matrix, edges):
    """χ² forward-folded power-law fit: (norm at 100 keV, index), their errors, χ², degrees of freedom."""
    good = spectrum["QUALITY"] == 0

    def residuals(parameters):
        norm, index = parameters
        model = (arf * power_law_bin_flux(edges, index, norm * 1e-4)) @ matrix
        return ((spectrum["RATE"] - model) / spectrum["STAT_ERR"])[good]
    solution = optimize.least_squares(residuals, [5.0, 2.0])
    covariance = np.linalg.inv(solution.jac.T @ solution.jac)
    return solution.x, np.sqrt(np.diag(covariance)), float((solution.fun ** 2).sum()), int(good.sum() - 2)


@pytest.mark.parametrize("instrument_name, scws", [("isgri", 4), ("jemx2", 6), ("jemx1", 6)])
def test_forward_folded_crab_fit_returns_the_crab(sky, instrument_name, scws):
    instrument = instrument_for(instrument_name)
    rows = scw_table(scws, dither_deg=1.0, posangle=None, seed=7)
    products = spectra.spectrum_products(rows, sky, instrument, "Crab", CRAB_RA, CRAB_DEC)
    spectrum, arf, matrix, edges, *_ = load_files(products)
    (norm, index), (norm_error, index_error), chi2, dof = fit_power_law(spectrum, arf, matrix, edges)
    assert abs(index - CRAB_PHOTON_INDEX) < 3.5 * index_error
    assert abs(norm * 1e-4 - CRAB_NORM_100KEV) < 3.5 * norm_error * 1e-4
    assert index_error < (0.01 if instrument_name == "isgri" else 0.05)
    # χ²/dof has a spread of ~0.1 for 200 ISGRI channels but ~0.38 for 14 JEM-X degrees of freedom.
    assert (0.7 < chi2 / dof < 1.3) if instrument_name == "isgri" else (0.15 < chi2 / dof < 2.5)


def test_expected_rate_is_rmf_times_arf_times_spectrum(sky):
    isgri = instrument_for("isgri")
    rows = scw_table(1, ijd=float(year_to_ijd(2020.0)), posangle=0.0)
    arrays = spectra.spectrum_arrays(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    products = spectra.spectrum_products(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    _, arf, matrix, edges, *_ = load_files(products)
    crab = power_law_bin_flux(edges, CRAB_PHOTON_INDEX, CRAB_NORM_100KEV)
    folded = (arf * crab) @ matrix
    # Equal up to float32 storage of the files (the Crab's neighbours are far beyond the PSF).
    assert np.allclose(arrays["true_rate"], folded, rtol=1e-5, atol=1e-9)
    assert np.allclose(arrays["arf"], isgri.arf(rows["TSTART"][0] + 0.5 * 2200 / 86400), rtol=1e-12)


def test_spectrum_agrees_with_image_and_light_curve_bands(sky):
    isgri = instrument_for("isgri")
    rows = scw_table(1, posangle=0.0, dither_deg=2.0, seed=3)
    arrays = spectra.spectrum_arrays(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    curve = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=1e5)
    weights = isgri.channel_weights(30, 60)
    assert float(arrays["true_rate"] @ weights) == pytest.approx(curve["TRUE_RATE"][0], rel=1e-9)
    assert float(arrays["stat_err"] ** 2 @ weights ** 2) < curve["ERROR"][0] ** 2


def test_inverse_variance_combination(sky):
    isgri = instrument_for("isgri")
    rows = scw_table(2, dither_deg=3.0, posangle=None, seed=9, step_days=30.0)
    both = spectra.spectrum_arrays(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    single = [spectra.spectrum_arrays(rows[k:k + 1], sky, isgri, "Crab", CRAB_RA, CRAB_DEC) for k in range(2)]
    weights = [1.0 / s["stat_err"] ** 2 for s in single]
    expected = (single[0]["rate"] * weights[0] + single[1]["rate"] * weights[1]) / (weights[0] + weights[1])
    assert np.allclose(both["rate"], expected, rtol=1e-10)
    assert np.allclose(both["stat_err"], 1.0 / np.sqrt(weights[0] + weights[1]), rtol=1e-10)
    assert both["exposure"] == pytest.approx(4000.0) and both["n_scw"] == 2
    # ARF: effective-exposure weighted between the two epochs' ARFs.
    lo = np.minimum(single[0]["arf"], single[1]["arf"])
    hi = np.maximum(single[0]["arf"], single[1]["arf"])
    assert np.all((both["arf"] >= lo - 1e-9) & (both["arf"] <= hi + 1e-9))


def test_ogip_keywords_and_structure(sky):
    isgri = instrument_for("isgri")
    products = spectra.spectrum_products(scw_table(2), sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    data, arf, matrix, edges, rmf, spectrum_file, arf_file = load_files(products)
    assert [h.name for h in spectrum_file] == ["PRIMARY", "ISGR-EVTS-SPE"]
    assert [h.name for h in arf_file] == ["PRIMARY", "SPECRESP"]
    assert [h.name for h in rmf] == ["PRIMARY", "SPECRESP MATRIX", "EBOUNDS"]
    header = spectrum_file[1].header
    expected = {"HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "HDUCLAS3": "RATE", "POISSERR": False,
                "CHANTYPE": "PI", "DETCHANS": 256, "BACKSCAL": 1.0, "AREASCAL": 1.0, "ANCRFILE": "NONE",
                "RESPFILE": "NONE", "BACKFILE": "NONE", "NAME": "Crab", "TELESCOP": "INTEGRAL", "INSTRUME": "IBIS",
                "ORIGIN": ORIGIN, "CREATOR": CREATOR}
    for key, value in expected.items():
        assert header[key] == value, key
    assert header["HDUCLAS2"] in ("TOTAL", "NET") and "CORRSCAL" in header
    assert header["EXPOSURE"] == pytest.approx(4000.0)
    assert spectrum_file[1].columns.names == ["CHANNEL", "RATE", "SYS_ERR", "STAT_ERR", "QUALITY", "GROUPING"]
    assert list(data["CHANNEL"]) == list(range(1, 257))
    assert np.all(data["SYS_ERR"] == 0) and np.all(data["GROUPING"] == 1)
    energy_low = rmf["EBOUNDS"].data["E_MIN"]
    assert np.all(data["QUALITY"][energy_low < 14.5] == 1)
    assert np.all(data["QUALITY"][(energy_low > 20) & (energy_low < 300)] == 0)
    assert rmf["SPECRESP MATRIX"].header["HDUCLAS1"] == "RESPONSE"
    assert rmf["SPECRESP MATRIX"].header["HDUCLAS2"] == "RSP_MATRIX"
    assert rmf["EBOUNDS"].header["HDUCLAS2"] == "EBOUNDS"
    for column in ("ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"):
        assert column in rmf["SPECRESP MATRIX"].columns.names
    assert np.allclose(matrix, isgri.rmf.astype(np.float32))
    assert np.allclose(edges, isgri.true_edges_keV, rtol=1e-6)
    assert arf_file[1].header["HDUCLAS2"] == "SPECRESP"
    for hdulist in (spectrum_file, arf_file, rmf):
        assert hdulist[0].header["ORIGIN"] == ORIGIN
        assert all("SIMULATED" in str(h.header.get("COMMENT", "")) for h in hdulist)


def test_jemx_spectrum_files(sky):
    jemx = instrument_for("jemx", jemx_unit=1)
    spectrum, arf, rmf = spectra.spectrum_products(scw_table(2), sky, jemx, "Crab", CRAB_RA, CRAB_DEC)
    assert spectrum[1].name == "JMX1-PHA1-SPE" and spectrum[1].header["DETCHANS"] == 16
    assert rmf["EBOUNDS"].data["E_MIN"][0] == pytest.approx(3.0) and rmf["EBOUNDS"].data["E_MAX"][-1] == \
        pytest.approx(35.0)
    assert np.all(spectrum[1].data["QUALITY"] == 0)


def test_spectra_are_deterministic_and_survive_the_encoding(sky):
    from oda_api.data_products import NumpyDataProduct, NumpyDataUnit
    isgri = instrument_for("isgri")
    rows = scw_table(2, dither_deg=1.0, posangle=None)
    first = spectra.spectrum_products(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    second = spectra.spectrum_products(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    for a, b in zip(first, second):
        bytes_a, bytes_b = io.BytesIO(), io.BytesIO()
        a.writeto(bytes_a)
        b.writeto(bytes_b)
        assert bytes_a.getvalue() == bytes_b.getvalue()
    for hdulist in first:
        product = NumpyDataProduct([NumpyDataUnit.from_fits_hdu(hdu) for hdu in hdulist], name="")
        decoded = NumpyDataProduct.decode(json.loads(json.dumps(product.encode()))).to_fits_hdu_list()
        assert [h.name for h in decoded] == [h.name for h in hdulist]


def test_source_outside_every_field_gives_an_empty_spectrum(sky):
    isgri = instrument_for("isgri")
    spectrum, _, _ = spectra.spectrum_products(scw_table(2), sky, isgri, "far", 250.0, -40.0)
    assert spectrum[1].header["EXPOSURE"] == 0.0
    assert np.all(spectrum[1].data["QUALITY"] == 1)
