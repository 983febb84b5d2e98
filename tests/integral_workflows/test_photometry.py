"""Photometry: sub-pixel values, PSF fits with honest errors, the variance map checked; the Crab recovered."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS

from integral_workflows import moving, parameters, photometry, scw
from integral_workflows.mosaic import SkyMosaic

PIXEL = 0.082286
SIGMA_PIX = 0.2 * photometry.SIGMA_PER_FWHM / PIXEL
CRAB = (83.63321, 22.014471)


def tan_wcs(shape, ra=100.0, dec=10.0, pixel=PIXEL):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    wcs.wcs.cdelt = [-pixel, pixel]
    return wcs


def correlated_image(rng, shape, *, sigma=1.0, source=None):
    """Noise correlated like a coded-mask image (the local MMODA's own generator) plus an optional point source."""
    from mmoda_local.imaging import correlated_noise
    from mmoda_local.instrument import instrument_for

    noise = correlated_noise(rng, shape, instrument_for("isgri")) * sigma
    if source is not None:
        x, y, amplitude = source
        noise = noise + amplitude * photometry.gaussian_psf_image(shape, x, y, SIGMA_PIX)
    return noise


def test_psf_fit_errors_account_for_correlated_noise():
    rng = np.random.default_rng(1)
    shape = (41, 41)
    wcs = tan_wcs(shape)
    variance = np.ones(shape)
    fits_fixed, fits_free, values = [], [], []
    for _ in range(150):
        x, y = 20 + rng.uniform(-0.5, 0.5), 20 + rng.uniform(-0.5, 0.5)
        image = SkyMosaic(correlated_image(rng, shape, source=(x, y, 10.0)), variance, np.ones(shape), wcs)
        where = wcs.pixel_to_world(x, y)
        fits_fixed.append(photometry.fit_psf(image, where, fwhm_deg=0.2))
        fits_free.append(photometry.fit_psf(image, where, fwhm_deg=0.2, fit_position=True, fit_offset=True))
        values.append(photometry.pixel_value(image, where, psf_fwhm_deg=0.2))
    # A free position chases the noise's highest point: a small positive bias (~0.15 sigma at S/N 10), as expected.
    for label, results, amplitude, error, largest_bias in (
        ("fixed", fits_fixed, "amplitude", "amplitude_error", 0.2),
        ("free", fits_free, "amplitude", "amplitude_error", 0.35),
        ("pixel", values, "value", "error", 0.2),
    ):
        pulls = np.array([(getattr(r, amplitude) - 10.0) / getattr(r, error) for r in results])
        assert abs(pulls.mean()) < largest_bias and 0.85 < pulls.std() < 1.15, (label, pulls.mean(), pulls.std())
    # For a PSF-shaped noise correlation the amplitude error is ~1.15 pixel sigma, not ~1/sqrt(pixels per PSF).
    assert 1.05 < np.median([r.amplitude_error for r in fits_fixed]) < 1.3
    naive = photometry.fit_psf(image, where, fwhm_deg=0.2, noise_correlation_fwhm_deg=0.0)
    assert naive.amplitude_error < 0.5 * fits_fixed[-1].amplitude_error


def test_pixel_values_are_not_truncated_and_are_corrected_for_the_psf():
    shape = (31, 31)
    wcs = tan_wcs(shape)
    x, y = 15.5, 14.5  # between pixels: the worst case
    image = SkyMosaic(7.0 * photometry.gaussian_psf_image(shape, x, y, SIGMA_PIX), np.ones(shape), np.ones(shape), wcs)
    where = wcs.pixel_to_world(x, y)
    value = photometry.pixel_value(image, where, psf_fwhm_deg=0.2)
    assert value.x == pytest.approx(x) and value.y == pytest.approx(y)
    assert value.value == pytest.approx(7.0, rel=1e-3)
    assert 0.94 < value.psf_factor < 0.99, "a cubic spline still lowers an undersampled peak by a few per cent"
    bilinear, _ = image.value_at(where)
    assert bilinear < 0.85 * 7.0, "what a bilinear value without correction makes of it"
    truncated = image.intensity[int(y), int(x)]
    assert abs(truncated - 7.0) > 0.5
    assert photometry.fit_psf(image, where, fwhm_deg=0.2).amplitude == pytest.approx(7.0, rel=1e-6)


def test_the_variance_of_interpolated_values_matches_the_noise():
    rng = np.random.default_rng(2)
    shape = (64, 64)
    for fraction in (0.0, 0.25, 0.5):
        samples = []
        for _ in range(60):
            image = correlated_image(rng, shape)
            points = np.arange(8, 56, 4) + fraction
            grid_y, grid_x = np.meshgrid(points, points, indexing="ij")
            from scipy import ndimage

            samples.append(ndimage.map_coordinates(image, [grid_y.ravel(), grid_x.ravel()], order=3))
        measured = np.var(np.concatenate(samples))
        predicted = photometry.interpolation_variance_factor(
            fraction, correlation_sigma_pix=SIGMA_PIX
        ) * photometry.interpolation_variance_factor(fraction, correlation_sigma_pix=SIGMA_PIX)
        assert measured == pytest.approx(predicted, rel=0.06), fraction
    assert photometry.interpolation_variance_factor(0.0) == pytest.approx(1.0)
    assert photometry.interpolation_variance_factor(0.5) < 0.8, "uncorrelated noise averages down between pixels"


def test_the_annulus_scatter_checks_the_variance_map():
    rng = np.random.default_rng(3)
    shape = (101, 101)
    image = SkyMosaic(correlated_image(rng, shape, sigma=2.0), np.full(shape, 4.0), np.ones(shape), tan_wcs(shape))
    check = photometry.annulus_check(image, image.wcs.pixel_to_world(50, 50))
    assert check.n_pixels > 1000 and check.ratio == pytest.approx(1.0, abs=0.1)
    wrong = SkyMosaic(image.intensity, np.full(shape, 1.0), image.exposure, image.wcs)
    assert photometry.annulus_check(wrong, image.wcs.pixel_to_world(50, 50)).ratio == pytest.approx(2.0, rel=0.1)


def test_upper_limits():
    assert photometry.upper_limits(-1.0, 2.0) == {2.0: 4.0, 3.0: 6.0}
    assert photometry.upper_limits(1.0, 2.0, sigmas=(3,)) == {3.0: 7.0}


def test_the_psf_fit_recovers_the_simulated_crab_within_two_percent_in_single_scws_and_a_stack(server, tmp_path):
    from mmoda_local.instrument import ScwView, instrument_for
    from mmoda_local.sky import Sky

    from .test_moving import InProcessSession

    p = parameters.validate(
        "mosaic",
        {
            "src_name": "Crab",
            "RA": CRAB[0],
            "DEC": CRAB[1],
            "T1": "2005-02-15T00:00:00",
            "T2": "2005-04-15T00:00:00",
            "radius": 4.5,
            "E1_keV": 20.0,
            "E2_keV": 60.0,
        },
    )
    table, _ = scw.select_scws(p, url=server.url)
    table = table[np.argsort(-np.asarray(table["good_time_s"]))[:10]]
    table = table[np.argsort(np.asarray(table["tstart"]))]
    record = moving.fetch_scw_images(InProcessSession(server.url, tmp_path / "chunks"), p, table)
    archive = server.backend.analysis.archive
    sky, isgri = Sky.default(), instrument_for("isgri")
    crab_index = sky.find("Crab")
    truth, fitted, errors = {}, {}, {}
    ids = scw.scw_ids(table)
    times = dict(zip(ids, np.asarray(table["mjd_mid"]) - scw.IJD_MJD_OFFSET))
    for scw_id, _ijd, image in moving.images_from_pieces(record.pieces, times):
        view = ScwView(archive.table[archive.index_of([scw_id])[0]], sky, isgri)
        truth[scw_id] = float(view.band_rates(20.0, 60.0)[list(view.index).index(crab_index)])
        fit = photometry.fit_psf(image, CRAB)
        fitted[scw_id], errors[scw_id] = fit.amplitude, fit.amplitude_error
        assert fit.converged
        assert abs(fit.amplitude / truth[scw_id] - 1) < 0.02, (scw_id, fit.amplitude, truth[scw_id])
        free = photometry.fit_psf(image, CRAB, fit_position=True, fit_offset=True)
        assert abs(free.amplitude / truth[scw_id] - 1) < 0.02
        assert free.position_error_deg < 0.02 and math.hypot(free.x - fit.x, free.y - fit.y) < 0.25
    pulls = np.array([(fitted[s] - truth[s]) / errors[s] for s in ids])
    assert abs(pulls.mean()) < 1.0 and pulls.std() < 1.6
    # The same ScWs stacked in the Crab's "frame" (a body that does not move): the effective-PSF fit.
    from astropy.table import Table

    track = Table({"scw_id": ids, "ra": [CRAB[0]] * len(ids), "dec": [CRAB[1]] * len(ids)})
    truth_mean_scale = {s: 1.0 / truth[s] for s in ids}
    run = moving.stack_in_body_frame(
        moving.images_from_pieces(record.pieces, times),
        track,
        half_size_deg=1.5,
        psf_fwhm_deg=0.2,
        control_offset_deg=1.0,
        per_year=False,
        per_month=False,
        scale=lambda ijd: truth_mean_scale[min(times, key=lambda s: abs(times[s] - ijd))],
    )
    body = run.measurement("all", "body")
    assert body["fit"] == pytest.approx(1.0, abs=0.02), "the stack of rate/truth is 1 within 2 %"
    assert body["pixel"] == pytest.approx(1.0, abs=0.02)
