"""A run's parameters validated through the notebooks' models (:mod:`integral_workflows.parameters`).

Each step's notebook has a pydantic model; a run's values are validated with
``validate_run`` over the workflow's steps, so a name no step declares is refused
(with the closest valid name) and each step receives only what its notebook declares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from integral_workflows import parameters as parameter_models
from integral_workflows import targets

from .workflows import Workflow

__all__ = ["RunParameters", "validate_run_values", "declared_names", "parameter_digest"]


@dataclasses.dataclass(frozen=True)
class RunParameters:
    """A run's validated parameters.

    Parameters
    ----------
    given : dict
        The values as given (parameter file, matrix choices, ``-p`` overrides), JSON-able.
    per_model : dict
        Parameter model name → its validated values (``to_papermill``), every field.
    values : dict
        The run's values: the union of ``per_model`` (the first step declaring a name gives
        its value), without the parameters the pipeline sets (``output_dir``, upstream paths).
    """

    given: dict
    per_model: dict
    values: dict

    @property
    def digest(self) -> str:
        """The sha256 of :attr:`values` in canonical JSON: equal runs have equal digests."""
        return parameter_digest(self.values)

    def __getitem__(self, name: str) -> Any:
        """Return the run's value of ``name``."""
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        """Return the run's value of ``name``, or ``default``."""
        return self.values.get(name, default)


def parameter_digest(values: Mapping[str, Any]) -> str:
    """Return the sha256 of parameter values in canonical JSON (sorted keys, no spaces).

    Parameters
    ----------
    values : Mapping
        JSON-able values.

    Returns
    -------
    str
        64 hex digits.
    """
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def declared_names(workflow: Workflow) -> list[str]:
    """Return every parameter a user may give a workflow's runs: its steps' models' fields, minus the pipeline's.

    Parameters
    ----------
    workflow : Workflow
        The workflow.

    Returns
    -------
    list of str
        In step order, each once.

    Raises
    ------
    integral_workflows.parameters.ParameterError
        If a step names no parameter model.
    """
    reserved = workflow.pipeline_parameters
    names = (name for step in workflow.steps for name in parameter_models.declared_names(step.model_name))
    return [name for name in dict.fromkeys(names) if name not in reserved]


def _json_safe(values: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(values), default=str))


def validate_run_values(workflow: Workflow, values: Mapping[str, Any]) -> RunParameters:
    """Validate a run's values against the models of the workflow's steps.

    Parameters
    ----------
    workflow : Workflow
        The workflow.
    values : Mapping
        The run's values as given.

    Returns
    -------
    RunParameters
        The validated parameters.

    Raises
    ------
    integral_workflows.parameters.ParameterError
        Every problem at once: a parameter the pipeline sets (``output_dir``, an upstream
        product's path), a name no step declares (with the closest valid name), tokens,
        wrong types, values out of range, inconsistent values, a ``src_name`` whose known position is
        farther than ``radius`` from non-zero RA/DEC.
    """
    reserved = sorted(name for name in values if name in workflow.pipeline_parameters)
    models = list(dict.fromkeys(step.model_name for step in workflow.steps))
    problems, names = [], []
    if reserved:
        problems += [
            f"{name} is set by the pipeline (the run folder, or the path of an earlier step's product): "
            f"it cannot be given (use --output-root for the run folders)"
            for name in reserved
        ]
        names += reserved
    given = {k: v for k, v in values.items() if k not in reserved}
    try:
        validated = parameter_models.validate_run(models, given)
    except parameter_models.ParameterError as error:
        problems += error.problems
        names += list(error.names)
        validated = None
    per_model = {name: parameter_models.to_papermill(model) for name, model in (validated or {}).items()}
    merged: dict = {}
    for model_values in per_model.values():
        for name, value in model_values.items():
            if name not in workflow.pipeline_parameters:
                merged.setdefault(name, value)
    # The notebooks' setup makes the same check; here it stops the run before anything executes (on the values
    # as given when they did not validate, so that every problem is reported at once).
    checked = merged if validated is not None else given
    if "src_name" in checked and "RA" in checked:
        for found, problem in targets.position_problems(checked):
            problems.append(problem)
            names += list(found)
    if problems:
        raise parameter_models.ParameterError(problems, names=names)
    return RunParameters(given=_json_safe(values), per_model=per_model, values=merged)
