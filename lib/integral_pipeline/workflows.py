"""Workflows: chains of notebook steps, each with the upstream products it consumes and its hooks; the registry.

A workflow is an ordered list of :class:`Step` registered with :func:`register_workflow`.
The suite's own workflows are registered by :mod:`integral_pipeline.builtin`; others by a
module given to ``run_all.py --workflow-module``. Design notes: ``docs/pipeline.md``.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import PlanError
from .hooks import Hook

__all__ = [
    "OUTPUT_DIR_PARAMETER",
    "Upstream",
    "Step",
    "Workflow",
    "register_workflow",
    "unregister_workflow",
    "registered_workflows",
    "get_workflow",
]

#: The notebook parameter receiving the run folder; every notebook declares it.
OUTPUT_DIR_PARAMETER = "output_dir"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


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
        The step name: names the executed notebook (``NN_<name>.ipynb``) and the step
        record the notebook writes (``<name>.step.json``).
    notebook : str
        The notebook, relative to the workflow's notebooks folder.
    upstream : tuple of Upstream
        The products of earlier steps it consumes.
    after : tuple of Hook
        What is done once the notebook has finished (e.g. :data:`integral_pipeline.hooks.GALLERY_UPLOAD`).
    model : str, optional
        The parameter model of the notebook in :mod:`integral_workflows.parameters`; the
        notebook's file name without ``.ipynb`` by default.
    """

    name: str
    notebook: str
    upstream: tuple[Upstream, ...] = ()
    after: tuple[Hook, ...] = ()
    model: str | None = None

    @property
    def model_name(self) -> str:
        """The parameter model validating this step's parameters."""
        return self.model or Path(self.notebook).stem

    @property
    def pipeline_parameters(self) -> frozenset[str]:
        """The notebook parameters the pipeline sets: ``output_dir`` and the upstream products' paths."""
        return frozenset({OUTPUT_DIR_PARAMETER, *(item.parameter for item in self.upstream)})


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
        Where the steps' notebooks are; the project's ``notebooks/`` if None.
    folder_name : callable, optional
        ``values -> str``: the run folder below ``<output root>/<workflow>/`` (may hold ``/``),
        from the run's validated parameter values; :func:`integral_pipeline.layout.source_folder_name`
        if None. Must be importable by name (Dask workers unpickle it).
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

    def notebook_path(self, step: Step, *, notebooks_dir: str | Path) -> Path:
        """Return the absolute path of a step's notebook.

        Parameters
        ----------
        step : Step
            One of the workflow's steps.
        notebooks_dir : str or Path
            The project's notebooks folder, used unless the workflow names its own.

        Returns
        -------
        Path
            The notebook.
        """
        folder = self.notebooks_dir if self.notebooks_dir is not None else Path(notebooks_dir)
        return (Path(folder) / step.notebook).resolve()

    @property
    def upstream_parameters(self) -> frozenset[str]:
        """Every notebook parameter of the workflow that receives an upstream product."""
        return frozenset(item.parameter for step in self.steps for item in step.upstream)

    @property
    def pipeline_parameters(self) -> frozenset[str]:
        """The parameters the pipeline sets in every run (never given by users)."""
        return frozenset({OUTPUT_DIR_PARAMETER, *self.upstream_parameters})


_REGISTRY: dict[str, Workflow] = {}
_REGISTRY_LOCK = threading.Lock()


def _check_steps(name: str, steps: tuple[Step, ...]) -> None:
    seen: list[str] = []
    for step in steps:
        if not isinstance(step, Step):
            raise ValueError(f"workflow {name}: steps must be Step objects, got {step!r}")
        if not _NAME.match(step.name) or step.name in seen:
            raise ValueError(f"workflow {name}: step name {step.name!r} is invalid or repeated")
        for upstream in step.upstream:
            if upstream.step not in seen:
                raise ValueError(
                    f"workflow {name}, step {step.name}: upstream step {upstream.step!r} is not an "
                    f"earlier step ({seen})"
                )
            if upstream.parameter == OUTPUT_DIR_PARAMETER:
                raise ValueError(
                    f"workflow {name}, step {step.name}: the upstream parameter cannot be "
                    f"{OUTPUT_DIR_PARAMETER} (the run folder)"
                )
            product = Path(upstream.product)
            if product.is_absolute() or ".." in product.parts:
                raise ValueError(
                    f"workflow {name}, step {step.name}: upstream product {upstream.product!r} must "
                    f"be a path inside the run folder"
                )
        for hook in step.after:
            if not isinstance(hook, Hook):
                raise ValueError(f"workflow {name}, step {step.name}: 'after' holds Hook objects, got {hook!r}")
        seen.append(step.name)


def register_workflow(
    name: str,
    steps: Iterable[Step],
    *,
    description: str = "",
    notebooks_dir: str | Path | None = None,
    replace: bool = False,
    folder_name: Callable[[Mapping[str, Any]], str] | None = None,
) -> Workflow:
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
        Where the notebooks are; the project's ``notebooks/`` by default.
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
        For a bad or duplicate name, an empty chain, duplicate step names, an upstream that
        is not an earlier step or is ``output_dir``, or a product path leaving the run folder.
    """
    steps = tuple(steps)
    if not _NAME.match(name):
        raise ValueError(f"workflow name {name!r}: letters, digits, '_' and '-' only")
    if not steps:
        raise ValueError(f"workflow {name} has no step")
    _check_steps(name, steps)
    workflow = Workflow(
        name=name,
        steps=steps,
        description=description,
        notebooks_dir=Path(notebooks_dir).resolve() if notebooks_dir is not None else None,
        folder_name=folder_name,
    )
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
