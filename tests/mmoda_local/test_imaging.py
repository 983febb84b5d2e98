"""ScW images and mosaics: noise statistics, the Crab, inverse-variance mosaics, catalogue, FITS form."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from mmoda_local import CREATOR, ORIGIN, imaging, lightcurves
from mmoda_local.instrument import instrument_for
from mmoda_local.sky import Sky, date_to_ijd

from .test_instrument import CRAB_DEC, CRAB_RA, scw_table

#: A field with no catalogue source brighter than ~1 mCrab within 21°.
EMPTY_RA, EMPTY_DEC = 10.0, 10.0


@pytest.fixture(scope="module")
def sky():
    return Sky.default(seed=0)


@pytest.fixture(scope="module")
def isgri():
    return instrument_for("isgri")


def finite(values):
    return values[np.isfinite(values)]


def test_empty_field_significance_is_standard_normal(sky, isgri):
    assert all(
        sky.spectral_parameters(i)["reference_mcrab"] < 3
        for i in sky.sources_in_field(EMPTY_RA, EMPTY_DEC, 21.0, 1500.0).index
    )
    image = imaging.scw_image(scw_table(ra=EMPTY_RA, dec=EMPTY_DEC, posangle=30.0)[0], sky, isgri, 30, 60)
    values = finite(image.significance)
    assert values.size > 100_000
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.03
    assert np.abs(values).max() < 6.5
    combined = imaging.mosaic(
        scw_table(6, ra=EMPTY_RA, dec=EMPTY_DEC, dither_deg=2.0, posangle=None), sky, isgri, 20, 40
    )
    values = finite(combined.significance)
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.03
    assert len(imaging.source_catalog(combined, sky, detection_threshold=7.0)) == 0


def test_field_geometry(sky, isgri):
    row = scw_table(ra=EMPTY_RA, dec=EMPTY_DEC, posangle=0.0)[0]
    image = imaging.scw_image(row, sky, isgri, 30, 60)
    centre = (image.grid.ny // 2, image.grid.nx // 2)
    assert image.grid.nx == image.grid.ny == 2 * math.ceil(14.5 / isgri.pixel_deg) + 1
    assert image.exposure[centre] == pytest.approx(2000.0)
    assert image.exposure.max() == pytest.approx(2000.0)
    # Outside the 29°×29° field: no variance, no intensity, no exposure.
    rotated = imaging.scw_image(scw_table(ra=EMPTY_RA, dec=EMPTY_DEC, posangle=45.0)[0], sky, isgri, 30, 60)
    assert rotated.grid.nx > image.grid.nx
    assert np.isnan(rotated.variance[0, 0]) and np.isnan(rotated.intensity[0, 0])
    assert rotated.exposure[0, 0] == 0.0
    # Off axis the variance grows as 1/response².
    x, y = image.grid.world_to_pixel(EMPTY_RA, EMPTY_DEC + 9.5)
    off_axis = (int(round(float(y))), centre[1])
    ratio = image.variance[off_axis] / image.variance[centre]
    assert ratio == pytest.approx((image.exposure[centre] / image.exposure[off_axis]) ** 2, rel=1e-9)
    assert ratio == pytest.approx(4.0, rel=0.1)


def test_crab_is_detected_where_it_is(sky, isgri):
    row = scw_table(ra=CRAB_RA, dec=CRAB_DEC, posangle=0.0, good_time=2000.0)[0]
    image = imaging.scw_image(row, sky, isgri, 30, 60)
    significance = np.nan_to_num(image.significance, nan=-np.inf)
    peak_row, peak_col = np.unravel_index(np.argmax(significance), significance.shape)
    x, y = image.grid.world_to_pixel(CRAB_RA, CRAB_DEC)
    assert math.hypot(peak_col - float(x), peak_row - float(y)) <= 1.0
    # On axis for 2 ks in 30-60 keV the Crab is at ~128 sigma (less the sub-pixel offset of the pixel centre).
    sigma_pixels = isgri.psf_sigma_deg / isgri.pixel_deg
    offset2 = (round(float(x)) - float(x)) ** 2 + (round(float(y)) - float(y)) ** 2
    expected = 128.0 * math.exp(-0.5 * offset2 / sigma_pixels**2)
    crab_rate = isgri.crab_band_rate(30, 60, row["TSTART"])
    assert math.sqrt(image.variance[int(round(float(y))), int(round(float(x)))]) == pytest.approx(
        crab_rate / 128.0, rel=0.02
    )
    assert image.value_at("significance", CRAB_RA, CRAB_DEC)[0] == pytest.approx(expected, abs=4.0)
    catalog = imaging.source_catalog(image, sky, detection_threshold=7.0)
    assert catalog["src_names"][0] == "Crab" and catalog["significance"][0] > 100
    assert not any(name.startswith("NEW_") for name in catalog["src_names"])


def test_one_scw_mosaic_is_the_scw_image(sky, isgri):
    row = scw_table(posangle=12.0)[0]
    single = imaging.scw_image(row, sky, isgri, 20, 40)
    mosaic = imaging.mosaic(scw_table(posangle=12.0), sky, isgri, 20, 40)
    assert mosaic.grid == single.grid
    for plane in imaging.IMAGE_PLANES:
        assert np.array_equal(getattr(mosaic, plane.lower()), getattr(single, plane.lower()), equal_nan=True)


def native_truth(row, sky, instrument, band):
    """Noise-free ScW image, written here from the sources' rates: Σ rate · Gaussian PSF at the pixel centres."""
    grid = imaging.native_grid(row, instrument)
    view = imaging.ScwView(row, sky, instrument)
    rates = view.band_rates(*band)
    sigma = instrument.psf_sigma_deg / instrument.pixel_deg
    truth = np.zeros(grid.shape)
    x, y = grid.world_to_pixel(view.source_ra, view.source_dec)
    for x0, y0, rate in zip(np.atleast_1d(x), np.atleast_1d(y), rates):
        c0, r0 = int(round(float(x0))), int(round(float(y0)))
        rr, cc = np.mgrid[max(r0 - 8, 0) : min(r0 + 9, grid.ny), max(c0 - 8, 0) : min(c0 + 9, grid.nx)]
        truth[rr, cc] += rate * np.exp(-0.5 * ((cc - x0) ** 2 + (rr - y0) ** 2) / sigma**2)
    return grid, truth


def measured_lag_correlation(instrument) -> float:
    """Lag-1 correlation of the image noise, measured on a noise field (not taken from the code's formula)."""
    noise = imaging.correlated_noise(np.random.default_rng(3), (400, 400), instrument)
    return float(np.mean(noise[:, :-1] * noise[:, 1:]) / np.mean(noise**2))


def resampled_scws(mosaic, rows, sky, instrument, band):
    """Each ScW image resampled onto the mosaic by scipy (order 1): truth, variance × correlated-noise factor, exposure."""
    rho = measured_lag_correlation(instrument)
    rows_idx, cols_idx = np.mgrid[0 : mosaic.grid.ny, 0 : mosaic.grid.nx]
    ra, dec = mosaic.grid.pixel_to_world(cols_idx.ravel(), rows_idx.ravel())
    for row in rows:
        image = imaging.scw_image(row, sky, instrument, *band)
        _, truth = native_truth(row, sky, instrument, band)
        x, y = image.grid.world_to_pixel(ra, dec)

        def resample(plane, x=x, y=y):
            return ndimage.map_coordinates(plane, [y, x], order=1, cval=np.nan).reshape(mosaic.grid.shape)

        fx, fy = (x % 1.0).reshape(mosaic.grid.shape), (y % 1.0).reshape(mosaic.grid.shape)
        factor = (1 - 2 * fx * (1 - fx) * (1 - rho)) * (1 - 2 * fy * (1 - fy) * (1 - rho))
        yield resample(truth), resample(image.variance) * factor, np.nan_to_num(resample(image.exposure))


def combined_expectation(mosaic, rows, sky, instrument, band):
    """Inverse-variance combination of the resampled ScWs: expected intensity, variance and exposure."""
    weight_sum = np.zeros(mosaic.grid.shape)
    weighted = np.zeros(mosaic.grid.shape)
    exposure = np.zeros(mosaic.grid.shape)
    for truth, variance, scw_exposure in resampled_scws(mosaic, rows, sky, instrument, band):
        usable = np.isfinite(variance) & np.isfinite(truth)
        inverse = np.where(usable, 1.0 / np.where(usable, variance, 1.0), 0.0)
        weight_sum += inverse
        weighted += np.where(usable, truth, 0.0) * inverse
        exposure += scw_exposure
    with np.errstate(invalid="ignore", divide="ignore"):
        return weighted / weight_sum, 1.0 / weight_sum, exposure


def assert_noise_about(mosaic, expected_intensity, where):
    """The mosaic minus its expectation is unit-variance noise in σ units, with no outliers."""
    pulls = (mosaic.intensity[where] - expected_intensity[where]) / np.sqrt(mosaic.variance[where])
    assert abs(pulls.mean()) < 0.05 and abs(pulls.std() - 1) < 0.03
    assert np.abs(pulls).max() < 6.5


def test_mosaic_of_aligned_scws_is_the_inverse_variance_combination(sky, isgri):
    band = (30, 60)
    rows = scw_table(3, posangle=20.0, step_days=0.5)
    images = [imaging.scw_image(row, sky, isgri, *band) for row in rows]
    mosaic = imaging.mosaic(rows, sky, isgri, *band)
    assert mosaic.grid.shape == images[0].grid.shape
    inverse = sum(1.0 / np.where(np.isfinite(im.variance), im.variance, np.inf) for im in images)
    truths = [native_truth(row, sky, isgri, band)[1] for row in rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        truth = (
            sum(t / np.where(np.isfinite(im.variance), im.variance, np.inf) for t, im in zip(truths, images)) / inverse
        )
        variance = 1.0 / inverse
    inside = np.isfinite(mosaic.variance)
    assert np.array_equal(inside, np.isfinite(variance))
    # float32 arithmetic (the planes are float32 in the FITS files): relative errors grow as R → 0 at the field
    # edges, where the weights vanish.
    useful = inside & (variance < 100.0 * np.nanmin(variance))
    assert np.allclose(mosaic.variance[useful], variance[useful], rtol=1e-4)
    assert np.median(np.abs(mosaic.variance[inside] / variance[inside] - 1)) < 1e-6
    assert np.allclose(mosaic.exposure, sum(im.exposure for im in images), rtol=1e-6, atol=1e-3)
    assert np.allclose(
        mosaic.significance[inside], mosaic.intensity[inside] / np.sqrt(mosaic.variance[inside]), rtol=1e-10
    )
    # The Crab is in the field at hundreds of σ: a truth wrong by a fraction of a percent would show in the pulls.
    assert np.nanmax(truth / np.sqrt(variance)) > 100
    assert_noise_about(mosaic, truth, inside)
    assert mosaic.ontime == pytest.approx(3 * 2000.0)


def test_mosaic_of_dithered_scws_is_the_combination_of_the_resampled_images(sky, isgri):
    band = (30, 60)
    rows = scw_table(4, dither_deg=3.0, posangle=None, seed=5)
    mosaic = imaging.mosaic(rows, sky, isgri, *band)
    truth, variance, exposure = combined_expectation(mosaic, rows, sky, isgri, band)
    covered = np.isfinite(mosaic.intensity)
    both = covered & np.isfinite(variance)
    # scipy's footprint needs the 4 ScW pixels around a point, the mosaic's the point itself: the mosaic holds
    # scipy's and reaches at most a ScW pixel's diagonal (< 2 mosaic pixels) beyond it.
    assert not (np.isfinite(variance) & ~covered).any()
    assert not (covered & ~ndimage.binary_dilation(np.isfinite(variance), iterations=2)).any()
    ratio = mosaic.variance[both] / variance[both]
    assert np.median(np.abs(ratio - 1)) < 0.01
    assert np.allclose(mosaic.exposure, exposure, rtol=0.0, atol=0.01 * exposure.max())
    assert np.nanmax(truth / np.sqrt(variance)) > 100
    assert_noise_about(mosaic, truth, both)
    # The mosaic centre is the mean pointing and it holds every field.
    assert mosaic.grid.nx > imaging.native_grid(rows[0], isgri).nx - 2
    assert np.isfinite(mosaic.value_at("variance", CRAB_RA, CRAB_DEC)[0])


def test_same_scw_same_noise_and_determinism(sky, isgri):
    rows = scw_table(3, dither_deg=1.0, posangle=None)
    first = imaging.scw_image(rows[1], sky, isgri, 30, 60)
    again = imaging.scw_image(rows[1], sky, isgri, 30, 60)
    assert np.array_equal(first.intensity, again.intensity, equal_nan=True)
    other_seed = imaging.scw_image(rows[1], sky, isgri, 30, 60, seed=99)
    assert not np.array_equal(first.intensity, other_seed.intensity, equal_nan=True)
    other_band = imaging.scw_image(rows[1], sky, isgri, 20, 40)
    assert not np.allclose(np.nan_to_num(first.significance), np.nan_to_num(other_band.significance))
    mosaic_a = imaging.mosaic(rows, sky, isgri, 30, 60)
    mosaic_b = imaging.mosaic(rows, sky, isgri, 30, 60)
    assert np.array_equal(mosaic_a.intensity, mosaic_b.intensity, equal_nan=True)
    bytes_a, bytes_b = io.BytesIO(), io.BytesIO()
    imaging.mosaic_hdulist(mosaic_a).writeto(bytes_a)
    imaging.mosaic_hdulist(mosaic_b).writeto(bytes_b)
    assert bytes_a.getvalue() == bytes_b.getvalue()


def test_psf_fit_in_images_agrees_with_light_curves(sky, isgri):
    rows = scw_table(60, dither_deg=3.0, posangle=None, step_days=0.2, seed=11)
    curve = lightcurves.lightcurve_arrays(rows, sky, isgri, 30, 60, "Crab", CRAB_RA, CRAB_DEC, time_bin_s=1e5)
    assert len(curve["RATE"]) == 60
    sigma_pixels = isgri.psf_sigma_deg / isgri.pixel_deg
    pulls = []
    for k, row in enumerate(rows):
        image = imaging.scw_image(row, sky, isgri, 30, 60)
        x, y = (float(v) for v in image.grid.world_to_pixel(CRAB_RA, CRAB_DEC))
        r0, c0 = int(round(y)), int(round(x))
        rr, cc = np.mgrid[r0 - 3 : r0 + 4, c0 - 3 : c0 + 4]
        template = np.exp(-0.5 * ((cc - x) ** 2 + (rr - y) ** 2) / sigma_pixels**2)
        amplitude = (template * image.intensity[rr, cc]).sum() / (template**2).sum()
        pulls.append((amplitude - curve["RATE"][k]) / curve["ERROR"][k])
    pulls = np.array(pulls)
    # Independent noise of equal size (the unweighted PSF fit is ~15 % noisier than the pixel sigma).
    assert abs(pulls.mean()) < 0.45
    assert 1.15 < pulls.std() < 1.85


def test_injected_jupiter_is_found_at_its_position(isgri):
    bright = Sky.default(body_fluxes_mcrab={"jupiter": 300.0})
    ijd = date_to_ijd("2015-03-01")
    ra, dec = bright.body_position("jupiter", ijd)
    rows = scw_table(1, ra=float(ra) + 2.0, dec=float(dec) - 1.0, ijd=ijd, posangle=0.0)
    image = imaging.scw_image(rows[0], bright, isgri, 20, 40)
    catalog = imaging.source_catalog(image, bright, detection_threshold=7.0)
    assert "Jupiter" in list(catalog["src_names"])
    row = list(catalog["src_names"]).index("Jupiter")
    assert catalog["significance"][row] > 20
    assert catalog["ra"][row] == pytest.approx(
        float(bright.body_position("jupiter", rows[0]["TSTART"] + 0.0127)[0]), abs=0.01
    )
    plain = imaging.source_catalog(imaging.scw_image(rows[0], Sky.default(), isgri, 20, 40), Sky.default())
    assert "Jupiter" not in list(plain["src_names"])


def test_catalog_columns_and_selected_catalog(sky, isgri):
    rows = scw_table(2, posangle=0.0)
    image = imaging.mosaic(rows, sky, isgri, 30, 60)
    catalog = imaging.source_catalog(image, sky, detection_threshold=7.0)
    assert tuple(catalog.colnames) == imaging.CATALOG_COLUMNS
    assert catalog["meta_ID"].dtype == np.int64 and catalog["NEW_SOURCE"].dtype == np.int64
    assert catalog["significance"].dtype == np.float64
    assert np.all(catalog["significance"] > 7.0)
    # A user catalogue replaces the reference one: its entries are kept and measured; the Crab is new then.
    selected = [("somewhere", CRAB_RA + 3.0, CRAB_DEC), ("far away", 250.0, -40.0)]
    custom = imaging.source_catalog(image, sky, detection_threshold=7.0, selected_catalog=selected)
    names = list(custom["src_names"])
    assert names[:2] == ["somewhere", "far away"] or set(names[:2]) == {"somewhere", "far away"}
    assert np.isnan(custom["significance"][names.index("far away")])
    assert abs(custom["significance"][names.index("somewhere")]) < 6
    new = [k for k, name in enumerate(names) if name.startswith("NEW_")]
    assert len(new) >= 1 and custom["NEW_SOURCE"][new[0]] == 1
    assert custom["ra"][new[0]] == pytest.approx(CRAB_RA, abs=0.05)
    assert custom["dec"][new[0]] == pytest.approx(CRAB_DEC, abs=0.05)
    assert 0 < custom["ERR_RAD"][new[0]] < 0.02
    as_dicts = imaging.source_catalog(image, sky, selected_catalog=[{"src_names": "x", "ra": CRAB_RA, "dec": CRAB_DEC}])
    assert as_dicts["src_names"][0] == "x" and as_dicts["significance"][0] > 100


@pytest.mark.parametrize(
    "instrument_name, band, extname, intensity_type",
    [
        ("isgri", (30.0, 60.0), "ISGR-MOSA-IMA", "INTENSITY"),
        ("jemx2", (3.0, 10.0), "JMX2-MOSA-IMA", "RECONSTRUCTED"),
    ],
)
def test_mosaic_hdulist_is_like_the_real_one(sky, instrument_name, band, extname, intensity_type):
    instrument = instrument_for(instrument_name)
    rows = scw_table(2, posangle=None, dither_deg=0.5)
    hdulist, catalog, image = imaging.image_products(rows, sky, instrument, *band)
    buffer = io.BytesIO()
    hdulist.writeto(buffer)
    buffer.seek(0)
    with fits.open(buffer) as read:
        assert [hdu.name for hdu in read] == ["PRIMARY", "GROUPING"] + [extname] * 4
        assert read[0].data is None
        grouping = read[1]
        assert grouping.header["GRPNAME"] == f"{extname}-IDX"
        assert list(grouping.data["IMATYPE"]) == [intensity_type, "VARIANCE", "SIGNIFICANCE", "EXPOSURE"]
        # the real GROUPING's columns and storage (oda_api TestAPI notebook)
        assert grouping.columns.names == [
            "MEMBER_XTENSION",
            "MEMBER_NAME",
            "MEMBER_VERSION",
            "MEMBER_POSITION",
            "MEMBER_LOCATION",
            "MEMBER_URI_TYPE",
            "IMATYPE",
            "CHANMIN",
            "CHANMAX",
            "E_MIN",
            "E_MEAN",
            "E_MAX",
            "TFIRST",
            "TLAST",
            "TELAPSE",
            "ONTIME",
        ]
        assert [c.format for c in grouping.columns] == [
            "8A",
            "32A",
            "1J",
            "1J",
            "256A",
            "3A",
            "32A",
            "1I",
            "1I",
            "1E",
            "1E",
            "1E",
            "1D",
            "1D",
            "1D",
            "1D",
        ]
        assert grouping.header["TZERO8"] == 32768 and list(grouping.data["MEMBER_POSITION"]) == [3, 4, 5, 6]
        # whole-mosaic times: the first ScW's start to the last one's stop, summed good and elapsed times
        assert np.allclose(grouping.data["TFIRST"], rows["TSTART"][0])
        assert np.allclose(grouping.data["TLAST"], rows["TSTOP"][-1])
        assert np.allclose(grouping.data["ONTIME"], 4000.0) and np.allclose(grouping.data["TELAPSE"], 4400.0)
        assert grouping.header["DATE-OBS"] < grouping.header["DATE-END"]
        for hdu, imatype in zip(read[2:], [intensity_type, "VARIANCE", "SIGNIFICANCE", "EXPOSURE"]):
            header = hdu.header
            assert header["IMATYPE"] == imatype
            assert header["TFIRST"] == pytest.approx(rows["TSTART"][0]) == header["TSTART"]
            assert header["TLAST"] == pytest.approx(rows["TSTOP"][-1]) == header["TSTOP"]
            assert header["TELAPSE"] == pytest.approx(4400.0) and header["EXPOSURE"] == pytest.approx(4000.0)
            assert header["DEADC"] == 1.0
            assert header["DATE-OBS"] == imaging.osa_date(rows["TSTART"][0])
            assert header["DATE-END"] == imaging.osa_date(rows["TSTOP"][-1])
            assert header.get("BUNIT") == {"VARIANCE": "count2/s2", "SIGNIFICANCE": None, "EXPOSURE": "s"}.get(
                imatype, "count/s"
            )
            assert hdu.data.dtype == np.dtype(">f4")
            assert header["RADESYS"] == "FK5" and header["EQUINOX"] == 2000.0
            assert (header["E_MIN"], header["E_MAX"]) == band
            assert header["TELESCOP"] == "INTEGRAL" and header["INSTRUME"] == instrument.instrume
            assert header.get("DETNAM") == instrument.detnam
            assert (header["MJDREF"], header["TIMESYS"], header["TIMEUNIT"]) == (51544.0, "TT", "d")
            assert header["TSTART"] < header["TSTOP"] and header["ONTIME"] == pytest.approx(4000.0)
            assert header["ORIGIN"] == ORIGIN and header["CREATOR"] == CREATOR
            assert "SIMULATED" in str(header["COMMENT"])
            wcs = WCS(header)
            assert wcs.has_celestial
            x, y = wcs.world_to_pixel_values(CRAB_RA, CRAB_DEC)
            gx, gy = image.grid.world_to_pixel(CRAB_RA, CRAB_DEC)
            assert float(x) == pytest.approx(float(gx), abs=1e-6) and float(y) == pytest.approx(float(gy), abs=1e-6)
        assert np.allclose(read[4].data, image.significance.astype(np.float32), equal_nan=True)
    assert len(catalog) >= 1 and catalog["src_names"][0] == "Crab"


def test_osa_date_is_the_utc_of_an_ijd_without_fraction():
    # The real GROUPING: TSTART 1169.97844975867 (IJD, TT) goes with DATE-OBS 2003-03-15T23:27:53.
    assert imaging.osa_date(1169.97844975867) == "2003-03-15T23:27:53"
    assert imaging.osa_date(1169.99912106495) == "2003-03-15T23:57:39"


def test_products_survive_the_oda_api_encoding(sky, isgri):
    from oda_api.data_products import NumpyDataProduct, NumpyDataUnit

    hdulist, _, _ = imaging.image_products(scw_table(1), sky, isgri, 30, 60)
    product = NumpyDataProduct([NumpyDataUnit.from_fits_hdu(hdu) for hdu in hdulist], name="mosaic_image")
    decoded = NumpyDataProduct.decode(json.loads(json.dumps(product.encode(), default=int)))
    rebuilt = decoded.to_fits_hdu_list()
    assert [hdu.name for hdu in rebuilt] == [hdu.name for hdu in hdulist]
    assert np.array_equal(rebuilt[2].data, hdulist[2].data, equal_nan=True)


def test_mosaic_grid_is_capped(sky, isgri):
    spread = scw_table(2, posangle=0.0)
    spread["RA_SCX"][1] = (CRAB_RA + 150.0) % 360
    grid = imaging.mosaic_grid(spread, isgri)
    assert grid.nx <= 2 * imaging.MAX_HALF_PIXELS + 1 and grid.ny <= 2 * imaging.MAX_HALF_PIXELS + 1


# -- structure against the real products (tests/data/real_products; the oda_api TestAPI notebook's GROUPING) -------
REAL_MOSAIC = (
    __import__("pathlib").Path(__file__).resolve().parents[1]
    / "data"
    / "real_products"
    / "1E_1740_7_2942_isgri_mosaic_clean_significance25_40.fits.gz"
)
#: The real ISGRI mosaic's GROUPING columns and dtypes as oda_api decodes them (TestAPI notebook, cell 30).
REAL_GROUPING_DTYPE = [
    ("MEMBER_XTENSION", "S8"),
    ("MEMBER_NAME", "S32"),
    ("MEMBER_VERSION", ">i4"),
    ("MEMBER_POSITION", ">i4"),
    ("MEMBER_LOCATION", "S256"),
    ("MEMBER_URI_TYPE", "S3"),
    ("IMATYPE", "S32"),
    ("CHANMIN", ">i2"),
    ("CHANMAX", ">i2"),
    ("E_MIN", ">f4"),
    ("E_MEAN", ">f4"),
    ("E_MAX", ">f4"),
    ("TFIRST", ">f8"),
    ("TLAST", ">f8"),
    ("TELAPSE", ">f8"),
    ("ONTIME", ">f8"),
]
#: Header keywords of the real GROUPING (TestAPI notebook, cell 37) that the local one has too.
REAL_GROUPING_KEYWORDS = (
    "BASETYPE",
    "DATE-END",
    "DATE-OBS",
    "DETNAM",
    "EXTNAME",
    "GRPNAME",
    "IDXMEMBR",
    "INSTRUME",
    "ISDCLEVL",
    "MJDREF",
    "ORIGIN",
    "TELESCOP",
    "TIMEREF",
    "TIMESYS",
    "TIMEUNIT",
    "TSTART",
    "TSTOP",
    "CREATOR",
    "TZERO8",
    "TZERO9",
)


def test_local_mosaic_has_the_real_structure(server):
    from oda_api.api import DispatcherAPI

    disp = DispatcherAPI(url=server.url, instrument="mock")
    disp.n_max_tries = 1
    scws = ["066500220010.001", "066500230010.001", "066500240010.001"]
    result = disp.get_product(
        instrument="isgri",
        product="isgri_image",
        product_type="Real",
        osa_version="OSA11.2",
        scw_list=scws,
        RA=83.633,
        DEC=22.0145,
        E1_keV=25.0,
        E2_keV=40.0,
        silent=True,
    )
    units = result.mosaic_image_0_mosaic.data_unit
    grouping = units[1]
    assert [(n, grouping.data.dtype[n].str.replace("|", "")) for n in grouping.data.dtype.names] == REAL_GROUPING_DTYPE
    for key in REAL_GROUPING_KEYWORDS:
        assert key in grouping.header, key
    intensity = units[2].header
    real = fits.getheader(REAL_MOSAIC)
    # the real gallery mosaic's WCS and time keywords (its TELAPSE is in seconds despite its comment)
    for key in ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "RADESYS", "EQUINOX", "TIMESYS", "TIMEUNIT", "MJDREF"):
        assert intensity[key] == real[key], key
    for key in (
        "CRPIX1",
        "CRPIX2",
        "CRVAL1",
        "CRVAL2",
        "DATE-OBS",
        "DATE-END",
        "MJD-OBS",
        "MJD-END",
        "TSTART",
        "TSTOP",
        "TELAPSE",
    ):
        assert key in intensity and type(intensity[key]) is type(real[key]), key
    assert len(intensity["DATE-OBS"]) == len(real["DATE-OBS"]) == 19
    assert abs(intensity["CD2_2"]) == pytest.approx(abs(real["PC2_2"] * real["CDELT2"]), rel=1e-5)
    # the whole mosaic's times (oda-integral-wrapper's mosaic combination reads TFIRST/TLAST, ONTIME, EXPOSURE)
    starts = [float(s) for s in (units[2].header["TSTART"], units[2].header["TFIRST"])]
    assert starts[0] == starts[1] == pytest.approx(grouping.data["TFIRST"][0])
    assert intensity["TLAST"] > intensity["TFIRST"] + 2 * 1000 / 86400  # spans the three ScWs
    assert intensity["ONTIME"] == pytest.approx(grouping.data["ONTIME"][0])
    assert intensity["EXPOSURE"] == pytest.approx(intensity["ONTIME"] * intensity["DEADC"])
    assert intensity["DATE-OBS"] == imaging.osa_date(intensity["TSTART"])
