"""Incremental runs: a step is skipped when its notebook, parameters, upstream products and products are unchanged.

The step key is the sha256 of the notebook's code cells, the parameters it receives (paths
left out) and the checksums of its upstream products. Library changes are not part of it:
``--force`` re-executes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from integral_workflows import provenance

from .manifest import COMPLETE_STATUSES, FAILED, StepEntry, UpstreamProduct
from .plan import PlannedStep

__all__ = ["step_key", "key_parameters", "portable_parameters", "upstream_products", "products_problem", "why_execute"]


def step_key(digest: str, parameters: Mapping[str, Any], upstream: Mapping[str, UpstreamProduct]) -> str:
    """Return the key of a step's inputs.

    Parameters
    ----------
    digest : str
        The notebook's code digest.
    parameters : Mapping
        The parameters it receives, without paths (:func:`key_parameters`).
    upstream : Mapping
        Its upstream products with their checksums.

    Returns
    -------
    str
        64 hex digits.
    """
    content = {
        "notebook": digest,
        "parameters": dict(parameters),
        "upstream": {name: info.sha256 for name, info in upstream.items()},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def portable_parameters(planned: PlannedStep, run_dir: Path) -> dict:
    """Return the step's parameters as the manifest records them: ``output_dir`` ``.``, upstream paths relative."""
    portable = dict(planned.parameters)
    portable["output_dir"] = "."
    for name, path in planned.upstream.items():
        portable[name] = Path(os.path.relpath(path, run_dir)).as_posix()
    return portable


def key_parameters(planned: PlannedStep, parameters: Mapping[str, Any]) -> dict:
    """Return the parameters that enter the step key: all but the run folder and the upstream paths."""
    return {name: value for name, value in parameters.items() if name not in planned.step.pipeline_parameters}


def upstream_products(planned: PlannedStep, run_dir: Path) -> tuple[dict[str, UpstreamProduct], str | None]:
    """Checksum the step's upstream products: ``(parameter → product, None)`` or ``(partial, what is missing)``."""
    info = {}
    for item in planned.step.upstream:
        path = planned.upstream[item.parameter]
        if not path.is_file():
            return info, (
                f"upstream product {item.product} of step {item.step} is missing ({os.path.relpath(path, run_dir)})"
            )
        info[item.parameter] = UpstreamProduct(
            step=item.step, path=Path(os.path.relpath(path, run_dir)).as_posix(), sha256=provenance.file_checksum(path)
        )
    return info, None


def products_problem(entry: StepEntry, folder: Path) -> str | None:
    """Return what is wrong with a recorded step's products in ``folder``, or None if all are intact."""
    for product in entry.products:
        path = folder / product["path"]
        if not path.is_file():
            return f"product {product['path']} missing"
        if provenance.file_checksum(path) != product["sha256"]:
            return f"product {product['path']} modified since it was recorded"
    return None


def why_execute(
    previous: StepEntry | None,
    *,
    key: str,
    digest: str,
    parameters: Mapping[str, Any],
    upstream: Mapping[str, UpstreamProduct],
    planned: PlannedStep,
    run_dir: Path,
    force: bool,
) -> str | None:
    """Return why a step must run, or None if it is up to date.

    Parameters
    ----------
    previous : StepEntry or None
        The step's entry in the folder's manifest.
    key : str
        Its step key now.
    digest : str
        Its notebook's digest now.
    parameters : Mapping
        Its parameters now, as the manifest records them.
    upstream : Mapping
        Its upstream products now.
    planned : PlannedStep
        The step.
    run_dir : Path
        The run folder.
    force : bool
        Execute even if up to date.

    Returns
    -------
    str or None
        ``'--force'``, ``'never executed in this folder'``, ``'its last attempt failed'``,
        ``'parameters changed: radius'``, ``'product mosaic.fits missing'``... or None.
    """
    if force:
        return "--force"
    if previous is None:
        return "never executed in this folder"
    if previous.status == FAILED:
        return "its last attempt failed"
    if previous.status not in COMPLETE_STATUSES:
        return f"its last status is {previous.status}"
    if previous.step_key != key:
        if previous.notebook_digest != digest:
            return "the notebook changed"
        old = previous.parameters or {}
        changed = sorted(
            name
            for name in set(old) | set(parameters)
            if name not in planned.upstream and old.get(name) != parameters.get(name)
        )
        if changed:
            return f"parameters changed: {', '.join(changed)}"
        remade = sorted(
            name
            for name, info in upstream.items()
            if getattr((previous.upstream or {}).get(name), "sha256", None) != info.sha256
        )
        if remade:
            return f"upstream products changed: {', '.join(remade)}"
        return "its step key changed"
    if not (run_dir / planned.executed_notebook_name).is_file():
        return f"executed notebook {planned.executed_notebook_name} missing"
    record = provenance.step_record_path(run_dir, planned.name)
    if not record.is_file():
        return f"step record {record.name} missing"
    return products_problem(previous, run_dir)
