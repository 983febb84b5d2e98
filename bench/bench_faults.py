"""What injected faults cost a long-term run, and proof that they change no product.

The same ``run_all.py`` request runs twice, each against its own local MMODA
(``mmoda_local serve`` subprocesses, same simulated sky, separate chunk
caches): once fault-free, once with ``--rate`` of every fault kind injected
(``--fault-http500``, ``--fault-drop``, ``--fault-stall``, ``--fault-fail``).
It prints both wall times and their ratio (target: at most 2x), the faults
the server injected and the retries the client made, and compares every FITS
product of the two runs number by number (every HDU's data; headers, which
hold dates and job ids, are not compared). The exit status is 1 if a product
differs or a run fails.

Run: ``python bench/bench_faults.py`` (``--quick`` for one short Crab run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from astropy.io import fits

from integral_workflows import hosts

log = logging.getLogger("bench_faults")

REPO = Path(__file__).resolve().parents[1]
QUICK_REQUEST = """workflow: long_term
description: fault benchmark, one short Crab run
parameters:
  src_name: Crab
  RA: 83.63308
  DEC: 22.0145
  host_type: local
  instrument: isgri
  E1_keV: 28.0
  E2_keV: 40.0
  s_max: 10
  T1: "2005-03-01T00:00:00"
  T2: "2005-06-01T00:00:00"
"""


def start_server(data_dir: Path, *, rate: float, latency: float) -> hosts.LocalServer:
    """A local MMODA of its own, with every fault kind at ``rate``."""
    serve_args = ["--latency-per-scw", str(latency)]
    if rate > 0:
        serve_args += [
            "--fault-http500",
            str(rate),
            "--fault-drop",
            str(rate),
            "--fault-stall",
            str(rate),
            "--fault-fail",
            str(rate),
        ]
    return hosts.ensure_local_server(data_dir=data_dir, serve_args=serve_args)


def timed_run(parameter_file: Path, *, server_home: Path, work: Path) -> tuple[float, int, str]:
    """Run ``run_all.py`` on the server of ``server_home``; (wall time, exit status, output)."""
    env = dict(os.environ, MMODA_LOCAL_HOME=str(server_home), INTEGRAL_WORKFLOWS_CACHE=str(work / "chunks"))
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, str(REPO / "run_all.py"), str(parameter_file), "--output-root", str(work / "outputs")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - started, finished.returncode, finished.stdout + finished.stderr


def server_counters(url: str) -> dict:
    """The counters (injected faults, jobs ...) of the local MMODA at ``url``, read from ``/local/stats``."""
    with requests.Session() as http:
        http.trust_env = False  # loopback
        return http.get(f"{url}/local/stats", timeout=30).json()["counters"]


def client_retries(outputs: Path) -> int:
    """Retries the client made, summed over every step of every manifest."""
    total = 0
    for manifest in outputs.rglob("manifest.json"):
        for step in json.loads(manifest.read_text()).get("steps", []):
            total += int((step.get("jobs") or {}).get("retries", 0))
    return total


def _equal(first, second) -> bool:
    """Same values, NaN equal to NaN; variable-length columns compared row by row."""
    u, v = np.asarray(first), np.asarray(second)
    if u.shape != v.shape:
        return False
    if u.dtype == object or v.dtype == object:
        return all(_equal(a, b) for a, b in zip(u.ravel(), v.ravel()))
    return bool(np.array_equal(u, v, equal_nan=u.dtype.kind in "fc" and v.dtype.kind in "fc"))


def same_numbers(first: Path, second: Path) -> list[str]:
    """Differences between the data of two FITS files (empty if every HDU holds the same numbers)."""
    problems = []
    with fits.open(first) as a, fits.open(second) as b:
        if len(a) != len(b):
            return [f"{len(a)} HDUs against {len(b)}"]
        for index, (x, y) in enumerate(zip(a, b)):
            if x.data is None and y.data is None:
                continue
            if (x.data is None) != (y.data is None):
                problems.append(f"HDU {index}: data in one file only")
            elif isinstance(x, (fits.BinTableHDU, fits.TableHDU)):
                if x.columns.names != y.columns.names or len(x.data) != len(y.data):
                    problems.append(f"HDU {index} ({x.name}): columns or rows differ")
                    continue
                for name in x.columns.names:
                    if not _equal(x.data[name], y.data[name]):
                        problems.append(f"HDU {index} ({x.name}) column {name}")
            elif not np.array_equal(np.asarray(x.data), np.asarray(y.data), equal_nan=True):
                problems.append(f"HDU {index} ({x.name}): image differs")
    return problems


def report(results: dict, *, request: str, rate: float, latency: float) -> int:
    """Print times, ratio, faults and the comparison of products; 1 if a product differs."""
    clean, faulty = results["fault-free"], results["faults"]
    ratio = faulty["elapsed"] / clean["elapsed"]
    injected = {name: value for name, value in faulty["counters"].items() if name.startswith("faults_")}
    print(f"request: {request}, latency {latency:g} s/ScW, fault rate {rate:g} of each kind")
    print(
        f"fault-free: {clean['elapsed']:.1f} s ({clean['counters'].get('jobs_computed', 0)} jobs computed, "
        f"{clean['retries']} client retries)"
    )
    print(
        f"with faults: {faulty['elapsed']:.1f} s ({faulty['counters'].get('jobs_computed', 0)} jobs computed, "
        f"{faulty['retries']} client retries; injected {injected})"
    )
    print(f"wall-time ratio: {ratio:.2f}x (target <= 2x: {'met' if ratio <= 2.0 else 'MISSED'})")

    products = sorted(path.relative_to(clean["outputs"]) for path in clean["outputs"].rglob("*.fits"))
    differences = {}
    for relative in products:
        other = faulty["outputs"] / relative
        differences[str(relative)] = (
            ["missing in the faulty run"] if not other.exists() else same_numbers(clean["outputs"] / relative, other)
        )
    extra = [
        path
        for path in faulty["outputs"].rglob("*.fits")
        if not (clean["outputs"] / path.relative_to(faulty["outputs"])).exists()
    ]
    different = {name: problems for name, problems in differences.items() if problems}
    print(
        f"products: {len(products)} FITS files compared, {len(products) - len(different)} hold the same numbers"
        + (f"; {len(extra)} only in the faulty run" if extra else "")
    )
    for name, problems in different.items():
        print(f"  DIFFERENT {name}: {'; '.join(problems[:5])}")
    return 1 if different or extra or not products else 0


def main() -> int:
    """Run the request fault-free then with faults, print the comparison; return the exit status (0: same products)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "parameter_file",
        nargs="?",
        type=Path,
        default=REPO / "parameters" / "main.yaml",
        help="the request (default: parameters/main.yaml, the `make run` request)",
    )
    parser.add_argument("--quick", action="store_true", help="one Crab run over three months instead")
    parser.add_argument("--rate", type=float, default=0.2, help="rate of each fault kind (default 0.2)")
    parser.add_argument("--latency", type=float, default=0.0, help="backend seconds per ScW (default 0)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs' folders here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    with tempfile.TemporaryDirectory(prefix="bench-faults-") as scratch:
        root = args.keep or Path(scratch)
        parameter_file = args.parameter_file
        if args.quick:
            parameter_file = root / "quick.yaml"
            root.mkdir(parents=True, exist_ok=True)
            parameter_file.write_text(QUICK_REQUEST)
        results = {}
        for label, rate in (("fault-free", 0.0), ("faults", args.rate)):
            home, work = root / label / "mmoda", root / label
            server = start_server(home, rate=rate, latency=args.latency)
            try:
                log.info("%s: running %s against %s", label, parameter_file.name, server.url)
                elapsed, status, output = timed_run(parameter_file, server_home=home, work=work)
                counters = server_counters(server.url)
            finally:
                hosts.stop_local_server(home)
            if status != 0:
                print(f"{label} run failed (exit {status}):\n{output[-3000:]}")
                return 1
            results[label] = {
                "elapsed": elapsed,
                "counters": counters,
                "outputs": work / "outputs",
                "retries": client_retries(work / "outputs"),
            }
        request = "quick Crab run" if args.quick else args.parameter_file.name
        return report(results, request=request, rate=args.rate, latency=args.latency)


if __name__ == "__main__":
    sys.exit(main())
