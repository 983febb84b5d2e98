"""Moving targets: ScW selection along the track (checked by brute force), body-frame stacks, injection and recovery.

Library level, against in-process local MMODA servers (``server_factory``). The truth (the simulated Crab's
rate, Jupiter's injected flux) comes from ``mmoda_local``, which the client library never imports.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from integral_workflows import ephemeris, moving, parameters, scw
from integral_workflows.session import Session

from .test_jobs import FAST

#: Jupiter in Aquarius, far from the Galactic plane: a quiet field, many ScWs near the axis.
QUIET = {
    "src_name": "Jupiter",
    "RA": 0.0,
    "DEC": 0.0,
    "T1": "2021-05-10T00:00:00",
    "T2": "2021-05-24T00:00:00",
    "radius": 6.0,
    "E1_keV": 28.0,
    "E2_keV": 40.0,
}
INJECTED_MCRAB = 5.0
SCWS_PER_RUN = 24


def InProcessSession(url: str, cache_dir) -> Session:
    """A session on an in-process server, with fast retries and its own chunk cache."""
    return Session(url=url, cache_dir=cache_dir, retry=FAST, progress=False)


def truth_scale(e1, e2):
    """1000 / (the simulated Crab's rate at each time): images in mCrab, the injected flux then reads 5 everywhere."""
    from mmoda_local.instrument import instrument_for

    isgri = instrument_for("isgri")
    return lambda ijd: 1000.0 / isgri.crab_band_rate(e1, e2, ijd)


def stack_run(server, tmp_path, *, scws=SCWS_PER_RUN):
    """Select, image and stack Jupiter's ScWs of the quiet period on a server; return the StackRun."""
    p = parameters.validate("mosaic", QUIET)
    table, _ = moving.select_body_scws(p, url=server.url)
    table = table[np.argsort(np.asarray(table["offaxis_deg"]))[:scws]]
    table = table[np.argsort(np.asarray(table["tstart"]))]
    session = InProcessSession(server.url, tmp_path / f"chunks{server.config.seed}")
    record = moving.fetch_scw_images(session, p, table)
    assert record.counts()["done"] == len(table), record.outcome_table()
    ids = scw.scw_ids(table)
    times = dict(zip(ids, np.asarray(table["mjd_mid"], float) - scw.IJD_MJD_OFFSET))
    track = ephemeris.body_track(
        "jupiter", list(times.values()), spacecraft=ephemeris.SpacecraftService(server.url), scw_ids=ids
    )
    return moving.stack_in_body_frame(
        moving.images_from_pieces(record.pieces, times),
        track,
        half_size_deg=2.5,
        psf_fwhm_deg=0.2,
        control_offset_deg=1.5,
        scale=truth_scale(28.0, 40.0),
        unit="mCrab",
    )


# -- selection ---------------------------------------------------------------------------------------------------


def test_cones_cover_the_whole_track():
    cones = moving.track_cones("jupiter", 1100.0, 9100.0, cone_radius_deg=15.0)
    assert 20 < len(cones) < 80, "a few cones per year, not one per month"
    times = np.linspace(1100.0, 9100.0, 20000)
    ra, dec, _ = ephemeris.geocentric_positions("jupiter", times)
    for cone in cones:
        inside = (times >= cone.t1) & (times <= cone.t2)
        assert ephemeris.separation_deg(cone.ra, cone.dec, ra[inside], dec[inside]).max() <= cone.reach_deg
    assert cones[0].t1 == 1100.0 and cones[-1].t2 == 9100.0
    assert all(a.t2 == b.t1 for a, b in zip(cones, cones[1:]))


def test_full_mission_selection_agrees_with_a_brute_force_check_of_every_pointing(server):
    p = parameters.validate(
        "scw_selection",
        {"src_name": "Jupiter", "RA": 0.0, "DEC": 0.0, "T1": "2003-01-01T00:00:00", "T2": "2025-03-01T00:00:00"},
    )
    kept, report = moving.select_body_scws(p, url=server.url)
    every = scw.query_scws(ra=0.0, dec=0.0, radius=180.0, t1=p.T1, t2=p.T2, url=server.url)
    near = moving.brute_force_selection(every, "jupiter", p.radius)
    expected = set(np.asarray(every["scw_id"])[near])
    selected = set(np.asarray(kept["scw_id"])) | set(np.asarray(report.removed_rows["scw_id"]))
    assert selected == expected
    assert report.initial == len(expected) > 1500
    assert set(np.asarray(kept["scw_id"])) <= expected and len(kept) > 1000
    assert sum(report.removed_by_cut.values()) == report.initial - report.final
    # The off-axis angle is the body's, at the ScW's mid-time.
    ra, dec, _ = ephemeris.geocentric_positions("jupiter", np.asarray(kept["mjd_mid"]) - scw.IJD_MJD_OFFSET)
    np.testing.assert_allclose(
        kept["offaxis_deg"], ephemeris.separation_deg(kept["ra_x"], kept["dec_x"], ra, dec), atol=1e-9
    )
    assert np.all(kept["offaxis_deg"] < p.radius)
    assert len(kept.meta["query"]["cones"]) < 80
    assert any("moving target Jupiter" in note for note in report.notes)


def test_a_fixed_source_cannot_be_selected_as_a_body(server):
    with pytest.raises(ValueError, match="not a solar-system body"):
        moving.select_body_scws(parameters.validate("scw_selection", {"src_name": "Crab"}), url=server.url)


# -- stacking ----------------------------------------------------------------------------------------------------


def _direct_images(ids, rows, mid, table, sky, e1, e2):
    """ScW images made by the simulation directly (no HTTP), decoded as the client decodes them."""
    from integral_workflows.mosaic import SkyMosaic
    from mmoda_local import imaging
    from mmoda_local.instrument import instrument_for

    isgri = instrument_for("isgri")
    made = {}

    def images():
        for scw_id, r in zip(ids, rows):
            if scw_id not in made:
                image = imaging.scw_image(table[r], sky, isgri, e1, e2)
                made[scw_id] = SkyMosaic.from_hdus(imaging.mosaic_hdulist(image)[2:])
            yield scw_id, mid[r], made[scw_id]

    return images


def test_a_stack_of_direct_images_recovers_a_bright_moving_source_without_bias():
    """No HTTP: images made by the simulation directly, a 20 mCrab Jupiter, the effective-PSF fit is unbiased."""
    from mmoda_local.archive import ScwArchive
    from mmoda_local.sky import Sky

    archive = ScwArchive.load()
    sky = Sky.default(body_fluxes_mcrab={"jupiter": 20.0}, seed=3)
    table = archive.table
    mid = 0.5 * (np.asarray(table["TSTART"]) + np.asarray(table["TSTOP"]))
    window = np.flatnonzero(
        (mid > 7800.0) & (mid < 7830.0) & ~np.asarray(table["IN_BELT"]) & (np.asarray(table["GOOD_ISGRI"]) > 1000)
    )
    ra, dec = sky.body_position("jupiter", mid[window])
    offaxis = ephemeris.separation_deg(table["RA_SCX"][window], table["DEC_SCX"][window], ra, dec)
    rows = window[offaxis < 6.0][:20]
    assert len(rows) >= 15
    ids = [f"{table['SWID'][r]}.001" for r in rows]
    body_ra, body_dec = sky.body_position("jupiter", mid[rows])
    track = Table({"scw_id": ids, "ra": body_ra, "dec": body_dec})
    images = _direct_images(ids, rows, mid, table, sky, 30.0, 60.0)

    result = moving.stack_in_body_frame(
        images(),
        track,
        half_size_deg=2.0,
        psf_fwhm_deg=0.2,
        control_offset_deg=1.2,
        scale=truth_scale(30.0, 60.0),
        unit="mCrab",
        per_month=False,
    )
    body = result.measurement("all", "body")
    assert abs(body["fit"] - 20.0) < 2.5 * body["fit_error"]
    assert body["detected"] and body["significance"] > 8
    assert abs(body["pixel"] - 20.0) < 2.5 * body["pixel_error"]
    assert abs(body["free_dx_deg"]) < 0.05 and abs(body["free_dy_deg"]) < 0.05
    control = result.measurement("all", "control")
    assert abs(control["fit"]) < 3 * control["fit_error"] and not control["detected"]
    # The per-ScW fits in the images' own grids tell the same story.
    weights = 1.0 / result.per_scw["flux_error"] ** 2
    mean = np.sum(weights * result.per_scw["flux"]) / np.sum(weights)
    assert abs(mean - body["fit"]) < 0.5 * body["fit_error"]
    # The effective PSF is lower and wider than the native one: resampling smooths an undersampled PSF.
    template = result.total.template()
    h = result.total.half_size_pix
    assert 0.9 < template[h, h] < 1.0
    # Memory: four maps of the stack, whatever the number of ScWs.
    assert result.total.nbytes() == 4 * 8 * template.size


def test_fixed_sources_along_a_crowded_track_are_masked_and_the_stack_is_noise_again():
    """Jupiter in 2019 crossed Ophiuchus, near GX 1+4, GX 3+1 and the Galactic bulge sources: unmasked, they smear
    into streaks in Jupiter's frame; masked, the stack is N(0, 1) and the injected flux comes back."""
    from integral_workflows import catalog
    from mmoda_local.archive import ScwArchive
    from mmoda_local.sky import Sky

    archive = ScwArchive.load()
    sky = Sky.default(body_fluxes_mcrab={"jupiter": 10.0}, seed=5)
    table = archive.table
    mid = 0.5 * (np.asarray(table["TSTART"]) + np.asarray(table["TSTOP"]))
    window = np.flatnonzero(
        (mid > 6940.0) & (mid < 7305.0) & ~np.asarray(table["IN_BELT"]) & (np.asarray(table["GOOD_ISGRI"]) > 1000)
    )
    ra, dec = sky.body_position("jupiter", mid[window])
    near = window[ephemeris.separation_deg(table["RA_SCX"][window], table["DEC_SCX"][window], ra, dec) < 10.5]
    rows = near[np.linspace(0, len(near) - 1, 200).astype(int)]
    ids = [f"{table['SWID'][r]}.001" for r in rows]
    body_ra, body_dec = sky.body_position("jupiter", mid[rows])
    track = Table({"scw_id": ids, "ra": body_ra, "dec": body_dec})
    images = _direct_images(ids, rows, mid, table, sky, 28.0, 40.0)

    fixed = moving.find_fixed_sources(
        images(),
        track,
        catalog=catalog.reference_catalog(0.0, 0.0, 180.0),
        psf_fwhm_deg=0.2,
        half_size_deg=2.5,
        threshold=5.0,
    )
    assert {"GX 1+4", "GX 3+1"} <= set(fixed["name"]), fixed
    assert np.all(fixed["mask_radius_deg"] >= 0.2) and np.all(fixed["significance"] >= 5.0)

    common = dict(
        half_size_deg=2.5,
        psf_fwhm_deg=0.2,
        control_offset_deg=1.5,
        scale=truth_scale(28.0, 40.0),
        unit="mCrab",
        per_year=False,
        per_month=False,
    )
    plain = moving.stack_in_body_frame(images(), track, **common)
    masked = moving.stack_in_body_frame(images(), track, fixed_sources=fixed, **common)
    assert plain.significance_body.std() > 1.1 and np.mean(np.abs(plain.significance_body) > 4) > 2e-3
    values = masked.significance_body
    assert len(values) > 2000
    assert abs(values.mean()) < 0.15 and 0.9 < values.std() < 1.1
    assert np.mean(np.abs(values) > 4) < 1e-3
    assert masked.per_scw["masked_sources"].max() > 0
    body = masked.measurement("all", "body")
    assert abs(body["fit"] - 10.0) < 2.5 * body["fit_error"], body
    control = masked.measurement("all", "control")
    assert abs(control["fit"]) < 3 * control["fit_error"]


def test_a_scw_with_the_body_inside_a_fixed_source_mask_is_left_out_with_the_reason():
    stack = moving.BodyFrameStack(pixel_deg=0.0823, half_size_deg=1.0, psf_fwhm_deg=0.2)
    frame = stack.frame(100.0, 20.0)
    parts = {"valid": np.ones(stack.shape, dtype=bool)}
    sources = Table(
        {
            "name": ["Near", "Far", "Outside"],
            "ra": [100.1, 100.0, 120.0],
            "dec": [20.0, 20.6, 20.0],
            "mask_radius_deg": [0.2, 0.25, 0.3],
        }
    )
    masked, confused = moving.mask_fixed_sources(parts, frame, 100.0, 20.0, sources)
    assert masked == 2
    assert confused.startswith("Near (0.09 deg)") and "Far" not in confused
    h = stack.half_size_pix
    assert not parts["valid"][h, h]  # the body's pixel lies under Near's mask
    far_y = h + int(round(0.6 / 0.0823))
    assert not parts["valid"][far_y, h] and parts["valid"][far_y, 0]
    parts = {"valid": np.ones(stack.shape, dtype=bool)}
    assert moving.mask_fixed_sources(parts, frame, 100.0, 20.0, sources[1:]) == (1, "")


def test_mask_radius_reaches_half_a_sigma_and_never_less_than_a_psf():
    radii = moving.mask_radius_deg([3.0, 100.0, 1000.0], 0.2)
    assert radii[0] == pytest.approx(0.2)
    sigma = 0.2 / (2 * np.sqrt(2 * np.log(2)))
    for significance, radius in zip((100.0, 1000.0), radii[1:]):
        assert significance * np.exp(-(radius**2) / (2 * sigma**2)) == pytest.approx(0.5)


def test_injected_jupiter_is_recovered_without_bias_over_seeds(server_factory, tmp_path):
    results = []
    for seed in (11, 12, 13):
        server = server_factory(body_fluxes_mcrab={"jupiter": INJECTED_MCRAB}, seed=seed, workers=2)
        body = stack_run(server, tmp_path).measurement("all", "body")
        results.append((body["fit"], body["fit_error"], body["pixel"], body["pixel_error"]))
        server.stop()
    values = np.array(results)
    pulls = (values[:, 0] - INJECTED_MCRAB) / values[:, 1]
    assert np.all(np.abs(pulls) < 3.0), pulls
    weights = 1.0 / values[:, 1] ** 2
    combined = np.sum(weights * values[:, 0]) / np.sum(weights)
    assert abs(combined - INJECTED_MCRAB) < 2.0 / np.sqrt(np.sum(weights)), (combined, values)
    pixel_pulls = (values[:, 2] - INJECTED_MCRAB) / values[:, 3]
    assert np.all(np.abs(pixel_pulls) < 3.0), pixel_pulls


def test_without_injection_jupiter_and_the_stack_are_noise(server_factory, tmp_path):
    server = server_factory(seed=21, workers=2)
    result = stack_run(server, tmp_path)
    body = result.measurement("all", "body")
    control = result.measurement("all", "control")
    assert abs(body["significance"]) < 3.0 and not body["detected"]
    assert body["upper_limit_3sigma"] == pytest.approx(max(body["fit"], 0) + 3 * body["fit_error"])
    assert abs(control["significance"]) < 3.0
    values = result.significance_body
    assert len(values) > 2000
    assert abs(values.mean()) < 0.15 and 0.9 < values.std() < 1.1
    assert np.mean(np.abs(values) > 4) < 1e-3
