"""Wall time of a cold ``make run`` (``run_all.py --main``), with kernels forked from a template and without.

Each pass runs ``run_all.py --main`` in a subprocess as ``make run`` does after setup, from scratch: a
new local MMODA home (the server starts and simulates every product), an empty chunk cache and a new
output folder. The baseline is the same pass with ``INTEGRAL_PIPELINE_KERNEL_TEMPLATE=0`` (every notebook
kernel started as its own Python process), run in the same invocation; the figures are the wall times
(target ≤ 60 s on two cores), their ratio, and the CPU seconds of the client (``run_all.py``, its Dask
workers and their kernels) and of the local MMODA.

Run: ``python bench/bench_make_run.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import server_cpu_seconds

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 60.0


def children_cpu_seconds() -> float:
    """Return the CPU seconds of this process's finished children (``run_all.py`` and its descendants)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_pass(scratch: Path, *, template: bool) -> dict:
    """Run ``run_all.py --main`` from scratch in ``scratch``; return its wall and CPU seconds."""
    from integral_workflows import hosts

    home = scratch / "mmoda"
    env = {
        **os.environ,
        "MMODA_LOCAL_HOME": str(home),
        "INTEGRAL_WORKFLOWS_CACHE": str(scratch / "chunks"),
        "INTEGRAL_PIPELINE_KERNEL_TEMPLATE": "1" if template else "0",
    }
    command = [sys.executable, str(PROJECT_ROOT / "run_all.py"), "--main", "--output-root", str(scratch / "outputs")]
    cpu_before = children_cpu_seconds()
    started = time.perf_counter()
    try:
        finished = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        client = children_cpu_seconds() - cpu_before
        server = server_cpu_seconds(home)
    finally:
        hosts.stop_local_server(home)
    if finished.returncode != 0:
        raise SystemExit(f"run_all.py --main failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}")
    return {"wall": wall, "client": client, "server": server}


def main() -> None:
    """Time cold passes without and with the kernel template; print the figures and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of passes (baseline, then template)")
    args = parser.parse_args()
    walls: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeat):
        for template in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-make-run-") as scratch:
                figures = cold_pass(Path(scratch), template=template)
            walls[template].append(figures["wall"])
            label = "kernels forked from a template" if template else "ordinary kernels (baseline)"
            print(
                f"pass {repeat + 1}, {label}: {figures['wall']:.1f} s wall; CPU: client {figures['client']:.0f} s, "
                f"local MMODA {figures['server']:.0f} s"
            )
        print(f"wall ratio baseline / template: {walls[False][-1] / walls[True][-1]:.2f}x")
    best = statistics.median(walls[True])
    verdict = "within" if best <= TARGET_S else "over"
    print(f"cold make run (median of {len(walls[True])}): {best:.1f} s, {verdict} the {TARGET_S:.0f} s target")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
