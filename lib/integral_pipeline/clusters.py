"""Dask clusters for the pipeline: a local one of worker processes, an existing one, or Slurm (dask-jobqueue).

Each worker executes one run at a time (one thread): the notebooks' kernels are processes of
their own, so a worker is a slot for one kernel. Workers must see the project and the run
folders at the same paths as the client (a shared filesystem). Design notes and the Slurm
recipe: ``docs/pipeline.md``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["local_cluster", "connect", "slurm_cluster"]


def local_cluster(n_workers: int, *, dashboard_address: str | None = ":8787", **options: Any):
    """Start a cluster of ``n_workers`` worker processes on this machine, one thread each.

    Parameters
    ----------
    n_workers : int
        How many runs execute at once.
    dashboard_address : str or None
        Where the Dask dashboard listens (another free port if taken); None for no dashboard.
    **options
        More arguments of :class:`distributed.LocalCluster`.

    Returns
    -------
    distributed.LocalCluster
        The cluster (close it, or use it as a context manager).
    """
    from distributed import LocalCluster

    if n_workers < 1:
        raise ValueError(f"n_workers = {n_workers}: at least 1")
    with warnings.catch_warnings():
        if dashboard_address is None:
            # Without a dashboard the scheduler's HTTP server (metrics) still wants 8787; any free port will do.
            warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        return LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=dashboard_address, **options
        )


def connect(address: str, *, timeout_s: float = 30.0):
    """Connect to a running Dask scheduler.

    Parameters
    ----------
    address : str
        ``tcp://host:8786``, or a scheduler file (``scheduler.json``).
    timeout_s : float
        How long to wait for the scheduler.

    Returns
    -------
    distributed.Client
        The client.
    """
    from distributed import Client

    if address.endswith(".json") and os.path.isfile(address):
        return Client(scheduler_file=address, timeout=timeout_s)
    return Client(address, timeout=timeout_s)


def slurm_cluster(
    *,
    queue: str | None = None,
    account: str | None = None,
    walltime: str = "04:00:00",
    memory: str = "8GiB",
    cores: int = 2,
    python: str | None = None,
    environment: Sequence[str] = (),
    log_directory: str | None = None,
    local_directory: str | None = None,
    extra_directives: Sequence[str] = (),
    **options: Any,
):
    """Configure a Slurm cluster (dask-jobqueue) whose jobs each run one pipeline worker.

    Nothing is submitted until the cluster is scaled (``cluster.scale(jobs=20)`` or
    ``cluster.adapt(maximum_jobs=50)``). Each job is one worker with one thread, so one run
    at a time; ``cores`` CPUs are reserved for it (its notebook kernel and the worker).

    Parameters
    ----------
    queue : str, optional
        The Slurm partition (``#SBATCH -p``).
    account : str, optional
        The account charged (``#SBATCH -A``).
    walltime : str
        Each job's time limit (``#SBATCH -t``); a run interrupted by it resumes at its step
        on the next worker.
    memory : str
        Each job's memory (``#SBATCH --mem``).
    cores : int
        CPUs reserved per job (``#SBATCH --cpus-per-task``).
    python : str, optional
        The Python of the workers; this one (``sys.executable``) by default, so the project's
        virtualenv on the shared filesystem.
    environment : sequence of str
        Shell lines run before the worker starts (``module load ...``, ``export ODA_TOKEN=...``
        is best left to the user's environment).
    log_directory : str, optional
        Where the jobs' output goes.
    local_directory : str, optional
        The workers' scratch folder (node-local disk).
    extra_directives : sequence of str
        More ``#SBATCH`` options, e.g. ``["--qos=long"]``.
    **options
        More arguments of :class:`dask_jobqueue.SLURMCluster`.

    Returns
    -------
    dask_jobqueue.SLURMCluster
        The configured cluster; ``cluster.job_script()`` shows the batch script.
    """
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        queue=queue,
        account=account,
        walltime=walltime,
        memory=memory,
        cores=1,
        processes=1,
        job_cpu=cores,
        python=python or sys.executable,
        job_script_prologue=list(environment),
        log_directory=log_directory,
        local_directory=local_directory,
        job_extra_directives=list(extra_directives),
        # A worker killed by its walltime must not take its run's retries with it.
        worker_extra_args=["--lifetime", _lifetime(walltime), "--lifetime-stagger", "2m"],
        **options,
    )


def _lifetime(walltime: str) -> str:
    """Return a worker's lifetime: its job's walltime less 10 minutes, so it retires before Slurm kills it."""
    parts = [int(part) for part in walltime.split("-")[-1].split(":")]
    days = int(walltime.split("-")[0]) if "-" in walltime else 0
    while len(parts) < 3:
        parts.insert(0, 0)
    minutes = days * 24 * 60 + parts[0] * 60 + parts[1] + parts[2] / 60
    return f"{max(int(minutes) - 10, 5)}m"
