"""Reruns of an archived executed notebook with changed parameters, into a new folder that records its parent.

The archived step and every later step execute with the new parameters; an earlier step
whose products they consume is reused from the parent folder (referenced, not copied) when
the parameters it received are unchanged and its products are intact, and executed in the
new folder otherwise; other earlier steps are not run.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

from integral_workflows import parameters as parameter_models
from integral_workflows import provenance

from .errors import PlanError
from .incremental import products_problem
from .layout import MANIFEST_NAME, run_folder
from .manifest import Manifest, StepEntry, load_manifest
from .plan import EXECUTE, REUSE, SKIP, PlannedRun, PlannedStep, plan_steps
from .project import Project, resolve_project
from .spec import choice_text
from .validation import declared_names, validate_run_values
from .workflows import get_workflow

log = logging.getLogger(__name__)

__all__ = ["plan_rerun"]


def _read_archived(archived: Path, shown: str) -> dict:
    if not archived.is_file():
        raise PlanError(f"{shown}: no such notebook", file=shown)
    try:
        notebook = nbformat.read(archived, as_version=4)
    except Exception as error:  # nbformat raises several unrelated types for unreadable files
        raise PlanError(f"{shown} cannot be read: {type(error).__name__}: {error}", file=shown) from None
    papermill_metadata = notebook.metadata.get("papermill")
    if not papermill_metadata or "parameters" not in papermill_metadata:
        raise PlanError(f"{shown} is not a notebook executed by papermill (no metadata.papermill)", file=shown)
    return papermill_metadata


def _entry_folder(entry: StepEntry, run_dir: Path) -> Path:
    """Return the folder holding a manifest entry's products (a reused entry points elsewhere)."""
    return (run_dir / (entry.location or ".")).resolve()


def plan_rerun(
    archived_notebook: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    output_root: str | Path | None = None,
    project: Project | str | Path | None = None,
) -> PlannedRun:
    """Plan the rerun of an archived executed notebook with changed parameters.

    Parameters
    ----------
    archived_notebook : str or Path
        An executed notebook ``NN_<step>.ipynb`` in a run folder that holds its ``manifest.json``.
    overrides : Mapping, optional
        The changed parameters (``-p NAME VALUE``).
    output_root : str or Path, optional
        Root of the new run folder; the parent's root by default.
    project : Project, str or Path, optional
        The project; ``$INTEGRAL_PIPELINE_PROJECT`` or the working folder.

    Returns
    -------
    PlannedRun
        The run: archived step onward executed, needed earlier steps reused or executed,
        ``parent`` filled in (archived notebook, its sha256 and parameters, the parent's
        parameters and the diff ``{name: {"old": ..., "new": ...}}``).

    Raises
    ------
    PlanError
        If the notebook has no papermill metadata, no manifest beside it, names an unknown
        workflow or step, or the new parameters are invalid.
    """
    project = resolve_project(project)
    archived = Path(archived_notebook).resolve()
    shown = project.display(archived)
    papermill_metadata = _read_archived(archived, shown)
    parent_dir = archived.parent
    manifest = load_manifest(parent_dir)
    if manifest is None:
        raise PlanError(
            f"{shown}: no {MANIFEST_NAME} beside it; a rerun needs the run's manifest (workflow, "
            f"parameters, upstream products)",
            file=shown,
        )
    workflow = get_workflow(manifest.workflow)
    entry = next((step for step in manifest.steps if step.executed_notebook == archived.name), None)
    step_name = entry.name if entry else re.sub(r"^\d+_", "", archived.stem)
    try:
        start_index = workflow.index(step_name)
    except ValueError:
        raise PlanError(f"{shown}: step {step_name!r} is not a step of workflow {workflow.name}", file=shown) from None
    source_name = Path(str(papermill_metadata.get("input_path", ""))).name
    expected = Path(workflow.step(step_name).notebook).name
    if source_name and source_name != expected:
        log.warning("%s was made from %s but step %s now runs %s", shown, source_name, step_name, expected)

    # The parent's values as given (not resolved), so that defaults follow a changed instrument.
    given = dict(manifest.parameters_given)
    archived_parameters = dict(papermill_metadata.get("parameters") or {})
    for name, value in archived_parameters.items():
        if name in given and given[name] != value:
            log.warning(
                "%s: %s = %r in the notebook but %r in the manifest; the notebook's value is used",
                shown,
                name,
                value,
                given[name],
            )
            given[name] = value
    try:
        new_parameters = validate_run_values(workflow, {**given, **dict(overrides or {})})
    except parameter_models.ParameterError as error:
        hint = ""
        if error.name and error.name not in declared_names(workflow):
            hint = f" (the parameters of workflow {workflow.name}: {', '.join(declared_names(workflow))})"
        raise PlanError(f"rerun of {shown}: {error}{hint}", file=shown, parameter=error.name) from None
    old_values, new_values = dict(manifest.parameters), new_parameters.values
    diff = {
        name: {"old": old_values.get(name), "new": new_values.get(name)}
        for name in dict.fromkeys([*new_values, *old_values])
        if old_values.get(name) != new_values.get(name)
    }

    if output_root is None:
        depth = len(Path(manifest.run_folder).parts)
        output_root = parent_dir.parents[depth - 1] if depth <= len(parent_dir.parents) else parent_dir.parent
    output_root = Path(output_root).resolve()
    archived_sha = provenance.file_checksum(archived)
    run_dir = _rerun_folder(
        run_folder(workflow, new_values, output_root=output_root),
        parent_dir,
        archived_sha=archived_sha,
        digest=new_parameters.digest,
    )
    steps = plan_steps(workflow, new_parameters, run_dir, project=project)
    _choose_rerun_actions(steps, start_index=start_index, manifest=manifest, parent_dir=parent_dir)

    def portable(value: Any) -> Any:
        # Absolute paths of the parent's machine would make the manifest host-dependent.
        if isinstance(value, str) and os.path.isabs(value):
            return os.path.relpath(value, run_dir)
        return value

    parent = {
        "notebook": os.path.relpath(archived, run_dir),
        "sha256": archived_sha,
        "step": step_name,
        "manifest": os.path.relpath(parent_dir / MANIFEST_NAME, run_dir),
        "source_notebook": source_name,
        "parameters": {name: portable(value) for name, value in archived_parameters.items()},
        "run_parameters": old_values,
        "diff": diff,
    }
    label = f"rerun of {shown}" + (f" [{choice_text({k: v['new'] for k, v in diff.items()})}]" if diff else "")
    return PlannedRun(
        workflow=workflow,
        parameters=new_parameters,
        run_dir=run_dir,
        output_root=output_root,
        label=label,
        steps=steps,
        project=project,
        parameter_file=None,
        matrix={},
        description=manifest.description,
        parent=parent,
    )


def _rerun_folder(candidate: Path, parent_dir: Path, *, archived_sha: str, digest: str) -> Path:
    """Return the new run's folder: ``<folder>_rerun-<n>`` when the new parameters name the parent's."""
    if candidate.resolve() != parent_dir.resolve():
        return candidate
    for number in itertools.count(1):
        folder = candidate.with_name(f"{candidate.name}_rerun-{number}")
        if not folder.exists():
            return folder
        manifest = load_manifest(folder)
        # The same rerun asked again continues in its own folder (and its up-to-date steps are skipped).
        if manifest and (manifest.parent or {}).get("sha256") == archived_sha and manifest.parameter_digest == digest:
            return folder
    raise AssertionError("unreachable")


def _choose_rerun_actions(steps: list[PlannedStep], *, start_index: int, manifest: Manifest, parent_dir: Path) -> None:
    """Decide, for a rerun, which steps run, which reuse the parent's products and which are not needed."""
    parent_entries = {entry.name: entry for entry in manifest.steps}
    by_name = {planned.name: planned for planned in steps}
    executing = {planned.name for planned in steps if planned.index >= start_index}

    def reusable(planned: PlannedStep) -> bool:
        entry = parent_entries.get(planned.name)
        if entry is None or not entry.complete:
            return False
        paths = planned.step.pipeline_parameters
        new = {k: v for k, v in planned.parameters.items() if k not in paths}
        old = {k: v for k, v in (entry.parameters or {}).items() if k not in paths}
        if new != old:
            return False
        return products_problem(entry, _entry_folder(entry, parent_dir)) is None

    # Fixpoint: a needed earlier step runs if it cannot be reused or one of its own inputs is re-made.
    changed = True
    while changed:
        changed = False
        needed = {item.step for name in executing for item in by_name[name].step.upstream}
        for name in sorted(needed - executing, key=lambda n: by_name[n].index, reverse=True):
            planned = by_name[name]
            inputs_remade = any(item.step in executing for item in planned.step.upstream)
            if inputs_remade or not reusable(planned):
                executing.add(name)
                changed = True
    needed = {item.step for name in executing for item in by_name[name].step.upstream}
    for planned in steps:
        if planned.name in executing:
            planned.action = EXECUTE
        elif planned.name in needed:
            entry = parent_entries[planned.name]
            planned.action = REUSE
            planned.parent_entry = entry
            planned.parent_folder = _entry_folder(entry, parent_dir)
        else:
            planned.action = SKIP
    # Consumers of reused steps read the products where they are.
    for planned in steps:
        for item in planned.step.upstream:
            producer = by_name[item.step]
            if producer.action == REUSE:
                path = (producer.parent_folder / item.product).resolve()
                planned.upstream[item.parameter] = path
                planned.parameters[item.parameter] = str(path)
