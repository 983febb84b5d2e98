"""The simulated sky: catalogue spectra, the Crab, transients, variable sources, bodies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmoda_local import sky as sky_module
from mmoda_local.instrument import (
    CRAB_NORM_100KEV,
    CRAB_PHOTON_INDEX,
    REFERENCE_IJD,
    crab_photon_spectrum,
    instrument_for,
    power_law_bin_flux,
)
from mmoda_local.sky import BODIES, Sky, date_to_ijd

MISSION = np.arange(date_to_ijd("2002-11-01"), date_to_ijd("2025-03-01"), 0.25)


@pytest.fixture(scope="module")
def sky():
    return Sky.default()


def test_sky_holds_the_catalogue_and_the_bodies(sky):
    assert sky.catalogue_size == 947
    assert sky.n_sources == 947 + len(BODIES)
    assert sky.find("Crab") == sky.find("crab") == sky.find(" CRAB ")
    assert sky.names[sky.find("gx339-4")] == "GX 339-4"
    assert sky.names[sky.find("JUPITER")] == "Jupiter"
    assert sky.find("Saturn") is not None
    assert sky.find("no such source") is None


def test_crab_is_one_constant_power_law(sky):
    crab = sky.find("Crab")
    energy = np.geomspace(3, 1000, 50)
    for ijd in (1000.0, 6000.0, 9000.0):
        assert np.allclose(sky.photon_spectrum(crab, energy, ijd), crab_photon_spectrum(energy), rtol=1e-12)
        assert sky.variability(crab, ijd) == 1.0
    assert np.allclose(crab_photon_spectrum(100.0), CRAB_NORM_100KEV)
    isgri = instrument_for("isgri")
    exact = power_law_bin_flux(isgri.true_edges_keV, CRAB_PHOTON_INDEX, CRAB_NORM_100KEV)
    assert np.allclose(sky.bin_flux(isgri.true_edges_keV)[crab], exact, rtol=1e-8)


def test_catalogue_sources_reproduce_their_rates(sky):
    columns = sky_module._catalogue_columns()
    isgri, jemx = instrument_for("isgri"), instrument_for("jemx2")
    isgri_flux = sky.bin_flux(isgri.true_edges_keV)
    jemx_flux = sky.bin_flux(jemx.true_edges_keV)
    checked = 0
    for i in range(sky.catalogue_size):
        name = columns["name"][i]
        if name in sky_module._curated_sources() or not sky.spectrum_origin[i].startswith("catalogue (ISGRI and"):
            continue
        if not (1.0 < sky.index_isgri[i] < 4.0) or not np.isfinite(columns["ISGR_FLUX_1"][i]):
            continue
        assert isgri.band_rate(isgri_flux[i], 20, 60, REFERENCE_IJD) == pytest.approx(
            columns["ISGR_FLUX_1"][i], rel=2e-3
        ), name
        if np.isfinite(columns["JEMX_FLUX_1"][i]):
            assert jemx.band_rate(jemx_flux[i], 3, 10, REFERENCE_IJD) == pytest.approx(
                columns["JEMX_FLUX_1"][i], rel=2e-3
            ), name
        checked += 1
    assert checked > 100


def test_indices_come_from_band_ratios_and_are_clipped(sky):
    assert np.all((sky.index_isgri >= 1.0) & (sky.index_isgri <= 4.0))
    assert np.all((sky.index_jemx >= 1.0) & (sky.index_jemx <= 4.0))
    tables = sky_module._response_tables()
    assert float(tables.index_from_ratio(tables.isgri_high, tables.isgri_low, 1.0)) == pytest.approx(2.13, abs=0.01)
    harder = float(tables.index_from_ratio(tables.isgri_high, tables.isgri_low, 1.5))
    assert 1.0 < harder < 2.13
    assert float(tables.index_from_ratio(tables.isgri_high, tables.isgri_low, 1e-6)) == 4.0
    # SWIFT J1910.2-0546 has 0 ct/s in 20-60 keV and 22100 in 60-200 keV: a curated transient, sane index.
    params = sky.spectral_parameters(sky.find("SWIFT J1910.2-0546"))
    assert 1 <= params["index_isgri"] <= 4 and params["variable"]


def test_spectra_join_smoothly(sky):
    energy = np.geomspace(10, 30, 400)
    for name in ("Cyg X-1", "Vela X-1", "Her X-1", "GRS 1915+105"):
        spectrum = sky.reference_spectrum(sky.find(name), energy)
        steps = np.abs(np.diff(np.log(spectrum)))
        assert steps.max() < 0.02, name


def test_missing_rates_get_an_invented_faint_flux(sky):
    faint = [i for i in range(sky.catalogue_size) if str(sky.spectrum_origin[i]).startswith("invented")]
    assert len(faint) > 100
    mcrab = np.array([sky.spectral_parameters(i)["reference_mcrab"] for i in faint[:50]])
    assert np.all((mcrab >= 0.3 - 1e-6) & (mcrab <= 3.0 + 1e-6))


def test_transients_are_not_permanently_at_their_peak(sky):
    peaked = [i for i in range(sky.catalogue_size) if isinstance(sky.lightcurves.get(i), sky_module.InventedOutbursts)]
    assert len(peaked) >= 5
    for name in ("MAXI J1820+070", "XTE J1810-189", "GX 339-4", "V404 Cyg", "XTE J1550-564"):
        i = sky.find(name)
        flux = sky.variability(i, MISSION)
        peak = max(flux.max(), 1e-12)
        assert np.mean(flux > 0.5 * peak) < 0.05, name
    assert sky.is_variable(sky.find("IGR J17451-3022"))
    for i in peaked:
        flux = sky.variability(i, MISSION)
        peak = sky.lightcurves[i].peak_factor
        assert peak <= 1.0 and sky.spectral_parameters(i)["reference_mcrab"] * peak <= 1000 + 1e-6
        assert flux.max() > 0.5 * peak and np.median(flux) < 0.05 * peak, sky.names[i]
    # SGR 1806-20: the catalogue's 119 ct/s is its 2004 giant flare; persistent 5 mCrab here.
    assert sky.variability(sky.find("SGR 1806-20"), 3000.0) == pytest.approx(0.005)


@pytest.mark.parametrize(
    "name, outburst, quiet, ratio",
    [
        ("MAXI J1820+070", "2018-03-23", "2016-01-01", 1e4),
        ("MAXI J1348-630", "2019-02-03", "2018-01-01", 1e4),
        ("Swift J0243.6+6124", "2017-10-30", "2016-06-01", 1e4),
        ("1A 0535+262", "2020-11-19", "2019-06-01", 1000),
        ("GX 339-4", "2010-03-25", "2012-06-01", 1000),
    ],
)
def test_named_outbursts_happen_on_their_dates(sky, name, outburst, quiet, ratio):
    i = sky.find(name)
    assert sky.variability(i, date_to_ijd(outburst)) > ratio * max(sky.variability(i, date_to_ijd(quiet)), 1e-12)


def test_variable_sources_have_something_to_show(sky):
    def span(name, start, days, step=0.01):
        t = date_to_ijd(start) + np.arange(0, days, step)
        flux = sky.variability(sky.find(name), t)
        return flux.min(), flux.max()

    low, high = span("Vela X-1", "2010-01-01", 9.0)
    assert low < 0.1 * high  # an eclipse in every orbit
    low, high = span("Her X-1", "2010-01-01", 35.0)
    assert high > 10 * low and high > 0.05  # main-on vs off
    cyg_hard = sky.variability(sky.find("Cyg X-1"), date_to_ijd("2009-01-01") + np.arange(0, 60, 0.1)).mean()
    cyg_soft = sky.variability(sky.find("Cyg X-1"), date_to_ijd("2011-01-01") + np.arange(0, 60, 0.1)).mean()
    assert cyg_soft < 0.5 * cyg_hard
    grs = sky.find("GRS 1915+105")
    assert (
        sky.variability(grs, date_to_ijd("2019-06-01") + np.arange(0, 30, 0.1)).mean()
        < 0.2 * sky.variability(grs, date_to_ijd("2016-06-01") + np.arange(0, 30, 0.1)).mean()
    )
    low, high = span("GRS 1915+105", "2016-06-01", 1.0, step=0.001)
    assert high > 1.5 * low  # flaring within a day
    described = {entry["name"] for entry in sky.variable_sources()}
    assert {"Vela X-1", "Her X-1", "Cyg X-1", "GX 339-4", "GRS 1915+105", "1A 0535+262"} <= described


def test_variability_is_vectorised_and_matches_the_spectrum(sky):
    indices = [sky.find("Vela X-1"), sky.find("Crab"), sky.find("Her X-1")]
    times = np.array([5000.0, 5000.5, 5001.0])
    table = sky.variability(indices, times)
    assert table.shape == (3, 3)
    for k, i in enumerate(indices):
        for j, t in enumerate(times):
            assert table[k, j] == sky.variability(i, t)
    energy = np.array([5.0, 50.0])
    assert np.allclose(
        sky.photon_spectrum(indices, energy, 5000.5), sky.reference_spectrum(indices, energy) * table[:, 1:2]
    )
    mean = sky.mean_variability(indices, 5000.0, 5001.0, samples=9)
    assert mean[1] == 1.0 and np.isfinite(mean).all()


def test_bodies_are_seen_from_integral_and_move(sky):
    ijd = np.array([date_to_ijd("2010-01-01"), date_to_ijd("2015-07-01"), date_to_ijd("2021-03-15")])
    ra, dec = sky.body_position("jupiter", ijd)
    exact_ra, exact_dec = sky.body_position("jupiter", ijd, exact=True)
    assert _separation_deg(ra, dec, exact_ra, exact_dec).max() * 3600 < 0.01
    # The geocentric position is the astrometric one of JPL DE421 (the kernel of skyfield-data, read by astropy):
    # the light-time corrected barycentric body minus the Earth.
    import astropy.units as u
    from astropy.coordinates import get_body_barycentric
    from astropy.time import Time

    from mmoda_local.sky import de421_path

    kernel = de421_path()
    assert kernel is not None
    times = Time(ijd + 51544.0, format="mjd", scale="tt")
    earth = get_body_barycentric("earth", times, ephemeris=kernel).xyz.to_value(u.km).T
    distance = np.linalg.norm(
        get_body_barycentric("jupiter", times, ephemeris=kernel).xyz.to_value(u.km).T - earth, axis=1
    )
    emitted = times - distance / 299792.458 * u.s
    truth = get_body_barycentric("jupiter", emitted, ephemeris=kernel).xyz.to_value(u.km).T - earth
    truth_ra = np.degrees(np.arctan2(truth[:, 1], truth[:, 0])) % 360
    truth_dec = np.degrees(np.arcsin(truth[:, 2] / np.linalg.norm(truth, axis=1)))
    geo_ra, geo_dec = sky.body_position("jupiter", ijd, exact=True, observer="geocentre")
    assert _separation_deg(geo_ra, geo_dec, truth_ra, truth_dec).max() * 3600 < 0.01
    # Jupiter moves: ten days later it is somewhere else.
    later = sky.body_position("jupiter", ijd + 10.0)
    assert np.all(np.hypot(later[0] - ra, later[1] - dec) > 0.1)
    field = sky.sources_in_field(float(ra[1]), float(dec[1]), 1.0, float(ijd[1]))
    assert "Jupiter" in list(field.names)
    k = list(field.names).index("Jupiter")
    assert field.ra[k] == pytest.approx(ra[1], abs=1e-6) and field.index[k] == sky.find("Jupiter")


def _separation_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    cosine = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


def test_the_parallax_of_integral_is_at_most_an_arcminute_and_points_away_from_integral(sky):
    from mmoda_local.orbit import integral_position_gcrs

    ijd = np.linspace(date_to_ijd("2003-01-01"), date_to_ijd("2025-01-01"), 997)
    ra, dec = sky.body_position("jupiter", ijd, exact=True)
    geo_ra, geo_dec = sky.body_position("jupiter", ijd, exact=True, observer="geocentre")
    shift = _separation_deg(ra, dec, geo_ra, geo_dec) * 3600
    assert shift.max() < 62.0, "INTEGRAL is < 170 000 km from the Earth, Jupiter > 3.9 AU away"
    assert shift.max() > 20.0 and np.median(shift) > 5.0, "the parallax is applied"
    # Direction: the body moves away from INTEGRAL's side of the sky, by |r_perp| / distance.
    geo = np.stack(
        [
            np.cos(np.radians(geo_dec)) * np.cos(np.radians(geo_ra)),
            np.cos(np.radians(geo_dec)) * np.sin(np.radians(geo_ra)),
            np.sin(np.radians(geo_dec)),
        ],
        axis=1,
    )
    seen = np.stack(
        [
            np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
            np.cos(np.radians(dec)) * np.sin(np.radians(ra)),
            np.sin(np.radians(dec)),
        ],
        axis=1,
    )
    integral = integral_position_gcrs(ijd)
    perpendicular = integral - np.sum(integral * geo, axis=1)[:, None] * geo
    displacement = seen - geo
    cosine = np.sum(displacement * perpendicular, axis=1) / (
        np.linalg.norm(displacement, axis=1) * np.linalg.norm(perpendicular, axis=1)
    )
    assert np.all(cosine < -0.999)
    distance_km = np.linalg.norm(sky._ephemeris.exact_geocentric_km("jupiter", ijd), axis=1)
    expected = np.degrees(np.linalg.norm(perpendicular, axis=1) / distance_km) * 3600
    np.testing.assert_allclose(shift, expected, rtol=1e-3)


def test_body_fluxes_are_configurable():
    default = Sky.default()
    assert default.spectral_parameters(default.find("Jupiter"))["reference_mcrab"] == 0.0
    injected = Sky.default(body_fluxes_mcrab={"jupiter": 10.0, "Saturn": {"mcrab": 5.0, "index": 0.6}})
    jupiter = injected.spectral_parameters(injected.find("Jupiter"))
    saturn = injected.spectral_parameters(injected.find("Saturn"))
    assert jupiter["reference_mcrab"] == pytest.approx(10.0) and jupiter["index_isgri"] == CRAB_PHOTON_INDEX
    assert saturn["reference_mcrab"] == pytest.approx(5.0, rel=1e-3) and saturn["index_isgri"] == 0.6
    energy = np.geomspace(5, 500, 20)
    assert np.allclose(
        injected.reference_spectrum(injected.find("Jupiter"), energy), 0.01 * crab_photon_spectrum(energy)
    )


def test_sources_in_field(sky):
    field = sky.sources_in_field(83.63, 22.01, 5.0, 3000.0)
    assert "Crab" in list(field.names)
    assert len(field.names) == len(field.ra) == len(field.dec) == len(field.index)
    centre = np.radians([83.63, 22.01])
    for ra, dec in zip(field.ra, field.dec):
        cos_distance = math.sin(centre[1]) * math.sin(math.radians(dec)) + math.cos(centre[1]) * math.cos(
            math.radians(dec)
        ) * math.cos(math.radians(ra) - centre[0])
        assert cos_distance >= math.cos(math.radians(5.0)) - 1e-12
    galactic_centre = sky.sources_in_field(266.4, -28.9, 15.0, 3000.0)
    assert len(galactic_centre) > 100


def test_the_sky_is_deterministic():
    first, second = Sky.default(seed=1), Sky.default(seed=2)
    assert np.array_equal(first.norm_isgri, second.norm_isgri)
    assert np.array_equal(first.index_jemx, second.index_jemx)
    t = np.linspace(3000, 3010, 50)
    assert np.array_equal(first.variability(first.find("Vela X-1"), t), second.variability(second.find("Vela X-1"), t))
    assert (first.seed, second.seed) == (1, 2)
