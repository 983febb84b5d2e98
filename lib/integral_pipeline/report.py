"""Texts for people: the plan of ``--dry-run``, the end-of-run summary, ``--list``'s workflows and parameter files."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .errors import PlanError
from .incremental import key_parameters, portable_parameters, step_key, upstream_products, why_execute
from .manifest import OK, load_manifest
from .notebooks import notebook_digest
from .plan import REUSE, SKIP, PlannedRun, PlannedStep
from .project import Project, display_path
from .run import RunResult
from .spec import expand_matrix, read_run_file
from .validation import declared_names
from .workflows import registered_workflows

__all__ = ["preview_run", "format_plan", "format_summary", "describe_workflows", "describe_parameter_files"]


def preview_run(run: PlannedRun, *, force: bool = False) -> list[tuple[PlannedStep, str]]:
    """Say what executing a run would do to each step, without executing anything.

    Parameters
    ----------
    run : PlannedRun
        The run.
    force : bool
        As for :func:`integral_pipeline.run.execute_run`.

    Returns
    -------
    list of (PlannedStep, str)
        Each step with ``'run: <why>'``, ``'skip: up to date'``, ``'reuse: ...'`` or ``'not run: ...'``.
    """
    previous = load_manifest(run.run_dir)
    entries = (
        {entry.name: entry for entry in previous.steps}
        if previous is not None and previous.workflow == run.workflow.name
        else {}
    )
    outcome, rerunning = [], set()
    for planned in run.steps:
        if planned.action == REUSE:
            outcome.append((planned, f"reuse: products of {os.path.relpath(planned.parent_folder, run.run_dir)}"))
            continue
        if planned.action == SKIP:
            outcome.append((planned, "not run: not needed by the rerun"))
            continue
        remade = [item.step for item in planned.step.upstream if item.step in rerunning]
        upstream, missing = upstream_products(planned, run.run_dir)
        if remade or missing:
            reason = f"upstream step {remade[0]} runs first" if remade else missing
        else:
            portable = portable_parameters(planned, run.run_dir)
            digest = notebook_digest(planned.notebook)
            key = step_key(digest, key_parameters(planned, portable), upstream)
            reason = why_execute(
                entries.get(planned.name),
                key=key,
                digest=digest,
                parameters=portable,
                upstream=upstream,
                planned=planned,
                run_dir=run.run_dir,
                force=force,
            )
        if reason is None:
            outcome.append((planned, "skip: up to date"))
        else:
            rerunning.add(planned.name)
            outcome.append((planned, f"run: {reason}"))
    return outcome


def format_plan(runs: Sequence[PlannedRun], *, force: bool = False) -> str:
    """Render the plan of ``--dry-run``: runs, folders, steps, their parameters, hooks, what would run.

    Parameters
    ----------
    runs : sequence of PlannedRun
        The planned runs.
    force : bool
        As for :func:`integral_pipeline.run.execute_run`.

    Returns
    -------
    str
        The plan, one block per run.
    """
    lines = [f"{len(runs)} run(s) planned"]
    for run in runs:
        lines += ["", f"{run.label}  (workflow {run.workflow.name})", f"  folder: {display_path(run.run_dir)}"]
        for planned, what in preview_run(run, force=force):
            lines.append(f"  {planned.index:02d} {planned.name:<18} {run.project.display(planned.notebook):<36} {what}")
            names = [name for name in planned.parameters if name not in planned.step.pipeline_parameters]
            lines.append(f"       parameters: {', '.join(names) or 'none'}; output_dir")
            for item in planned.step.upstream:
                lines.append(
                    f"       {item.parameter} = {display_path(planned.upstream[item.parameter])}  (from {item.step})"
                )
            for hook in planned.step.after:
                lines.append(f"       then: {hook.name}")
    return "\n".join(lines)


def format_summary(results: Sequence[RunResult]) -> str:
    """Render the end-of-run table: run folder, status, steps run/skipped, duration, and the failures.

    Parameters
    ----------
    results : sequence of RunResult
        From :func:`integral_pipeline.batch.execute_runs`.

    Returns
    -------
    str
        The table, then one line per failure (step, notebook, exception).
    """
    with_reuse = any(result.steps_reused for result in results)
    header = ("run folder", "status", "run", "skipped") + (("reused",) if with_reuse else ()) + ("duration",)
    rows = [
        (display_path(result.run.run_dir), result.status, str(result.steps_run), str(result.steps_skipped))
        + ((str(result.steps_reused),) if with_reuse else ())
        + (f"{result.duration_s:.1f} s",)
        for result in results
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    failed = [result for result in results if result.status != OK]
    if failed:
        lines.append("")
        for result in failed:
            lines.append(f"FAILED {result.run.label}: {result.error}")
            if result.failed_notebook is not None:
                lines.append(f"       partial notebook: {display_path(result.failed_notebook)}")
    ok = len(results) - len(failed)
    lines.append(f"\n{ok}/{len(results)} run(s) ok" + (f", {len(failed)} failed" if failed else ""))
    return "\n".join(lines)


def describe_workflows(*, project: Project) -> str:
    """Render the registered workflows: steps, notebooks (marked if missing), upstream products, hooks.

    Parameters
    ----------
    project : Project
        The project (its notebooks folder).

    Returns
    -------
    str
        One block per workflow.
    """
    lines = ["Workflows:"]
    for name, workflow in sorted(registered_workflows().items()):
        lines.append(f"  {name}: {workflow.description}")
        for index, step in enumerate(workflow.steps, 1):
            notebook = workflow.notebook_path(step, notebooks_dir=project.notebooks_dir)
            mark = "" if notebook.is_file() else "  (missing)"
            consumes = "".join(f"  {item.parameter} <- {item.step}:{item.product}" for item in step.upstream)
            hooks = "".join(f"  then {hook.name}" for hook in step.after)
            lines.append(f"    {index:02d} {step.name:<18} {project.display(notebook)}{mark}{consumes}{hooks}")
    return "\n".join(lines)


def describe_parameter_files(*, project: Project) -> str:
    """Render the project's parameter files: workflow, number of runs, or what is wrong.

    Parameters
    ----------
    project : Project
        The project (its parameters folder).

    Returns
    -------
    str
        One line per file.
    """
    files = sorted(project.parameters_dir.glob("*.yaml"))
    lines = [f"Parameter files ({display_path(project.parameters_dir)}):"]
    if not files:
        lines.append("  none")
    for path in files:
        try:
            content = read_run_file(path)
            workflow = registered_workflows().get(content.workflow)
            if workflow is None:
                raise PlanError(f"unknown workflow {content.workflow!r}")
            count = len(expand_matrix(content, declared=declared_names(workflow)))
            lines.append(
                f"  {path.stem:<20} workflow {content.workflow}, {count} run(s)"
                + (f": {content.description}" if content.description else "")
            )
        except (PlanError, ValueError) as error:
            lines.append(f"  {path.stem:<20} INVALID: {error}")
    return "\n".join(lines)
