"""Execute independent runs: in this process, or as Dask tasks on a cluster (one task per run).

On a cluster, each run is a task; its progress events reach the client through the
scheduler's event log. Runs on different workers keep every guarantee of a run in one
process because all state is in the run folder (shared filesystem): the folder lock, the
manifest written after every step, the step records and products. A run whose worker
dies is rescheduled by Dask (``distributed.scheduler.allowed-failures``) or, if it is not,
reported failed; either way the next attempt resumes at the interrupted step.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from integral_workflows import provenance

from .credentials import locate_token_file
from .events import Event, Reporter
from .locks import RunFolderBusy, run_folder_lock
from .manifest import FAILED, INTERRUPTED, RUNNING, load_manifest, write_manifest
from .notebooks import KERNEL_NAME
from .plan import PlannedRun
from .run import RunResult, execute_run

log = logging.getLogger(__name__)

__all__ = ["execute_runs", "run_task"]


class _WorkerReporter:
    """Sends a run's events to the client through the scheduler's event log (on a Dask worker)."""

    def __init__(self, topic: str):
        self.topic = topic

    def __call__(self, event: Event) -> None:
        from distributed import get_worker

        get_worker().log_event(self.topic, event.as_message())


def run_task(
    run: PlannedRun,
    *,
    force: bool,
    log_output: bool,
    kernel_name: str,
    versions: dict,
    git: dict,
    topic: str | None,
    token_file: str | None = None,
) -> RunResult:
    """Execute one run on a Dask worker (the task :func:`execute_runs` submits).

    Parameters
    ----------
    run : PlannedRun
        The run.
    force, log_output, kernel_name, versions, git, token_file
        As for :func:`integral_pipeline.run.execute_run` (the token file's path, never the token, travels).
    topic : str or None
        The event topic the client listens to; None sends no events.

    Returns
    -------
    RunResult
        The run's result.
    """
    return execute_run(
        run,
        force=force,
        log_output=log_output,
        kernel_name=kernel_name,
        versions=versions,
        git=git,
        reporter=_WorkerReporter(topic) if topic else None,
        token_file=token_file,
    )


def _failed(run: PlannedRun, error: BaseException) -> RunResult:
    """Return the result of a run whose task raised (its worker died, a bug); mark its manifest interrupted."""
    text = f"{type(error).__name__}: {error}"
    if type(error).__name__ == "KilledWorker":
        text = f"the worker executing it died ({text}); run again to resume at the interrupted step"
    log.error("%s: %s", run.label, text)
    try:
        with run_folder_lock(run.run_dir):
            manifest = load_manifest(run.run_dir)
            if manifest is not None and manifest.status == RUNNING:
                manifest.status, manifest.ended_utc = INTERRUPTED, provenance.utc_now()
                write_manifest(run.run_dir, manifest)
    except (RunFolderBusy, OSError) as problem:  # another process is at it, or the folder was never made
        log.debug("%s: manifest not marked interrupted: %s", run.label, problem)
    return RunResult(run=run, status=FAILED, error=text)


def _execute_here(runs: Sequence[PlannedRun], options: dict, reporter: Reporter | None) -> list[RunResult]:
    results = []
    for run in runs:
        try:
            results.append(execute_run(run, reporter=reporter, **options))
        except Exception as error:  # a bug in one run must not lose the others' results
            log.exception("%s: unexpected error", run.label)
            results.append(_failed(run, error))
    return results


def _execute_on_cluster(
    runs: Sequence[PlannedRun], client: Any, options: dict, reporter: Reporter | None
) -> list[RunResult]:
    from distributed import as_completed

    topic = f"integral-pipeline-{uuid.uuid4().hex[:12]}" if reporter is not None else None
    if topic is not None:
        client.subscribe_topic(topic, lambda event: reporter(Event.from_message(event[1])))
    batch = uuid.uuid4().hex[:8]
    futures = {
        client.submit(run_task, run, topic=topic, key=f"run-{run.run_id}-{batch}", pure=False, **options): index
        for index, run in enumerate(runs)
    }
    results: list[RunResult | None] = [None] * len(runs)
    try:
        for future in as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as error:  # KilledWorker, or an error the run could not catch
                results[index] = _failed(runs[index], error)
    finally:
        if topic is not None:
            # Events travel with the tasks' results, so all are on the scheduler now: catch up on any not yet seen.
            for _, message in client.get_events(topic):
                reporter(Event.from_message(message))
            client.unsubscribe_topic(topic)
        for future in futures:
            future.release()
    return results


def execute_runs(
    runs: Sequence[PlannedRun],
    *,
    client: Any = None,
    force: bool = False,
    log_output: bool = False,
    kernel_name: str = KERNEL_NAME,
    reporter: Reporter | None = None,
) -> list[RunResult]:
    r"""Execute independent runs; each run's steps are sequential.

    Parameters
    ----------
    runs : sequence of PlannedRun
        From :func:`integral_pipeline.plan.plan_runs` (or :func:`integral_pipeline.rerun.plan_rerun`).
    client : distributed.Client, optional
        Submit each run as a task to this Dask cluster (its workers must see the run folders
        and the notebooks at the same paths); None executes the runs one after the other here.
    force : bool
        Execute every step even if up to date.
    log_output : bool
        Copy the notebooks' output to the log (of the process executing them).
    kernel_name : str
        The Jupyter kernel.
    reporter : callable, optional
        Receives progress :class:`~integral_pipeline.events.Event`\\ s as they happen (from a
        cluster, possibly twice: :class:`integral_pipeline.progress.Progress` handles each once).

    Notes
    -----
    The MMODA token is located here, where the batch starts (``$ODA_TOKEN``, else ``.oda-token`` in the
    working folder, else in the home folder), and each notebook's kernel gets it as ``ODA_TOKEN``
    (:mod:`integral_pipeline.credentials`): kernels work in their run folders, where a ``.oda-token`` of
    the start folder would not be found.

    Returns
    -------
    list of RunResult
        In the order of ``runs``; a failed run does not stop the others.
    """
    if not runs:
        return []
    started = time.monotonic()
    options = {
        "force": force,
        "log_output": log_output,
        "kernel_name": kernel_name,
        "versions": provenance.package_versions(),
        "git": provenance.git_commit(path=runs[0].project.root),
    }
    token_file = locate_token_file()
    if token_file is not None:
        options["token_file"] = str(token_file)
    if client is None:
        results = _execute_here(runs, options, reporter)
    else:
        results = _execute_on_cluster(runs, client, options, reporter)
    log.debug("%d run(s) in %.1f s", len(runs), time.monotonic() - started)
    return results
