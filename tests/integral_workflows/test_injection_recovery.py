"""Injection–recovery of mosaic rates: point sources injected into the local MMODA at random places, found again.

24 sources (fixed seed: random positions, 20–200 mCrab, photon index 1.6–3.0) are injected into one server, four
in each of six fields: a high-latitude field, the crowded Galactic centre, 1–2° from the Crab, 1–2° from Cyg X-1,
the Norma arm and a random Galactic-plane field. Each field is a mosaic of 30 random ScWs of the server's archive
pointed within 4° of it (ISGRI 20–40 keV); the sources are found and measured by the client
(``mosaic.find_sources``: PSF measured on the mosaic, interpolated peak). The truth is the server's own model:
each injected source's band rate in mmoda_local's sky at each ScW's time, averaged with the mosaic's
inverse-variance weights at the source (not the client's PSF assumption).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack

from integral_workflows import mosaic
from integral_workflows.catalog import default_catalog
from integral_workflows.jobs import ChunkCache, JobRunner, RetryPolicy, split_into_chunks
from integral_workflows.mosaic import SkyMosaic
from integral_workflows.session import Session

from .sampling import pull_std_band
from .test_jobs import image_request

log = logging.getLogger(__name__)

E1, E2 = 20.0, 40.0
SCWS_PER_FIELD = 30
SOURCES_PER_FIELD = 4
#: name → (centre RA, Dec; injection radii min, max in deg around it). The Galactic-plane field is drawn at random.
FIELDS = {
    "high-latitude": (195.0, 28.0, 0.0, 2.5),
    "galactic-centre": (266.4, -29.0, 0.0, 2.5),
    "crab": (83.633, 22.0145, 1.0, 2.0),
    "cyg-x1": (299.590, 35.202, 1.0, 2.0),
    "norma": (250.0, -46.0, 0.0, 2.5),
}
#: A 30-ScW mosaic job takes a few seconds: no resubmission of a job that is merely busy.
PATIENT = RetryPolicy(
    budget_s=300.0,
    backoff_s=0.05,
    max_backoff_s=0.2,
    poll_interval_s=0.05,
    max_poll_interval_s=0.2,
    poll_failure_budget_s=2.0,
    stall_timeout_s=60.0,
)


def _good_ids(table) -> list[str]:
    return [f"{s}.001" for s, b, g in zip(table["SWID"], table["IN_BELT"], table["GOOD_ISGRI"]) if not b and g > 1000]


def place_sources(archive, sky, rng, name, field, *, count, flux_mcrab, n_scws) -> tuple[list[dict], list[str]]:
    """``count`` sources injected in one field and ``n_scws`` ScWs pointed at it, drawn with ``rng``.

    Sources are uniform over the field's annulus (r_min..r_max deg from its centre), ≥ 0.5° from any sky source
    brighter than 5 mCrab and ≥ 0.6° from each other, with fluxes log-uniform in ``flux_mcrab`` and photon indices
    uniform in 1.6–3.0; the ScWs are random good pointings within 4° of the centre.
    """
    ra, dec, r_min, r_max = field
    near = sky.sources_in_field(ra, dec, 6.0, 3000.0)
    flux = np.array([sky.spectral_parameters(int(i))["reference_mcrab"] for i in near.index])
    avoid = SkyCoord(near.ra[flux > 5.0] * u.deg, near.dec[flux > 5.0] * u.deg)
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    low, high = (math.log(value) for value in flux_mcrab)
    placed: list[dict] = []
    while len(placed) < count:
        radius = math.sqrt(rng.uniform(r_min**2, r_max**2))  # uniform over the annulus
        position = centre.directional_offset_by(rng.uniform(0.0, 360.0) * u.deg, radius * u.deg)
        taken = [SkyCoord(s["ra"] * u.deg, s["dec"] * u.deg) for s in placed]
        if (len(avoid) and position.separation(avoid).deg.min() < 0.5) or any(
            position.separation(t).deg < 0.6 for t in taken
        ):
            continue
        placed.append(
            {
                "name": f"SIM {name} {len(placed) + 1}",
                "ra": float(position.ra.deg),
                "dec": float(position.dec.deg),
                "flux_mcrab": round(float(np.exp(rng.uniform(low, high))), 1),
                "index": round(float(rng.uniform(1.6, 3.0)), 2),
            }
        )
    ids = _good_ids(archive.table[archive.select(0.0, 10_000.0, ra=ra, dec=dec, radius=4.0)])
    return placed, sorted(str(s) for s in rng.choice(ids, size=n_scws, replace=False))


def draw_fields(archive, sky, rng) -> tuple[dict, list[dict], dict]:
    """Fields, injected sources and ScWs, all drawn with ``rng``.

    Sources are kept ≥ 0.5° from any sky source brighter than 5 mCrab and ≥ 0.6° from each other (no confusion:
    2.5 PSF FWHM), the ScWs are random good pointings within 4° of the field's centre.
    """
    fields = dict(FIELDS)
    pointings = archive.table[archive.select(0.0, 10_000.0)]
    axes = SkyCoord(np.asarray(pointings["RA_SCX"]) * u.deg, np.asarray(pointings["DEC_SCX"]) * u.deg)
    candidate = (np.abs(axes.galactic.b.deg) < 3.0) & ~np.asarray(pointings["IN_BELT"])
    for ra, dec, *_ in FIELDS.values():
        candidate &= axes.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg > 20.0
    pick = int(rng.choice(np.nonzero(candidate)[0]))
    fields["plane"] = (float(pointings["RA_SCX"][pick]), float(pointings["DEC_SCX"][pick]), 0.0, 2.5)
    injected, scws = [], {}
    for name, field in fields.items():
        placed, scws[name] = place_sources(
            archive, sky, rng, name, field, count=SOURCES_PER_FIELD, flux_mcrab=(20.0, 200.0), n_scws=SCWS_PER_FIELD
        )
        injected += placed
    return fields, injected, scws


def true_rates(archive, sky, scw_ids, names) -> dict:
    """The sources' band rates in the server's sky at the ScWs' times, with the mosaic's inverse-variance weights
    at each source (variance = numerator / (good time · response²), mmoda_local's noise model)."""
    from mmoda_local.instrument import ScwView, instrument_for

    isgri = instrument_for("isgri")
    weighted = dict.fromkeys(names, 0.0)
    weights = dict.fromkeys(names, 0.0)
    for index in archive.index_of(scw_ids):
        view = ScwView(archive.table[index], sky, isgri)
        rates = view.band_rates(E1, E2)
        weight = view.good_time * view.response**2 / view.variance_numerator(E1, E2, rates)
        for name, rate, w in zip(view.names, rates, weight):
            if str(name) in weighted and w > 0:
                weighted[str(name)] += w * rate
                weights[str(name)] += w
    return {name: weighted[name] / weights[name] for name in names if weights[name] > 0}


@pytest.fixture(scope="module")
def recovered(tmp_path_factory, archive_cache):
    """(rows, sources tables by field): one server with all 24 injected sources, six mosaics measured."""
    from mmoda_local.archive import ScwArchive
    from mmoda_local.config import ServerConfig
    from mmoda_local.server import ServerThread
    from mmoda_local.sky import Sky

    rng = np.random.default_rng(2026)
    archive = ScwArchive.load(cache_dir=archive_cache)
    fields, injected, scws = draw_fields(archive, Sky.default(), rng)
    folder = tmp_path_factory.mktemp("injection")
    server = ServerThread(
        ServerConfig(
            data_dir=folder / "server",
            archive_cache_dir=archive_cache,
            debug_instruments=True,
            injected_sources=injected,
        )
    ).start()
    try:
        sky = server.backend.analysis.sky  # the server's own sky, with the injected sources
        runner = JobRunner(
            Session(url=server.url, cache_dir=False, retry=PATIENT),
            cache=ChunkCache(folder / "chunks"),
            retry=PATIENT,
            progress=False,
        )
        rows, tables = [], {}
        for field, (ra, dec, *_) in fields.items():
            request = image_request(RA=ra, DEC=dec, E1_keV=E1, E2_keV=E2)
            record = runner.run(request, split_into_chunks(scws[field], s_max=100))
            image = SkyMosaic.from_data_collection(record.pieces[0].data_collection())
            mine = [s for s in injected if s["name"].startswith(f"SIM {field} ")]
            # The user's catalogue names the known sources; the injected ones are named as known sources too.
            catalog = vstack(
                [
                    default_catalog(ra, dec, 25.0),
                    Table({k: [s[k] for s in mine] for k in ("name", "ra", "dec")}),
                ]
            )
            sources = mosaic.find_sources(
                image, threshold=7.0, catalog=catalog, include_new_sources=False, n_images=len(scws[field])
            )
            tables[field] = sources
            catalogued = [str(n) for n, s in zip(sources["name"], sources["significance"]) if s >= 30]
            truth = true_rates(archive, sky, scws[field], [s["name"] for s in mine] + catalogued)
            for row in sources:
                if row["name"] in truth:
                    # another sky source within 0.25° (1.2 FWHM) adds to the peak: a blend, not a point source
                    near = sky.sources_in_field(float(row["ra"]), float(row["dec"]), 0.25, 3000.0)
                    rows.append(
                        {
                            "field": field,
                            "name": str(row["name"]),
                            "injected": str(row["name"]).startswith("SIM "),
                            "significance": float(row["significance"]),
                            "rate": float(row["rate"]),
                            "error": float(row["rate_error"]),
                            "truth": truth[row["name"]],
                            "blended": len(near.index) > 1,
                        }
                    )
        return injected, rows, tables
    finally:
        server.stop()


def _figures(rows) -> tuple[float, float, float, int]:
    ratios = np.array([r["rate"] / r["truth"] for r in rows])
    pulls = np.array([(r["rate"] - r["truth"]) / r["error"] for r in rows])
    return float(ratios.mean()), float(ratios.std(ddof=1) / math.sqrt(len(rows))), float(pulls.std(ddof=1)), len(rows)


def test_injected_sources_are_all_found_with_their_rates(recovered):
    injected, rows, tables = recovered
    found = [r for r in rows if r["injected"]]
    assert len(injected) == 24 and len(found) == len(injected), "every injected source is detected (≥ 7σ)"
    assert all(t.meta["PSF_SRC"] == "measured" and t.meta["PSF_NSRC"] >= 3 for t in tables.values())
    mean, error, pull_std, n = _figures(found)
    log.info("injected: N = %d, mean rate/truth %.4f ± %.4f, pull std %.2f", n, mean, error, pull_std)
    assert abs(mean - 1.0) < 0.01, f"mean rate/truth {mean:.4f} ± {error:.4f}"
    # The errors hold one place's PSF scatter about the mean (resampling, photometry.regridding_scatter_deg): without
    # it (the mean's error only) the pull std was 1.26. The band is the sampling spread of n pulls.
    low, high = pull_std_band(n)
    assert low < pull_std < high, f"pull std {pull_std:.2f} outside [{low:.2f}, {high:.2f}]"
    # faint or bright, no source is off by more than its error allows
    assert all(abs(r["rate"] - r["truth"]) < 4.0 * r["error"] for r in found)


def test_bright_catalogue_sources_of_the_same_mosaics_agree_too(recovered):
    """The catalogue sources ≥ 30σ of the six mosaics, unconfused (no other sky source within 0.25°)."""
    _, rows, _ = recovered
    bright = [r for r in rows if not r["injected"] and r["significance"] >= 30.0 and not r["blended"]]
    mean, error, pull_std, n = _figures(bright)
    log.info("catalogue ≥ 30σ: N = %d, mean rate/truth %.4f ± %.4f, pull std %.2f", n, mean, error, pull_std)
    assert n >= 15
    assert abs(mean - 1.0) < 0.015, f"mean rate/truth {mean:.4f} ± {error:.4f}"
    low, high = pull_std_band(n)
    assert low < pull_std < high, f"pull std {pull_std:.2f} outside [{low:.2f}, {high:.2f}]"
