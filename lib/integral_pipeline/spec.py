"""Parameter files (``parameters/<name>.yaml``), their matrix of runs, and ``-p NAME VALUE`` overrides.

A parameter file names a workflow, the runs' parameters and an optional matrix (axes →
lists; runs = cartesian product). It is read with the parameters' own YAML rules
(:func:`integral_workflows.parameters.read_parameter_file`). Design notes: ``docs/pipeline.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from integral_workflows import parameters as parameter_models

from .errors import PlanError
from .project import display_path

__all__ = ["ParameterFile", "read_run_file", "find_parameter_file", "expand_matrix", "parse_override", "choice_text"]


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


def read_run_file(path: str | Path, *, shown: str | None = None) -> ParameterFile:
    """Read and check the structure of a parameter file.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    shown : str, optional
        How messages name the file; the path relative to the working folder by default.

    Returns
    -------
    ParameterFile
        Its content (parameter values are validated later, per run).

    Raises
    ------
    PlanError
        If the file is missing, not UTF-8, not valid YAML, has an unknown top-level key, no
        ``workflow``, or a malformed ``parameters``/``matrix`` (every problem at once).
    """
    path = Path(path)
    shown = shown or display_path(path)
    if not path.is_file():
        raise PlanError(f"{shown}: no such parameter file", file=shown)
    try:
        content = parameter_models.read_parameter_file(path)
    except parameter_models.ParameterError as error:
        message = str(error).replace(str(path), shown)
        raise PlanError(message, file=shown, parameter=error.name) from None
    return ParameterFile(
        path=path.resolve(),
        workflow=content["workflow"],
        description=str(content.get("description") or ""),
        parameters=dict(content.get("parameters") or {}),
        matrix=dict(content.get("matrix") or {}),
    )


def find_parameter_file(name: str | Path, *, parameters_dir: str | Path) -> Path:
    """Find a parameter file given as a path or as a name in the parameters folder.

    Parameters
    ----------
    name : str or Path
        ``crab`` (→ ``<parameters_dir>/crab.yaml``), ``crab.yaml`` or a path.
    parameters_dir : str or Path
        The project's parameter files.

    Returns
    -------
    Path
        The file.

    Raises
    ------
    PlanError
        If there is no such file (the message lists the available ones).
    """
    folder = Path(parameters_dir)
    candidates = [Path(name), folder / f"{name}.yaml", folder / str(name)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    available = sorted(path.stem for path in folder.glob("*.yaml"))
    raise PlanError(
        f"no parameter file {str(name)!r} (looked for {', '.join(display_path(c) for c in candidates)});"
        f" available in {display_path(folder)}: {', '.join(available) or 'none'}",
        file=str(name),
    )


def choice_text(choice: Mapping[str, Any]) -> str:
    """Show a run's matrix choices: ``instrument=jemx, src_name='1A 0535+262'``."""
    return ", ".join(
        f"{name}={value!r}" if isinstance(value, str) and " " in value else f"{name}={value}"
        for name, value in choice.items()
    )


def _closest(name: str, names: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def expand_matrix(
    parameter_file: ParameterFile, *, declared: Collection[str], shown: str | None = None
) -> list[tuple[dict, dict]]:
    """Expand a parameter file's matrix into the raw values of each run.

    Parameters
    ----------
    parameter_file : ParameterFile
        The file's content.
    declared : collection of str
        The parameters the workflow's steps declare (an axis of plain values must be one).
    shown : str, optional
        How messages name the file.

    Returns
    -------
    list of (dict, dict)
        Per run, in the cartesian-product order of the axes as written: the raw parameter
        values (``parameters`` updated with the run's matrix choices) and the choices alone.

    Raises
    ------
    PlanError
        If an axis of plain values (or lists) is not a parameter name, or two axes set the
        same parameter.
    """
    shown = shown or display_path(parameter_file.path)
    axes = []
    for axis, entries in parameter_file.matrix.items():
        choices = []
        for entry in entries:
            if isinstance(entry, dict):
                choices.append(dict(entry))
                continue
            if axis not in declared:
                raise PlanError(
                    f"{shown}: matrix axis {axis!r} has plain values, so it must be a parameter name"
                    f"{_closest(str(axis), declared)} (or give mappings such as "
                    f"{{instrument: jemx, E1_keV: 3}})",
                    file=shown,
                    parameter=str(axis),
                )
            choices.append({axis: entry})
        axes.append((axis, choices))
    setters: dict[str, str] = {}
    for axis, choices in axes:
        for name in {name for choice in choices for name in choice}:
            if name in setters and setters[name] != axis:
                raise PlanError(
                    f"{shown}: parameter {name!r} is set by two matrix axes ({setters[name]!r} and "
                    f"{axis!r}); one parameter, one axis",
                    file=shown,
                    parameter=str(name),
                )
            setters[name] = axis
    runs = []
    for combination in itertools.product(*(choices for _, choices in axes)):
        chosen: dict = {}
        for choice in combination:
            chosen.update(choice)
        runs.append(({**parameter_file.parameters, **chosen}, chosen))
    return runs


def parse_override(name: str, text: str) -> tuple[str, Any]:
    """Parse a ``-p NAME VALUE`` command-line override with the parameter files' YAML rules.

    Parameters
    ----------
    name : str
        The parameter name.
    text : str
        Its value as typed (``28``, ``2004-01-01T00:00:00``, ``0044``, ``"[0044, 0045]"``, ``null``).

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
        return parameter_models.parse_override(name, text)
    except parameter_models.ParameterError as error:
        raise PlanError(str(error), parameter=name) from None
