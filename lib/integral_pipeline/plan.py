"""Plans: parameter files → validated runs, each with its folder and the parameters of each step; nothing runs.

Every problem (files, parameters naming file, run and parameter, workflows, notebooks'
parameters cells) is collected and reported at once as one :class:`PlanError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from integral_workflows import parameters as parameter_models

from .errors import PlanError
from .layout import executed_notebook_name, run_folder, suffixed_folder
from .manifest import StepEntry
from .notebooks import notebook_parameters
from .project import Project, resolve_project
from .spec import choice_text, expand_matrix, find_parameter_file, read_run_file
from .validation import RunParameters, declared_names, validate_run_values
from .workflows import OUTPUT_DIR_PARAMETER, Step, Workflow, get_workflow

log = logging.getLogger(__name__)

__all__ = ["EXECUTE", "REUSE", "SKIP", "PlannedStep", "PlannedRun", "plan_runs", "plan_steps"]

#: What a planned step is to do: execute (unless up to date), reuse a parent's products, or nothing.
EXECUTE, REUSE, SKIP = "execute", "reuse", "not-run"


@dataclasses.dataclass
class PlannedStep:
    """A step of a planned run: which notebook, with which parameters.

    Parameters
    ----------
    step : Step
        The registered step.
    index : int
        Its 1-based position in the workflow.
    notebook : Path
        The source notebook.
    parameters : dict
        What the step receives: the run's values of the names its notebook declares,
        ``output_dir`` and the upstream products (absolute paths).
    upstream : dict
        Upstream parameter → absolute path of the product it names.
    action : str
        :data:`EXECUTE`, :data:`REUSE` (rerun: the parent's products) or :data:`SKIP` (rerun: not needed).
    parent_entry : StepEntry, optional
        For :data:`REUSE`: the parent manifest's entry of the step.
    parent_folder : Path, optional
        For :data:`REUSE`: where the reused products are.
    """

    step: Step
    index: int
    notebook: Path
    parameters: dict
    upstream: dict
    action: str = EXECUTE
    parent_entry: StepEntry | None = None
    parent_folder: Path | None = None

    @property
    def name(self) -> str:
        """The step name."""
        return self.step.name

    @property
    def executed_notebook_name(self) -> str:
        """The executed notebook's file name in the run folder: ``NN_<step>.ipynb``."""
        return executed_notebook_name(self.index, self.step.name)

    @property
    def notebook_values(self) -> dict:
        """What papermill injects: :attr:`parameters` with the values the step's hooks take over."""
        values = dict(self.parameters)
        for hook in self.step.after:
            values.update({name: value for name, value in hook.notebook_values.items() if name in values})
        return values


@dataclasses.dataclass
class PlannedRun:
    """A validated run: a workflow, its parameters, its folder and its steps.

    Parameters
    ----------
    workflow : Workflow
        The workflow.
    parameters : RunParameters
        The validated parameters.
    run_dir : Path
        The run folder (absolute).
    output_root : Path
        The output root the folder is under.
    label : str
        How messages name the run, e.g. ``parameters/crab.yaml run 2/4 [instrument=jemx]``.
    steps : list of PlannedStep
        In order.
    project : Project
        The project (notebooks, for relative paths in the manifest, its git state).
    parameter_file : Path, optional
        The file the run comes from.
    matrix : dict
        The run's matrix choices.
    description : str
        The file's description.
    parent : dict, optional
        For a rerun: what goes into the manifest's ``parent``.
    """

    workflow: Workflow
    parameters: RunParameters
    run_dir: Path
    output_root: Path
    label: str
    steps: list
    project: Project
    parameter_file: Path | None = None
    matrix: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    parent: dict | None = None

    @property
    def folder_text(self) -> str:
        """The run folder relative to the output root (``long_term/Crab/isgri_...``)."""
        try:
            return self.run_dir.relative_to(self.output_root.resolve()).as_posix()
        except ValueError:
            return self.run_dir.as_posix()

    @property
    def run_id(self) -> str:
        """A short stable identifier of the run (its folder), for task keys and progress events."""
        return hashlib.sha256(str(self.run_dir).encode("utf-8")).hexdigest()[:12]


def plan_steps(
    workflow: Workflow, run_parameters: RunParameters, run_dir: Path, *, project: Project
) -> list[PlannedStep]:
    """Plan the steps of one run: each notebook checked, its parameters chosen.

    Parameters
    ----------
    workflow : Workflow
        The workflow.
    run_parameters : RunParameters
        The run's validated parameters.
    run_dir : Path
        The run folder.
    project : Project
        The project (its notebooks folder).

    Returns
    -------
    list of PlannedStep
        In order.

    Raises
    ------
    PlanError
        Every problem of the notebooks: missing, unreadable, no or several parameters cells, a
        token parameter, ``output_dir`` or an upstream parameter not declared.
    """
    planned, problems = [], []
    for index, step in enumerate(workflow.steps, 1):
        notebook = workflow.notebook_path(step, notebooks_dir=project.notebooks_dir)
        shown = project.display(notebook)
        where = f"workflow {workflow.name}, step {step.name}"
        try:
            declared = notebook_parameters(notebook, shown=shown)
        except PlanError as error:
            problems.append(PlanError(f"{where}: {error}", file=shown))
            continue
        token_like = [name for name in declared if name.casefold() in parameter_models.TOKEN_PARAMETER_NAMES]
        if token_like:
            problems.append(
                PlanError(
                    f"{where}: {shown} declares {token_like[0]!r}: the MMODA token is never a "
                    f"notebook parameter (ODA_TOKEN or .oda-token only)",
                    file=shown,
                    parameter=token_like[0],
                )
            )
        missing = [
            name for name in [OUTPUT_DIR_PARAMETER, *(u.parameter for u in step.upstream)] if name not in declared
        ]
        if missing:
            problems.append(
                PlanError(
                    f"{where}: the parameters cell of {shown} must declare {', '.join(missing)} "
                    f"(the run folder and the upstream products are passed as parameters)",
                    file=shown,
                    parameter=missing[0],
                )
            )
            continue
        model_values = run_parameters.per_model.get(step.model_name, {})
        injected = {
            name: value
            for name, value in model_values.items()
            if name in declared and name not in step.pipeline_parameters
        }
        injected[OUTPUT_DIR_PARAMETER] = str(run_dir)
        upstream = {}
        for item in step.upstream:
            upstream[item.parameter] = run_dir / item.product
            injected[item.parameter] = str(upstream[item.parameter])
        planned.append(PlannedStep(step=step, index=index, notebook=notebook, parameters=injected, upstream=upstream))
    if problems:
        raise PlanError.collect(problems)
    return planned


def _unknown_overrides(workflow: Workflow, names: list[str], overrides: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return the overrides no step of the workflow declares: ``(name, problem)`` with the closest name."""
    problems = []
    for name in overrides:
        if name in names or name in workflow.pipeline_parameters:
            continue
        if str(name).casefold() in parameter_models.TOKEN_PARAMETER_NAMES:
            continue  # validation refuses it with the token advice
        close = difflib.get_close_matches(name, names, n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"its parameters: {', '.join(names)}"
        problems.append((name, f"-p {name}: no step of workflow {workflow.name} declares {name!r}: {hint}"))
    return problems


def plan_runs(
    sources: Iterable[str | Path],
    *,
    overrides: Mapping[str, Any] | None = None,
    output_root: str | Path | None = None,
    project: Project | str | Path | None = None,
) -> list[PlannedRun]:
    """Read, expand and validate parameter files into planned runs; nothing is executed or written.

    Parameters
    ----------
    sources : iterable of str or Path
        Parameter files, as paths or names in the project's ``parameters/``.
    overrides : Mapping, optional
        Parameter values replacing those of every run (``-p NAME VALUE``).
    output_root : str or Path, optional
        Root of the run folders; the project's ``outputs/`` by default.
    project : Project, str or Path, optional
        The project (``notebooks/``, ``parameters/``); ``$INTEGRAL_PIPELINE_PROJECT`` or the working folder.

    Returns
    -------
    list of PlannedRun
        The runs, in file order then matrix order; identical runs once.

    Raises
    ------
    PlanError
        Every problem at once: files, overrides no step declares, parameters (naming file,
        run and parameter), workflows, notebooks' parameters cells.
    """
    project = resolve_project(project)
    output_root = Path(output_root if output_root is not None else project.output_root).resolve()
    overrides = dict(overrides or {})
    problems: list[PlanError] = []
    candidates = []  # (parameter file, label, choice, run parameters, workflow)
    for source in sources:
        try:
            path = find_parameter_file(source, parameters_dir=project.parameters_dir)
            shown = project.display(path)
            parameter_file = read_run_file(path, shown=shown)
            workflow = get_workflow(parameter_file.workflow)
            names = declared_names(workflow)
        except PlanError as error:
            problems.append(error if error.file else PlanError(f"{source}: {error}", file=str(source)))
            continue
        except parameter_models.ParameterError as error:
            problems.append(PlanError(f"{source}: {error}", file=str(source)))
            continue
        unknown = _unknown_overrides(workflow, names, overrides)
        if unknown:
            problems += [PlanError(f"{shown}: {text}", file=shown, parameter=name) for name, text in unknown]
            continue
        try:
            expanded = expand_matrix(parameter_file, declared=names, shown=shown)
        except PlanError as error:
            problems.append(error)
            continue
        for index, (values, choice) in enumerate(expanded, 1):
            run_text = f"run {index}/{len(expanded)}" + (f" [{choice_text(choice)}]" if choice else "")
            try:
                run_parameters = validate_run_values(workflow, {**values, **overrides})
            except parameter_models.ParameterError as error:
                origin = f" (with -p {error.name})" if error.name in overrides else ""
                problems.append(
                    PlanError(f"{shown}, {run_text}{origin}: {error}", file=shown, run=run_text, parameter=error.name)
                )
                continue
            candidates.append((parameter_file, f"{shown} {run_text}", choice, run_parameters, workflow))
    if problems:
        raise PlanError.collect(problems)

    runs = _place_runs(candidates, output_root=output_root, project=project)
    for run in runs:
        try:
            run.steps = plan_steps(run.workflow, run.parameters, run.run_dir, project=project)
        except PlanError as error:
            problems.append(error)
    if problems:
        # A notebook shared by several runs would report the same problem once per run: collect() dedupes.
        raise PlanError.collect(problems)
    return runs


def _place_runs(candidates: list, *, output_root: Path, project: Project) -> list[PlannedRun]:
    """Give each run its folder; runs that would share one get a suffix, identical runs are kept once."""
    by_folder: dict[Path, list] = {}
    for position, candidate in enumerate(candidates):
        workflow, run_parameters = candidate[4], candidate[3]
        folder = run_folder(workflow, run_parameters.values, output_root=output_root)
        by_folder.setdefault(folder, []).append((position, *candidate))
    placed = []
    for folder, group in by_folder.items():
        distinct: list = []
        for candidate in group:
            duplicate = next(
                (
                    kept
                    for kept in distinct
                    if kept[4].values == candidate[4].values and kept[5].name == candidate[5].name
                ),
                None,
            )
            if duplicate is not None:
                log.info("%s is the same run as %s: run once", candidate[2], duplicate[2])
                continue
            distinct.append(candidate)
        names = sorted({name for candidate in distinct for name in candidate[4].values})
        differing = [
            name for name in names if len({json.dumps(c[4].values.get(name), sort_keys=True) for c in distinct}) > 1
        ]
        for position, parameter_file, label, choice, run_parameters, workflow in distinct:
            run_dir = folder if len(distinct) == 1 else suffixed_folder(folder, run_parameters.values, differing)
            placed.append(
                (
                    position,
                    PlannedRun(
                        workflow=workflow,
                        parameters=run_parameters,
                        run_dir=run_dir,
                        output_root=output_root,
                        label=label,
                        steps=[],
                        project=project,
                        parameter_file=parameter_file.path,
                        matrix=choice,
                        description=parameter_file.description,
                    ),
                )
            )
    return [run for _, run in sorted(placed, key=lambda item: item[0])]
