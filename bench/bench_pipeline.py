"""Throughput of the batch pipeline on Dask: a 4-run matrix on a LocalCluster of 1 worker, then of 2 workers.

The matrix is that of ``parameters/main.yaml`` (Crab and 1A 0535+262 × ISGRI and JEM-X1, the
``long_term`` workflow: 4 runs × 4 notebooks) on the local MMODA, over a shorter period by
default. A first, untimed pass starts the local MMODA and fills its caches, so that the timed
passes measure the pipeline (kernels, notebooks, runs in parallel), not the simulated
analysis; each timed pass writes into fresh run folders. The baseline is the 1-worker pass
of the same invocation; the figure is the throughput ratio, t(1 worker) / t(2 workers)
(target ≥ 1.7 on two cores). A worker's start is not timed: its process, and its notebook-kernel
template (``integral_pipeline.kernels``: the scientific stack imported once per worker, a few
seconds, whatever the size of the batch), warmed up before the batch and reported apart, with the
ratio counting it. The machine may be shared: each pass also prints the CPU time
it used (this process, its workers and their kernels), the CPU time other processes used
meanwhile (the local MMODA's among them) and the idle time, from ``/proc/stat``.

Run: ``python bench/bench_pipeline.py [--repeat 2] [--full-period]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHORT_PERIOD = {"T1": "2005-03-01T00:00:00", "T2": "2005-05-01T00:00:00"}


def machine_cpu_seconds() -> tuple[float, float]:
    """Return the CPU seconds of the whole machine since boot: (busy, idle), from /proc/stat."""
    fields = [float(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / ticks, idle / ticks


def our_cpu_seconds() -> float:
    """Return the CPU seconds of this process and its finished descendants (workers, their kernels)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def server_cpu_seconds(home: Path | None = None) -> float:
    """Return the CPU seconds of the local MMODA of ``home`` (``$MMODA_LOCAL_HOME``; 0 if it is not running)."""
    try:
        home = home or Path(os.environ["MMODA_LOCAL_HOME"])
        pid = json.loads((home / "server.json").read_text())["pid"]
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, ValueError, KeyError):
        return 0.0
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def warm_kernel_template() -> bool:
    """Start this worker's notebook-kernel template and its imports now; whether kernels are forked from one."""
    from integral_pipeline.kernels import warm_template

    return warm_template() is not None


def one_pass(n_workers: int, *, output_root: Path, overrides: dict) -> tuple[float, float, list]:
    """Plan main.yaml into ``output_root`` and execute it on a fresh LocalCluster.

    Returns (seconds of the batch, seconds of the workers' kernel-template warm-up before it, results).
    """
    from distributed import Client

    from integral_pipeline import Project, execute_runs, plan_runs
    from integral_pipeline.clusters import local_cluster

    runs = plan_runs(["main"], overrides=overrides, output_root=output_root, project=Project.at(PROJECT_ROOT))
    with local_cluster(n_workers, dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(n_workers)
        # Part of a worker's start, as its process and imports: once per worker and batch, whatever the batch's size.
        started = time.perf_counter()
        client.run(warm_kernel_template)
        warm_up = time.perf_counter() - started
        started = time.perf_counter()
        results = execute_runs(runs, client=client)
        elapsed = time.perf_counter() - started
    failed = [result for result in results if result.status != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed, e.g. {failed[0].run.label}: {failed[0].error}")
    return elapsed, warm_up, results


def main() -> None:
    """Warm the caches, then time the 4-run matrix on 1 worker and on 2 workers; print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="timed 1-worker/2-worker pairs (median ratio)")
    parser.add_argument("--full-period", action="store_true", help="main.yaml's two years instead of two months")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import dask

    dask.config.set({"logging.distributed": "error"})
    overrides = {} if args.full_period else dict(SHORT_PERIOD)

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as scratch:
        scratch = Path(scratch)
        # A private local MMODA and chunk cache, inherited by the workers and their kernels.
        os.environ["MMODA_LOCAL_HOME"] = str(scratch / "mmoda")
        os.environ["INTEGRAL_WORKFLOWS_CACHE"] = str(scratch / "chunks")
        from integral_workflows import hosts

        try:
            warm, _, _ = one_pass(2, output_root=scratch / "warm-up", overrides=overrides)
            print(f"warm-up pass (server start, caches filled, not timed below): {warm:.1f} s")
            ratios = []
            for repeat in range(args.repeat):
                timings, with_warm_up = {}, {}
                for n_workers in (1, 2):
                    busy_before, idle_before = machine_cpu_seconds()
                    ours_before, server_before = our_cpu_seconds(), server_cpu_seconds()
                    elapsed, warm_up, results = one_pass(
                        n_workers, output_root=scratch / f"pass-{repeat}-{n_workers}", overrides=overrides
                    )
                    busy, idle = (
                        now - before
                        for now, before in zip(machine_cpu_seconds(), (busy_before, idle_before), strict=True)
                    )
                    ours, server = our_cpu_seconds() - ours_before, server_cpu_seconds() - server_before
                    steps = sum(result.steps_run for result in results)
                    timings[n_workers] = elapsed
                    with_warm_up[n_workers] = elapsed + warm_up
                    # What others ran meanwhile (the machine may be shared) says how much CPU the pass could have.
                    print(
                        f"{n_workers} worker(s): {len(results)} runs, {steps} notebooks in {elapsed:.1f} s "
                        f"({steps / elapsed * 60:.1f} notebooks/min), after the workers' kernel templates warmed up "
                        f"in {warm_up:.1f} s (not timed); CPU of the whole pass (cluster start and warm-up included): "
                        f"pipeline and kernels {ours:.0f} s, local MMODA {server:.0f} s, other processes "
                        f"{max(busy - ours - server, 0):.0f} s, idle {idle:.0f} s ({os.cpu_count()} cores)"
                    )
                ratios.append(timings[1] / timings[2])
                print(
                    f"throughput ratio 2 workers / 1 worker (baseline): {ratios[-1]:.2f}x "
                    f"({with_warm_up[1] / with_warm_up[2]:.2f}x counting the workers' template warm-up)"
                )
        finally:
            hosts.stop_local_server(scratch / "mmoda")
    if len(ratios) > 1:
        print(f"median throughput ratio over {len(ratios)} pairs: {statistics.median(ratios):.2f}x (target >= 1.7)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
