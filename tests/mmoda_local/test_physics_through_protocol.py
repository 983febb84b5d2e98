"""The simulated sky seen through the unmodified oda_api client: science tested like science.

The truth comes from the simulation (mmoda_local.instrument); the measurements
come through HTTP, oda_api's decoding and the client library, exactly as a
user gets them.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from oda_api.api import DispatcherAPI

from integral_workflows import spectrum
from integral_workflows.lightcurve import LightCurve
from integral_workflows.mosaic import SkyMosaic
from mmoda_local.instrument import instrument_for

CRAB = SkyCoord(83.633 * u.deg, 22.0145 * u.deg)


def crab_rows(server, count: int, *, max_offset_deg: float = 4.0):
    """Good Crab-field pointings with the Crab in the fully coded field."""
    archive = server.backend.analysis.archive
    table = archive.table[archive.select(1000.0, 7000.0, ra=83.633, dec=22.0145, radius=max_offset_deg)]
    good = table[(~np.asarray(table["IN_BELT"])) & (np.asarray(table["GOOD_ISGRI"]) > 1500)]
    assert len(good) >= count
    return good[:count]


def get(server, product: str, rows, **extra):
    disp = DispatcherAPI(url=server.url, instrument="mock")
    disp.n_max_tries = 1
    token = server.token("general, unige-hpc-full")
    return disp.get_product(
        instrument="isgri",
        product=product,
        product_type="Real",
        osa_version="OSA11.2",
        scw_list=[f"{s}.001" for s in rows["SWID"]],
        RA=83.633,
        DEC=22.0145,
        token=token,
        silent=True,
        **extra,
    )


def test_the_crab_is_where_it_is_with_the_expected_significance(server):
    row = crab_rows(server, 1)
    image = get(server, "isgri_image", row, E1_keV=30.0, E2_keV=60.0, detection_threshold=7.0)
    catalog = image.dispatcher_catalog_1.table
    crab = catalog[catalog["src_names"] == "Crab"][0]
    measured = SkyCoord(float(crab["ra"]) * u.deg, float(crab["dec"]) * u.deg)
    assert measured.separation(CRAB).arcmin < 4.94, "within one ISGRI pixel"
    # 128σ in 2 ks on axis in 30-60 keV with the Crab in the field (the calibration), scaled by √time
    isgri = instrument_for("isgri")
    ijd = float(row["TSTART"][0])
    sigma = isgri.sigma_2ks_mcrab(30.0, 60.0, ijd, with_crab=True) / 1000.0
    expected = np.sqrt(float(row["GOOD_ISGRI"][0]) / 2000.0) / sigma
    assert float(crab["significance"]) == pytest.approx(expected, rel=0.15)


def test_light_curve_pulls_are_standard_normal(server):
    rows = crab_rows(server, 60)
    curves = get(server, "isgri_lc", rows, E1_keV=30.0, E2_keV=60.0, time_bin=10000.0)
    curve = LightCurve.from_data_collection(curves, "Crab")
    assert len(curve.time) == len(rows), "one bin per ScW when the bin exceeds a ScW"
    isgri = instrument_for("isgri")
    truth = np.array([isgri.crab_band_rate(30.0, 60.0, t) for t in curve.time])
    pulls = (curve.rate - truth) / curve.error
    assert abs(np.mean(pulls)) < 0.35
    assert 0.75 < np.std(pulls) < 1.3


def test_a_forward_folded_power_law_returns_the_crab_index(server):
    rows = crab_rows(server, 20)
    products = get(server, "isgri_spectrum", rows)
    crab_spectrum, response = spectrum.from_data_collection(products, "Crab")
    fit = spectrum.fit_power_law(crab_spectrum, response, energy_range=(20.0, 300.0))
    assert abs(fit.gamma - 2.13) < 3 * fit.gamma_error
    assert fit.gamma_error < 0.02
    assert 0.001 < fit.p_value


def test_a_field_without_sources_has_standard_normal_significance(server):
    archive = server.backend.analysis.archive
    table = archive.table
    # a high-latitude pointing: few sources; the remaining ones are masked below
    galactic = SkyCoord(np.asarray(table["RA_SCX"]) * u.deg, np.asarray(table["DEC_SCX"]) * u.deg).galactic
    candidates = np.flatnonzero(
        (np.abs(galactic.b.deg) > 50) & ~np.asarray(table["IN_BELT"]) & (np.asarray(table["GOOD_ISGRI"]) > 1500)
    )
    row = table[candidates[:1]]
    disp = DispatcherAPI(url=server.url, instrument="mock")
    image = disp.get_product(
        instrument="isgri",
        product="isgri_image",
        product_type="Real",
        osa_version="OSA11.2",
        scw_list=[f"{row['SWID'][0]}.001"],
        E1_keV=30.0,
        E2_keV=60.0,
        RA=float(row["RA_SCX"][0]),
        DEC=float(row["DEC_SCX"][0]),
        silent=True,
    )
    sky = SkyMosaic.from_data_collection(image)
    significance = sky.significance
    usable = np.isfinite(significance) & (sky.exposure > 0.5 * np.nanmax(sky.exposure))
    # mask any source: a 1° disc around every pixel above 5σ
    yy, xx = np.nonzero(np.abs(np.nan_to_num(significance)) > 5)
    grid_y, grid_x = np.indices(significance.shape)
    for y, x in zip(yy, xx):
        usable &= (grid_y - y) ** 2 + (grid_x - x) ** 2 > 12**2
    values = significance[usable]
    assert values.size > 10_000
    assert abs(np.mean(values)) < 0.05
    assert np.std(values) == pytest.approx(1.0, abs=0.05)
    # Gaussian tails, not just the right width: the fraction beyond 3σ
    assert np.mean(np.abs(values) > 3) < 0.006
