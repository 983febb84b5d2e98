"""The moving-target workflow's figures: selection, stacking time and memory, recovery of an injected Jupiter.

1. Full-mission ScW selection of Jupiter (track cones, positions at every
   candidate's mid-time, cuts) against a baseline measured in the same run:
   the full-mission selection of a fixed source (the Crab), same service,
   same cuts. Prints the count each cut removed.
2. Body-frame stacking of 100 and 1000 ScWs: wall time, and peak memory
   (tracemalloc, in a second pass) of the stacking pass (images made by the simulation
   directly and handed over one at a time, as the notebook decodes its jobs
   one at a time), against a baseline pass that makes the same images and
   drops them. Memory must not grow with the number of ScWs. The same for
   the search of fixed sources to mask (sky mosaics along the track).
3. Injection and recovery: a 5 mCrab Jupiter on servers of several noise
   seeds, ``--scws`` ScWs each through the real protocol; the stacked flux,
   its error and the pull against the truth per seed.

Run: ``python bench/bench_moving_target.py`` (a few minutes on 2 cores);
``--skip-recovery`` leaves out part 3.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from integral_workflows import catalog, ephemeris, moving, parameters, scw
from integral_workflows.jobs import RetryPolicy
from integral_workflows.mosaic import SkyMosaic
from integral_workflows.session import Session
from mmoda_local.config import ServerConfig
from mmoda_local.server import ServerThread

RETRY = RetryPolicy(poll_interval_s=0.05, max_poll_interval_s=0.2, backoff_s=0.1)
MISSION = {"T1": "2003-01-01T00:00:00", "T2": "2025-03-01T00:00:00"}


def InProcessSession(url: str, cache_dir: Path) -> Session:
    """A session on an in-process server, with fast retries and its own chunk cache."""
    return Session(url=url, cache_dir=cache_dir, retry=RETRY, progress=False)


def timed(function, *args, **kwargs):
    """Call ``function(*args, **kwargs)``; return (wall time in seconds, its result)."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def selection(server: ServerThread) -> list[tuple[str, float]]:
    """Time the full-mission Jupiter ScW selection against the full-mission Crab one (the baseline) and print both.

    Returns
    -------
    list of (str, float)
        The name and time in seconds of each measure.
    """
    crab = parameters.validate("scw_selection", {"src_name": "Crab", "RA": 83.63308, "DEC": 22.0145, **MISSION})
    jupiter = parameters.validate("scw_selection", {"src_name": "Jupiter", "RA": 0.0, "DEC": 0.0, **MISSION})
    scw.select_scws(crab, url=server.url)  # warm the server's archive and the ephemeris kernel
    moving.select_body_scws(jupiter, url=server.url)
    baseline, (crab_table, _) = timed(scw.select_scws, crab, url=server.url)
    elapsed, (table, report) = timed(moving.select_body_scws, jupiter, url=server.url)
    query = table.meta["query"]
    print(f"baseline: full-mission Crab selection (fixed source): {baseline:.2f} s, {len(crab_table)} ScWs")
    print(
        f"full-mission Jupiter selection: {elapsed:.2f} s = {elapsed / baseline:.2f} x baseline; "
        f"{len(query['cones'])} cone queries, {query['n_candidates']} candidates, {query['n_within_radius']} "
        f"within {query['radius']:g} deg, {len(table)} kept, {report.good_exposure_s / 1e6:.2f} Ms good ISGRI time; "
        f"phases {query['elapsed_s']}"
    )
    print(report.as_table()["cut", "removed", "remaining"])
    return [("full-mission Crab selection (baseline)", baseline), ("full-mission Jupiter selection", elapsed)]


def scw_rows(server: ServerThread, count: int):
    """Jupiter's kept full-mission ScWs (time order), their archive rows and Jupiter's position as INTEGRAL sees it."""
    from mmoda_local.sky import Sky

    jupiter = parameters.validate("scw_selection", {"src_name": "Jupiter", "RA": 0.0, "DEC": 0.0, **MISSION})
    table, _ = moving.select_body_scws(jupiter, url=server.url)
    archive = server.backend.analysis.archive
    rows = archive.index_of(list(table["scw_id"][:count]))
    mid = 0.5 * (np.asarray(archive.table["TSTART"])[rows] + np.asarray(archive.table["TSTOP"])[rows])
    ra, dec = Sky.default().body_position("jupiter", mid)
    return archive, rows, mid, Table({"scw_id": list(table["scw_id"][:count]), "ra": ra, "dec": dec})


def images(archive, rows, mid, ids):
    """The ScW images one at a time, as SkyMosaic objects (the notebook decodes one job answer at a time)."""
    from mmoda_local import imaging
    from mmoda_local.instrument import instrument_for
    from mmoda_local.sky import Sky

    sky, isgri = Sky.default(seed=4), instrument_for("isgri")
    for scw_id, row, ijd in zip(ids, rows, mid):
        image = imaging.scw_image(archive.table[row], sky, isgri, 28.0, 40.0)
        yield scw_id, float(ijd), SkyMosaic.from_hdus(imaging.mosaic_hdulist(image)[2:])


def timed_pass(function):
    """Wall time of a call."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def traced(function):
    """Peak Python/numpy memory (tracemalloc, one frame) of a call: numpy reports its buffers to tracemalloc."""
    import tracemalloc

    tracemalloc.start(1)
    try:
        function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def stacking(server: ServerThread, counts: list[int]) -> list[tuple[str, float]]:
    """Time and trace the body-frame stacking and the fixed-source search over Jupiter's first ``counts`` ScWs.

    Each is measured against making the same ScW images alone (the baseline: stacking and search consume them
    one at a time), and printed.

    Parameters
    ----------
    server
        The local MMODA of the selection.
    counts
        Numbers of ScWs to stack, in increasing order.

    Returns
    -------
    list of (str, float)
        The name and value (seconds or MB) of each measure.
    """
    archive, rows, mid, track = scw_rows(server, max(counts))
    every_source = catalog.reference_catalog(0.0, 0.0, 180.0)
    out = []
    print(
        f"\n{'stacking':36s} {'ScWs':>5s} {'images s':>9s} {'stack s':>8s} {'ms/ScW':>7s} {'images MB':>10s} "
        f"{'stack MB':>9s}  (peak traced memory)"
    )
    for count in counts:
        ids = list(track["scw_id"][:count])

        # Each call makes the images anew (a generator is consumed once); count and ids are bound per iteration.
        def make_images(count=count, ids=ids):
            return sum(1 for _ in images(archive, rows[:count], mid[:count], ids))

        def stack(count=count, ids=ids):
            return moving.stack_in_body_frame(
                images(archive, rows[:count], mid[:count], ids),
                track[:count],
                half_size_deg=2.5,
                psf_fwhm_deg=0.2,
                control_offset_deg=1.5,
            )

        baseline, _ = timed_pass(make_images)
        total, run = timed_pass(stack)
        base_peak, peak = traced(make_images), traced(stack)
        stack_only = total - baseline
        print(
            f"{'body-frame stack (+year, month)':36s} {count:5d} {baseline:9.1f} {stack_only:8.1f} "
            f"{1000 * stack_only / count:7.1f} {base_peak / 1e6:10.1f} {peak / 1e6:9.1f}"
        )
        out.append((f"stack {count} ScWs: stacking time", stack_only))
        out.append((f"stack {count} ScWs: peak MB", peak / 1e6))
        out.append((f"stack {count} ScWs: images alone (baseline) s", baseline))
        assert run.total.count == count

        def search(count=count, ids=ids):
            return moving.find_fixed_sources(
                images(archive, rows[:count], mid[:count], ids),
                track[:count],
                catalog=every_source,
                psf_fwhm_deg=0.2,
                half_size_deg=2.5,
            )

        search_total, fixed = timed_pass(search)
        search_only, search_peak = search_total - baseline, traced(search)
        print(
            f"{'fixed sources along the track':36s} {count:5d} {baseline:9.1f} {search_only:8.1f} "
            f"{1000 * search_only / count:7.1f} {base_peak / 1e6:10.1f} {search_peak / 1e6:9.1f}  "
            f"({len(fixed)} sources, {fixed.meta.get('segments', 0)} segments; "
            f"{search_only / stack_only:.2f} x stacking)"
        )
        out.append((f"fixed sources {count} ScWs: search time", search_only))
    by_name = dict(out)
    small, large = counts[0], counts[-1]
    print(
        f"time ratio {large}/{small} ScWs: {by_name[f'stack {large} ScWs: stacking time'] / by_name[f'stack {small} ScWs: stacking time']:.1f} "
        f"(ScW ratio {large / small:.0f}); peak memory ratio: "
        f"{by_name[f'stack {large} ScWs: peak MB'] / max(by_name[f'stack {small} ScWs: peak MB'], 1e-9):.2f}; "
        f"stacking / making the images: {by_name[f'stack {large} ScWs: stacking time'] / by_name[f'stack {large} ScWs: images alone (baseline) s']:.2f}"
    )
    return out


def recovery(folder: Path, seeds: list[int], scws: int, flux: float) -> None:
    """Inject Jupiter at ``flux`` mCrab, stack two weeks of 2021, and print the flux measured for each seed.

    Parameters
    ----------
    folder
        Scratch folder for the servers' data and the chunk caches.
    seeds
        Seeds of the simulated sky, one local MMODA each.
    scws
        ScWs stacked per seed (those closest to the pointing axis).
    flux
        Injected flux of Jupiter in mCrab (ISGRI 28-40 keV).
    """
    from mmoda_local.instrument import instrument_for

    isgri = instrument_for("isgri")
    p = parameters.validate(
        "mosaic",
        {
            "src_name": "Jupiter",
            "RA": 0.0,
            "DEC": 0.0,
            "T1": "2021-05-10T00:00:00",
            "T2": "2021-05-24T00:00:00",
            "radius": 6.0,
            "E1_keV": 28.0,
            "E2_keV": 40.0,
        },
    )
    rows = []
    for seed in seeds:
        server = ServerThread(
            ServerConfig(
                data_dir=folder / f"seed{seed}",
                archive_cache_dir=folder / "archive",
                seed=seed,
                workers=2,
                body_fluxes_mcrab={"jupiter": flux},
            )
        ).start()
        try:
            table, _ = moving.select_body_scws(p, url=server.url)
            table = table[np.argsort(np.asarray(table["offaxis_deg"]))[:scws]]
            table = table[np.argsort(np.asarray(table["tstart"]))]
            record = moving.fetch_scw_images(InProcessSession(server.url, folder / f"chunks{seed}"), p, table)
            ids = scw.scw_ids(table)
            times = dict(zip(ids, np.asarray(table["mjd_mid"], float) - scw.IJD_MJD_OFFSET))
            track = ephemeris.body_track(
                "jupiter", list(times.values()), scw_ids=ids, spacecraft=ephemeris.SpacecraftService(server.url)
            )
            run = moving.stack_in_body_frame(
                moving.images_from_pieces(record.pieces, times),
                track,
                half_size_deg=2.5,
                psf_fwhm_deg=0.2,
                control_offset_deg=1.5,
                scale=lambda ijd: 1000.0 / isgri.crab_band_rate(28.0, 40.0, ijd),
                unit="mCrab",
                per_month=False,
            )
        finally:
            server.stop()
        body, control = run.measurement("all", "body"), run.measurement("all", "control")
        rows.append(
            (
                seed,
                body["n_scw"],
                body["fit"],
                body["fit_error"],
                (body["fit"] - flux) / body["fit_error"],
                body["pixel"],
                body["pixel_error"],
                control["fit"],
                control["fit_error"],
            )
        )
    table = Table(
        rows=rows,
        names=("seed", "ScWs", "fit mCrab", "error", "pull", "pixel mCrab", "pixel error", "control", "control error"),
    )
    for name in table.colnames[2:]:
        table[name].format = ".2f"
    print(f"\ninjected Jupiter {flux:g} mCrab (ISGRI 28-40 keV), stacked flux per seed:")
    print(table)
    pulls = np.asarray(table["pull"], dtype=float)
    weights = 1.0 / np.asarray(table["error"], dtype=float) ** 2
    mean = float(np.sum(weights * np.asarray(table["fit mCrab"], dtype=float)) / np.sum(weights))
    print(
        f"weighted mean over seeds {mean:.2f} +- {1 / np.sqrt(np.sum(weights)):.2f} mCrab (truth {flux:g}); "
        f"pulls mean {pulls.mean():+.2f}, std {pulls.std():.2f}"
    )


def main() -> None:
    """Run the selection, stacking and (unless ``--skip-recovery``) recovery measures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000], help="ScWs stacked")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--scws", type=int, default=30, help="ScWs per seed in the recovery")
    parser.add_argument("--flux", type=float, default=5.0, help="injected mCrab")
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        server = ServerThread(ServerConfig(data_dir=folder / "selection", archive_cache_dir=folder / "archive")).start()
        try:
            selection(server)
            stacking(server, sorted(args.counts))
        finally:
            server.stop()
        if not args.skip_recovery:
            recovery(folder, args.seeds, args.scws, args.flux)


if __name__ == "__main__":
    main()
