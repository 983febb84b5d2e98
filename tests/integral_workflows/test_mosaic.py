"""Long-term mosaics: chunks combined exactly, sources found and named, products written."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from integral_workflows import mosaic
from integral_workflows.catalog import default_catalog
from integral_workflows.jobs import Chunk, ChunkCache, JobRunner, split_into_chunks
from integral_workflows.mosaic import SkyMosaic

from .test_jobs import FAST, crab_scws, image_request

CRAB = SkyCoord(83.633 * u.deg, 22.0145 * u.deg)


@pytest.fixture
def chunked_and_whole(server, tmp_path):
    """Chunk mosaics of 8 Crab ScWs (4 jobs) and the one-job mosaic of the same 8 ScWs."""
    scws = crab_scws(server, good=8)
    runner = JobRunner(server.url, backend_id="t", cache=ChunkCache(tmp_path / "c"), retry=FAST, progress=False)
    # pairs (a one-ScW job answers on the ScW's own grid, as the real backend)
    pairs = [Chunk(i, tuple(scws[2 * i:2 * i + 2]), f"pair{i}") for i in range(4)]
    chunks = runner.run(image_request(), pairs)
    whole = runner.run(image_request(), split_into_chunks(scws, s_max=8))
    chunk_mosaics = [SkyMosaic.from_data_collection(p.data_collection()) for p in chunks.pieces]
    return chunk_mosaics, SkyMosaic.from_data_collection(whole.pieces[0].data_collection())


def test_combining_chunks_gives_the_one_job_mosaic(chunked_and_whole):
    chunk_mosaics, whole = chunked_and_whole
    combined = mosaic.combine(chunk_mosaics)
    # same sky position of each pixel: compare on the whole mosaic's grid
    ys, xs = np.nonzero(np.isfinite(whole.variance))
    world = whole.wcs.pixel_to_world(xs, ys)
    cx, cy = combined.wcs.world_to_pixel(world)
    cx, cy = np.rint(cx).astype(int), np.rint(cy).astype(int)
    np.testing.assert_allclose(combined.intensity[cy, cx], whole.intensity[ys, xs], rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(combined.variance[cy, cx], whole.variance[ys, xs], rtol=2e-4)
    np.testing.assert_allclose(combined.exposure[cy, cx], whole.exposure[ys, xs], rtol=2e-4)


def test_combining_resamples_mosaics_on_other_grids(chunked_and_whole):
    chunk_mosaics, whole = chunked_and_whole
    shifted = chunk_mosaics[1]
    moved = shifted.wcs.deepcopy()
    moved.wcs.crval = moved.wcs.crval + np.array([0.3, -0.2])   # another tangent point: resampling path
    other = SkyMosaic(shifted.intensity, shifted.variance, shifted.exposure, moved, dict(shifted.meta))
    combined = mosaic.combine([chunk_mosaics[0], other])
    assert combined.shape[0] >= chunk_mosaics[0].shape[0]
    assert np.isfinite(combined.significance).sum() > np.isfinite(chunk_mosaics[0].significance).sum()


def test_the_crab_is_found_named_and_measured(chunked_and_whole, tmp_path):
    chunk_mosaics, _ = chunked_and_whole
    combined = mosaic.combine(chunk_mosaics)
    catalog = default_catalog(83.633, 22.0145, 20.0)
    sources = mosaic.find_sources(combined, threshold=7.0, catalog=catalog)
    crab = sources[sources["name"] == "Crab"]
    assert len(crab) == 1
    position = SkyCoord(crab["ra"][0] * u.deg, crab["dec"][0] * u.deg)
    assert position.separation(CRAB).arcmin < 4.94
    assert crab["significance"][0] > 100
    rate, error = combined.value_at(CRAB)
    assert 0 < error < rate
    region = mosaic.write_region_file(sources, tmp_path / "sources.reg")
    from regions import Regions
    assert len(Regions.read(str(region), format="ds9")) == len(sources)
    figure = mosaic.plot(combined, sources=sources, path=tmp_path / "mosaic.png")
    assert (tmp_path / "mosaic.png").stat().st_size > 10_000
    assert "SIMULATED" in figure.axes[0].get_title()


def test_fits_round_trip_keeps_maps_wcs_and_provenance(chunked_and_whole, tmp_path):
    combined = mosaic.combine(chunked_and_whole[0])
    path = combined.write(tmp_path / "mosaic.fits", provenance={"OBJECT": "Crab"})
    again = SkyMosaic.read(path)
    np.testing.assert_allclose(again.intensity, combined.intensity.astype(np.float32), equal_nan=True)
    assert again.wcs.wcs.compare(combined.wcs.wcs, tolerance=1e-9)
    assert again.simulated


def test_new_sources_are_named_and_optional():
    shape = (60, 60)
    from astropy.wcs import WCS
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [10.0, 10.0]
    wcs.wcs.crpix = [30.5, 30.5]
    wcs.wcs.cdelt = [-0.0823, 0.0823]
    rng = np.random.default_rng(1)
    intensity = rng.normal(size=shape)
    yy, xx = np.mgrid[0:60, 0:60]
    intensity += 40 * np.exp(-((xx - 20) ** 2 + (yy - 35) ** 2) / 2.0)
    sky = SkyMosaic(intensity, np.ones(shape), np.ones(shape), wcs)
    found = mosaic.find_sources(sky, threshold=7.0, catalog=Table({"name": ["Far"], "ra": [0.0], "dec": [0.0]}))
    assert list(found["name"]) == ["NEW_1"] and bool(found["new_source"][0])
    assert len(mosaic.find_sources(sky, threshold=7.0, include_new_sources=False)) == 0


def test_source_rates_are_point_source_rates_wherever_the_source_falls_on_a_pixel():
    """A 12′ PSF on 4.94′ pixels read bilinearly is up to 20 % low between pixel centres; the table is not."""
    from astropy.wcs import WCS
    from integral_workflows import photometry

    pixel = 4.94 / 60.0
    sigma = photometry.DEFAULT_PSF_FWHM_DEG["isgri"] * photometry.SIGMA_PER_FWHM / pixel
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [83.633, 22.0145]
    wcs.wcs.crpix = [41.0, 41.0]
    wcs.wcs.cdelt = [-pixel, pixel]
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:81, 0:81]
    true_rate, noise = 10.0, 0.05
    ratios, bilinear = [], []
    for dx, dy in rng.uniform(-0.5, 0.5, size=(12, 2)):
        x0, y0 = 40.0 + dx, 40.0 + dy
        intensity = true_rate * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma ** 2))
        sky = SkyMosaic(intensity + noise * rng.normal(size=intensity.shape), np.full(intensity.shape, noise ** 2),
                        np.ones(intensity.shape), wcs, {"INSTRUME": "IBIS"})
        found = mosaic.find_sources(sky, threshold=7.0)
        assert len(found) == 1
        assert abs(found["rate"][0] - true_rate) < 4 * found["rate_error"][0] + 0.01 * true_rate
        ratios.append(found["rate"][0] / true_rate)
        bilinear.append(sky.value_at(wcs.pixel_to_world(x0, y0))[0] / true_rate)
    assert abs(np.mean(ratios) - 1.0) < 0.01
    assert np.mean(bilinear) < 0.95  # what the table would say without the PSF correction


# -- the real gallery mosaic (tests/data/real_products, from oda_api's test data) -----------------------------------
REAL_MOSAIC = (__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "real_products"
               / "1E_1740_7_2942_isgri_mosaic_clean_significance25_40.fits.gz")


def test_real_gallery_significance_mosaic_is_read_and_searched():
    real = SkyMosaic.read(REAL_MOSAIC)
    assert real.shape == (461, 433) and real.meta["IMATYPE"] == "SIGNIFICANCE" and not real.simulated
    assert real.meta["DATE-OBS"] == "2017-03-06T13:26:48" and real.meta["TSTART"] < real.meta["TSTOP"]
    assert np.allclose(real.significance, real.intensity, equal_nan=True)
    # an empty sky's significance scatters as N(0, 1)
    assert 0.8 < np.nanstd(real.significance) < 1.5
    catalog = default_catalog(268.56, -28.83, 20.0)
    sources = mosaic.find_sources(real, threshold=20.0, catalog=catalog, include_new_sources=True)
    gx_1p4 = SkyCoord(263.0125 * u.deg, -24.7456 * u.deg)
    found = SkyCoord(np.asarray(sources["ra"], float) * u.deg, np.asarray(sources["dec"], float) * u.deg)
    assert found.separation(gx_1p4).min() < 0.1 * u.deg
    assert sources["significance"][np.argmin(found.separation(gx_1p4))] > 25


def test_real_gallery_mosaic_combines_with_itself_as_twice_the_data():
    real = SkyMosaic.read(REAL_MOSAIC)
    doubled = mosaic.combine([real, real])
    assert np.nanmax(doubled.significance) == pytest.approx(np.sqrt(2) * np.nanmax(real.significance), rel=1e-6)
    assert doubled.meta["TSTART"] == real.meta["TSTART"] and doubled.meta["DATE-END"] == real.meta["DATE-END"]
