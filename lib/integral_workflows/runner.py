"""Run the workflows: parameter files → validated runs → notebooks chained by papermill → run folders.

``run_all.py`` is a thin command line over this module, as papermill's CLI is
over ``execute_notebook``: everything it does can be done from Python with
:func:`plan_runs`, :func:`plan_rerun`, :func:`execute_runs` and the
``format_*``/``describe_*`` helpers.

Contracts
=========

1. Parameter files
------------------
``parameters/<name>.yaml`` is read with :func:`integral_workflows.params.read_parameter_file`
(times and ``'0044'`` stay strings, a repeated key is an error)::

    workflow: long_term                 # required: a registered workflow (see 2.)
    description: Crab, ISGRI and JEM-X  # optional, copied into the manifests
    parameters:                         # optional: the run's parameters (integral_workflows.params)
      T1: "2004-01-01T00:00:00"
      T2: "2006-01-01T00:00:00"
      host_type: local
    matrix:                             # optional: axes -> lists; runs = cartesian product
      instruments:                      # mapping entries set several parameters at once
        - {instrument: isgri, E1_keV: 28, E2_keV: 40}
        - {instrument: jemx}
      src_name: [Crab, "1A 0535+262"]   # scalar entries: the axis name is the parameter

No other top-level key is allowed. A run's values are ``parameters``, then
its matrix choices (which win), then the ``-p NAME VALUE`` overrides of the
command line (which win over everything). Two axes may not set the same
parameter. Every run is validated with :func:`integral_workflows.params.resolve`
(instrument defaults resolved) and every notebook's ``parameters`` cell is
read *before anything runs*; all problems are reported at once, each naming
the file, the run (``run 2/4 [instrument=jemx]``) and the parameter
(:class:`PlanError`). The MMODA token is never a parameter (ODA_TOKEN or
``.oda-token`` only): the schema refuses it.

2. Workflows (the registry)
---------------------------
A workflow is an ordered list of :class:`Step`\\ s registered with
:func:`register_workflow`. A step is ``(name, notebook, upstream)``:

- ``notebook``: a path relative to ``notebooks/`` (or the workflow's
  ``notebooks_dir``);
- ``upstream``: :class:`Upstream` entries ``(parameter, step, product)``: the
  product file ``product`` (relative to the run folder) of the earlier step
  ``step`` is passed, as an absolute path, in the notebook parameter
  ``parameter``. Paths are always passed explicitly, never rediscovered.

Registered here: ``long_term`` = ``scw_selection`` → ``mosaic`` →
``lightcurve`` → ``spectrum`` (``notebooks/<step>.ipynb``); ``mosaic``,
``lightcurve`` and ``spectrum`` take ``scw_table_file = <run folder>/scws.ecsv``
from ``scw_selection``; ``lightcurve`` and ``spectrum`` also take
``source_catalog_file = <run folder>/sources.ecsv`` from ``mosaic``. ``revolution`` =
``revolution_mosaics`` (one revolution's mosaics per observation and instrument; a
matrix over ``rev_num`` runs a range of revolutions). ``moving_target`` =
``scw_selection`` (with a solar-system body as ``src_name``) → ``crab_calibration``
→ ``moving_target``; the last takes ``scw_table_file`` and ``crab_calibration_file
= <run folder>/crab_calibration.ecsv``. ``crab_calibration`` alone is a workflow too.
Later workflows are one :func:`register_workflow` call each, here or in a
module given to ``run_all.py --workflow-module``.

3. What a notebook must do
--------------------------
- Have a kernelspec (``python3``) and exactly one cell tagged ``parameters``
  holding literals only. Declare there the schema parameters it uses
  (``src_name``, ``T1``, ``E1_keV``... see ``integral_workflows.params``),
  ``output_dir`` (always) and each of its upstream parameters (e.g.
  ``scw_table_file``). Only declared names are injected (papermill would
  warn about the others); a parameter the notebook does not declare keeps
  no value there. The runner injects validated values with instrument
  defaults resolved, ``output_dir`` = the run folder (absolute) and the
  upstream paths (absolute).
- Write its products into ``output_dir`` (the kernel also runs with the run
  folder as its working folder).
- End with a cell tagged ``outputs`` that calls::

      provenance.record_step("<step>", output_dir=output_dir, products=[...],
                             jobs=<jobs.RunRecord or its as_dict() or None>,
                             parameters=p, extra={...})

  where ``<step>`` is the registered step name (= the notebook's file name
  without ``.ipynb``). It writes ``<output_dir>/<step>.step.json``. A step
  whose notebook ends without writing it is failed. Product names are the
  notebooks' business except those consumed downstream: ``scw_selection``
  must write ``scws.ecsv``.
- Stamp FITS products with ``provenance.stamp_header(hdu.header, notebook=...,
  parameters=p, ra_deg=..., dec_deg=...)``.

4. Run folders
--------------
A workflow registered with ``folder_name`` names its own folders below
``<output root>/<workflow>/``: ``revolution`` runs go to
``<output root>/revolution/<rev_num>/<instruments and bands>_<data_version>/``
(:func:`revolution_folder_name`, e.g. ``revolution/0300/isgri_28-40keV_jemx1_3-20keV_CONS/``).
The others go to
``<output root>/<workflow>/<source>/<instrument>_<E1>-<E2>keV_<T1>_<T2>/``
(default root ``outputs/``), e.g. ``outputs/long_term/Crab/isgri_28-40keV_2004-01-01_2006-01-01/``.
``<source>`` is ``src_name`` with anything but letters, digits, ``.+-``
replaced by ``_``; ``<instrument>`` is ``isgri``, ``jemx1`` or ``jemx2``;
energies are written shortest (``28``, ``28.5``); times are dates when at
midnight, else ``YYYY-MM-DDThhmmss``. When runs of one invocation would share
a folder, each gets a suffix naming the parameters that set them apart
(``..._radius-5``); identical runs are run once. The folder holds the
executed notebooks ``NN_<step>.ipynb`` (NN = position in the workflow) next
to the products, the step records, ``parameters.yaml`` (as used) and
``manifest.json``.

5. manifest.json
----------------
Written after every step (so a crash leaves a truthful manifest): workflow,
parameter file, run label and matrix choices, run folder (relative to the
output root), the run's parameters (resolved, and as given), their digest,
status (``ok``/``failed``), timings, package versions, git commit and dirty
flag, the kernel, and per step: notebook (relative to the project), its
digest, executed notebook, status (``ok``, ``failed``,
``skipped-up-to-date``, ``reused-from-parent``, ``not-run``), why it ran or
not, start/end/duration, the parameters injected (``output_dir`` as ``.``,
upstream paths relative to the run folder), upstream products with
checksums, the step key, products with checksums, jobs/ScW outcomes,
``extra``, and the error (type, message, cell) if failed. A step reused by a
rerun keeps the parent's entry plus ``location``, the folder (relative to
this one) its paths refer to. No host name, user
name or absolute path, and never a token: every string is scrubbed of
``$ODA_TOKEN`` and anything JWT-like (:func:`integral_workflows.provenance.scrub`).

6. Incremental runs
-------------------
A step is skipped (logged as "up to date") when its previous attempt in this
folder succeeded, its step key (sha256 of the notebook's code cells, the
injected parameters and the checksums of its upstream products) is
unchanged, its executed notebook and step record exist and every recorded
product exists with its checksum. ``force=True`` (``--force``) re-executes.
So a rerun of a run whose step failed resumes at that step, and changing a
parameter re-runs exactly the steps that take it (and their dependants
whose upstream products changed). Library changes are not part of the key:
use ``--force`` after changing ``lib/``.

7. Reruns of an archived notebook
---------------------------------
:func:`plan_rerun` (``run_all.py rerun <run folder>/NN_<step>.ipynb -p NAME VALUE``)
reads the notebook's papermill metadata and the ``manifest.json`` beside it
(required: it names the workflow and holds the run's parameters), applies
the overrides to the parent run's parameters *as given* (so instrument
defaults follow a changed instrument), validates, and plans a run into the
folder of the new parameters; when that is the parent's folder, into
``<folder>_rerun-<n>`` (the first free one, or the one that already holds
this very rerun). The rule for the chain: the archived step and every later
step are executed with the new parameters; an earlier step whose products
they consume is *reused* from the parent folder (referenced there, not
copied) when the parameters it was injected with are unchanged and its
products are intact, and executed in the new folder otherwise; other
earlier steps are not run. The manifest's ``parent`` records the archived
notebook (path relative to the new folder, sha256), its papermill
parameters, the parent's run parameters and the diff
(``{name: {"old": ..., "new": ...}}``).

8. Execution and errors
-----------------------
Runs are independent: ``jobs > 1`` runs that many in parallel threads; the
steps of a run are sequential. The kernel (``python3``) starts in the run
folder (given to nbclient, not by ``os.chdir``, which threads would race
on). A failing step stops its run, keeps the partial executed notebook,
records the error (papermill's ``PapermillExecutionError``: exception name,
message, cell) and lets the other runs finish. After each executed step the
executed notebook is scrubbed of tokens, and any other new file holding
``$ODA_TOKEN`` is masked and fails the step (a product must never carry it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from papermill.exceptions import PapermillExecutionError

from . import params, provenance

log = logging.getLogger(__name__)

__all__ = [
    "PROJECT_ROOT", "KERNEL_NAME", "MANIFEST_NAME", "OK", "FAILED", "SKIPPED", "REUSED", "NOT_RUN",
    "PlanError", "Upstream", "Step", "Workflow", "register_workflow", "unregister_workflow", "get_workflow",
    "registered_workflows", "ParameterFile", "read_run_file", "expand_matrix", "find_parameter_file",
    "parse_override", "run_folder_name", "revolution_folder_name", "run_folder", "notebook_parameters",
    "notebook_digest", "PlannedStep", "PlannedRun", "plan_runs", "plan_rerun", "preview_run", "RunResult",
    "execute_run", "execute_runs", "load_manifest", "format_plan", "format_summary", "describe_workflows",
    "describe_parameter_files",
]

#: The project (the folder holding notebooks/, parameters/, outputs/) when the package is installed editable.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
KERNEL_NAME = "python3"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
OUTPUT_DIR_PARAMETER = "output_dir"
PARAMETERS_FILE_NAME = "parameters.yaml"
LOCK_FILE_NAME = ".run_all.lock"
FILE_KEYS = ("workflow", "description", "parameters", "matrix")

OK, FAILED, SKIPPED, REUSED, NOT_RUN = "ok", "failed", "skipped-up-to-date", "reused-from-parent", "not-run"
#: Statuses after which a step's products are complete.
COMPLETE_STATUSES = (OK, SKIPPED)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_UNSAFE_PATH_CHARACTERS = re.compile(r"[^A-Za-z0-9.+-]+")


class PlanError(ValueError):
    """A parameter file, a run's parameters or a workflow's notebooks are not valid; nothing was executed.

    Parameters
    ----------
    message : str
        What is wrong, naming the file, the run and the parameter.
    file : str, optional
        The parameter file (or archived notebook) at fault.
    run : str, optional
        The run at fault, e.g. ``'run 2/4 [instrument=jemx]'``.
    parameter : str, optional
        The parameter at fault.
    problems : sequence of PlanError, optional
        Every problem, when several are reported at once.

    Attributes
    ----------
    file, run, parameter : str or None
        As given (those of the first problem for a collection).
    problems : tuple of PlanError
        Every problem (just this one if it is not a collection).
    """

    def __init__(self, message: str, *, file: str | None = None, run: str | None = None,
                 parameter: str | None = None, problems: Sequence[PlanError] | None = None):
        super().__init__(message)
        self.file, self.run, self.parameter = file, run, parameter
        self.problems = tuple(problems) if problems else (self,)

    @classmethod
    def collect(cls, problems: Sequence[PlanError]) -> PlanError:
        """Return one error reporting every problem (the problem itself if there is one)."""
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        return cls(f"{len(problems)} problems:\n" + "\n".join(f"- {p}" for p in problems),
                   file=first.file, run=first.run, parameter=first.parameter, problems=problems)


# -- the workflow registry -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Upstream:
    """A product of an earlier step that a step consumes, passed as a notebook parameter.

    Parameters
    ----------
    parameter : str
        The notebook parameter receiving the product's absolute path.
    step : str
        The earlier step that writes the product.
    product : str
        The product's path relative to the run folder, e.g. ``'scws.ecsv'``.
    """

    parameter: str
    step: str
    product: str


@dataclasses.dataclass(frozen=True)
class Step:
    """One notebook of a workflow.

    Parameters
    ----------
    name : str
        The step name: names the executed notebook (``NN_<name>.ipynb``) and
        the step record (``<name>.step.json``).
    notebook : str
        The notebook, relative to the workflow's notebooks folder.
    upstream : tuple of Upstream
        The products of earlier steps it consumes.
    """

    name: str
    notebook: str
    upstream: tuple[Upstream, ...] = ()


@dataclasses.dataclass(frozen=True)
class Workflow:
    """A registered, ordered chain of notebook steps.

    Parameters
    ----------
    name : str
        The name parameter files give in ``workflow:``.
    steps : tuple of Step
        In execution order.
    description : str
        One line for ``--list``.
    notebooks_dir : Path, optional
        Where the steps' notebooks are; ``<project>/notebooks`` if None.
    folder_name : callable, optional
        ``parameters -> str``: the run folder below ``<output root>/<workflow>/``
        (may hold ``/``); :func:`run_folder` uses ``<source>/<run_folder_name>``
        if None.
    """

    name: str
    steps: tuple[Step, ...]
    description: str = ""
    notebooks_dir: Path | None = None
    folder_name: Callable[[Mapping[str, Any]], str] | None = None

    def step(self, name: str) -> Step:
        """Return the step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"workflow {self.name} has no step {name!r}; steps: {[s.name for s in self.steps]}")

    def index(self, name: str) -> int:
        """Return the 1-based position of step ``name``."""
        return [step.name for step in self.steps].index(name) + 1

    def notebook_path(self, step: Step, *, project_root: Path | None = None) -> Path:
        """Return the absolute path of a step's notebook."""
        folder = self.notebooks_dir if self.notebooks_dir is not None else (project_root or PROJECT_ROOT) / "notebooks"
        return (Path(folder) / step.notebook).resolve()


_REGISTRY: dict[str, Workflow] = {}
_REGISTRY_LOCK = threading.Lock()


def register_workflow(name: str, steps: Iterable[Step], *, description: str = "",
                      notebooks_dir: str | Path | None = None, replace: bool = False,
                      folder_name: Callable[[Mapping[str, Any]], str] | None = None) -> Workflow:
    """Register a workflow (a chain of notebooks) under ``name``.

    Parameters
    ----------
    name : str
        The name parameter files give in ``workflow:``.
    steps : iterable of Step
        The steps in execution order.
    description : str
        One line for ``--list``.
    notebooks_dir : str or Path, optional
        Where the notebooks are; ``<project>/notebooks`` by default.
    replace : bool
        Replace a workflow of the same name instead of refusing.
    folder_name : callable, optional
        Names the run folders of this workflow (see :class:`Workflow`).

    Returns
    -------
    Workflow
        The registered workflow.

    Raises
    ------
    ValueError
        For a bad or duplicate name, an empty chain, duplicate step names, an
        upstream that is not an earlier step, an upstream parameter that is a
        workflow parameter, or a product path leaving the run folder.
    """
    steps = tuple(steps)
    if not _NAME.match(name):
        raise ValueError(f"workflow name {name!r}: letters, digits, '_' and '-' only")
    if not steps:
        raise ValueError(f"workflow {name} has no step")
    seen: list[str] = []
    for step in steps:
        if not isinstance(step, Step):
            raise ValueError(f"workflow {name}: steps must be Step objects, got {step!r}")
        if not _NAME.match(step.name) or step.name in seen:
            raise ValueError(f"workflow {name}: step name {step.name!r} is invalid or repeated")
        for upstream in step.upstream:
            if upstream.step not in seen:
                raise ValueError(f"workflow {name}, step {step.name}: upstream step {upstream.step!r} is not an "
                                 f"earlier step ({seen})")
            if upstream.parameter in params.PARAMETERS or upstream.parameter == OUTPUT_DIR_PARAMETER:
                raise ValueError(f"workflow {name}, step {step.name}: upstream parameter {upstream.parameter!r} "
                                 f"would shadow a workflow parameter")
            product = Path(upstream.product)
            if product.is_absolute() or ".." in product.parts:
                raise ValueError(f"workflow {name}, step {step.name}: upstream product {upstream.product!r} must "
                                 f"be a path inside the run folder")
        seen.append(step.name)
    workflow = Workflow(name=name, steps=steps, description=description,
                        notebooks_dir=Path(notebooks_dir).resolve() if notebooks_dir is not None else None,
                        folder_name=folder_name)
    with _REGISTRY_LOCK:
        if name in _REGISTRY and not replace:
            raise ValueError(f"workflow {name} is already registered (replace=True replaces it)")
        _REGISTRY[name] = workflow
    return workflow


def unregister_workflow(name: str) -> None:
    """Remove a workflow from the registry (no error if absent).

    Parameters
    ----------
    name : str
        The workflow name.
    """
    with _REGISTRY_LOCK:
        _REGISTRY.pop(name, None)


def registered_workflows() -> dict[str, Workflow]:
    """Return a copy of the registry, name → :class:`Workflow`."""
    with _REGISTRY_LOCK:
        return dict(_REGISTRY)


def get_workflow(name: str) -> Workflow:
    """Return the workflow registered as ``name``.

    Parameters
    ----------
    name : str
        The workflow name.

    Returns
    -------
    Workflow
        The workflow.

    Raises
    ------
    PlanError
        If no workflow has that name (the message lists those that exist).
    """
    with _REGISTRY_LOCK:
        workflow = _REGISTRY.get(name)
        known = sorted(_REGISTRY)
    if workflow is None:
        raise PlanError(f"unknown workflow {name!r}; registered workflows: {', '.join(known)}")
    return workflow


_SCW_TABLE = Upstream(parameter="scw_table_file", step="scw_selection", product="scws.ecsv")
#: The mosaic's sources are the light curves' and spectra's extraction catalogue (make_image).
_MOSAIC_SOURCES = Upstream(parameter="source_catalog_file", step="mosaic", product="sources.ecsv")

register_workflow("long_term", [
    Step("scw_selection", "scw_selection.ipynb"),
    Step("mosaic", "mosaic.ipynb", (_SCW_TABLE,)),
    Step("lightcurve", "lightcurve.ipynb", (_SCW_TABLE, _MOSAIC_SOURCES)),
    Step("spectrum", "spectrum.ipynb", (_SCW_TABLE, _MOSAIC_SOURCES)),
], description="Long-term products of one source: ScW selection, mosaic, light curve, spectrum")

#: The Crab calibration the moving-target stacks convert their rates with.
_CRAB_CALIBRATION = Upstream(parameter="crab_calibration_file", step="crab_calibration",
                             product="crab_calibration.ecsv")

register_workflow("moving_target", [
    Step("scw_selection", "scw_selection.ipynb"),
    Step("crab_calibration", "crab_calibration.ipynb"),
    Step("moving_target", "moving_target.ipynb", (_SCW_TABLE, _CRAB_CALIBRATION)),
], description="A solar-system body (src_name: Jupiter...): ScWs along its track, Crab calibration, one image per "
               "ScW stacked in the body's frame, fluxes or upper limits")

register_workflow("crab_calibration", [Step("crab_calibration", "crab_calibration.ipynb")],
                  description="Crab count rates per half-year and year from images and light curves, and the "
                              "conversion to mCrab and erg/cm2/s")


def revolution_folder_name(parameters: Mapping[str, Any]) -> str:
    """Name a ``revolution`` run's folder: ``<revolution>/<instruments and bands>_<data_version>``.

    Parameters
    ----------
    parameters : WorkflowParameters
        The run's validated parameters (``rev_num``, ``use_*``, the bands, ``data_version``).

    Returns
    -------
    str
        E.g. ``0300/isgri_28-40keV_jemx1+jemx2_3-20keV_CONS``; ``current`` or
        ``current-1`` when ``rev_num`` counts back from the current revolution
        (resolved only when the notebook runs).
    """
    revolution = parameters["rev_num"]
    if not isinstance(revolution, str):
        revolution = "current" if revolution == 0 else f"current{revolution}"
    parts = []
    if parameters["use_isgri"]:
        parts.append(f"isgri_{_number_text(parameters['E1_keV'])}-{_number_text(parameters['E2_keV'])}keV")
    units = [f"jemx{unit}" for unit in (1, 2) if parameters[f"use_jemx{unit}"]]
    if units:
        parts.append(f"{'+'.join(units)}_{_number_text(parameters['J_E1_keV'])}-"
                     f"{_number_text(parameters['J_E2_keV'])}keV")
    return f"{revolution}/{_sanitise('_'.join([*parts, parameters['data_version']]))}"


register_workflow("revolution", [Step("revolution_mosaics", "revolution_mosaics.ipynb")],
                  description="Products of INTEGRAL revolutions (Generic Revolution Mosaics): one mosaic per "
                              "observation and instrument; a matrix over rev_num runs a range of revolutions",
                  folder_name=revolution_folder_name)


# -- parameter files -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ParameterFile:
    """The content of a ``parameters/<name>.yaml`` file (not yet validated as parameters).

    Parameters
    ----------
    path : Path
        The file.
    workflow : str
        The ``workflow:`` name.
    description : str
        The ``description:``.
    parameters : dict
        The ``parameters:`` mapping, raw.
    matrix : dict
        The ``matrix:`` axes, name → list of entries.
    """

    path: Path
    workflow: str
    description: str
    parameters: dict
    matrix: dict


def _display(path: Path, *, project_root: Path | None = None) -> str:
    """A path as a user would type it: relative to the project or the working folder when inside, else as is."""
    path = Path(path)
    for base in (project_root or PROJECT_ROOT, Path.cwd()):
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def read_run_file(path: str | Path) -> ParameterFile:
    """Read and check the structure of a parameter file.

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    ParameterFile
        Its content (parameter values are validated later, per run).

    Raises
    ------
    PlanError
        If the file is missing, not valid YAML, has an unknown top-level key,
        no ``workflow``, or a malformed ``parameters``/``matrix``.
    """
    path = Path(path)
    shown = _display(path)
    if not path.is_file():
        raise PlanError(f"{shown}: no such parameter file", file=shown)
    try:
        content = params.read_parameter_file(path)
    except params.ParameterError as error:
        raise PlanError(str(error), file=shown) from None
    unknown = [key for key in content if key not in FILE_KEYS]
    if unknown:
        hint = ""
        if any(key in params.PARAMETERS for key in unknown):
            hint = " (workflow parameters go under 'parameters:')"
        raise PlanError(f"{shown}: unknown top-level key(s) {unknown}{hint}; allowed: {list(FILE_KEYS)}",
                        file=shown, parameter=str(unknown[0]))
    workflow = content.get("workflow")
    if not isinstance(workflow, str) or not workflow:
        raise PlanError(f"{shown}: 'workflow:' must name a registered workflow "
                        f"({', '.join(sorted(registered_workflows()))})", file=shown)
    values = content.get("parameters") or {}
    if not isinstance(values, dict):
        raise PlanError(f"{shown}: 'parameters:' must be a mapping of parameter names to values", file=shown)
    matrix = content.get("matrix") or {}
    if not isinstance(matrix, dict):
        raise PlanError(f"{shown}: 'matrix:' must map axis names to lists", file=shown)
    for axis, entries in matrix.items():
        if not isinstance(entries, list) or not entries:
            raise PlanError(f"{shown}: matrix axis {axis!r} must be a non-empty list", file=shown,
                            parameter=str(axis))
    description = content.get("description") or ""
    return ParameterFile(path=path.resolve(), workflow=workflow, description=str(description),
                         parameters=dict(values), matrix=dict(matrix))


def _choice_text(choice: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" if isinstance(value, str) and " " in value else f"{name}={value}"
                     for name, value in choice.items())


def expand_matrix(parameter_file: ParameterFile) -> list[tuple[dict, dict]]:
    """Expand a parameter file's matrix into the raw values of each run.

    Parameters
    ----------
    parameter_file : ParameterFile
        The file's content.

    Returns
    -------
    list of (dict, dict)
        Per run, in the cartesian-product order of the axes as written: the
        raw parameter values (``parameters`` updated with the run's matrix
        choices) and the choices alone (parameter → value).

    Raises
    ------
    PlanError
        If a scalar axis is not a parameter name, an entry is neither a
        scalar nor a mapping, or two axes set the same parameter.
    """
    shown = _display(parameter_file.path)
    axes = []
    for axis, entries in parameter_file.matrix.items():
        choices = []
        for entry in entries:
            if isinstance(entry, dict):
                choices.append(dict(entry))
            elif isinstance(entry, list):
                if axis not in params.PARAMETERS or params.PARAMETERS[axis].kind != "revolutions":
                    raise PlanError(f"{shown}: matrix axis {axis!r}: an entry is a list; entries are values of "
                                    f"the parameter {axis!r} or mappings of parameters to values",
                                    file=shown, parameter=str(axis))
                choices.append({axis: entry})
            else:
                if axis not in params.PARAMETERS:
                    raise PlanError(f"{shown}: matrix axis {axis!r} has plain values, so it must be a parameter "
                                    f"name (or give mappings such as {{instrument: jemx, E1_keV: 3}})",
                                    file=shown, parameter=str(axis))
                choices.append({axis: entry})
        axes.append((axis, choices))
    setters: dict[str, str] = {}
    for axis, choices in axes:
        for name in {name for choice in choices for name in choice}:
            if name in setters and setters[name] != axis:
                raise PlanError(f"{shown}: parameter {name!r} is set by two matrix axes ({setters[name]!r} and "
                                f"{axis!r}); one parameter, one axis", file=shown, parameter=str(name))
            setters[name] = axis
    runs = []
    for combination in itertools.product(*(choices for _, choices in axes)):
        chosen: dict = {}
        for choice in combination:
            chosen.update(choice)
        runs.append(({**parameter_file.parameters, **chosen}, chosen))
    return runs


def find_parameter_file(name: str | Path, *, project_root: Path | None = None) -> Path:
    """Find a parameter file given as a path or as a name in ``parameters/``.

    Parameters
    ----------
    name : str or Path
        ``crab`` (→ ``parameters/crab.yaml``), ``crab.yaml`` or a path.
    project_root : Path, optional
        The project; :data:`PROJECT_ROOT` by default.

    Returns
    -------
    Path
        The file.

    Raises
    ------
    PlanError
        If there is no such file (the message lists the available ones).
    """
    folder = (project_root or PROJECT_ROOT) / "parameters"
    candidates = [Path(name), folder / f"{name}.yaml", folder / str(name)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    available = sorted(path.stem for path in folder.glob("*.yaml"))
    raise PlanError(f"no parameter file {str(name)!r} (looked for {', '.join(_display(c) for c in candidates)}); "
                    f"available in {_display(folder)}: {', '.join(available) or 'none'}", file=str(name))


def parse_override(name: str, text: str) -> tuple[str, Any]:
    """Parse a ``-p NAME VALUE`` command-line override with the parameter files' YAML rules.

    Parameters
    ----------
    name : str
        The parameter name.
    text : str
        Its value as typed (``28``, ``2004-01-01T00:00:00``, ``"'0044'"``,
        ``"[0044, 0045]"``, ``"1A 0535+262"``, ``null``).

    Returns
    -------
    tuple of (str, object)
        The name and the parsed value (validated later, with the run).

    Raises
    ------
    PlanError
        If the value is not valid YAML or is a mapping.
    """
    try:
        value = params.parse_yaml(f"value: {text}" if text.strip() else "value: ''", source=f"-p {name}")["value"]
    except (params.ParameterError, KeyError, TypeError):
        raise PlanError(f"-p {name} {text!r}: not a valid value (quote text that YAML would misread)",
                        parameter=name) from None
    if isinstance(value, dict):
        raise PlanError(f"-p {name} {text!r}: a value cannot be a mapping", parameter=name)
    return name, value


# -- run folders -----------------------------------------------------------------------------------------------

def _sanitise(text: str) -> str:
    cleaned = _UNSAFE_PATH_CHARACTERS.sub("_", str(text)).strip("_.-")
    return cleaned or "unnamed"


def _number_text(value: float) -> str:
    return f"{float(value):g}"


def _value_text(value: Any) -> str:
    """A parameter value for a folder-name suffix: numbers shortest, lists joined with '+'."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        return _number_text(value)
    if isinstance(value, (list, tuple)):
        return "+".join(_value_text(item) for item in value) or "none"
    return _sanitise(value)


def _time_text(isot: str) -> str:
    date, _, clock = isot.partition("T")
    if not clock or re.fullmatch(r"00:00:00(\.0*)?", clock):
        return date
    return f"{date}T{clock.replace(':', '')}"


def run_folder_name(parameters: Mapping[str, Any]) -> str:
    """Return the run folder's last component: ``<instrument>_<E1>-<E2>keV_<T1>_<T2>``.

    Parameters
    ----------
    parameters : WorkflowParameters
        The run's validated parameters.

    Returns
    -------
    str
        E.g. ``isgri_28-40keV_2004-01-01_2006-01-01`` or
        ``jemx1_3-20keV_2004-01-01T120000_2004-01-02``.
    """
    instrument = parameters["instrument"]
    if instrument == "jemx":
        # The two JEM-X units are different detectors: their products must not share a folder.
        instrument = f"jemx{parameters['jemx_unit']}"
    band = f"{_number_text(parameters['E1_keV'])}-{_number_text(parameters['E2_keV'])}keV"
    return _sanitise(f"{instrument}_{band}_{_time_text(parameters['T1'])}_{_time_text(parameters['T2'])}")


def run_folder(workflow: str, parameters: Mapping[str, Any], *, output_root: str | Path | None = None) -> Path:
    """Return a run's folder: ``<output_root>/<workflow>/<source>/<run_folder_name>``.

    Parameters
    ----------
    workflow : str
        The workflow name.
    parameters : WorkflowParameters
        The run's validated parameters.
    output_root : str or Path, optional
        ``<project>/outputs`` by default.

    Returns
    -------
    Path
        The absolute folder (not created). A workflow registered with a
        ``folder_name`` (e.g. ``revolution``) names its folders itself:
        ``<output_root>/<workflow>/<folder_name(parameters)>``.
    """
    root = Path(output_root) if output_root is not None else PROJECT_ROOT / "outputs"
    registered = registered_workflows().get(workflow)
    if registered is not None and registered.folder_name is not None:
        return (root / workflow / registered.folder_name(parameters)).resolve()
    return (root / workflow / _sanitise(parameters["src_name"]) / run_folder_name(parameters)).resolve()


# -- notebooks -------------------------------------------------------------------------------------------------

_INSPECTION_CACHE: dict[tuple, dict] = {}
_INSPECTION_LOCK = threading.Lock()


def _file_signature(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def notebook_parameters(path: str | Path) -> dict[str, dict]:
    """Return the parameters a notebook declares in its ``parameters`` cell (papermill's ``inspect_notebook``).

    Parameters
    ----------
    path : str or Path
        The notebook.

    Returns
    -------
    dict
        Name → ``{name, inferred_type_name, default, help}``.

    Raises
    ------
    PlanError
        If the notebook is missing, unreadable, has no kernelspec, or not
        exactly one cell tagged ``parameters``.
    """
    path = Path(path).resolve()
    shown = _display(path)
    if not path.is_file():
        raise PlanError(f"notebook {shown} does not exist", file=shown)
    signature = _file_signature(path)
    with _INSPECTION_LOCK:
        if signature in _INSPECTION_CACHE:
            return _INSPECTION_CACHE[signature]
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several unrelated types for unreadable files
        raise PlanError(f"notebook {shown} cannot be read: {type(error).__name__}: {error}", file=shown) from None
    tagged = [index for index, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise PlanError(f"notebook {shown} must have exactly one cell tagged 'parameters', found {len(tagged)}",
                        file=shown)
    if not notebook.metadata.get("kernelspec", {}).get("name"):
        raise PlanError(f"notebook {shown} has no kernelspec: papermill cannot run it (jupytext --set-kernel "
                        f"{KERNEL_NAME})", file=shown)
    if not any("outputs" in cell.metadata.get("tags", []) for cell in notebook.cells):
        log.warning("notebook %s has no cell tagged 'outputs' (the cell that calls provenance.record_step)", shown)
    try:
        declared = dict(pm.inspect_notebook(str(path)))
    except Exception as error:  # papermill's translators raise plain exceptions on odd cells
        raise PlanError(f"notebook {shown}: its parameters cell cannot be read: {type(error).__name__}: {error}",
                        file=shown) from None
    with _INSPECTION_LOCK:
        _INSPECTION_CACHE[signature] = declared
    return declared


def notebook_digest(path: str | Path) -> str:
    """Return the sha256 of a notebook's code: cell types and sources, not outputs or metadata.

    Parameters
    ----------
    path : str or Path
        The notebook.

    Returns
    -------
    str
        64 hex digits; saving the notebook with other outputs does not change it.
    """
    notebook = nbformat.read(Path(path), as_version=4)
    code = [[cell.cell_type, cell.source] for cell in notebook.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(code, ensure_ascii=False).encode("utf-8")).hexdigest()


# -- plans -----------------------------------------------------------------------------------------------------

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
        What papermill injects (declared names only; absolute paths).
    upstream : dict
        Upstream parameter → absolute path of the product it names.
    action : str
        ``'execute'`` (if not up to date), ``'reuse'`` (rerun: take the
        parent's products) or ``'not-run'`` (rerun: not needed).
    parent_entry : dict, optional
        For ``'reuse'``: the parent manifest's entry of the step.
    parent_folder : Path, optional
        For ``'reuse'``: where the reused products are.
    """

    step: Step
    index: int
    notebook: Path
    parameters: dict
    upstream: dict
    action: str = "execute"
    parent_entry: dict | None = None
    parent_folder: Path | None = None

    @property
    def name(self) -> str:
        """The step name."""
        return self.step.name

    @property
    def executed_notebook_name(self) -> str:
        """The executed notebook's file name in the run folder: ``NN_<step>.ipynb``."""
        return f"{self.index:02d}_{self.step.name}.ipynb"


@dataclasses.dataclass
class PlannedRun:
    """A validated run: a workflow, its parameters, its folder and its steps.

    Parameters
    ----------
    workflow : Workflow
        The workflow.
    parameters : WorkflowParameters
        The validated parameters.
    run_dir : Path
        The run folder (absolute).
    output_root : Path
        The output root the folder is under.
    label : str
        How messages name the run, e.g. ``parameters/crab.yaml run 2/4 [instrument=jemx]``.
    steps : list of PlannedStep
        In order.
    parameter_file : Path, optional
        The file the run comes from.
    matrix : dict
        The run's matrix choices.
    description : str
        The file's description.
    parent : dict, optional
        For a rerun: what goes into the manifest's ``parent``.
    project_root : Path
        The project (for relative paths in the manifest).
    """

    workflow: Workflow
    parameters: params.WorkflowParameters
    run_dir: Path
    output_root: Path
    label: str
    steps: list
    parameter_file: Path | None = None
    matrix: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    parent: dict | None = None
    project_root: Path = PROJECT_ROOT

    @property
    def folder_text(self) -> str:
        """The run folder relative to the output root (``long_term/Crab/isgri_...``)."""
        try:
            return self.run_dir.relative_to(self.output_root.resolve()).as_posix()
        except ValueError:
            return self.run_dir.as_posix()


def _plan_steps(workflow: Workflow, parameters: params.WorkflowParameters, run_dir: Path, *,
                project_root: Path) -> list[PlannedStep]:
    values = params.to_json_dict(parameters)
    planned, problems = [], []
    for index, step in enumerate(workflow.steps, 1):
        notebook = workflow.notebook_path(step, project_root=project_root)
        shown = _display(notebook, project_root=project_root)
        where = f"workflow {workflow.name}, step {step.name}"
        try:
            declared = notebook_parameters(notebook)
        except PlanError as error:
            problems.append(PlanError(f"{where}: {error}", file=shown))
            continue
        token_like = [name for name in declared if name.casefold() in params.TOKEN_PARAMETER_NAMES]
        if token_like:
            problems.append(PlanError(f"{where}: {shown} declares {token_like[0]!r}: the MMODA token is never a "
                                      f"notebook parameter (ODA_TOKEN or .oda-token only)", file=shown,
                                      parameter=token_like[0]))
        missing = [name for name in [OUTPUT_DIR_PARAMETER, *(u.parameter for u in step.upstream)]
                   if name not in declared]
        if missing:
            problems.append(PlanError(f"{where}: the parameters cell of {shown} must declare "
                                      f"{', '.join(missing)} (the run folder and the upstream products are passed "
                                      f"as parameters)", file=shown,
                                      parameter=missing[0]))
            continue
        injected = {name: value for name, value in values.items() if name in declared}
        injected[OUTPUT_DIR_PARAMETER] = str(run_dir)
        upstream = {}
        for item in step.upstream:
            upstream[item.parameter] = run_dir / item.product
            injected[item.parameter] = str(upstream[item.parameter])
        planned.append(PlannedStep(step=step, index=index, notebook=notebook, parameters=injected,
                                   upstream=upstream))
    if problems:
        raise PlanError.collect(problems)
    return planned


def _with_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict:
    return {**values, **dict(overrides or {})}


def plan_runs(sources: Iterable[str | Path], *, overrides: Mapping[str, Any] | None = None,
              output_root: str | Path | None = None, project_root: str | Path | None = None) -> list[PlannedRun]:
    """Read, expand and validate parameter files into planned runs; nothing is executed or written.

    Parameters
    ----------
    sources : iterable of str or Path
        Parameter files, as paths or names in ``parameters/``.
    overrides : mapping, optional
        Parameter values replacing those of every run (``-p NAME VALUE``).
    output_root : str or Path, optional
        Root of the run folders; ``<project>/outputs`` by default.
    project_root : str or Path, optional
        The project (``notebooks/``, ``parameters/``); :data:`PROJECT_ROOT` by default.

    Returns
    -------
    list of PlannedRun
        The runs, in file order then matrix order; identical runs once.

    Raises
    ------
    PlanError
        Every problem at once: files, parameters (naming file, run and
        parameter), workflows, notebooks' parameters cells.
    """
    project_root = Path(project_root).resolve() if project_root is not None else PROJECT_ROOT
    output_root = Path(output_root) if output_root is not None else project_root / "outputs"
    output_root = output_root.resolve()
    problems: list[PlanError] = []
    candidates = []  # (file content, index, total, choice, parameters, workflow)
    for source in sources:
        try:
            parameter_file = read_run_file(find_parameter_file(source, project_root=project_root))
            workflow = get_workflow(parameter_file.workflow)
        except PlanError as error:
            if error.file is None:
                error = PlanError(f"{source}: {error}", file=str(source))
            problems.append(error)
            continue
        shown = _display(parameter_file.path, project_root=project_root)
        try:
            expanded = expand_matrix(parameter_file)
        except PlanError as error:
            problems.append(error)
            continue
        for index, (values, choice) in enumerate(expanded, 1):
            run_text = f"run {index}/{len(expanded)}" + (f" [{_choice_text(choice)}]" if choice else "")
            try:
                resolved = params.resolve(_with_overrides(values, overrides))
            except params.ParameterError as error:
                origin = " (from -p)" if overrides and error.name in overrides else ""
                problems.append(PlanError(f"{shown}, {run_text}: {error}{origin}", file=shown, run=run_text,
                                          parameter=error.name))
                continue
            candidates.append((parameter_file, f"{shown} {run_text}", choice, resolved, workflow))
    if problems:
        raise PlanError.collect(problems)

    runs = _place_runs(candidates, output_root=output_root)
    for run in runs:
        try:
            run.steps = _plan_steps(run.workflow, run.parameters, run.run_dir, project_root=project_root)
        except PlanError as error:
            problems.append(error)
        run.project_root = project_root
    if problems:
        # A notebook shared by several runs would report the same problem once per run.
        unique = list({str(problem): problem for problem in problems}.values())
        raise PlanError.collect(unique)
    return runs


def _place_runs(candidates: list, *, output_root: Path) -> list[PlannedRun]:
    """Give each run its folder; runs that would share one get a suffix, identical runs are kept once."""
    by_folder: dict[Path, list] = {}
    for candidate in candidates:
        parameter_file, label, choice, resolved, workflow = candidate
        folder = run_folder(workflow.name, resolved, output_root=output_root)
        by_folder.setdefault(folder, []).append(candidate)
    runs = []
    for folder, group in by_folder.items():
        distinct: list = []
        for candidate in group:
            duplicate = next((kept for kept in distinct if kept[3] == candidate[3] and kept[4] == candidate[4]), None)
            if duplicate is not None:
                log.info("%s is the same run as %s: run once", candidate[1], duplicate[1])
                continue
            distinct.append(candidate)
        differing = sorted({name for name in params.PARAMETERS
                            if len({json.dumps(params.to_json_dict(c[3])[name]) for c in distinct}) > 1})
        for parameter_file, label, choice, resolved, workflow in distinct:
            run_dir = folder
            if len(distinct) > 1:
                values = params.to_json_dict(resolved)
                suffix = "_".join(f"{name}-{_value_text(values[name])}" for name in differing)
                run_dir = folder.with_name(f"{folder.name}_{suffix}")
            runs.append(PlannedRun(workflow=workflow, parameters=resolved, run_dir=run_dir, output_root=output_root,
                                   label=label, steps=[], parameter_file=parameter_file.path, matrix=choice,
                                   description=parameter_file.description))
    order = {id(candidate[3]): position for position, candidate in enumerate(candidates)}
    runs.sort(key=lambda run: order[id(run.parameters)])
    return runs


# -- reruns ----------------------------------------------------------------------------------------------------

def load_manifest(run_dir: str | Path) -> dict | None:
    """Read a run folder's ``manifest.json``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.

    Returns
    -------
    dict or None
        The manifest, or None if there is none or it is unreadable (logged).
    """
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        log.warning("%s is unreadable (%s): treated as absent, every step runs", path, error)
        return None


def _schema_only(values: Mapping[str, Any]) -> dict:
    return {name: value for name, value in values.items() if name in params.PARAMETERS}


def _path_parameter_names(step: Step) -> set[str]:
    return {OUTPUT_DIR_PARAMETER, *(item.parameter for item in step.upstream)}


def _products_intact(entry: Mapping[str, Any], folder: Path) -> str | None:
    """Return what is wrong with a recorded step's products in ``folder``, or None if all are intact."""
    for product in entry.get("products") or []:
        path = folder / product["path"]
        if not path.is_file():
            return f"product {product['path']} missing"
        if provenance.file_checksum(path) != product["sha256"]:
            return f"product {product['path']} modified since it was recorded"
    return None


def plan_rerun(archived_notebook: str | Path, *, overrides: Mapping[str, Any] | None = None,
               output_root: str | Path | None = None, project_root: str | Path | None = None) -> PlannedRun:
    """Plan the rerun of an archived executed notebook with changed parameters (contract 7).

    Parameters
    ----------
    archived_notebook : str or Path
        An executed notebook ``NN_<step>.ipynb`` in a run folder that holds
        its ``manifest.json``.
    overrides : mapping, optional
        The changed parameters (``-p NAME VALUE``).
    output_root : str or Path, optional
        Root of the new run folder; the parent's root by default.
    project_root : str or Path, optional
        The project; :data:`PROJECT_ROOT` by default.

    Returns
    -------
    PlannedRun
        The run: archived step onward executed, needed earlier steps reused
        or executed, ``parent`` filled in.

    Raises
    ------
    PlanError
        If the notebook has no papermill metadata, no manifest beside it,
        names an unknown workflow or step, or the new parameters are invalid.
    """
    project_root = Path(project_root).resolve() if project_root is not None else PROJECT_ROOT
    archived = Path(archived_notebook).resolve()
    shown = _display(archived, project_root=project_root)
    if not archived.is_file():
        raise PlanError(f"{shown}: no such notebook", file=shown)
    try:
        notebook = nbformat.read(archived, as_version=4)
    except Exception as error:  # nbformat raises several unrelated types for unreadable files
        raise PlanError(f"{shown} cannot be read: {type(error).__name__}: {error}", file=shown) from None
    papermill_metadata = notebook.metadata.get("papermill")
    if not papermill_metadata or "parameters" not in papermill_metadata:
        raise PlanError(f"{shown} is not a notebook executed by papermill (no metadata.papermill)", file=shown)
    parent_dir = archived.parent
    manifest = load_manifest(parent_dir)
    if manifest is None:
        raise PlanError(f"{shown}: no {MANIFEST_NAME} beside it; a rerun needs the run's manifest (workflow, "
                        f"parameters, upstream products)", file=shown)
    workflow = get_workflow(manifest["workflow"])
    entry = next((s for s in manifest.get("steps", []) if s.get("executed_notebook") == archived.name), None)
    step_name = entry["name"] if entry else re.sub(r"^\d+_", "", archived.stem)
    try:
        start_index = workflow.index(step_name)
    except ValueError:
        raise PlanError(f"{shown}: step {step_name!r} is not a step of workflow {workflow.name}", file=shown) from None
    source_name = Path(str(papermill_metadata.get("input_path", ""))).name
    expected = Path(workflow.step(step_name).notebook).name
    if source_name and source_name != expected:
        log.warning("%s was made from %s but step %s now runs %s", shown, source_name, step_name, expected)

    # The parent's values as given (not resolved), so that defaults follow a changed instrument.
    given = dict(manifest.get("parameters_given") or manifest.get("parameters") or {})
    archived_parameters = dict(papermill_metadata.get("parameters") or {})
    for name, value in _schema_only(archived_parameters).items():
        if name in given and given[name] != value:
            log.warning("%s: %s = %r in the notebook but %r in the manifest; the notebook's value is used",
                        shown, name, value, given[name])
            given[name] = value
    try:
        parent_parameters = params.resolve(manifest.get("parameters") or given)
        new_parameters = params.resolve(_with_overrides(given, overrides))
    except params.ParameterError as error:
        raise PlanError(f"rerun of {shown}: {error}", file=shown, parameter=error.name) from None
    old_values, new_values = params.to_json_dict(parent_parameters), params.to_json_dict(new_parameters)
    diff = {name: {"old": old_values[name], "new": new_values[name]}
            for name in new_values if old_values.get(name) != new_values[name]}

    if output_root is None:
        depth = len(Path(manifest.get("run_folder", "a/b/c")).parts)
        output_root = parent_dir.parents[depth - 1] if depth <= len(parent_dir.parents) else parent_dir.parent
    output_root = Path(output_root).resolve()
    archived_sha = provenance.file_checksum(archived)
    run_dir = _rerun_folder(run_folder(workflow.name, new_parameters, output_root=output_root), parent_dir,
                            archived_sha=archived_sha, digest=provenance.parameter_digest(new_parameters))
    steps = _plan_steps(workflow, new_parameters, run_dir, project_root=project_root)
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
    return PlannedRun(workflow=workflow, parameters=new_parameters, run_dir=run_dir, output_root=output_root,
                      label=f"rerun of {shown}" + (f" [{_choice_text({k: v['new'] for k, v in diff.items()})}]"
                                                   if diff else ""),
                      steps=steps, parameter_file=None, matrix={}, description=manifest.get("description", ""),
                      parent=parent, project_root=project_root)


def _rerun_folder(candidate: Path, parent_dir: Path, *, archived_sha: str, digest: str) -> Path:
    if candidate.resolve() != parent_dir.resolve():
        return candidate
    for number in itertools.count(1):
        folder = candidate.with_name(f"{candidate.name}_rerun-{number}")
        manifest = load_manifest(folder)
        if not folder.exists():
            return folder
        # The same rerun asked again continues in its own folder (and its up-to-date steps are skipped).
        if manifest and (manifest.get("parent") or {}).get("sha256") == archived_sha \
                and manifest.get("parameter_digest") == digest:
            return folder
    raise AssertionError("unreachable")


def _choose_rerun_actions(steps: list[PlannedStep], *, start_index: int, manifest: Mapping[str, Any],
                          parent_dir: Path) -> None:
    """Decide, for a rerun, which steps run, which reuse the parent's products and which are not needed."""
    parent_entries = {entry["name"]: entry for entry in manifest.get("steps", [])}
    by_name = {planned.name: planned for planned in steps}
    executing = {planned.name for planned in steps if planned.index >= start_index}

    def reusable(planned: PlannedStep) -> bool:
        entry = parent_entries.get(planned.name)
        if entry is None or entry.get("status") not in (*COMPLETE_STATUSES, REUSED):
            return False
        path_names = _path_parameter_names(planned.step)
        new = {k: v for k, v in planned.parameters.items() if k not in path_names}
        old = {k: v for k, v in (entry.get("parameters") or {}).items() if k not in path_names}
        if new != old:
            return False
        return _products_intact(entry, _entry_folder(entry, parent_dir)) is None

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
            planned.action = "execute"
        elif planned.name in needed:
            entry = parent_entries[planned.name]
            planned.action = "reuse"
            planned.parent_entry = entry
            planned.parent_folder = _entry_folder(entry, parent_dir)
        else:
            planned.action = NOT_RUN
    # Consumers of reused steps read the products where they are.
    for planned in steps:
        for item in planned.step.upstream:
            producer = by_name[item.step]
            if producer.action == "reuse":
                path = (producer.parent_folder / item.product).resolve()
                planned.upstream[item.parameter] = path
                planned.parameters[item.parameter] = str(path)


def _entry_folder(entry: Mapping[str, Any], run_dir: Path) -> Path:
    """The folder holding a manifest entry's products (a reused entry points elsewhere)."""
    return (run_dir / entry.get("location", ".")).resolve()


# -- execution -------------------------------------------------------------------------------------------------

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

    @property
    def manifest_path(self) -> Path:
        """The run's manifest."""
        return self.run.run_dir / MANIFEST_NAME


def _step_key(digest: str, parameters: Mapping[str, Any], upstream: Mapping[str, Mapping[str, Any]]) -> str:
    content = {"notebook": digest, "parameters": dict(parameters),
               "upstream": {name: info["sha256"] for name, info in upstream.items()}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _portable_parameters(planned: PlannedStep, run_dir: Path) -> dict:
    """Injected parameters with the run folder as ``.`` and upstream paths relative to it."""
    portable = dict(planned.parameters)
    portable[OUTPUT_DIR_PARAMETER] = "."
    for name, path in planned.upstream.items():
        portable[name] = Path(os.path.relpath(path, run_dir)).as_posix()
    return portable


def _why_execute(previous: Mapping[str, Any] | None, *, key: str, digest: str, parameters: Mapping[str, Any],
                 upstream: Mapping[str, Mapping[str, Any]], planned: PlannedStep, run_dir: Path,
                 force: bool) -> str | None:
    """Return why a step must run, or None if it is up to date (contract 6)."""
    if force:
        return "--force"
    if previous is None:
        return "never executed in this folder"
    if previous.get("status") == FAILED:
        return "its last attempt failed"
    if previous.get("status") not in COMPLETE_STATUSES:
        return f"its last status is {previous.get('status')}"
    if previous.get("step_key") != key:
        if previous.get("notebook_digest") != digest:
            return "the notebook changed"
        old = previous.get("parameters") or {}
        changed = sorted(name for name in set(old) | set(parameters)
                         if name not in planned.upstream and old.get(name) != parameters.get(name))
        if changed:
            return f"parameters changed: {', '.join(changed)}"
        remade = sorted(name for name, info in upstream.items()
                        if (previous.get("upstream") or {}).get(name, {}).get("sha256") != info["sha256"])
        if remade:
            return f"upstream products changed: {', '.join(remade)}"
        return "its step key changed"
    if not (run_dir / planned.executed_notebook_name).is_file():
        return f"executed notebook {planned.executed_notebook_name} missing"
    if not provenance.step_record_path(run_dir, planned.name).is_file():
        return f"step record {provenance.step_record_path(run_dir, planned.name).name} missing"
    return _products_intact(previous, run_dir)


@contextlib.contextmanager
def _folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder: two run_all processes must not write one folder at once."""
    with open(run_dir / LOCK_FILE_NAME, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{run_dir} is being written by another run_all process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _scrub_file(path: Path) -> int:
    """Redact secrets in a text file the runner owns (an executed notebook); return how many."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    # JWT characters and the redaction text need no JSON escaping, so a text-level replacement keeps valid JSON.
    clean, count = provenance.scrub_text(text)
    if count:
        path.write_text(clean, encoding="utf-8")
        log.warning("%d token-like string(s) redacted from %s: the notebook printed or stored a token",
                    count, path.name)
    return count


def _mask_secret_in_file(path: Path, secret: bytes) -> bool:
    """Overwrite every occurrence of ``secret`` in a file with ``*`` of the same length; return whether any."""
    try:
        content = path.read_bytes()
    except OSError:
        return False
    if secret not in content:
        return False
    # Same length, so a FITS file keeps its 2880-byte blocks and stays readable.
    path.write_bytes(content.replace(secret, b"*" * len(secret)))
    return True


def _leaked_files(run_dir: Path, *, since: float, exclude: Iterable[Path]) -> list[Path]:
    secrets = provenance.secret_values()
    if not secrets:
        return []
    excluded = {path.resolve() for path in exclude}
    leaked = []
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or path.resolve() in excluded or path.stat().st_mtime < since - 1:
            continue
        if any(_mask_secret_in_file(path, secret.encode("utf-8")) for secret in secrets):
            leaked.append(path)
    return leaked


def _error_text(planned: PlannedStep, error: Mapping[str, Any], run: PlannedRun) -> str:
    cell = f" at cell {error['cell']} of the executed notebook" if error.get("cell") is not None else ""
    return (f"step {planned.name} ({_display(planned.notebook, project_root=run.project_root)}) failed{cell}: "
            f"{error['type']}: {error['message']}")


def _execute_step(planned: PlannedStep, run: PlannedRun, *, key: str, digest: str, portable: dict,
                  upstream: dict, reason: str, log_output: bool, kernel_name: str) -> dict:
    run_dir = run.run_dir
    output_notebook = run_dir / planned.executed_notebook_name
    record_path = provenance.step_record_path(run_dir, planned.name)
    # A record left by an earlier attempt must not vouch for this one.
    record_path.unlink(missing_ok=True)
    started_wall, started = time.time(), time.monotonic()
    started_utc = provenance.utc_now()
    log.info("%s: step %d/%d %s: executing %s (%s)", run.label, planned.index, len(run.steps), planned.name,
             _display(planned.notebook, project_root=run.project_root), reason)
    error = None
    try:
        pm.execute_notebook(str(planned.notebook), str(output_notebook), parameters=dict(planned.parameters),
                            kernel_name=kernel_name, progress_bar=False, log_output=log_output,
                            # The kernel's working folder, set per kernel: papermill's cwd= would os.chdir the
                            # whole process, which parallel runs would race on.
                            resources={"metadata": {"path": str(run_dir)}})
    except PapermillExecutionError as failure:
        error = {"type": failure.ename, "message": str(failure.evalue), "cell": failure.cell_index}
    except Exception as failure:  # a dead kernel, a timeout, an unreadable notebook: the run must go on
        error = {"type": type(failure).__name__, "message": str(failure), "cell": None}
    ended_utc, duration = provenance.utc_now(), round(time.monotonic() - started, 3)
    if output_notebook.is_file():
        _scrub_file(output_notebook)
    leaked = _leaked_files(run_dir, since=started_wall, exclude=[output_notebook, record_path])
    record = None
    if error is None and leaked:
        names = ", ".join(path.relative_to(run_dir).as_posix() for path in leaked)
        error = {"type": "TokenLeak", "message": f"the MMODA token was written into {names} (masked there); a "
                 f"product must never hold it", "cell": None}
    if error is None:
        try:
            record = provenance.read_step_record(run_dir, planned.name)
        except ValueError as failure:
            error = {"type": "BadStepRecord", "message": str(failure), "cell": None}
        else:
            if record is None:
                others = sorted(p.name for p in run_dir.glob(f"*{provenance.STEP_RECORD_SUFFIX}"))
                error = {"type": "MissingStepRecord",
                         "message": f"the notebook finished without writing {record_path.name}: its 'outputs' cell "
                                    f"must call provenance.record_step({planned.name!r}, output_dir=output_dir, "
                                    f"products=[...]) (records present: {others or 'none'})", "cell": None}
    gallery_uploads = None
    if error is None and record is not None and run.parameters.upload_to_gallery:
        gallery_uploads, error = _upload_to_gallery(planned, run, record, output_notebook)
    entry = {
        "name": planned.name,
        "index": planned.index,
        "notebook": _display(planned.notebook, project_root=run.project_root),
        "notebook_digest": digest,
        "executed_notebook": planned.executed_notebook_name if output_notebook.is_file() else None,
        "status": OK if error is None else FAILED,
        "reason": reason,
        "started_utc": started_utc,
        "ended_utc": ended_utc,
        "duration_s": duration,
        "parameters": portable,
        "upstream": upstream,
        "step_key": key,
        "record": record_path.name if record else None,
        "products": (record or {}).get("products", []),
        "jobs": (record or {}).get("jobs"),
        "extra": (record or {}).get("extra", {}),
        "timings": (record or {}).get("timings", {}),
        "gallery": gallery_uploads,
        "error": error,
    }
    if error is None:
        log.info("%s: step %s done in %.1f s, %d product(s)", run.label, planned.name, duration,
                 len(entry["products"]))
    else:
        log.error("%s: %s; partial notebook kept: %s", run.label, _error_text(planned, error, run),
                  output_notebook if output_notebook.is_file() else "none")
    return entry


def _upload_to_gallery(planned: PlannedStep, run: PlannedRun, record: dict,
                       executed: Path) -> tuple[list | None, dict | None]:
    """Upload a finished step's products with its complete executed notebook: (uploads, error)."""
    from . import gallery

    try:
        results = gallery.upload_finished_step(planned.name, run.run_dir, parameters=run.parameters, record=record,
                                               notebook=executed if executed.is_file() else None)
    except gallery.GalleryError as failure:
        return None, {"type": type(failure).__name__, "message": str(failure), "cell": None}
    if results:
        log.info("%s: step %s: %d product(s) uploaded to the gallery", run.label, planned.name, len(results))
    return [{"product_id": r.product_id, "link": r.link, "updated": r.updated} for r in results] or None, None


@contextlib.contextmanager
def _gallery_uploads_after_steps():
    """Tell the notebooks this process executes to leave their gallery uploads to the runner."""
    from .gallery import UPLOAD_AFTER_STEP_ENV

    previous = os.environ.get(UPLOAD_AFTER_STEP_ENV)
    os.environ[UPLOAD_AFTER_STEP_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(UPLOAD_AFTER_STEP_ENV, None)
        else:
            os.environ[UPLOAD_AFTER_STEP_ENV] = previous


def _upstream_info(planned: PlannedStep, run_dir: Path) -> tuple[dict, str | None]:
    info = {}
    for item in planned.step.upstream:
        path = planned.upstream[item.parameter]
        if not path.is_file():
            return info, (f"upstream product {item.product} of step {item.step} is missing "
                          f"({os.path.relpath(path, run_dir)})")
        info[item.parameter] = {"step": item.step, "path": Path(os.path.relpath(path, run_dir)).as_posix(),
                                "sha256": provenance.file_checksum(path)}
    return info, None


def _manifest_head(run: PlannedRun, *, versions: dict, git: dict, force: bool, kernel_name: str) -> dict:
    given = {name: run.parameters[name] for name in sorted(run.parameters.explicit_names)}
    return {
        "manifest_version": MANIFEST_VERSION,
        "workflow": run.workflow.name,
        "description": run.description,
        "parameter_file": _display(run.parameter_file, project_root=run.project_root) if run.parameter_file else None,
        "run": run.label,
        "matrix": run.matrix,
        "run_folder": run.folder_text,
        "parameters": params.to_json_dict(run.parameters),
        "parameters_given": params.to_json_dict(run.parameters, names=given),
        "parameter_digest": provenance.parameter_digest(run.parameters),
        "status": "running",
        "started_utc": provenance.utc_now(),
        "ended_utc": None,
        "duration_s": None,
        "force": force,
        "steps_run": 0,
        "steps_skipped": 0,
        "steps_reused": 0,
        "kernel": kernel_name,
        "versions": versions,
        "git": git,
        "parent": run.parent,
        "steps": [],
    }


def execute_run(run: PlannedRun, *, force: bool = False, log_output: bool = False, kernel_name: str = KERNEL_NAME,
                versions: dict | None = None, git: dict | None = None) -> RunResult:
    """Execute (or skip, when up to date) the steps of one run, in order, and write its manifest.

    Parameters
    ----------
    run : PlannedRun
        A run from :func:`plan_runs` or :func:`plan_rerun`.
    force : bool
        Execute every step even if up to date.
    log_output : bool
        Copy the notebooks' output to the log (papermill's ``log_output``).
    kernel_name : str
        The Jupyter kernel.
    versions, git : dict, optional
        :func:`integral_workflows.provenance.package_versions` and
        :func:`~integral_workflows.provenance.git_commit`, computed if omitted
        (:func:`execute_runs` computes them once for all runs).

    Returns
    -------
    RunResult
        Status, counts, duration and the failure if any. Step failures are
        reported here, not raised.
    """
    started = time.monotonic()
    run.run_dir.mkdir(parents=True, exist_ok=True)
    versions = provenance.package_versions() if versions is None else versions
    git = provenance.git_commit(path=run.project_root) if git is None else git
    result = RunResult(run=run, status=OK)
    try:
        with _folder_lock(run.run_dir), _gallery_uploads_after_steps():
            _execute_locked(run, result, force=force, log_output=log_output, kernel_name=kernel_name,
                            versions=versions, git=git)
    except RuntimeError as error:
        result.status, result.error = FAILED, str(error)
        log.error("%s: %s", run.label, error)
    result.duration_s = round(time.monotonic() - started, 3)
    return result


def _execute_locked(run: PlannedRun, result: RunResult, *, force: bool, log_output: bool, kernel_name: str,
                    versions: dict, git: dict) -> None:
    run_dir = run.run_dir
    previous = load_manifest(run_dir) or {}
    previous_entries = ({entry["name"]: entry for entry in previous.get("steps", [])}
                        if previous.get("workflow") == run.workflow.name else {})
    manifest = _manifest_head(run, versions=versions, git=git, force=force, kernel_name=kernel_name)
    manifest_path = run_dir / MANIFEST_NAME
    provenance.write_json(manifest_path, manifest, what="manifest")
    (run_dir / PARAMETERS_FILE_NAME).write_text(
        provenance.scrub_text(params.to_yaml(run.parameters))[0], encoding="utf-8")
    started = time.monotonic()
    for planned in run.steps:
        if result.status == FAILED:
            entry = {"name": planned.name, "index": planned.index, "status": NOT_RUN,
                     "reason": f"step {result.failed_step} failed before it"}
        elif planned.action == NOT_RUN:
            entry = {"name": planned.name, "index": planned.index, "status": NOT_RUN,
                     "reason": "not needed by the rerun (neither rerun nor upstream of a rerun step)"}
        elif planned.action == "reuse":
            entry = {**planned.parent_entry, "status": REUSED,
                     "location": Path(os.path.relpath(planned.parent_folder, run_dir)).as_posix(),
                     "reason": "parameters unchanged: products reused from the parent run folder"}
            result.steps_reused += 1
            log.info("%s: step %s reused from %s", run.label, planned.name, entry["location"])
        else:
            entry = _run_or_skip(planned, run, previous_entries.get(planned.name), force=force,
                                 log_output=log_output, kernel_name=kernel_name)
            if entry["status"] == SKIPPED:
                result.steps_skipped += 1
            else:
                result.steps_run += entry.get("executed", True)
                entry.pop("executed", None)
            if entry["status"] == FAILED:
                result.status, result.failed_step = FAILED, planned.name
                result.error = _error_text(planned, entry["error"], run)
                if entry.get("executed_notebook"):
                    result.failed_notebook = run_dir / entry["executed_notebook"]
        manifest["steps"].append(entry)
        manifest.update(steps_run=result.steps_run, steps_skipped=result.steps_skipped,
                        steps_reused=result.steps_reused)
        provenance.write_json(manifest_path, manifest, what="manifest")
    manifest.update(status=result.status, ended_utc=provenance.utc_now(),
                    duration_s=round(time.monotonic() - started, 3))
    provenance.write_json(manifest_path, manifest, what="manifest")
    log.info("%s: %s (%d run, %d skipped, %d reused) in %s", run.label, result.status, result.steps_run,
             result.steps_skipped, result.steps_reused, _display(run_dir))


def _run_or_skip(planned: PlannedStep, run: PlannedRun, previous: dict | None, *, force: bool, log_output: bool,
                 kernel_name: str) -> dict:
    run_dir = run.run_dir
    upstream, missing = _upstream_info(planned, run_dir)
    portable = _portable_parameters(planned, run_dir)
    digest = notebook_digest(planned.notebook)
    if missing:
        error = {"type": "MissingUpstreamProduct", "message": missing, "cell": None}
        log.error("%s: %s", run.label, _error_text(planned, error, run))
        return {"name": planned.name, "index": planned.index, "status": FAILED, "executed": False,
                "notebook": _display(planned.notebook, project_root=run.project_root), "notebook_digest": digest,
                "parameters": portable, "upstream": upstream, "error": error}
    key_parameters = {k: v for k, v in portable.items() if k not in _path_parameter_names(planned.step)}
    key = _step_key(digest, key_parameters, upstream)
    reason = _why_execute(previous, key=key, digest=digest, parameters=portable, upstream=upstream, planned=planned,
                          run_dir=run_dir, force=force)
    if reason is None:
        log.info("%s: step %d/%d %s is up to date (notebook, parameters, upstream products and products "
                 "unchanged): skipped; --force re-executes", run.label, planned.index, len(run.steps), planned.name)
        return {**previous, "status": SKIPPED, "reason": "up to date", "checked_utc": provenance.utc_now()}
    return _execute_step(planned, run, key=key, digest=digest, portable=portable, upstream=upstream, reason=reason,
                         log_output=log_output, kernel_name=kernel_name)


def execute_runs(runs: Sequence[PlannedRun], *, jobs: int = 1, force: bool = False, log_output: bool = False,
                 kernel_name: str = KERNEL_NAME) -> list[RunResult]:
    """Execute independent runs, ``jobs`` at a time; each run's steps are sequential.

    Parameters
    ----------
    runs : sequence of PlannedRun
        From :func:`plan_runs` (or :func:`plan_rerun`).
    jobs : int
        How many runs execute in parallel (threads, each driving its own kernels).
    force : bool
        Execute every step even if up to date.
    log_output : bool
        Copy the notebooks' output to the log.
    kernel_name : str
        The Jupyter kernel.

    Returns
    -------
    list of RunResult
        In the order of ``runs``; a failed run does not stop the others.
    """
    if jobs < 1:
        raise ValueError(f"jobs = {jobs}: at least 1")
    if not runs:
        return []
    versions = provenance.package_versions()
    git = provenance.git_commit(path=runs[0].project_root)

    def one(run: PlannedRun) -> RunResult:
        try:
            return execute_run(run, force=force, log_output=log_output, kernel_name=kernel_name, versions=versions,
                               git=git)
        except Exception as error:  # a bug or a full disk in one run must not lose the others' results
            log.exception("%s: unexpected error", run.label)
            return RunResult(run=run, status=FAILED, error=f"{type(error).__name__}: {error}")

    with _gallery_uploads_after_steps():  # held across the threads: no run may restore it under another
        if jobs == 1 or len(runs) == 1:
            return [one(run) for run in runs]
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="run") as pool:
            return list(pool.map(one, runs))


# -- previews, summaries, listings -----------------------------------------------------------------------------

def preview_run(run: PlannedRun, *, force: bool = False) -> list[tuple[PlannedStep, str]]:
    """Say what executing a run would do to each step, without executing anything.

    Parameters
    ----------
    run : PlannedRun
        The run.
    force : bool
        As for :func:`execute_run`.

    Returns
    -------
    list of (PlannedStep, str)
        Each step with ``'run: <why>'``, ``'skip: up to date'``, ``'reuse: ...'``
        or ``'not run: ...'``.
    """
    previous = load_manifest(run.run_dir) or {}
    entries = ({entry["name"]: entry for entry in previous.get("steps", [])}
               if previous.get("workflow") == run.workflow.name else {})
    outcome, rerunning = [], set()
    for planned in run.steps:
        if planned.action == "reuse":
            outcome.append((planned, f"reuse: products of {os.path.relpath(planned.parent_folder, run.run_dir)}"))
            continue
        if planned.action == NOT_RUN:
            outcome.append((planned, "not run: not needed by the rerun"))
            continue
        remade = [item.step for item in planned.step.upstream if item.step in rerunning]
        upstream, missing = _upstream_info(planned, run.run_dir)
        if remade or missing:
            reason = f"upstream step {remade[0]} runs first" if remade else missing
        else:
            portable = _portable_parameters(planned, run.run_dir)
            digest = notebook_digest(planned.notebook)
            key = _step_key(digest, {k: v for k, v in portable.items()
                                     if k not in _path_parameter_names(planned.step)}, upstream)
            reason = _why_execute(entries.get(planned.name), key=key, digest=digest, parameters=portable,
                                  upstream=upstream, planned=planned, run_dir=run.run_dir, force=force)
        if reason is None:
            outcome.append((planned, "skip: up to date"))
        else:
            rerunning.add(planned.name)
            outcome.append((planned, f"run: {reason}"))
    return outcome


def format_plan(runs: Sequence[PlannedRun], *, force: bool = False) -> str:
    """Render the plan of ``--dry-run``: runs, folders, steps, injected parameters, what would run.

    Parameters
    ----------
    runs : sequence of PlannedRun
        The planned runs.
    force : bool
        As for :func:`execute_run`.

    Returns
    -------
    str
        The plan, one block per run.
    """
    lines = [f"{len(runs)} run(s) planned"]
    for run in runs:
        lines += ["", f"{run.label}  (workflow {run.workflow.name})", f"  folder: {_display(run.run_dir)}"]
        for planned, what in preview_run(run, force=force):
            lines.append(f"  {planned.index:02d} {planned.name:<16} "
                         f"{_display(planned.notebook, project_root=run.project_root):<36} {what}")
            names = [name for name in planned.parameters if name not in _path_parameter_names(planned.step)]
            lines.append(f"       parameters: {', '.join(names) or 'none'}; output_dir")
            for item in planned.step.upstream:
                lines.append(f"       {item.parameter} = {_display(planned.upstream[item.parameter])}  "
                             f"(from {item.step})")
    return "\n".join(lines)


def format_summary(results: Sequence[RunResult]) -> str:
    """Render the end-of-run table: run folder, status, steps run/skipped, duration, and the failures.

    Parameters
    ----------
    results : sequence of RunResult
        From :func:`execute_runs`.

    Returns
    -------
    str
        The table, then one line per failure (step, notebook, exception).
    """
    with_reuse = any(result.steps_reused for result in results)
    header = ("run folder", "status", "run", "skipped") + (("reused",) if with_reuse else ()) + ("duration",)
    rows = [(_display(result.run.run_dir), result.status, str(result.steps_run), str(result.steps_skipped))
            + ((str(result.steps_reused),) if with_reuse else ()) + (f"{result.duration_s:.1f} s",)
            for result in results]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    failed = [result for result in results if result.status != OK]
    if failed:
        lines.append("")
        for result in failed:
            lines.append(f"FAILED {result.run.label}: {result.error}")
            if result.failed_notebook is not None:
                lines.append(f"       partial notebook: {_display(result.failed_notebook)}")
    ok = len(results) - len(failed)
    lines.append(f"\n{ok}/{len(results)} run(s) ok" + (f", {len(failed)} failed" if failed else ""))
    return "\n".join(lines)


def describe_workflows(*, project_root: str | Path | None = None) -> str:
    """Render the registered workflows, their steps, notebooks (marked if missing) and upstream products.

    Parameters
    ----------
    project_root : str or Path, optional
        The project; :data:`PROJECT_ROOT` by default.

    Returns
    -------
    str
        One block per workflow.
    """
    project_root = Path(project_root) if project_root is not None else PROJECT_ROOT
    lines = ["Workflows:"]
    for name, workflow in sorted(registered_workflows().items()):
        lines.append(f"  {name}: {workflow.description}")
        for index, step in enumerate(workflow.steps, 1):
            notebook = workflow.notebook_path(step, project_root=project_root)
            mark = "" if notebook.is_file() else "  (missing)"
            consumes = "".join(f"  {item.parameter} <- {item.step}:{item.product}" for item in step.upstream)
            lines.append(f"    {index:02d} {step.name:<16} {_display(notebook, project_root=project_root)}"
                         f"{mark}{consumes}")
    return "\n".join(lines)


def describe_parameter_files(*, project_root: str | Path | None = None) -> str:
    """Render the parameter files of ``parameters/``: workflow, number of runs, or what is wrong.

    Parameters
    ----------
    project_root : str or Path, optional
        The project; :data:`PROJECT_ROOT` by default.

    Returns
    -------
    str
        One line per file.
    """
    folder = (Path(project_root) if project_root is not None else PROJECT_ROOT) / "parameters"
    files = sorted(folder.glob("*.yaml"))
    lines = [f"Parameter files ({_display(folder)}):"]
    if not files:
        lines.append("  none")
    for path in files:
        try:
            content = read_run_file(path)
            count = len(expand_matrix(content))
            lines.append(f"  {path.stem:<20} workflow {content.workflow}, {count} run(s)"
                         + (f": {content.description}" if content.description else ""))
        except PlanError as error:
            lines.append(f"  {path.stem:<20} INVALID: {error}")
    return "\n".join(lines)
