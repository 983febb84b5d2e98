"""Hooks: what a step declares to be done once its notebook has finished (e.g. the gallery upload).

A hook is called, in the process executing the run, after the step's notebook ended
without error and its step record was read; what it returns (JSON-able) is recorded
in the manifest under the step's ``hooks``, and an exception it raises fails the step.
Design notes: ``docs/pipeline.md``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["StepContext", "Hook", "gallery_upload", "GALLERY_UPLOAD"]


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a hook knows of the step that has just finished.

    Parameters
    ----------
    workflow : str
        The workflow name.
    step : str
        The step name (= the notebook's name and its step record's).
    run_label : str
        How messages name the run.
    run_dir : Path
        The run folder (absolute).
    parameters : Mapping
        The step's parameters as the run set them (before any hook's ``notebook_values``),
        with absolute paths.
    record : Mapping
        The step record the notebook wrote (``<step>.step.json``): products, descriptors, jobs, extra.
    executed_notebook : Path or None
        The complete executed notebook.
    """

    workflow: str
    step: str
    run_label: str
    run_dir: Path
    parameters: Mapping[str, Any]
    record: Mapping[str, Any]
    executed_notebook: Path | None


@dataclasses.dataclass(frozen=True)
class Hook:
    """An action declared by a step, run after its notebook has finished.

    Parameters
    ----------
    name : str
        Names the hook in the manifest (``hooks: {name: result}``) and in messages.
    function : callable
        ``function(context: StepContext) -> JSON-able or None``; None means "nothing to do"
        and is not recorded. Must be importable by name (Dask workers unpickle it).
    notebook_values : Mapping
        Values injected into the notebook in place of the run's, for parameters the hook
        takes over (the gallery upload hook injects ``upload_to_gallery = False`` so the
        notebook leaves the upload to it); only for parameters the notebook declares.
    description : str
        One line for ``run_all.py --list``.
    """

    name: str
    function: Callable[[StepContext], Any]
    notebook_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""

    def __call__(self, context: StepContext) -> Any:
        """Run the hook on a finished step; return what the manifest records."""
        return self.function(context)


def gallery_upload(context: StepContext) -> list[dict] | None:
    """Upload a finished step's products to the MMODA gallery, when the run asks for it.

    Parameters
    ----------
    context : StepContext
        The finished step; nothing happens unless its parameters hold ``upload_to_gallery: true``.

    Returns
    -------
    list of dict or None
        Per uploaded product: ``product_id``, ``link``, ``updated``; None when not asked to upload.

    Raises
    ------
    integral_workflows.gallery.GalleryError
        If the gallery refuses or cannot be reached (the step fails, naming why).
    """
    if not context.parameters.get("upload_to_gallery"):
        return None
    from integral_workflows import gallery

    notebooks = {context.step: context.executed_notebook} if context.executed_notebook else None
    results = gallery.upload_run_products(context.run_dir, steps=[context.step], notebooks=notebooks)
    if results:
        log.info("%s: step %s: %d product(s) uploaded to the gallery", context.run_label, context.step, len(results))
    return [{"product_id": result.product_id, "link": result.link, "updated": result.updated} for result in results]


#: The gallery upload of a step's products, with the complete executed notebook attached.
GALLERY_UPLOAD = Hook(
    "gallery_upload",
    gallery_upload,
    notebook_values={"upload_to_gallery": False},
    description="uploads the step's products to the MMODA gallery when upload_to_gallery is true",
)
