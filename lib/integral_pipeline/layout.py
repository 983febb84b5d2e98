"""Run folders: their names, and the names of what the pipeline writes in them.

``<output root>/<workflow>/<folder name>/`` holds the executed notebooks ``NN_<step>.ipynb``
next to their products, the step records ``<step>.step.json``, ``parameters.yaml`` and
``manifest.json``. Design notes: ``docs/pipeline.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .workflows import Workflow

__all__ = [
    "MANIFEST_NAME",
    "PARAMETERS_FILE_NAME",
    "LOCK_FILE_NAME",
    "executed_notebook_name",
    "sanitise",
    "value_text",
    "period_folder_name",
    "source_folder_name",
    "revolution_folder_name",
    "run_folder",
    "suffixed_folder",
]

MANIFEST_NAME = "manifest.json"
PARAMETERS_FILE_NAME = "parameters.yaml"
#: Held (flock) by whoever writes the folder: two processes never write one run folder at once.
LOCK_FILE_NAME = ".run_all.lock"

_UNSAFE_PATH_CHARACTERS = re.compile(r"[^A-Za-z0-9.+-]+")


def executed_notebook_name(index: int, step: str) -> str:
    """Return the executed notebook's file name in a run folder: ``NN_<step>.ipynb`` (NN = 1-based position)."""
    return f"{index:02d}_{step}.ipynb"


def sanitise(text: Any) -> str:
    """Make text safe as one path component: anything but letters, digits and ``.+-`` becomes ``_``."""
    cleaned = _UNSAFE_PATH_CHARACTERS.sub("_", str(text)).strip("_.-")
    return cleaned or "unnamed"


def _number_text(value: float) -> str:
    return f"{float(value):g}"


def value_text(value: Any) -> str:
    """Write a parameter value for a folder-name suffix: numbers shortest, lists joined with ``+``."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        return _number_text(value)
    if isinstance(value, (list, tuple)):
        return "+".join(value_text(item) for item in value) or "none"
    return sanitise(value)


def _time_text(isot: str) -> str:
    date, _, clock = str(isot).partition("T")
    if not clock or re.fullmatch(r"00:00:00(\.0*)?", clock):
        return date
    return f"{date}T{clock.replace(':', '')}"


def _instrument_text(values: Mapping[str, Any]) -> str:
    instrument = values.get("instrument", "isgri")
    if instrument == "jemx":
        # The two JEM-X units are different detectors: their products must not share a folder.
        return f"jemx{values.get('jemx_unit', 1)}"
    return str(instrument)


def period_folder_name(values: Mapping[str, Any]) -> str:
    """Return ``<instrument>_<E1>-<E2>keV_<T1>_<T2>`` for a run's validated values.

    Parameters
    ----------
    values : Mapping
        The run's parameter values (instrument defaults resolved): ``instrument``,
        ``jemx_unit``, ``E1_keV``, ``E2_keV``, ``T1``, ``T2``.

    Returns
    -------
    str
        E.g. ``isgri_28-40keV_2004-01-01_2006-01-01`` or ``jemx1_3-20keV_2004-01-01T120000_2004-01-02``;
        parts whose parameters the run does not have are left out.
    """
    parts = [_instrument_text(values)]
    if values.get("E1_keV") is not None and values.get("E2_keV") is not None:
        parts.append(f"{_number_text(values['E1_keV'])}-{_number_text(values['E2_keV'])}keV")
    parts += [_time_text(values[name]) for name in ("T1", "T2") if values.get(name)]
    return sanitise("_".join(parts))


def source_folder_name(values: Mapping[str, Any]) -> str:
    """Return ``<source>/<instrument>_<E1>-<E2>keV_<T1>_<T2>``: the folder of a source's run.

    Parameters
    ----------
    values : Mapping
        The run's parameter values (``src_name`` and those of :func:`period_folder_name`).

    Returns
    -------
    str
        E.g. ``Crab/isgri_28-40keV_2004-01-01_2006-01-01``, ``1A_0535+262/jemx1_3-20keV_...``.
    """
    return f"{sanitise(values.get('src_name', 'unnamed'))}/{period_folder_name(values)}"


def revolution_folder_name(values: Mapping[str, Any]) -> str:
    """Name a ``revolution`` run's folder: ``<revolution>/<instruments and bands>_<data_version>``.

    Parameters
    ----------
    values : Mapping
        The run's validated values (``rev_num``, ``use_*``, the bands, ``data_version``).

    Returns
    -------
    str
        E.g. ``0300/isgri_28-40keV_jemx1+jemx2_3-20keV_CONS``; ``current`` or ``current-1`` when
        ``rev_num`` counts back from the current revolution (resolved only when the notebook runs).
    """
    revolution = values["rev_num"]
    if not isinstance(revolution, str):
        revolution = "current" if revolution == 0 else f"current{revolution}"
    parts = []
    if values["use_isgri"]:
        parts.append(f"isgri_{_number_text(values['E1_keV'])}-{_number_text(values['E2_keV'])}keV")
    units = [f"jemx{unit}" for unit in (1, 2) if values[f"use_jemx{unit}"]]
    if units:
        parts.append(f"{'+'.join(units)}_{_number_text(values['J_E1_keV'])}-{_number_text(values['J_E2_keV'])}keV")
    return f"{revolution}/{sanitise('_'.join([*parts, values['data_version']]))}"


def run_folder(workflow: Workflow, values: Mapping[str, Any], *, output_root: str | Path) -> Path:
    """Return a run's folder: ``<output_root>/<workflow>/<folder name>``.

    Parameters
    ----------
    workflow : Workflow
        The workflow; its ``folder_name`` names the folder, else :func:`source_folder_name`.
    values : Mapping
        The run's validated parameter values.
    output_root : str or Path
        The root of the run folders.

    Returns
    -------
    Path
        The absolute folder (not created).
    """
    name = (workflow.folder_name or source_folder_name)(values)
    return (Path(output_root) / workflow.name / name).resolve()


def suffixed_folder(folder: Path, values: Mapping[str, Any], differing: Sequence[str]) -> Path:
    """Return ``folder`` with a suffix naming the values that set a run apart from others sharing it.

    Parameters
    ----------
    folder : Path
        The folder several runs would share.
    values : Mapping
        This run's values.
    differing : sequence of str
        The parameters whose values differ among those runs.

    Returns
    -------
    Path
        E.g. ``..._radius-5``.
    """
    suffix = "_".join(f"{name}-{value_text(values.get(name))}" for name in differing)
    return folder.with_name(f"{folder.name}_{suffix}")
