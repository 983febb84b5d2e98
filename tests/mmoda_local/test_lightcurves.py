"""Light curves: OGIP form, noise statistics, binning, variability, agreement with images."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from astropy.io import fits

from mmoda_local import CREATOR, ORIGIN, imaging, lightcurves
from mmoda_local.instrument import ScwView, instrument_for
from mmoda_local.sky import Sky, date_to_ijd

from .test_instrument import CRAB_DEC, CRAB_RA, scw_table


@pytest.fixture(scope="module")
def sky():
    return Sky.default(seed=0)


@pytest.fixture(scope="module")
def isgri():
    return instrument_for("isgri")


def read_back(hdulist):
    buffer = io.BytesIO()
    hdulist.writeto(buffer)
    buffer.seek(0)
    return fits.open(buffer)


def test_ogip_light_curve_layout(sky, isgri):
    rows = scw_table(5, posangle=None, dither_deg=1.0)
    with read_back(
        lightcurves.lightcurve_hdulist(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=1000)
    ) as hdulist:
        assert [hdu.name for hdu in hdulist] == ["PRIMARY", "ISGR-SRC.-LCR"]
        table = hdulist[1]
        assert table.columns.names == list(lightcurves.COLUMNS)
        assert table.data["TIME"].dtype == np.dtype(">f8")
        for column in lightcurves.COLUMNS[1:]:
            assert table.data[column].dtype == np.dtype(">f4"), column
        header = table.header
        assert header["NAME"] == "Crab"
        assert header["TIMEDEL"] == pytest.approx(1000 / 86400)
        assert (header["TIMEPIXR"], header["MJDREF"], header["TIMESYS"], header["TIMEUNIT"]) == (
            0.5,
            51544.0,
            "TT",
            "d",
        )
        assert (header["E_MIN"], header["E_MAX"]) == (30.0, 60.0)
        assert header["TSTART"] == pytest.approx(rows["TSTART"][0]) == header["TFIRST"]
        assert header["TSTOP"] == pytest.approx(rows["TSTOP"][-1]) == header["TLAST"]
        # as the real lc_pick output: TELAPSE = TSTOP - TSTART and ONTIME = sum of FRACEXP x width, in days
        assert header["TELAPSE"] == pytest.approx(header["TSTOP"] - header["TSTART"])
        assert header["ONTIME"] == pytest.approx(5 * 2000 / 86400, rel=1e-5)
        assert (header["DEADC"], header["TIMEREF"], header["RA_OBJ"], header["DEC_OBJ"]) == (
            1.0,
            "LOCAL",
            CRAB_RA,
            CRAB_DEC,
        )
        assert 0 <= header["CHANMIN"] < header["CHANMAX"] < isgri.n_channels
        assert header["ORIGIN"] == ORIGIN and header["CREATOR"] == CREATOR
        assert "SIMULATED" in str(header["COMMENT"])
        data = table.data
        assert np.all(np.diff(data["TIME"]) > 0)
        # 2200-s ScWs in 1000-s bins: 1000 s, then 1200 s (the 200-s rest is merged).
        assert np.allclose(data["XAX_E"][:2] * 86400, [500, 600], rtol=1e-5)
        assert np.allclose(data["FRACEXP"], 2000 / 2200, rtol=1e-6)


def test_jemx_light_curve_smoke(sky):
    jemx = instrument_for("jemx", jemx_unit=1)
    hdulist = lightcurves.lightcurve_hdulist(scw_table(3), sky, jemx, 3, 20, "Crab", CRAB_RA, CRAB_DEC)
    assert hdulist[1].name == "JMX1-SRC.-LCR"
    # the real JEM-X light curve's columns and formats (lc.fits of oda_api's test data)
    assert hdulist[1].columns.names == list(lightcurves.JEMX_COLUMNS)
    assert [c.format for c in hdulist[1].columns] == ["D", "E", "E", "E", "E", "D", "E", "D"]
    data = hdulist[1].data
    assert np.all(data["BARYTIME"] == 0) and np.all(data["BRATE"] > 0)
    assert np.allclose(data["TIMEDEL"][:2] * 86400, [1000, 1200], rtol=1e-5)
    rate = hdulist[1].data["RATE"]
    assert len(rate) == 3 * 2 and np.all(np.abs(rate / jemx.crab_band_rate(3, 20) - 1) < 0.2)


def test_rates_scatter_as_their_errors_say(sky, isgri):
    rows = scw_table(150, dither_deg=4.0, posangle=None, step_days=0.1, seed=3)
    for name, ra, dec in [("Crab", CRAB_RA, CRAB_DEC), ("somewhere", CRAB_RA + 2.0, CRAB_DEC - 3.0)]:
        curve = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, name, ra, dec, time_bin_s=1e5)
        assert len(curve["RATE"]) >= 140
        pulls = (curve["RATE"] - curve["TRUE_RATE"]) / curve["ERROR"]
        assert abs(pulls.mean()) < 0.25 and abs(pulls.std() - 1) < 0.15, name
    crab = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=1e5)
    on_axis = crab["RESPONSE"] == 1.0
    assert np.mean(crab["RATE"][on_axis]) == pytest.approx(isgri.crab_band_rate(30, 60, 1500.0), rel=0.01)


def test_time_bins(sky, isgri):
    rows = scw_table(2, good_time=2000.0)  # 2200 s per ScW
    whole = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=5000)
    assert len(whole["TIME"]) == 2
    assert np.allclose(2 * whole["XAX_E"] * 86400, 2200, rtol=1e-9)
    assert np.allclose(whole["TIME"], 0.5 * (rows["TSTART"] + rows["TSTOP"]))
    fine = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=300)
    # 7 bins of 300 s + a last bin of 100 s (kept: more than a quarter of a bin) per ScW.
    assert len(fine["TIME"]) == 16
    widths = np.round(2 * fine["XAX_E"] * 86400, 6)
    assert list(widths[:8]) == [300.0] * 7 + [100.0]
    full = widths == 300.0
    assert np.allclose(fine["ERROR"][full], whole["ERROR"][0] * math.sqrt(2200 / 300), rtol=1e-6)
    assert lightcurves.scw_bin_edges(0.0, 2200 / 86400, 1000).size == 3  # 1000 + 1200 (200 s merged)
    assert lightcurves.scw_bin_edges(0.0, 2200 / 86400, 2200).size == 2
    hdulist = lightcurves.lightcurve_hdulist(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=5000)
    assert hdulist[1].header["TIMEDEL"] == pytest.approx(2200 / 86400)


def test_no_bins_outside_the_field(sky, isgri):
    rows = scw_table(4, posangle=0.0)
    rows["RA_SCX"][1] = (CRAB_RA + 40.0) % 360
    curve = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=1e5)
    assert len(curve["TIME"]) == 3
    assert rows["SWID"][1] not in list(curve["SWID"])
    nowhere = lightcurves.lightcurve_hdulist(rows, sky, isgri, 30, 60, "far", 250.0, -40.0)
    assert len(nowhere[1].data) == 0 and nowhere[1].header["NAME"] == "far"


def test_variable_sources_vary_within_and_across_scws(sky, isgri):
    vela = sky.find("Vela X-1")
    ra, dec = sky.catalogue_ra[vela], sky.catalogue_dec[vela]
    rows = scw_table(45, ra=ra, dec=dec, ijd=date_to_ijd("2012-01-01"), step_days=0.2, posangle=0.0)
    curve = lightcurves.lightcurve_arrays(rows, sky, isgri, 20, 40, "Vela X-1", ra, dec, time_bin_s=1e5)
    assert curve["TRUE_RATE"].min() < 0.1 * curve["TRUE_RATE"].max()  # an eclipse among 9 days
    v404 = sky.find("V404 Cyg")
    ra, dec = sky.catalogue_ra[v404], sky.catalogue_dec[v404]
    rows = scw_table(3, ra=ra, dec=dec, ijd=date_to_ijd("2015-06-22"), step_days=0.05)
    curve = lightcurves.lightcurve_arrays(rows, sky, isgri, 20, 40, "V404 Cyg", ra, dec, time_bin_s=300)
    per_scw = curve["TRUE_RATE"][curve["SWID"] == rows["SWID"][0]]
    assert len(per_scw) == 8 and per_scw.max() > 1.1 * per_scw.min()


def test_one_bin_per_scw_matches_the_image_truth(sky, isgri):
    rows = scw_table(3, dither_deg=2.0, posangle=None)
    curve = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=1e5)
    for k, row in enumerate(rows):
        view = ScwView(row, sky, isgri)
        truth = float(view.psf_weights(CRAB_RA, CRAB_DEC) @ view.band_rates(30, 60))
        assert curve["TRUE_RATE"][k] == pytest.approx(truth, rel=1e-12)
        image = imaging.scw_image(row, sky, isgri, 30, 60)
        pixel_sigma = math.sqrt(image.value_at("variance", CRAB_RA, CRAB_DEC)[0])
        response = float(view.response_at(CRAB_RA, CRAB_DEC)[()])
        # Same noise model: the light-curve error is the image sigma at the source (up to the pixel's response).
        nearest = image.value_at("exposure", CRAB_RA, CRAB_DEC)[0] / view.good_time
        assert curve["ERROR"][k] * response == pytest.approx(pixel_sigma * nearest, rel=1e-9)


def test_light_curves_are_deterministic(sky, isgri):
    rows = scw_table(4, dither_deg=1.0, posangle=None)
    first = lightcurves.lightcurve_hdulist(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=500)
    second = lightcurves.lightcurve_hdulist(rows, sky, isgri, 30, 60, "crab", CRAB_RA, CRAB_DEC, time_bin_s=500)
    assert np.array_equal(first[1].data["RATE"], second[1].data["RATE"])
    reseeded = lightcurves.lightcurve_hdulist(
        rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=500, seed=5
    )
    assert not np.array_equal(first[1].data["RATE"], reseeded[1].data["RATE"])


def test_light_curve_survives_the_oda_api_encoding(sky, isgri):
    from oda_api.data_products import NumpyDataProduct, NumpyDataUnit

    hdulist = lightcurves.lightcurve_hdulist(scw_table(2), sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC)
    product = NumpyDataProduct([NumpyDataUnit.from_fits_hdu(hdu) for hdu in hdulist], name="isgri_lc")
    decoded = NumpyDataProduct.decode(json.loads(json.dumps(product.encode(), default=int)))
    assert np.array_equal(decoded.data_unit[1].data["RATE"], hdulist[1].data["RATE"])


# -- structure against the real JEM-X light curve (tests/data/real_products/lc.fits) -------------------------------
REAL_PRODUCTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "real_products"
#: Keywords of the real lc_pick output that the local light curves carry too (issue 9, part 3).
REAL_LC_KEYWORDS = (
    "TSTART",
    "TSTOP",
    "TFIRST",
    "TLAST",
    "TELAPSE",
    "ONTIME",
    "DEADC",
    "TIMEDEL",
    "TIMEPIXR",
    "TIMEREF",
    "TIMESYS",
    "TIMEUNIT",
    "MJDREF",
    "NAME",
    "RA_OBJ",
    "DEC_OBJ",
    "E_MIN",
    "E_MAX",
    "EUNIT",
    "CHANMIN",
    "CHANMAX",
    "CHANTYPE",
    "TELESCOP",
    "INSTRUME",
    "EQUINOX",
    "RADECSYS",
    "TIMVERS",
    "REVOL",
    "ORIGIN",
    "CREATOR",
)


def local_light_curve(server, instrument: str, **extra):
    from oda_api.api import DispatcherAPI

    disp = DispatcherAPI(url=server.url, instrument="mock")
    disp.n_max_tries = 1
    product = f"{instrument}_lc"
    result = disp.get_product(
        instrument=instrument,
        product=product,
        product_type="Real",
        osa_version="OSA11.2",
        scw_list=["066500220010.001", "066500230010.001"],
        RA=83.633,
        DEC=22.0145,
        time_bin=1000,
        silent=True,
        **extra,
    )
    return next(p for p in result._p_list if p.meta_data["src_name"] == "Crab")


def test_local_jemx_light_curve_has_the_real_structure(server):
    product = local_light_curve(server, "jemx", jemx_num=1, E1_keV=3.0, E2_keV=20.0)
    local = product.data_unit[1]
    real = fits.open(REAL_PRODUCTS / "lc.fits")[1]
    assert [u.name for u in product.data_unit] == ["PRIMARY", real.name]
    assert local.data.dtype.names == tuple(real.columns.names)
    assert [local.data.dtype[n].str for n in local.data.dtype.names] == [
        real.data.dtype[n].str for n in real.columns.names
    ]
    for key in REAL_LC_KEYWORDS:
        assert key in real.header and key in local.header, key
        assert type(local.header[key]) is type(real.header[key]), key
    for header, data in ((real.header, real.data), (local.header, local.data)):
        # days throughout: TELAPSE = TSTOP - TSTART, ONTIME = sum of FRACEXP x |TIMEDEL|
        assert header["TELAPSE"] == pytest.approx(header["TSTOP"] - header["TSTART"])
        assert header["ONTIME"] == pytest.approx(np.sum(data["FRACEXP"] * np.abs(data["TIMEDEL"])), rel=1e-4)
        assert header["TFIRST"] == pytest.approx(data["TIME"][0] - data["TIMEDEL"][0] / 2, abs=1e-8)
        assert (header["TIMEUNIT"], header["TIMESYS"], header["MJDREF"], header["TIMEPIXR"]) == (
            "d",
            "TT",
            51544.0,
            0.5,
        )
    assert local.header["SIMULATD"] and "mmoda_local" in local.header["ORIGIN"]


def test_local_isgri_light_curve_has_the_real_column_set_and_keywords(server):
    product = local_light_curve(server, "isgri", E1_keV=20.0, E2_keV=40.0)
    local = product.data_unit[1]
    assert local.name == "ISGR-SRC.-LCR"
    # the real ISGRI columns and dtypes (protocol notes §4.2, from the oda_api TestAPI notebook)
    assert [(n, local.data.dtype[n].str) for n in local.data.dtype.names] == [
        ("TIME", ">f8"),
        ("TOT_COUNTS", ">f4"),
        ("BACKV", ">f4"),
        ("BACKE", ">f4"),
        ("RATE", ">f4"),
        ("ERROR", ">f4"),
        ("FRACEXP", ">f4"),
        ("XAX_E", ">f4"),
    ]
    for key in REAL_LC_KEYWORDS + ("DETNAM",):
        assert key in local.header, key
    assert local.header["ONTIME"] == pytest.approx(np.sum(local.data["FRACEXP"] * 2 * local.data["XAX_E"]), rel=1e-5)
    assert product.meta_data["time_bin"] == local.header["TIMEDEL"]
