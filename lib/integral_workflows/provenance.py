"""Provenance of workflow products: step records, checksums, versions, git state, FITS keywords.

Three places carry provenance (style anchors §7.7):

- the executed notebook, saved by the pipeline (``run_all.py``) next to the products
  (papermill's ``metadata.papermill``: parameters, timings, exception);
- the run folder: one ``<step>.step.json`` per notebook, written by
  :func:`record_step` from the notebook's ``outputs`` cell, which the pipeline
  (``integral_pipeline``, which this library never imports) merges into the run's ``manifest.json``;
- the FITS headers of the products, stamped with :func:`stamp_header`
  (gammapy's ``CreatorMetaData`` idea: CREATOR, CREATED, ORIGIN, OBJECT,
  RA_OBJ, DEC_OBJ, plus this project's parameter digest and git commit).

What a notebook records at its end (through :meth:`integral_workflows.notebook.NotebookRun.record_outputs`)::

    provenance.record_step("mosaic", output_dir=output_dir,
                           products=["mosaic.fits", "sources.ecsv"],
                           jobs=run_record,            # jobs.RunRecord (or its as_dict()) or None
                           parameters=p,               # the validated parameter model
                           extra={"n_sources": 12},
                           descriptors=[...])          # products.Product.as_dict(relative_to=output_dir)

Nothing written here may hold the MMODA token: every string is scrubbed of
the value of ``$ODA_TOKEN`` and of anything shaped like a JWT (``eyJ...``)
before it reaches a file (:func:`scrub`), with a warning that never shows the
secret. This module imports no heavy package at import time, because every
notebook kernel imports it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "STEP_RECORD_SUFFIX",
    "REDACTED",
    "ORIGINS",
    "file_checksum",
    "package_versions",
    "git_commit",
    "parameter_digest",
    "scrub",
    "scrub_text",
    "secret_values",
    "contains_secret",
    "record_step",
    "step_record_path",
    "read_step_record",
    "fits_keywords",
    "fits_provenance",
    "for_source",
    "fits_ascii",
    "file_stem",
    "stamp_header",
    "utc_now",
    "write_json",
]

#: ``<output_dir>/<step><STEP_RECORD_SUFFIX>`` is what :func:`record_step` writes.
STEP_RECORD_SUFFIX = ".step.json"
#: Bump when the meaning of a step record's fields changes.
STEP_RECORD_VERSION = 1
#: What replaces a secret in anything written.
REDACTED = "<redacted token>"
#: FITS ORIGIN by ``host_type``: which MMODA made the data, and whether the sky is real.
ORIGINS = {
    "production": "MMODA production",
    "staging": "MMODA staging",
    "esa": "MMODA ESA",
    "local": "mmoda_local SIMULATED",
}
#: Distributions whose versions go into every manifest (name in the manifest → distribution name).
VERSIONED_DISTRIBUTIONS = {
    "integral_workflows": "integral-mmoda-workflows",
    "oda_api": "oda-api",
    "astropy": "astropy",
    "numpy": "numpy",
    "papermill": "papermill",
    "nbclient": "nbclient",
    "ipykernel": "ipykernel",
}

# A JWT anywhere in a text: two base64url JSON parts ('{"' encodes as "eyJ") and a signature.
_JWT_ANYWHERE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Shorter "secrets" would redact ordinary words; no real token is that short.
_MIN_SECRET_LENGTH = 8
_TOKEN_ENV = "ODA_TOKEN"


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 text with seconds precision and ``Z``.

    Returns
    -------
    str
        E.g. ``'2026-11-21T05:18:52Z'``.
    """
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- checksums, versions, git --------------------------------------------------------------------------------------


def file_checksum(path: str | Path, *, algorithm: str = "sha256", chunk_bytes: int = 1 << 20) -> str:
    """Return the hex digest of a file's content.

    Parameters
    ----------
    path : str or Path
        The file.
    algorithm : str
        A :mod:`hashlib` algorithm name.
    chunk_bytes : int
        Read size; products can be hundreds of MB, so the file is streamed.

    Returns
    -------
    str
        The hex digest.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _distribution_version(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Return the versions of the packages that shape the products, and Python's.

    Returns
    -------
    dict
        ``integral_workflows``, ``oda_api``, ``astropy``, ``numpy``,
        ``papermill``, ``nbclient``, ``ipykernel`` (None when not installed)
        and ``python``.
    """
    versions = {name: _distribution_version(distribution) for name, distribution in VERSIONED_DISTRIBUTIONS.items()}
    if versions["integral_workflows"] is None:
        # Running from a source tree that was never pip-installed: the package still knows its version.
        from integral_workflows import __version__

        versions["integral_workflows"] = __version__
    versions["python"] = platform.python_version()
    return versions


def _git(arguments: list[str], *, cwd: Path) -> str | None:
    # GIT_OPTIONAL_LOCKS=0 keeps `git status` from refreshing (writing) the index: provenance only reads.
    environment = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        completed = subprocess.run(
            ["git", *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        log.debug("git %s failed: %s", " ".join(arguments), error)
        return None
    if completed.returncode != 0:
        log.debug("git %s: exit %d: %s", " ".join(arguments), completed.returncode, completed.stderr.strip())
        return None
    return completed.stdout


def git_commit(*, path: str | Path | None = None) -> dict[str, Any]:
    """Return the git commit of the project and whether the work tree differs from it.

    Only reading git commands are used (``rev-parse``, ``status`` without
    optional locks): nothing in the repository changes.

    Parameters
    ----------
    path : str or Path, optional
        A folder inside the repository; by default this package's folder.

    Returns
    -------
    dict
        ``commit`` (40 hex digits, or None outside a git work tree or without
        git), ``dirty`` (True if tracked files are modified or files that are
        neither tracked nor ignored exist, since such a run cannot be
        reproduced from the commit alone; None when unknown) and
        ``changed_files`` (how many, None when unknown).
    """
    folder = Path(path) if path is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], cwd=folder)
    if commit is None:
        return {"commit": None, "dirty": None, "changed_files": None}
    status = _git(["status", "--porcelain"], cwd=folder)
    changed = None if status is None else len([line for line in status.splitlines() if line.strip()])
    return {"commit": commit.strip(), "dirty": None if changed is None else changed > 0, "changed_files": changed}


def _json_safe(value: Any) -> Any:
    """Convert a value to plain JSON types (tuples → lists, paths → str, numpy scalars → numbers)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        # JSON has no NaN: a NaN or infinite number in a summary is written as text, not lost.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_json_safe(item) for item in items]
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "as_dict") and callable(value.as_dict) and not isinstance(value, type):
        # an object's own summary wins: a RunRecord's as_dict leaves out the products it holds
        return _json_safe(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_safe(dataclasses.asdict(value))
    if hasattr(value, "item") and callable(value.item):
        # numpy scalars (np.float64, np.int32, np.bool_) know their Python value.
        try:
            return _json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _parameter_values(parameters: Any) -> dict:
    """A parameter model's or mapping's values as a plain JSON-safe dict."""
    if hasattr(parameters, "model_dump"):
        return parameters.model_dump(mode="json")  # a validated parameter model: defaults resolved
    return _json_safe(dict(parameters))


def parameter_digest(parameters: Any) -> str:
    """Return the sha256 of a parameter set in canonical JSON form.

    Parameters
    ----------
    parameters : pydantic.BaseModel or mapping
        A validated parameter model (:func:`integral_workflows.parameters.validate`: defaults
        resolved, so equal runs have equal digests however they were written), or the values
        of one, as a mapping.

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    ValueError
        If a value is not finite.
    """
    values = _parameter_values(parameters)
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- secrets ---------------------------------------------------------------------------------------------------


def secret_values() -> list[str]:
    """Return the secret strings that must never be written: the value of ``$ODA_TOKEN``, if set.

    Anything shaped like a JWT is redacted as well (see :func:`scrub_text`),
    which covers tokens read from ``.oda-token`` files.

    Returns
    -------
    list of str
        The secrets, longest first.
    """
    token = (os.environ.get(_TOKEN_ENV) or "").strip()
    return [token] if len(token) >= _MIN_SECRET_LENGTH else []


def scrub_text(text: str, *, secrets: Iterable[str] | None = None) -> tuple[str, int]:
    """Replace secrets and JWT-like strings in a text by :data:`REDACTED`.

    Parameters
    ----------
    text : str
        The text.
    secrets : iterable of str, optional
        Exact strings to remove; :func:`secret_values` by default.

    Returns
    -------
    tuple of (str, int)
        The scrubbed text and how many replacements were made.
    """
    count = 0
    for secret in sorted(secret_values() if secrets is None else secrets, key=len, reverse=True):
        if secret and secret in text:
            count += text.count(secret)
            text = text.replace(secret, REDACTED)
    text, jwt_count = _JWT_ANYWHERE.subn(REDACTED, text)
    return text, count + jwt_count


def contains_secret(text: str, *, secrets: Iterable[str] | None = None) -> bool:
    """Return True if ``text`` holds a secret or something shaped like a JWT.

    Parameters
    ----------
    text : str
        The text.
    secrets : iterable of str, optional
        Exact strings to look for; :func:`secret_values` by default.

    Returns
    -------
    bool
        Whether :func:`scrub_text` would change the text.
    """
    return scrub_text(text, secrets=secrets)[1] > 0


def scrub(value: Any, *, secrets: Iterable[str] | None = None) -> tuple[Any, int]:
    """Return a JSON-safe copy of ``value`` with every secret and JWT-like string redacted.

    Parameters
    ----------
    value : object
        Nested dicts, lists and scalars (converted to plain JSON types).
    secrets : iterable of str, optional
        Exact strings to remove; :func:`secret_values` by default.

    Returns
    -------
    tuple of (object, int)
        The scrubbed copy and how many strings (keys included) were redacted.
    """
    secrets = list(secret_values() if secrets is None else secrets)
    redacted = 0

    def walk(item: Any) -> Any:
        nonlocal redacted
        if isinstance(item, str):
            text, count = scrub_text(item, secrets=secrets)
            redacted += count
            return text
        if isinstance(item, dict):
            return {walk(key): walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    return walk(_json_safe(value)), redacted


def write_json(path: str | Path, content: Any, *, what: str = "record") -> Path:
    """Write scrubbed JSON atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or Path
        The destination.
    content : object
        JSON-able content; secrets are redacted (see :func:`scrub`) with a
        warning that names the file, never the secret.
    what : str
        What the file is, for the warning.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    clean, redacted = scrub(content)
    if redacted:
        log.warning(
            "%d token-like string(s) redacted from the %s %s: a token must never reach a product or a "
            "record (it comes from ODA_TOKEN or .oda-token only)",
            redacted,
            what,
            path.name,
        )
    text = json.dumps(clean, indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False) + "\n"
    # A reader (the pipeline, a second run_all) must never see half a file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


# -- step records ----------------------------------------------------------------------------------------------


def step_record_path(output_dir: str | Path, step: str) -> Path:
    """Return where :func:`record_step` writes the record of ``step``: ``<output_dir>/<step>.step.json``.

    Parameters
    ----------
    output_dir : str or Path
        The run folder.
    step : str
        The step name.

    Returns
    -------
    Path
        The record's path.
    """
    return Path(output_dir) / f"{step}{STEP_RECORD_SUFFIX}"


def _product_entry(product: str | Path, run_folder: Path) -> dict:
    path = Path(product)
    if not path.is_absolute():
        # Relative product paths are relative to the run folder, whatever the kernel's working folder;
        # a path relative to the working folder (``output_dir`` given relative to it) is taken when only it exists.
        inside = run_folder / path
        path = inside if inside.exists() or not path.exists() else path
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"product {product} does not exist (looked for {path}); record_step() records files the step has written"
        )
    try:
        relative = path.relative_to(run_folder)
    except ValueError:
        raise ValueError(
            f"product {product} is outside the run folder {run_folder}: products must be written "
            f"into output_dir, next to the executed notebook"
        ) from None
    return {"path": relative.as_posix(), "sha256": file_checksum(path), "size_bytes": path.stat().st_size}


def record_step(
    step: str,
    *,
    output_dir: str | Path,
    products: Iterable[str | Path],
    jobs: Any = None,
    parameters: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    descriptors: Iterable[Mapping[str, Any]] | None = None,
) -> Path:
    """Record what a notebook step made: call it once, in the notebook's ``outputs`` cell.

    Writes ``<output_dir>/<step>.step.json``, which the pipeline merges into the
    run's ``manifest.json`` and uses to decide whether the step is up to date.

    Parameters
    ----------
    step : str
        The step name as registered in the workflow (the notebook's file
        name without ``.ipynb``: ``scw_selection``, ``mosaic``,
        ``lightcurve``, ``spectrum``).
    output_dir : str or Path
        The run folder (the notebook's ``output_dir`` parameter).
    products : iterable of str or Path
        The files the step wrote, absolute or relative to ``output_dir``; each
        must exist inside ``output_dir``. Recorded relative to it with its
        sha256 and size.
    jobs : mapping or object with ``as_dict()``, optional
        The MMODA jobs summary, typically a :class:`integral_workflows.jobs.RunRecord`
        (each ScW's outcome done/skipped/failed with reason and job id,
        submissions, retries); None for steps without MMODA jobs.
    parameters : mapping or pydantic.BaseModel, optional
        The parameters the step used (a parameter model is written through
        :func:`integral_workflows.parameters.to_papermill`).
    extra : mapping, optional
        Any other JSON-able facts worth keeping (number of ScWs, detected
        sources, fit results...).
    timings : mapping of str to float, optional
        Durations in seconds of the notebook's phases, e.g. ``{"query_s": 812.0}``.
    descriptors : iterable of mapping, optional
        The products' descriptors (:meth:`integral_workflows.products.Product.as_dict`, paths relative
        to ``output_dir``): what each file is, read back by the gallery.

    Returns
    -------
    Path
        The written record.

    Raises
    ------
    ValueError
        If ``step`` is not a plain name, or a product lies outside ``output_dir``.
    FileNotFoundError
        If ``output_dir`` or a product does not exist.
    """
    if not isinstance(step, str) or not _STEP_NAME.match(step):
        raise ValueError(f"step name {step!r} must be letters, digits, '_' or '-' (the registered step name)")
    if isinstance(products, (str, Path)):
        # A lone path would otherwise be iterated character by character.
        products = [products]
    run_folder = Path(output_dir).resolve()
    if not run_folder.is_dir():
        raise FileNotFoundError(f"output_dir {output_dir} is not a folder")
    product_entries = [_product_entry(product, run_folder) for product in products]
    if parameters is not None:
        parameters = _parameter_values(parameters)
    record = {
        "record_version": STEP_RECORD_VERSION,
        "step": step,
        "recorded_utc": utc_now(),
        "products": product_entries,
        "jobs": jobs,
        "parameters": parameters,
        "parameter_digest": _digest_or_none(parameters),
        "timings": dict(timings or {}),
        "extra": dict(extra or {}),
        "versions": package_versions(),
    }
    if descriptors is not None:
        record["descriptors"] = [dict(descriptor) for descriptor in descriptors]
    path = write_json(step_record_path(run_folder, step), record, what="step record")
    log.info("step %s recorded: %d product(s) in %s", step, len(product_entries), path.name)
    return path


def _digest_or_none(parameters: Mapping[str, Any] | None) -> str | None:
    if parameters is None:
        return None
    try:
        return parameter_digest(parameters)
    except ValueError:
        # A record is written at the end of a notebook: an odd value must not lose the products' record.
        log.warning("the parameters given to record_step are not JSON-safe; no parameter digest recorded")
        return None


def read_step_record(output_dir: str | Path, step: str) -> dict | None:
    """Read the record :func:`record_step` wrote for ``step``, or None if there is none.

    Parameters
    ----------
    output_dir : str or Path
        The run folder.
    step : str
        The step name.

    Returns
    -------
    dict or None
        The record.

    Raises
    ------
    ValueError
        If the record exists but is not valid JSON.
    """
    path = step_record_path(output_dir, step)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


# -- FITS provenance keywords ----------------------------------------------------------------------------------


def fits_keywords(
    *,
    notebook: str,
    parameters: Mapping[str, Any] | None = None,
    src_name: str | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    host_type: str | None = None,
    origin: str | None = None,
    created: str | None = None,
    git: Mapping[str, Any] | None = None,
) -> list[tuple[str, Any, str]]:
    """Return the provenance keywords of a product, as ``(keyword, value, comment)`` cards.

    Parameters
    ----------
    notebook : str
        The notebook that made the product (``mosaic.ipynb``), part of CREATOR.
    parameters : mapping, optional
        The run's parameters: give OBJECT (``src_name``), RA_OBJ/DEC_OBJ
        (``RA``/``DEC`` unless both are 0, which means "looked up"), ORIGIN
        (``host_type``) and PARDIGST.
    src_name : str, optional
        OBJECT, overriding ``parameters``.
    ra_deg, dec_deg : float, optional
        RA_OBJ and DEC_OBJ, overriding ``parameters`` (pass the resolved
        coordinates when the parameters had RA = DEC = 0).
    host_type : str, optional
        Picks ORIGIN from :data:`ORIGINS`, overriding ``parameters``.
    origin : str, optional
        ORIGIN itself, overriding everything.
    created : str, optional
        CREATED (UTC ISOT); now by default.
    git : mapping, optional
        The result of :func:`git_commit` (computed if omitted).

    Returns
    -------
    list of tuple
        CREATOR, CREATED, ORIGIN, OBJECT, RA_OBJ, DEC_OBJ, PARDIGST, GITCOMMT;
        cards whose value is unknown are left out.
    """
    from integral_workflows import __version__

    parameters = parameters or {}
    if origin is None:
        host = host_type or parameters.get("host_type")
        origin = ORIGINS.get(host, f"MMODA {host}" if host else None)
    if src_name is None:
        src_name = parameters.get("src_name")
    if ra_deg is None and dec_deg is None and "RA" in parameters and "DEC" in parameters:
        if parameters["RA"] == 0 and parameters["DEC"] == 0:
            log.warning("RA = DEC = 0 means 'look the source up': pass ra_deg and dec_deg to get RA_OBJ/DEC_OBJ")
        else:
            ra_deg, dec_deg = parameters["RA"], parameters["DEC"]
    if created is None:
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    git = git_commit() if git is None else git
    commit = git.get("commit")
    cards = [
        ("CREATOR", f"integral_workflows {__version__} {Path(notebook).name}", "software and notebook"),
        ("CREATED", created, "UTC time of creation"),
        ("ORIGIN", origin, "MMODA that made the data"),
        ("OBJECT", src_name, "target name"),
        ("RA_OBJ", None if ra_deg is None else float(ra_deg), "[deg] target right ascension (J2000)"),
        ("DEC_OBJ", None if dec_deg is None else float(dec_deg), "[deg] target declination (J2000)"),
        ("PARDIGST", _digest_prefix(parameters), "sha256 prefix of the run parameters"),
        (
            "GITCOMMT",
            None if commit is None else commit[:12] + ("+dirty" if git.get("dirty") else ""),
            "git commit of integral_workflows project",
        ),
    ]
    cards = [(key, value, comment) for key, value, comment in cards if value is not None]
    # FITS headers hold printable ASCII only: a Unicode target name ("Boötes null") is folded ("Bootes null");
    # the original stays in the step record and the ECSV tables.
    cards = [(key, fits_ascii(value) if isinstance(value, str) else value, comment) for key, value, comment in cards]
    for key, value, _ in cards:
        if isinstance(value, str) and contains_secret(value):
            raise ValueError(f"FITS keyword {key} would hold a token: refused")
    return cards


def _digest_prefix(parameters: Any) -> str | None:
    if not parameters:
        return None
    try:
        return parameter_digest(parameters)[:16]
    except ValueError:
        return None


def fits_provenance(**keywords: Any) -> dict[str, tuple[Any, str]]:
    """The cards of :func:`fits_keywords` as ``{keyword: (value, comment)}``.

    This is the ``provenance`` argument the product writers of
    ``integral_workflows`` (mosaic, light curve, spectrum) take.
    """
    return {key: (value, comment) for key, value, comment in fits_keywords(**keywords)}


def for_source(
    cards: Mapping[str, Any] | None, name: str, position: tuple[float, float] | None = None
) -> dict[str, Any]:
    """A run's provenance cards made a product's of one source: OBJECT (and RA_OBJ/DEC_OBJ) name that source.

    A run about one target extracts light curves and spectra of every source
    of its field; each file says whose it is, or any tool reading OBJECT would
    take a neighbour's light curve for the target's.

    Parameters
    ----------
    cards : mapping or None
        ``{keyword: (value, comment)}`` (:func:`fits_provenance`).
    name : str
        The product's source.
    position : (float, float), optional
        Its RA and Dec (deg); without it RA_OBJ/DEC_OBJ are left out (the run's
        target's would be wrong).

    Returns
    -------
    dict
        The cards with OBJECT, RA_OBJ, DEC_OBJ replaced.
    """
    out = {key: value for key, value in (cards or {}).items() if key not in ("OBJECT", "RA_OBJ", "DEC_OBJ")}
    out["OBJECT"] = (fits_ascii(name), "source of this product")
    if position is not None:
        out["RA_OBJ"] = (float(position[0]), "[deg] source right ascension (J2000)")
        out["DEC_OBJ"] = (float(position[1]), "[deg] source declination (J2000)")
    return out


def stamp_header(header: Any, **keywords: Any) -> Any:
    """Stamp a FITS header with the provenance keywords of :func:`fits_keywords`.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header to update in place (e.g. ``hdul[0].header``).
    **keywords
        The arguments of :func:`fits_keywords` (``notebook`` is required).

    Returns
    -------
    astropy.io.fits.Header
        The same header, for chaining.
    """
    for key, value, comment in fits_keywords(**keywords):
        header[key] = (value, comment)
    return header


def fits_ascii(text: Any) -> str:
    r"""Text made fit for a FITS header value: printable ASCII.

    Accents and other combining marks are dropped after NFKD decomposition
    (``Boötes`` → ``Bootes``, ``ﬁ`` → ``fi``, ``²`` → ``2``); a character with no
    ASCII decomposition becomes its Python backslash escape (``\u03b3`` for γ),
    so that different names stay different; control characters become ``?``.

    Parameters
    ----------
    text : any
        Converted with ``str``.

    Returns
    -------
    str
    """
    import unicodedata

    folded = []
    for character in unicodedata.normalize("NFKD", str(text)):
        if unicodedata.combining(character):
            continue
        if " " <= character <= "~":
            folded.append(character)
        elif ord(character) < 128 or unicodedata.category(character).startswith("C"):
            folded.append("?")
        else:
            folded.append(character.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(folded)


def file_stem(name: str) -> str:
    """A source name made safe for file names (``1A 0535+262`` → ``1A_0535+262``, ``Boötes null`` → ``Bootes_null``).

    Unicode names are folded to ASCII first (:func:`fits_ascii`), so that files stay portable.
    """
    import re

    stem = re.sub(r"[^A-Za-z0-9.+\-]+", "_", fits_ascii(name)).strip("_")
    return stem or "source"
