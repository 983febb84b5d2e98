"""How the long-term machinery scales: a 500-ScW mosaic in chunks, the repeated run, a full-mission selection.

Against a local MMODA whose backend spends ``--latency`` seconds per ScW
(as the real one does) and runs ``--workers`` jobs at once:

1. baseline: one 50-ScW chunk alone;
2. the 500-ScW mosaic (s_max 50, 10 chunks) sent with bounded concurrency:
   wall time against the backend-bound limit (its slowest chunk) and against
   the same chunks sent one after the other;
3. the same run repeated (every chunk from the cache: no job sent);
4. the full-mission Crab ScW selection with its cuts.

Every time is printed with its ratio to the baseline of step 1, measured in
this same process. Run: ``python bench/bench_long_term.py``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from integral_workflows import mosaic, parameters, scw
from integral_workflows.jobs import ChunkCache, JobRunner, ProductRequest, RetryPolicy, split_into_chunks
from integral_workflows.session import Session
from mmoda_local.config import ServerConfig
from mmoda_local.server import ServerThread

REQUEST = ProductRequest(
    "isgri",
    "isgri_image",
    dict(
        osa_version="OSA11.2",
        integral_data_rights="public",
        E1_keV=28.0,
        E2_keV=40.0,
        RA=83.63308,
        DEC=22.0145,
        detection_threshold=7.0,
    ),
)
RETRY = RetryPolicy(poll_interval_s=0.2, max_poll_interval_s=0.5)


def crab_scws(server: ServerThread, count: int) -> list[str]:
    """The first ``count`` Crab-field ScW ids out of the belts with over 1000 s of ISGRI time."""
    archive = server.backend.analysis.archive
    table = archive.table[archive.select(1100.0, 9000.0, ra=83.633, dec=22.0145, radius=10.5)]
    good = [
        f"{s}.001" for s, belt, t in zip(table["SWID"], table["IN_BELT"], table["GOOD_ISGRI"]) if not belt and t > 1000
    ]
    return good[:count]


def timed_run(server: ServerThread, token: str, scws: list[str], cache: Path, *, concurrent: int):
    """Run the mosaic request over ``scws`` in 50-ScW chunks with a JobRunner.

    Parameters
    ----------
    server, token
        The local MMODA and the token of the session (set as ``ODA_TOKEN``).
    scws
        The ScW ids to cover.
    cache
        The chunk cache folder (a second run on the same folder sends no job).
    concurrent
        Most jobs in flight at once.

    Returns
    -------
    tuple
        The wall time in seconds and the runner's record.
    """
    os.environ["ODA_TOKEN"] = token  # the session reads it (a token is never an argument)
    runner = JobRunner(
        Session(url=server.url, retry=RETRY, cache_dir=False),
        cache=ChunkCache(cache),
        max_concurrent=concurrent,
        retry=RETRY,
        progress=False,
    )
    started = time.perf_counter()
    record = runner.run(REQUEST, split_into_chunks(scws, s_max=50))
    return time.perf_counter() - started, record


def main() -> None:
    """Run the four measures on fresh local servers and print each time with its ratio to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05, help="backend seconds per ScW")
    parser.add_argument("--workers", type=int, default=10, help="backend jobs at once")
    parser.add_argument("--scws", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)

        def fresh_server(name: str) -> ServerThread:
            # a new backend each time, so that no measure profits from the backend's own cache
            return ServerThread(
                ServerConfig(
                    data_dir=folder / name,
                    archive_cache_dir=folder / "archive",
                    latency_per_scw_s=args.latency,
                    workers=args.workers,
                )
            ).start()

        server = fresh_server("baseline")
        token = server.token("general, unige-hpc-full")
        scws = crab_scws(server, args.scws)
        baseline, _ = timed_run(server, token, scws[:50], folder / "baseline-cache", concurrent=1)
        server.stop()
        print(
            f"baseline: one 50-ScW chunk alone: {baseline:.2f} s (backend {args.latency} s/ScW, {args.workers} workers)"
        )
        rows = []
        server = fresh_server("concurrent")
        token = server.token("general, unige-hpc-full")
        wall, record = timed_run(server, token, scws, folder / "concurrent-cache", concurrent=args.workers)
        slowest = max(job["elapsed_s"] for job in record.jobs)
        rows.append((f"{len(scws)}-ScW mosaic, {len(record.jobs)} jobs at once", wall))
        rows.append(("  its slowest chunk (backend-bound limit)", slowest))
        started = time.perf_counter()
        combined = mosaic.combine(mosaic.SkyMosaic.from_data_collection(p.data_collection()) for p in record.pieces)
        rows.append(
            (
                f"  combining {len(record.pieces)} chunk mosaics ({combined.shape[1]}x{combined.shape[0]})",
                time.perf_counter() - started,
            )
        )
        computed = server.stats()["jobs_computed"]
        repeat, again = timed_run(server, token, scws, folder / "concurrent-cache", concurrent=args.workers)
        assert server.stats()["jobs_computed"] == computed and again.submissions == 0
        rows.append(("the same run repeated (cache; no job sent)", repeat))

        started = time.perf_counter()
        crab = parameters.validate(
            "scw_selection",
            {
                "src_name": "Crab",
                "RA": 83.63308,
                "DEC": 22.0145,
                "host_type": "local",
                "T1": "2003-01-01T00:00:00",
                "T2": "2025-03-01T00:00:00",
            },
        )
        table, report = scw.select_scws(crab, url=server.url)
        selection = time.perf_counter() - started
        rows.append(("full-mission Crab ScW selection (radius 10.5 deg)", selection))
        server.stop()

        server = fresh_server("sequential")
        token = server.token("general, unige-hpc-full")
        sequential, _ = timed_run(server, token, scws, folder / "sequential-cache", concurrent=1)
        server.stop()
        rows.append((f"{len(scws)}-ScW mosaic, jobs one after the other", sequential))

        print(f"{'measure':55s} {'seconds':>8s} {'/ baseline':>10s}")
        for name, value in rows:
            print(f"{name:55s} {value:8.2f} {value / baseline:10.2f}")
        print(
            f"wall / slowest chunk = {wall / slowest:.2f}; sequential / wall = {sequential / wall:.1f}; "
            f"repeat / wall = {repeat / wall:.3f}"
        )
        print()
        print(report.to_markdown())


if __name__ == "__main__":
    main()
