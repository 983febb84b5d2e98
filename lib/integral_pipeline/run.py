"""Execute one run: its steps in order in its locked folder, skipping those up to date, writing the manifest.

A failing step stops its run (later steps are ``not-run``); the manifest is rewritten after
every step, so a run interrupted anywhere (a killed worker) leaves a manifest the next
invocation resumes from: finished steps are up to date, the interrupted one executes again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from pathlib import Path

import yaml

from integral_workflows import provenance

from .events import RUN_FINISHED, RUN_STARTED, STEP_FINISHED, STEP_STARTED, Event, Reporter
from .execute import error_text, execute_step
from .hooks import StepContext
from .incremental import key_parameters, portable_parameters, step_key, upstream_products, why_execute
from .layout import MANIFEST_NAME, PARAMETERS_FILE_NAME
from .locks import RunFolderBusy, run_folder_lock
from .manifest import (
    FAILED,
    NOT_RUN,
    OK,
    REUSED,
    SKIPPED,
    Manifest,
    StepEntry,
    StepError,
    load_manifest,
    write_manifest,
)
from .notebooks import KERNEL_NAME, notebook_digest
from .plan import REUSE, SKIP, PlannedRun, PlannedStep

log = logging.getLogger(__name__)

__all__ = ["StepOutcome", "RunResult", "execute_run"]


@dataclasses.dataclass(frozen=True)
class StepOutcome:
    """What became of one step in this invocation.

    Parameters
    ----------
    name : str
        The step.
    index : int
        Its position.
    status : str
        ``ok``, ``failed``, ``skipped-up-to-date``, ``reused-from-parent`` or ``not-run``.
    reason : str
        Why it ran or not (or why it failed).
    duration_s : float, optional
        Its execution time, if it executed.
    """

    name: str
    index: int
    status: str
    reason: str
    duration_s: float | None = None


@dataclasses.dataclass
class RunResult:
    """What became of one run.

    Parameters
    ----------
    run : PlannedRun
        The run.
    status : str
        ``'ok'`` or ``'failed'``.
    steps_run, steps_skipped, steps_reused : int
        How many steps were executed, skipped as up to date, reused from a parent.
    duration_s : float
        Wall time of this invocation.
    failed_step : str, optional
        The step that failed.
    error : str, optional
        Why (step, notebook, exception name and message).
    failed_notebook : Path, optional
        The partial executed notebook of the failed step.
    steps : list of StepOutcome
        Each step's outcome, in order.
    """

    run: PlannedRun
    status: str
    steps_run: int = 0
    steps_skipped: int = 0
    steps_reused: int = 0
    duration_s: float = 0.0
    failed_step: str | None = None
    error: str | None = None
    failed_notebook: Path | None = None
    steps: list = dataclasses.field(default_factory=list)

    @property
    def manifest_path(self) -> Path:
        """The run's manifest."""
        return self.run.run_dir / MANIFEST_NAME


class _Events:
    """Numbers a run's events and hands them to the reporter (which may be absent)."""

    def __init__(self, run: PlannedRun, reporter: Reporter | None):
        self.run, self.reporter, self.sequence = run, reporter, 0
        self.attempt = uuid.uuid4().hex[:12]

    def __call__(self, kind: str, **fields) -> None:
        if self.reporter is None:
            return
        self.sequence += 1
        try:
            self.reporter(
                Event(
                    kind=kind,
                    run_id=self.run.run_id,
                    run=self.run.label,
                    attempt=self.attempt,
                    sequence=self.sequence,
                    **fields,
                )
            )
        except Exception:  # progress is a courtesy: it must never fail a run
            log.debug("progress event lost", exc_info=True)


def _manifest_head(run: PlannedRun, *, versions: dict, git: dict, force: bool, kernel_name: str) -> Manifest:
    return Manifest(
        workflow=run.workflow.name,
        description=run.description,
        parameter_file=run.project.display(run.parameter_file) if run.parameter_file else None,
        run=run.label,
        matrix=run.matrix,
        run_folder=run.folder_text,
        parameters=run.parameters.values,
        parameters_given=run.parameters.given,
        parameter_digest=run.parameters.digest,
        started_utc=provenance.utc_now(),
        force=force,
        kernel=kernel_name,
        versions=versions,
        git=git,
        parent=run.parent,
    )


def _parameters_file_text(run: PlannedRun) -> str:
    header = (
        f"# The parameters of this run as validated (every step's defaults resolved).\n"
        f"# `run_all.py {PARAMETERS_FILE_NAME}` runs it again.\n"
    )
    content = {
        "workflow": run.workflow.name,
        "description": run.description or run.label,
        "parameters": run.parameters.values,
    }
    return header + yaml.safe_dump(content, sort_keys=False, allow_unicode=True)


def _run_hooks(planned: PlannedStep, run: PlannedRun, entry: StepEntry, record: dict) -> None:
    """Run the step's hooks in order; the first that raises fails the step."""
    executed = run.run_dir / entry.executed_notebook if entry.executed_notebook else None
    context = StepContext(
        workflow=run.workflow.name,
        step=planned.name,
        run_label=run.label,
        run_dir=run.run_dir,
        parameters=dict(planned.parameters),
        record=record,
        executed_notebook=executed,
    )
    for hook in planned.step.after:
        try:
            result = hook(context)
        except Exception as failure:  # a hook's failure is the step's, reported like a notebook's
            entry.status = FAILED
            entry.error = StepError(type=type(failure).__name__, message=str(failure), hook=hook.name)
            return
        if result is not None:
            entry.hooks = {**(entry.hooks or {}), hook.name: result}


def _run_or_skip(
    planned: PlannedStep,
    run: PlannedRun,
    previous: StepEntry | None,
    *,
    force: bool,
    log_output: bool,
    kernel_name: str,
    token_file: str | Path | None,
    events: _Events,
) -> tuple[StepEntry, bool]:
    """Execute a step unless it is up to date: ``(entry, executed)``."""
    run_dir = run.run_dir
    upstream, missing = upstream_products(planned, run_dir)
    portable = portable_parameters(planned, run_dir)
    digest = notebook_digest(planned.notebook)
    if missing:
        return StepEntry(
            name=planned.name,
            index=planned.index,
            status=FAILED,
            reason=missing,
            notebook=run.project.display(planned.notebook),
            notebook_digest=digest,
            parameters=portable,
            upstream=upstream,
            error=StepError(type="MissingUpstreamProduct", message=missing),
        ), False
    key = step_key(digest, key_parameters(planned, portable), upstream)
    reason = why_execute(
        previous,
        key=key,
        digest=digest,
        parameters=portable,
        upstream=upstream,
        planned=planned,
        run_dir=run_dir,
        force=force,
    )
    if reason is None:
        log.debug("%s: step %s is up to date", run.label, planned.name)
        return dataclasses.replace(
            previous, status=SKIPPED, reason="up to date", checked_utc=provenance.utc_now()
        ), False
    events(STEP_STARTED, step=planned.name, index=planned.index, reason=reason)
    entry, record = execute_step(
        planned,
        run,
        key=key,
        digest=digest,
        portable=portable,
        upstream=upstream,
        reason=reason,
        log_output=log_output,
        kernel_name=kernel_name,
        token_file=token_file,
    )
    if entry.status == OK and planned.step.after:
        _run_hooks(planned, run, entry, record or {})
    return entry, True


def _execute_locked(
    run: PlannedRun,
    result: RunResult,
    manifest: Manifest,
    *,
    force: bool,
    log_output: bool,
    kernel_name: str,
    token_file: str | Path | None,
    events: _Events,
) -> None:
    run_dir = run.run_dir
    previous = load_manifest(run_dir)
    previous_entries = (
        {entry.name: entry for entry in previous.steps}
        if previous is not None and previous.workflow == run.workflow.name
        else {}
    )
    write_manifest(run_dir, manifest)
    (run_dir / PARAMETERS_FILE_NAME).write_text(provenance.scrub_text(_parameters_file_text(run))[0], encoding="utf-8")
    for planned in run.steps:
        executed = False
        if result.status == FAILED:
            entry = StepEntry(
                name=planned.name,
                index=planned.index,
                status=NOT_RUN,
                reason=f"step {result.failed_step} failed before it",
            )
        elif planned.action == SKIP:
            entry = StepEntry(
                name=planned.name,
                index=planned.index,
                status=NOT_RUN,
                reason="not needed by the rerun (neither rerun nor upstream of a rerun step)",
            )
        elif planned.action == REUSE:
            entry = dataclasses.replace(
                planned.parent_entry,
                status=REUSED,
                location=Path(os.path.relpath(planned.parent_folder, run_dir)).as_posix(),
                reason="parameters unchanged: products reused from the parent run folder",
            )
            result.steps_reused += 1
        else:
            entry, executed = _run_or_skip(
                planned,
                run,
                previous_entries.get(planned.name),
                force=force,
                log_output=log_output,
                kernel_name=kernel_name,
                token_file=token_file,
                events=events,
            )
            if entry.status == SKIPPED:
                result.steps_skipped += 1
            result.steps_run += executed
            if entry.status == FAILED:
                result.status, result.failed_step = FAILED, planned.name
                result.error = error_text(planned, entry.error, run)
                if entry.executed_notebook:
                    result.failed_notebook = run_dir / entry.executed_notebook
        reason = result.error if entry.status == FAILED else entry.reason
        result.steps.append(
            StepOutcome(
                name=planned.name,
                index=planned.index,
                status=entry.status,
                reason=reason,
                duration_s=entry.duration_s if executed else None,
            )
        )
        events(
            STEP_FINISHED,
            step=planned.name,
            index=planned.index,
            status=entry.status,
            reason=reason,
            duration_s=entry.duration_s if executed else None,
        )
        manifest.steps.append(entry)
        manifest.steps_run, manifest.steps_skipped = result.steps_run, result.steps_skipped
        manifest.steps_reused = result.steps_reused
        write_manifest(run_dir, manifest)


def execute_run(
    run: PlannedRun,
    *,
    force: bool = False,
    log_output: bool = False,
    kernel_name: str = KERNEL_NAME,
    versions: dict | None = None,
    git: dict | None = None,
    reporter: Reporter | None = None,
    token_file: str | Path | None = None,
) -> RunResult:
    r"""Execute (or skip, when up to date) the steps of one run, in order, and write its manifest.

    Parameters
    ----------
    run : PlannedRun
        A run from :func:`integral_pipeline.plan.plan_runs` or :func:`integral_pipeline.rerun.plan_rerun`.
    force : bool
        Execute every step even if up to date.
    log_output : bool
        Copy the notebooks' output to the log (papermill's ``log_output``).
    kernel_name : str
        The Jupyter kernel.
    versions, git : dict, optional
        :func:`integral_workflows.provenance.package_versions` and ``git_commit``; computed if omitted
        (:func:`integral_pipeline.batch.execute_runs` computes them once for all runs).
    reporter : callable, optional
        Receives the run's progress :class:`~integral_pipeline.events.Event`\\ s.
    token_file : str or Path, optional
        The ``.oda-token`` file whose token each notebook's kernel gets as ``ODA_TOKEN``
        (:func:`integral_pipeline.credentials.locate_token_file`, which ``execute_runs`` calls where the batch
        starts); None: the kernels inherit this process's environment and look for a token themselves.

    Returns
    -------
    RunResult
        Status, counts, duration, each step's outcome and the failure if any. Step failures
        are reported here, not raised.
    """
    started = time.monotonic()
    events = _Events(run, reporter)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    versions = provenance.package_versions() if versions is None else versions
    git = provenance.git_commit(path=run.project.root) if git is None else git
    result = RunResult(run=run, status=OK)
    events(RUN_STARTED)
    manifest = _manifest_head(run, versions=versions, git=git, force=force, kernel_name=kernel_name)
    try:
        with run_folder_lock(run.run_dir):
            try:
                _execute_locked(
                    run,
                    result,
                    manifest,
                    force=force,
                    log_output=log_output,
                    kernel_name=kernel_name,
                    token_file=token_file,
                    events=events,
                )
            except Exception as error:  # a bug or a full disk: the manifest must not stay "running"
                result.status = FAILED
                result.error = f"{type(error).__name__}: {error}"
                log.exception("%s: unexpected error", run.label)
            manifest.status, manifest.ended_utc = result.status, provenance.utc_now()
            manifest.duration_s = round(time.monotonic() - started, 3)
            write_manifest(run.run_dir, manifest)
    except RunFolderBusy as error:
        result.status, result.error = FAILED, str(error)
    result.duration_s = round(time.monotonic() - started, 3)
    events(RUN_FINISHED, status=result.status, reason=result.error, duration_s=result.duration_s)
    return result
