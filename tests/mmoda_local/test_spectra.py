"""Spectra, ARFs and RMFs: OGIP form, forward folding, combination, agreement with the band products."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from astropy.io import fits
from scipy import optimize

from mmoda_local import CREATOR, ORIGIN, lightcurves, spectra
from mmoda_local.instrument import CRAB_NORM_100KEV, CRAB_PHOTON_INDEX, instrument_for, power_law_bin_flux, year_to_ijd
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


def by_class(hdulist, hduclas2):
    """The first table of an OGIP class (``RSP_MATRIX``, ``EBOUNDS``, ``SPECRESP``), whatever its OSA EXTNAME."""
    return next(h for h in hdulist if h.header.get("HDUCLAS2") == hduclas2)


def load_files(products):
    """Spectrum table, ARF table, dense RMF matrix and channel bounds, read back from FITS bytes."""
    spectrum, arf, rmf = (read_back(h) for h in products)
    matrix_hdu = by_class(rmf, "RSP_MATRIX")
    matrix_table = matrix_hdu.data
    n_channels = matrix_hdu.header["DETCHANS"]
    matrix = np.zeros((len(matrix_table), n_channels))
    first_channel = matrix_hdu.header["TLMIN4"]
    for k, row in enumerate(matrix_table):
        start = row["F_CHAN"] - first_channel
        matrix[k, start : start + row["N_CHAN"]] = row["MATRIX"][: row["N_CHAN"]]
    arf_table = by_class(arf, "SPECRESP").data
    edges = np.append(arf_table["ENERG_LO"], arf_table["ENERG_HI"][-1]).astype(float)
    return spectrum[1].data, arf_table["SPECRESP"].astype(float), matrix, edges, rmf, spectrum, arf


def fit_power_law(spectrum, arf, matrix, edges):
    """χ² forward-folded power-law fit: (norm at 100 keV, index), their errors, χ², degrees of freedom."""
    good = spectrum["QUALITY"] == 0

    def residuals(parameters):
        norm, index = parameters
        model = (arf * power_law_bin_flux(edges, index, norm * 1e-4)) @ matrix
        return ((spectrum["RATE"] - model) / spectrum["STAT_ERR"])[good]

    solution = optimize.least_squares(residuals, [5.0, 2.0])
    covariance = np.linalg.inv(solution.jac.T @ solution.jac)
    return solution.x, np.sqrt(np.diag(covariance)), float((solution.fun**2).sum()), int(good.sum() - 2)


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
    assert float(arrays["stat_err"] ** 2 @ weights**2) < curve["ERROR"][0] ** 2


def test_inverse_variance_combination(sky):
    isgri = instrument_for("isgri")
    rows = scw_table(2, dither_deg=3.0, posangle=None, seed=9, step_days=30.0)
    both = spectra.spectrum_arrays(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    single = [spectra.spectrum_arrays(rows[k : k + 1], sky, isgri, "Crab", CRAB_RA, CRAB_DEC) for k in range(2)]
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
    # OSA extension names; the plugin renames the response units on the wire (test_*_through_oda_api)
    assert [h.name for h in spectrum_file] == ["PRIMARY", "ISGR-EVTS-SPE"]
    assert [h.name for h in arf_file] == ["PRIMARY", "ISGR-ARF.-RSP"]
    assert [h.name for h in rmf] == ["PRIMARY", "ISGR-EBDS-MOD", "ISGR-RMF.-RSP"]
    header = spectrum_file[1].header
    expected = {
        "HDUCLASS": "OGIP",
        "HDUCLAS1": "SPECTRUM",
        "HDUCLAS2": "TOTAL",
        "HDUCLAS3": "RATE",
        "CHANTYPE": "PI",
        "DETCHANS": 256,
        "BACKSCAL": 1.0,
        "AREASCAL": 1.0,
        "ANCRFILE": "NONE",
        "RESPFILE": "NONE",
        "BACKFILE": "NONE",
        "NAME": "Crab",
        "TELESCOP": "INTEGRAL",
        "INSTRUME": "IBIS",
        "DETNAM": "ISGRI",
        "ORIGIN": ORIGIN,
        "CREATOR": CREATOR,
        "TLMIN1": 0,
        "TLMAX1": 255,
        "DEADC": 1.0,
        "TIMEUNIT": "d",
        "MJDREF": 51544.0,
    }
    for key, value in expected.items():
        assert header[key] == value, key
    assert "CORRSCAL" in header
    # two ScWs of 2000 s good time and 2200 s elapsed, the Crab on axis (field response 1)
    assert header["ONTIME"] == pytest.approx(4000.0)
    assert header["EXPOSURE"] == pytest.approx(4000.0)
    assert header["EXP_SRC"] == pytest.approx(4000.0)
    assert header["TELAPSE"] == pytest.approx(4400.0, rel=1e-6)
    assert header["TSTART"] < header["TSTOP"] and header["DATE-OBS"] < header["DATE-END"]
    assert spectrum_file[1].columns.names == ["CHANNEL", "RATE", "SYS_ERR", "STAT_ERR", "QUALITY", "GROUPING"]
    assert [c.format for c in spectrum_file[1].columns] == ["I", "E", "E", "E", "I", "I"]
    assert list(data["CHANNEL"]) == list(range(0, 256))
    assert np.all(data["SYS_ERR"] == 0) and np.all(data["GROUPING"] == 1)
    ebounds = by_class(rmf, "EBOUNDS")
    assert list(ebounds.data["CHANNEL"]) == list(range(0, 256)) and ebounds.columns["CHANNEL"].format == "I"
    energy_low = ebounds.data["E_MIN"]
    assert np.all(data["QUALITY"][energy_low < 14.5] == 1)
    assert np.all(data["QUALITY"][(energy_low > 20) & (energy_low < 300)] == 0)
    matrix_hdu = by_class(rmf, "RSP_MATRIX")
    assert matrix_hdu.header["HDUCLAS1"] == "RESPONSE" and matrix_hdu.header["TLMIN4"] == 0
    assert matrix_hdu.columns.names == ["ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"]
    assert [c.format for c in matrix_hdu.columns][:5] == ["E", "E", "I", "J", "J"]
    assert str(matrix_hdu.columns["MATRIX"].format).startswith("PE")  # variable-length rows, as the real RMF
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
    assert [h.name for h in arf] == ["PRIMARY", "JMX1-AXIS-ARF"]
    # the real JEM-X RMF product's extensions (oda_api Show_and_Save_Products notebook), before renaming
    assert [h.name for h in rmf] == [
        "PRIMARY",
        "GROUPING",
        "JMX1-RMF.-RSP",
        "JMX1-FBDS-MOD",
        "JMX1-AXIS-ARF",
        "JMX1-IMAG-ARF",
    ]
    assert list(rmf["GROUPING"].data["MEMBER_NAME"]) == [h.name for h in rmf][2:]
    assert rmf["JMX1-FBDS-MOD"].data["E_MIN"][0] == pytest.approx(3.0) and rmf["JMX1-FBDS-MOD"].data["E_MAX"][
        -1
    ] == pytest.approx(35.0)
    assert np.array_equal(rmf["JMX1-AXIS-ARF"].data["SPECRESP"], arf[1].data["SPECRESP"])
    assert np.all(spectrum[1].data["QUALITY"] == 0)


def test_spectra_are_deterministic_and_survive_the_encoding(sky):
    from oda_api.data_products import NumpyDataProduct

    from mmoda_local.encoding import encode_numpy_product

    isgri = instrument_for("isgri")
    rows = scw_table(2, dither_deg=1.0, posangle=None)
    first = spectra.spectrum_products(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    second = spectra.spectrum_products(rows, sky, isgri, "Crab", CRAB_RA, CRAB_DEC)
    for a, b in zip(first, second):
        bytes_a, bytes_b = io.BytesIO(), io.BytesIO()
        a.writeto(bytes_a)
        b.writeto(bytes_b)
        assert bytes_a.getvalue() == bytes_b.getvalue()
    renamed = spectra.wire_names(isgri)
    for hdulist in first:
        names = [h.name for h in hdulist]
        encoded = encode_numpy_product(hdulist, name="", meta_data={}, unit_names=renamed)
        decoded = NumpyDataProduct.decode(json.loads(json.dumps(encoded)))
        assert [u.name for u in decoded.data_unit] == [renamed.get(n, n) for n in names]
        assert [u.header["EXTNAME"] for u in decoded.data_unit[1:]] == names[1:]
        written = decoded.to_fits_hdu_list()
        for original, copy in zip(hdulist[1:], written[1:]):
            for column in original.columns.names:
                for a, b in zip(original.data[column], copy.data[column]):
                    assert np.array_equal(a, b), column


def test_source_outside_every_field_gives_an_empty_spectrum(sky):
    isgri = instrument_for("isgri")
    spectrum, _, _ = spectra.spectrum_products(scw_table(2), sky, isgri, "far", 250.0, -40.0)
    assert spectrum[1].header["EXPOSURE"] == 0.0
    assert np.all(spectrum[1].data["QUALITY"] == 1)


# -- structure against the real ISGRI RMF (tests/data/real_products/isgri_rmf_Crab.fits) ---------------------------
REAL_RMF = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "real_products" / "isgri_rmf_Crab.fits"


@pytest.fixture
def local_isgri_spectrum(server):
    from oda_api.api import DispatcherAPI

    disp = DispatcherAPI(url=server.url, instrument="mock")
    disp.n_max_tries = 1
    result = disp.get_product(
        instrument="isgri",
        product="isgri_spectrum",
        product_type="Real",
        osa_version="OSA11.2",
        scw_list=["066500220010.001", "066500230010.001"],
        RA=83.633,
        DEC=22.0145,
        silent=True,
    )
    return {p.meta_data["product"]: p for p in result._p_list if p.meta_data["src_name"] == "Crab"}


def test_local_isgri_rmf_has_the_real_structure(local_isgri_spectrum):
    from oda_api.data_products import NumpyDataProduct

    local = local_isgri_spectrum["isgri_rmf"]
    real = NumpyDataProduct.from_fits_file(str(REAL_RMF))
    assert (
        [u.name for u in local.data_unit]
        == [u.name for u in real.data_unit]
        == ["PRIMARY", "EBOUNDS", "SPECRESP MATRIX"]
    )
    # the plugin renames the units, the headers keep OSA's names (the real file, saved by oda_api, took the unit's)
    assert [u.header["EXTNAME"] for u in local.data_unit[1:]] == ["ISGR-EBDS-MOD", "ISGR-RMF.-RSP"]
    for local_unit, real_unit in zip(local.data_unit[1:], real.data_unit[1:]):
        local_hdu, real_hdu = local_unit.to_fits_hdu(), real_unit.to_fits_hdu()
        assert local_hdu.columns.names == real_hdu.columns.names
        assert [str(c.format)[:2] for c in local_hdu.columns] == [str(c.format)[:2] for c in real_hdu.columns]
        for key in ("HDUCLASS", "HDUCLAS1", "HDUCLAS2", "CHANTYPE", "DETCHANS", "TELESCOP", "INSTRUME", "DETNAM"):
            assert local_hdu.header[key] == real_hdu.header[key], key
    local_matrix, real_matrix = (p.data_unit[2].to_fits_hdu() for p in (local, real))
    assert str(local_matrix.columns["MATRIX"].format).startswith("PE")  # variable-length arrays, as the real one
    assert local_matrix.header["TLMIN4"] == real_matrix.header["TLMIN4"] == 0
    assert local.data_unit[1].data["CHANNEL"][0] == real.data_unit[1].data["CHANNEL"][0] == 0
    assert local_matrix.header["MJDREF"] == real_matrix.header["MJDREF"]


def test_local_isgri_spectrum_gives_what_oda_integral_wrapper_reads(local_isgri_spectrum):
    """The keywords and units oda-integral-wrapper 1.5.19's sum_spectral_products reads, in the real shape."""
    spectrum = local_isgri_spectrum["isgri_spectrum"].data_unit[1]
    header = spectrum.header
    assert spectrum.name == "ISGR-EVTS-SPE" and header["INSTRUME"] == "IBIS"
    for key in ("EXPOSURE", "EXP_SRC", "ONTIME", "TELAPSE", "TSTART", "TSTOP", "DEADC"):
        assert isinstance(header[key], float), key
    assert header["EXP_SRC"] <= header["EXPOSURE"] <= header["ONTIME"] <= header["TELAPSE"]
    assert {"RATE", "STAT_ERR", "SYS_ERR", "QUALITY"} <= set(spectrum.data.dtype.names)
    assert local_isgri_spectrum["isgri_arf"].data_unit[1].name == "SPECRESP"
    rmf_units = local_isgri_spectrum["isgri_rmf"].data_unit
    # the wrapper looks for "RMF" in the EXTNAME of unit 1, then unit 2
    index = 1 if "RMF" in rmf_units[1].header["EXTNAME"] else 2
    assert "RMF" in rmf_units[index].header["EXTNAME"]
    matrix = rmf_units[index].data["MATRIX"]
    if not hasattr(matrix, "element_dtype"):  # the wrapper's own fix for IBIS variable-length rows
        matrix.element_dtype = np.float32
    summed = matrix * 0.0 + matrix * 1000.0  # what the wrapper does with them
    assert len(summed) == len(matrix) and np.allclose(summed[300], np.asarray(matrix[300]) * 1000.0)
