"""``manifest.json``: the typed record of a run folder (what ran, with what, what it made), read and written.

Written after every step, so an interrupted run leaves a truthful manifest; every string
is scrubbed of tokens on the way to the file (:func:`integral_workflows.provenance.write_json`).
No host name, user name or absolute path is recorded. Design notes: ``docs/pipeline.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from integral_workflows import provenance

from .layout import MANIFEST_NAME

log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_VERSION",
    "OK",
    "FAILED",
    "SKIPPED",
    "REUSED",
    "NOT_RUN",
    "RUNNING",
    "INTERRUPTED",
    "COMPLETE_STATUSES",
    "StepError",
    "UpstreamProduct",
    "StepEntry",
    "Manifest",
    "load_manifest",
    "write_manifest",
]

#: 2: per-step ``hooks`` (was ``gallery``) and ``descriptors``; the step's parameters are its notebook's.
MANIFEST_VERSION = 2

OK, FAILED, SKIPPED, REUSED, NOT_RUN = "ok", "failed", "skipped-up-to-date", "reused-from-parent", "not-run"
#: Run statuses besides ok/failed: still being written, or left by a process that died.
RUNNING, INTERRUPTED = "running", "interrupted"
#: Statuses after which a step's products are complete in its folder.
COMPLETE_STATUSES = (OK, SKIPPED)


def _known_fields(cls: type, content: dict) -> dict:
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(content) - names)
    if unknown:
        log.debug("%s: fields %s ignored (written by another version)", cls.__name__, unknown)
    return {key: value for key, value in content.items() if key in names}


@dataclasses.dataclass
class StepError:
    """Why a step failed.

    Parameters
    ----------
    type : str
        The exception's name (``RuntimeError``, ``MissingStepRecord``, ``TokenLeak``...).
    message : str
        Its message.
    cell : int, optional
        The cell of the executed notebook that raised it.
    hook : str, optional
        The hook that raised it, if one did.
    """

    type: str
    message: str
    cell: int | None = None
    hook: str | None = None

    def as_dict(self) -> dict:
        """Return the JSON form (``hook`` only when set)."""
        content = dataclasses.asdict(self)
        if self.hook is None:
            content.pop("hook")
        return content


@dataclasses.dataclass
class UpstreamProduct:
    """A product of an earlier step a step consumed, with its checksum when it was consumed.

    Parameters
    ----------
    step : str
        The step that made it.
    path : str
        Relative to the run folder.
    sha256 : str
        Its checksum.
    """

    step: str
    path: str
    sha256: str


@dataclasses.dataclass
class StepEntry:
    """One step of a run, as the manifest records it.

    ``status`` is ``ok``, ``failed``, ``skipped-up-to-date``, ``reused-from-parent`` or
    ``not-run``; ``reason`` says why the step ran or not. ``parameters`` are those injected
    (``output_dir`` as ``.``, upstream paths relative to the run folder); ``products``,
    ``descriptors``, ``jobs``, ``extra`` and ``timings`` come from the step record the
    notebook wrote; ``hooks`` holds what each hook returned; ``location`` (reused steps)
    is the folder, relative to this one, the entry's paths refer to.
    """

    name: str
    index: int
    status: str
    reason: str = ""
    notebook: str | None = None
    notebook_digest: str | None = None
    executed_notebook: str | None = None
    started_utc: str | None = None
    ended_utc: str | None = None
    duration_s: float | None = None
    parameters: dict | None = None
    upstream: dict[str, UpstreamProduct] | None = None
    step_key: str | None = None
    record: str | None = None
    products: list[dict] = dataclasses.field(default_factory=list)
    descriptors: list[dict] | None = None
    jobs: Any = None
    extra: dict = dataclasses.field(default_factory=dict)
    timings: dict = dataclasses.field(default_factory=dict)
    hooks: dict | None = None
    error: StepError | None = None
    location: str | None = None
    checked_utc: str | None = None

    @property
    def complete(self) -> bool:
        """Whether its products are complete where it says (ok, up to date or reused)."""
        return self.status in (*COMPLETE_STATUSES, REUSED)

    def take_record(self, record: dict) -> None:
        """Copy what the notebook's step record says: products, descriptors, jobs, extra, timings."""
        self.products = list(record.get("products") or [])
        self.descriptors = record.get("descriptors")
        self.jobs = record.get("jobs")
        self.extra = dict(record.get("extra") or {})
        self.timings = dict(record.get("timings") or {})

    def as_dict(self) -> dict:
        """Return the JSON form: unset optional fields are left out."""
        content: dict = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name == "error":
                value = value.as_dict()
            elif field.name == "upstream":
                value = {name: dataclasses.asdict(item) for name, item in value.items()}
            content[field.name] = value
        return content

    @classmethod
    def from_dict(cls, content: dict) -> StepEntry:
        """Read an entry of a manifest (fields of other versions are ignored)."""
        known = _known_fields(cls, content)
        if isinstance(known.get("error"), dict):
            known["error"] = StepError(**_known_fields(StepError, known["error"]))
        if isinstance(known.get("upstream"), dict):
            known["upstream"] = {
                name: UpstreamProduct(**_known_fields(UpstreamProduct, item))
                for name, item in known["upstream"].items()
            }
        for name in ("products", "extra", "timings"):
            if known.get(name) is None:
                known.pop(name, None)
        return cls(**known)


@dataclasses.dataclass
class Manifest:
    """The record of a run folder.

    Parameters
    ----------
    workflow, description : str
        The workflow and the parameter file's description.
    parameter_file : str or None
        The file the run comes from (relative to the project), None for a rerun.
    run : str
        The run's label (file, run number, matrix choices).
    matrix : dict
        The run's matrix choices.
    run_folder : str
        The folder relative to the output root.
    parameters : dict
        The run's validated values (every step's model, defaults resolved).
    parameters_given : dict
        The values as given (file, matrix, ``-p``): what a rerun starts from.
    parameter_digest : str
        sha256 of ``parameters``.
    status : str
        ``running``, ``ok``, ``failed`` or ``interrupted``.
    started_utc, ended_utc : str
        This invocation's start and end.
    duration_s : float
        Its wall time.
    force : bool
        Whether up-to-date steps were executed anyway.
    steps_run, steps_skipped, steps_reused : int
        Counts of this invocation.
    kernel : str
        The Jupyter kernel.
    versions : dict
        Versions of the packages that shape the products.
    git : dict
        Commit of the project and whether the work tree differed from it.
    parent : dict or None
        For a rerun: the archived notebook, its parameters, the parent's and the diff.
    steps : list of StepEntry
        Per step, in order.
    manifest_version : int
        :data:`MANIFEST_VERSION`.
    """

    workflow: str
    run: str
    run_folder: str
    parameters: dict
    parameters_given: dict
    parameter_digest: str
    description: str = ""
    parameter_file: str | None = None
    matrix: dict = dataclasses.field(default_factory=dict)
    status: str = RUNNING
    started_utc: str | None = None
    ended_utc: str | None = None
    duration_s: float | None = None
    force: bool = False
    steps_run: int = 0
    steps_skipped: int = 0
    steps_reused: int = 0
    kernel: str | None = None
    versions: dict = dataclasses.field(default_factory=dict)
    git: dict = dataclasses.field(default_factory=dict)
    parent: dict | None = None
    steps: list[StepEntry] = dataclasses.field(default_factory=list)
    manifest_version: int = MANIFEST_VERSION

    def entry(self, name: str) -> StepEntry | None:
        """Return the entry of step ``name``, or None."""
        return next((entry for entry in self.steps if entry.name == name), None)

    def as_dict(self) -> dict:
        """Return the JSON form, version first."""
        content = {"manifest_version": self.manifest_version}
        for field in dataclasses.fields(self):
            if field.name in ("manifest_version", "steps"):
                continue
            content[field.name] = getattr(self, field.name)
        content["steps"] = [entry.as_dict() for entry in self.steps]
        return content

    @classmethod
    def from_dict(cls, content: dict) -> Manifest:
        """Read a manifest's JSON content (fields of other versions are ignored).

        Raises
        ------
        ValueError
            If a required field is missing.
        """
        known = _known_fields(cls, content)
        known["steps"] = [StepEntry.from_dict(entry) for entry in content.get("steps") or []]
        known.setdefault("parameters_given", dict(content.get("parameters") or {}))
        missing = [
            name for name in ("workflow", "run", "run_folder", "parameters", "parameter_digest") if name not in known
        ]
        if missing:
            raise ValueError(f"manifest without {', '.join(missing)}")
        return cls(**known)


def load_manifest(run_dir: str | Path) -> Manifest | None:
    """Read a run folder's ``manifest.json``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.

    Returns
    -------
    Manifest or None
        The manifest, or None if there is none or it is unreadable (logged: every step then runs).
    """
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        log.warning("%s is unreadable (%s): treated as absent, every step runs", path, error)
        return None


def write_manifest(run_dir: str | Path, manifest: Manifest) -> Path:
    """Write a run folder's ``manifest.json`` atomically, scrubbed of tokens.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    manifest : Manifest
        The content.

    Returns
    -------
    Path
        The file.
    """
    return provenance.write_json(Path(run_dir) / MANIFEST_NAME, manifest.as_dict(), what="manifest")
