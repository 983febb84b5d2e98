"""The cluster recipes, built offline: a local cluster's shape and the Slurm job script (nothing is submitted)."""

from __future__ import annotations

import sys

import pytest
from distributed import Nanny

from integral_pipeline.clusters import local_cluster, slurm_cluster


@pytest.mark.filterwarnings("ignore:Port .* is already in use")
def test_the_slurm_recipe_writes_one_single_threaded_worker_per_job():
    cluster = slurm_cluster(
        queue="shared-cpu",
        account="integral",
        walltime="1-02:00:00",
        memory="6GiB",
        cores=2,
        environment=["module load GCC", "export OPENBLAS_NUM_THREADS=1"],
        log_directory="/scratch/logs",
        extra_directives=["--qos=long"],
        scheduler_options={"dashboard_address": None},
    )
    try:
        script = cluster.job_script()
        assert cluster.workers == {} and cluster.worker_spec == {}  # built, nothing submitted
    finally:
        cluster.close()
    lines = script.splitlines()
    for directive in (
        "#SBATCH -p shared-cpu",
        "#SBATCH -A integral",
        "#SBATCH -t 1-02:00:00",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=6G",
        "#SBATCH --qos=long",
        "#SBATCH -o /scratch/logs/dask-worker-%J.out",
    ):
        assert directive in lines, directive
    # the environment lines come before the worker starts
    assert lines.index("module load GCC") < next(i for i, line in enumerate(lines) if "dask_worker" in line)
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert worker.startswith(sys.executable)  # the project's Python on the shared filesystem
    assert "--nthreads 1" in worker and "--nanny" in worker
    # the worker retires 10 minutes before its 26 h walltime, so its run is rescheduled, not killed mid-step
    assert "--lifetime 1550m" in worker


def test_a_local_cluster_has_one_single_threaded_process_per_worker():
    with pytest.raises(ValueError, match="at least 1"):
        local_cluster(0)
    with local_cluster(2, dashboard_address=None) as cluster:
        workers = cluster.scheduler_info["workers"].values()
        assert len(workers) == 2 and {worker["nthreads"] for worker in workers} == {1}
        assert all(isinstance(worker, Nanny) for worker in cluster.workers.values())  # each in its own process
