"""Flux-conserving mosaics, point sources injected anywhere, solar-system bodies from DE421."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from oda_api.api import DispatcherAPI

from mmoda_local import imaging
from mmoda_local.cli import _config_from_args, build_parser
from mmoda_local.config import ServerConfig
from mmoda_local.instrument import MJDREF, instrument_for
from mmoda_local.sky import Sky, parse_injected_source, shape_lightcurve

from .test_imaging import measured_lag_correlation, native_truth
from .test_instrument import CRAB_DEC, CRAB_RA, scw_table

#: A high-latitude field with no catalogue source brighter than ~3 mCrab within 21° (see test_imaging).
EMPTY_RA, EMPTY_DEC = 10.0, 10.0


def _psf_pixel_sum(x0: float, y0: float, cols, rows, sigma_pixels: float) -> float:
    """Σ over the aperture pixels of a unit-peak Gaussian PSF centred at (x0, y0)."""
    return float(np.exp(-0.5 * ((cols - x0) ** 2 + (rows - y0) ** 2) / sigma_pixels**2).sum())


@pytest.mark.parametrize("instrument_name", ["isgri", "jemx1"])
def test_a_mosaic_keeps_a_point_source_flux_and_empty_field_noise(instrument_name):
    instrument = instrument_for(instrument_name)
    rng = np.random.default_rng(2024)
    # A bright source at a random place of the empty field: the ScWs' dithers put it at random sub-pixel positions.
    ra = EMPTY_RA + rng.uniform(-1.0, 1.0)
    dec = EMPTY_DEC + rng.uniform(-1.0, 1.0)
    sky = Sky.default(injected_sources=[{"name": "SIM J0040+10", "ra": ra, "dec": dec, "flux_mcrab": 5000.0}])
    dither = 2.0 if instrument.key == "isgri" else 0.7
    rows = scw_table(12, ra=ra, dec=dec, dither_deg=dither, posangle=None, seed=7)
    band = (20.0, 40.0) if instrument.key == "isgri" else (3.0, 10.0)
    image = imaging.mosaic(rows, sky, instrument, *band, centre=(ra + 0.3 * instrument.pixel_deg, dec))
    # Truth: the source's on-axis band rate in each ScW (the input of the images), averaged.
    index = sky.find("SIM J0040+10")
    truths = []
    for row in rows:
        view = imaging.ScwView(row, sky, instrument)
        truths.append(float(view.band_rates(*band)[list(view.index).index(index)]))
    truth = float(np.mean(truths))
    # (a) the aperture sum of INTENSITY over the PSF's pixel sum of a unit-peak source gives the rate.
    sigma_pixels = instrument.psf_sigma_deg / instrument.pixel_deg
    x0, y0 = (float(v) for v in image.grid.world_to_pixel(ra, dec))
    assert 0.05 < (x0 % 1.0) < 0.95 or 0.05 < (y0 % 1.0) < 0.95, "a sub-pixel position"
    radius = 5.0 * sigma_pixels
    rows_idx, cols_idx = np.mgrid[0 : image.grid.ny, 0 : image.grid.nx]
    aperture = (cols_idx - x0) ** 2 + (rows_idx - y0) ** 2 <= radius**2
    assert np.all(np.isfinite(image.intensity[aperture]))
    measured = image.intensity[aperture].sum() / _psf_pixel_sum(
        x0, y0, cols_idx[aperture], rows_idx[aperture], sigma_pixels
    )
    assert measured == pytest.approx(truth, rel=0.01)
    # (b) away from the source, the significance of the empty field is N(0, 1).
    distance = np.hypot(cols_idx - x0, rows_idx - y0)
    field = image.significance[(distance > 8.0 * sigma_pixels) & np.isfinite(image.significance)]
    assert field.size > 20_000
    assert 0.95 < field.std() < 1.05
    assert abs(field.mean()) < 0.05


def test_resampling_is_bilinear_and_its_variance_follows_the_noise_correlation():
    from scipy import ndimage

    isgri = instrument_for("isgri")
    sky = Sky.default()
    band = (30, 60)
    # The Crab 3° off axis: a bright source whose resampled PSF the mosaic must carry exactly.
    row = scw_table(1, ra=CRAB_RA + 2.0, dec=CRAB_DEC - 2.0, posangle=17.0)[0]
    single = imaging.scw_image(row, sky, isgri, *band)
    native, truth = native_truth(row, sky, isgri, band)
    # A grid whose tangent point is 0.37 and 0.61 pixel away: every target pixel falls between source pixels.
    centre = single.grid.pixel_to_world(single.grid.crpix1 - 1 + 0.37, single.grid.crpix2 - 1 + 0.61)
    image = imaging.mosaic([row], sky, isgri, *band, centre=(float(centre[0]), float(centre[1])))
    rows_idx, cols_idx = np.mgrid[0 : image.grid.ny, 0 : image.grid.nx]
    ra, dec = image.grid.pixel_to_world(cols_idx.ravel(), rows_idx.ravel())
    x, y = native.world_to_pixel(ra, dec)

    def resample(plane):
        return ndimage.map_coordinates(plane, [y, x], order=1, cval=np.nan).reshape(image.grid.shape)

    expected = resample(truth)
    interior = np.isfinite(expected) & np.isfinite(resample(single.variance)) & np.isfinite(image.variance)
    assert interior.sum() > 50_000
    # Variance of a bilinear sum of correlated noise: the lag-1 correlation measured on a noise field (not the
    # code's formula) gives the factor (1 − 2fx(1−fx)(1−ρ))(1 − 2fy(1−fy)(1−ρ)).
    rho = measured_lag_correlation(isgri)
    fx, fy = (x % 1.0).reshape(image.grid.shape), (y % 1.0).reshape(image.grid.shape)
    factor = (1 - 2 * fx * (1 - fx) * (1 - rho)) * (1 - 2 * fy * (1 - fy) * (1 - rho))
    ratio = image.variance[interior] / (resample(single.variance)[interior] * factor[interior])
    assert np.median(np.abs(ratio - 1)) < 0.01
    assert factor[interior].min() < 0.85, "the correlation matters"
    # Intensity: the bilinearly resampled PSF of the Crab plus unit noise in σ units (no residual at its peak).
    crab_x, crab_y = (int(round(float(v))) for v in image.grid.world_to_pixel(CRAB_RA, CRAB_DEC))
    assert expected[crab_y, crab_x] / math.sqrt(image.variance[crab_y, crab_x]) > 50
    pulls = (image.intensity[interior] - expected[interior]) / np.sqrt(image.variance[interior])
    assert abs(pulls.mean()) < 0.05 and abs(pulls.std() - 1) < 0.03
    assert np.abs(pulls).max() < 6.5


def test_injected_sources_have_their_spectrum_and_light_curve():
    sky = Sky.default(
        injected_sources=[
            {"name": "SIM A", "ra": 30.0, "dec": -20.0, "flux_mcrab": 100.0, "index": 2.13},
            {"name": "SIM B", "ra": 31.0, "dec": -20.0, "flux_mcrab": 100.0, "index": 3.0, "shape": "flare:1500:2:5"},
            {"name": "SIM C", "ra": 32.0, "dec": -20.0, "flux_mcrab": 50.0, "shape": "sine:10:0.5:1497.5"},
        ]
    )
    crab, a, b, c = (sky.find(n) for n in ("Crab", "sim a", "SIM_B", "Sim C"))
    energy = np.geomspace(3.0, 500.0, 50)
    # Index 2.13 is the Crab's: 100 mCrab is a tenth of the Crab's spectrum at every energy.
    assert np.allclose(sky.reference_spectrum(a, energy), 0.1 * sky.reference_spectrum(crab, energy), rtol=1e-3)
    # Same 20-60 keV flux, steeper spectrum: more at 10 keV, less at 200 keV.
    assert sky.reference_spectrum(b, 10.0) > sky.reference_spectrum(a, 10.0)
    assert sky.reference_spectrum(b, 200.0) < sky.reference_spectrum(a, 200.0)
    assert sky.spectral_parameters(b)["reference_mcrab"] == pytest.approx(100.0, rel=1e-3)
    assert sky.variability(b, [1500.0, 1502.0, 1600.0]) == pytest.approx([5.0, 1 + 4 * math.exp(-0.5), 1.0])
    assert sky.variability(c, [1497.5, 1500.0, 1505.0]) == pytest.approx([1.0, 1.5, 0.5])
    assert not sky.is_variable(a) and sky.is_variable(b)
    found = sky.sources_in_field(31.0, -20.0, 1.5, 1500.0)
    assert {"SIM A", "SIM B", "SIM C"} <= set(found.names)
    with pytest.raises(ValueError, match="already taken"):
        Sky.default(injected_sources=[{"name": "crab", "ra": 1.0, "dec": 1.0, "flux_mcrab": 1.0}])


def test_inject_source_option_and_configuration(tmp_path):
    parser = build_parser()
    args = parser.parse_args(
        [
            "serve",
            "--data-dir",
            str(tmp_path),
            "--inject-source",
            "SIM X-1,10.5,-3,20",
            "--inject-source",
            "SIM X-2, 11, 4, 5, 1.5, flare:1500:0.5:10",
        ]
    )
    config = _config_from_args(args)
    assert config.injected_sources == [
        {"name": "SIM X-1", "ra": 10.5, "dec": -3.0, "flux_mcrab": 20.0, "index": 2.0, "shape": "constant"},
        {"name": "SIM X-2", "ra": 11.0, "dec": 4.0, "flux_mcrab": 5.0, "index": 1.5, "shape": "flare:1500:0.5:10"},
    ]
    # Serialised like the other fields: describe() → JSON → from_json_file gives the same sources.
    described = config.describe()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"injected_sources": described["injected_sources"], "seed": 3}))
    assert ServerConfig.from_json_file(path).injected_sources == config.injected_sources
    for bad, message in [
        ("SIM,10,20", "NAME,RA,DEC,FLUX_MCRAB"),
        ("SIM,ten,20,5", "must be numbers"),
        ("SIM,10,95,5", "dec"),
        ("SIM,10,20,-5", "flux_mcrab"),
        ("SIM,10,20,5,2,wiggle:3", "not one of"),
        ("SIM,10,20,5,2,sine:10:2", "AMPLITUDE"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_injected_source(bad)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--inject-source", "SIM,10,20"])
    with pytest.raises(ValueError):
        ServerConfig(data_dir=tmp_path, injected_sources=[{"name": "SIM", "ra": 1.0}])
    assert shape_lightcurve("constant") is None


def test_an_injected_source_is_detected_and_its_light_curve_has_its_rate(server_factory, scw_archive):
    rng = np.random.default_rng(11)
    archive = scw_archive
    table = archive.table
    usable = table[~np.asarray(table["IN_BELT"]) & (np.asarray(table["GOOD_ISGRI"]) > 1500)]
    # A random source within 3° of a random pointing of the archive (the pointing of another ScW a few degrees away
    # is part of the mosaic too).
    pick = usable[int(rng.integers(len(usable)))]
    ra = float(pick["RA_SCX"]) + rng.uniform(-3, 3) / max(math.cos(math.radians(float(pick["DEC_SCX"]))), 0.2)
    dec = float(np.clip(float(pick["DEC_SCX"]) + rng.uniform(-3, 3), -89, 89))
    table_rows = table[archive.select(1000.0, 9000.0, ra=ra, dec=dec, radius=5.0)]
    rows = table_rows[~np.asarray(table_rows["IN_BELT"]) & (np.asarray(table_rows["GOOD_ISGRI"]) > 1500)][:6]
    assert len(rows) >= 3
    flux = 300.0
    server = server_factory(
        injected_sources=[{"name": "SIM J1", "ra": ra % 360.0, "dec": dec, "flux_mcrab": flux, "index": 2.13}]
    )
    disp = DispatcherAPI(url=server.url, instrument="mock")
    disp.n_max_tries = 1
    common = {
        "instrument": "isgri",
        "product_type": "Real",
        "osa_version": "OSA11.2",
        "scw_list": [f"{s}.001" for s in rows["SWID"]],
        "RA": ra % 360.0,
        "DEC": dec,
        "token": server.token("general, unige-hpc-full"),
        "silent": True,
        "E1_keV": 30.0,
        "E2_keV": 60.0,
    }
    image = disp.get_product(product="isgri_image", detection_threshold=7.0, **common)
    catalog = image.dispatcher_catalog_1.table
    assert "SIM J1" in list(catalog["src_names"])
    entry = catalog[list(catalog["src_names"]).index("SIM J1")]
    from astropy.coordinates import SkyCoord

    found = SkyCoord(float(entry["ra"]), float(entry["dec"]), unit="deg")
    assert found.separation(SkyCoord(ra % 360.0, dec, unit="deg")).arcmin < 1.0
    assert float(entry["significance"]) > 20
    curves = disp.get_product(product="isgri_lc", src_name="SIM J1", time_bin=10000.0, **common)
    from integral_workflows.lightcurve import LightCurve

    curve = LightCurve.from_data_collection(curves, "SIM J1")
    isgri = instrument_for("isgri")
    # Truth: 300 mCrab with the Crab's spectral index is 0.3 of the Crab's rate in the band at that time.
    truth = np.array([flux / 1000.0 * isgri.crab_band_rate(30.0, 60.0, t) for t in curve.time])
    weights = 1.0 / curve.error**2
    mean = float(np.sum(weights * curve.rate) / np.sum(weights))
    error = float(1.0 / math.sqrt(np.sum(weights)))
    assert abs(mean - float(np.mean(truth))) < 4.0 * error
    assert error < 0.1 * float(np.mean(truth))


def test_bodies_are_placed_with_de421():
    import astropy.units as u
    from astropy.coordinates import GCRS, ICRS, CartesianRepresentation, get_body, get_body_barycentric
    from astropy.time import Time

    from mmoda_local.sky import BODIES, de421_path

    path = de421_path()
    assert path is not None and path.endswith("de421.bsp")
    sky = Sky.default()
    ijd = np.random.default_rng(5).uniform(1000.0, 9000.0, 5)
    times = Time(ijd + MJDREF, format="mjd", scale="tt")
    earth = get_body_barycentric("earth", times, ephemeris=path).xyz.to_value(u.km).T
    for body in BODIES:
        reference = get_body(body, times, ephemeris=path)
        for exact in (True, False):
            ra, dec = sky.body_position(body, ijd, exact=exact, observer="geocentre")
            # The server's position is astrometric; astropy's get_body is apparent (aberration, deflection): put the
            # server's direction at the ephemeris distance and let astropy apply the same ICRS → GCRS step.
            distance = np.linalg.norm(reference.cartesian.xyz.to_value(u.km).T, axis=-1)
            direction = np.stack(
                [
                    np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                    np.cos(np.radians(dec)) * np.sin(np.radians(ra)),
                    np.sin(np.radians(dec)),
                ],
                axis=-1,
            )
            scale = distance[:, None]
            apparent = ICRS(CartesianRepresentation((earth + direction * scale).T * u.km)).transform_to(
                GCRS(obstime=times)
            )
            separation = apparent.separation(reference).to_value(u.arcsec)
            assert separation.max() < 0.01, (body, exact, separation.max())
