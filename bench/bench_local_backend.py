"""How fast the local MMODA answers (latency model off).

Times, through the unmodified oda_api client and HTTP on 127.0.0.1:
a one-ScW ISGRI image, a 50-ScW ISGRI mosaic, a 50-ScW light curve and
spectrum, and the same 50-ScW mosaic answered again from the server's cache.
Each figure is also printed as a ratio to a fixed numpy workload timed in the
same process (the baseline), so runs on a busy or faster machine compare.

Run: ``python bench/bench_local_backend.py [--repeat N]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from oda_api.api import DispatcherAPI

from mmoda_local.config import ServerConfig
from mmoda_local.server import ServerThread


def baseline_workload() -> float:
    """A fixed numpy workload (FFTs and a sort) as the machine's yardstick, in seconds."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(512, 512))
    started = time.perf_counter()
    for _ in range(20):
        np.fft.irfft2(np.fft.rfft2(data))
        np.sort(data, axis=None)
    return time.perf_counter() - started


def crab_scws(server: ServerThread, count: int) -> list[str]:
    """The first ``count`` usable Crab-field ScW ids (out of the belts, ISGRI time) of the server's archive."""
    archive = server.backend.analysis.archive
    table = archive.table[archive.select(1000.0, 9000.0, ra=83.633, dec=22.0145, radius=10.0)]
    usable = [
        f"{s}.001"
        for s, belt, good in zip(table["SWID"], table["IN_BELT"], table["GOOD_ISGRI"])
        if not belt and good > 0
    ]
    return usable[:count]


def timed_product(url: str, token: str, scws: list[str], product: str, **extra) -> float:
    """Wall time, in seconds, of one ISGRI ``product`` over ``scws`` asked through oda_api.

    Parameters
    ----------
    url, token
        The local MMODA and the token to send.
    scws
        The ScW ids of the request.
    product
        The MMODA product name (``isgri_image``, ``isgri_lc``, ``isgri_spectrum``).
    **extra
        Further parameters of the request (``time_bin``, ``detection_threshold`` ...).
    """
    disp = DispatcherAPI(url=url, instrument="mock")
    started = time.perf_counter()
    # query_type Dummy: answered synchronously, as the real dispatcher does, so no 1-s polling sleeps are timed
    disp.get_product(
        instrument="isgri",
        product=product,
        product_type="Dummy",
        osa_version="OSA11.2",
        E1_keV=28.0,
        E2_keV=40.0,
        scw_list=scws,
        RA=83.633,
        DEC=22.0145,
        token=token,
        silent=True,
        **extra,
    )
    return time.perf_counter() - started


def main() -> None:
    """Time each product ``--repeat`` times on fresh servers and print the medians and their ratios to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    baseline = statistics.median(baseline_workload() for _ in range(3))
    print(f"baseline numpy workload: {baseline:.3f} s")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeat):
            config = ServerConfig(data_dir=Path(folder) / f"run{repeat}", archive_cache_dir=Path(folder) / "cache")
            with ServerThread(config) as server:
                token = server.token("general, unige-hpc-full")
                scws = crab_scws(server, 50)
                timed_product(server.url, token, scws[-1:], "isgri_image", detection_threshold=6.0)  # warm-up
                figures = {
                    "1-ScW image": timed_product(server.url, token, scws[:1], "isgri_image"),
                    "50-ScW mosaic": timed_product(server.url, token, scws, "isgri_image"),
                    "50-ScW mosaic again (server cache)": timed_product(server.url, token, scws, "isgri_image"),
                    "50-ScW light curves": timed_product(server.url, token, scws, "isgri_lc", time_bin=1000),
                    "50-ScW spectra": timed_product(server.url, token, scws, "isgri_spectrum"),
                }
                rows.append(figures)
    print(f"{'measure':40s} {'median s':>9s} {'/ baseline':>11s}")
    for name in rows[0]:
        value = statistics.median(r[name] for r in rows)
        print(f"{name:40s} {value:9.3f} {value / baseline:11.2f}")


if __name__ == "__main__":
    main()
