"""Upload products to the MMODA product gallery, through oda_api's ``GalleryDispatcherAPI``.

The MMODA product gallery (seed 003) shows images, light curves and spectra,
searchable by source, instrument, product type, time and revolution, each
with its FITS files and the notebook and parameters that made it. Uploading is
restricted: the MMODA token must hold the role ``gallery contributor``. The
token comes from ``ODA_TOKEN`` or ``.oda-token`` (:func:`integral_workflows.hosts.discover_token`),
never from a parameter, and nothing uploaded or saved carries it.

The notebooks' products reach the gallery one way: :func:`upload_run_products` on the
folder they ran in, which reads the product descriptors each notebook recorded in its step
record (``<step>.step.json``) and uploads the images, light curves and spectra among them.
A pipeline calls it from a hook after a step, ``notebooks/gallery_upload.ipynb`` on a run
folder, and a notebook run with ``upload_to_gallery = True`` on its own output folder.
From Python, a :class:`GalleryProduct` can also be uploaded alone (:func:`upload_product`).

What an upload sends
--------------------
``GalleryDispatcherAPI.post_data_product_to_gallery`` (protocol §7) first asks
``get_parents_term`` about the product type, resolves each source name
(``resolve_name``) and then posts a multipart form to
``post_product_to_gallery``. The fields are those the real gallery notebooks
send (the real gallery, a Drupal site, refuses fields it does not know):

=========================  ===============================================================================
``product_title``          e.g. ``Crab Rev. 0300``, ``GX 1+4 isgri light curve Rev. 0300 (NRT)``
``product_id``             oda_api's ``DispatcherAPI.calculate_param_dict_id`` of the product's defining
                           parameters (:func:`product_id`): uploading again *updates* the product
``instrument``             ``isgri``, ``jemx1`` or ``jemx2``
``product_type``           ``<instrument>_image``, ``<instrument>_lc`` or ``<instrument>_spectrum``
``src_name``               the sources, comma-joined (each resolved; unknown ones still inserted)
``T1``, ``T2``             UTC ISOT with whole seconds (the client refuses fractions); the gallery derives
                           the revolution span from them
``RA``, ``DEC``            deg: the image centre, or the source
``e1_kev``, ``e2_kev``     the energy band (images, light curves)
``obsid``                  observation ids, comma-joined; the proposal ids are their first seven digits
``detected_sources``       an HTML table of the sources an image detected, with their count rates
``time_bin``               s (light curves)
``additional_information`` the run's parameters as JSON (scrubbed of secrets)
``produced_by``            the notebook that made the product
``img``                    the PNG
``fits_file_0..N``         the FITS files, the DS9 region file and the executed notebook (scrubbed)
``yaml_file``              the parameters as YAML (scrubbed)
=========================  ===============================================================================

The revolution is not a field of its own: the real gallery derives it from
``T1``/``T2``; it is also in the title and the parameters.

Failures
--------
Connection errors, timeouts and server errors (5xx) are retried with
exponential backoff (:class:`RetryPolicy`); the product id makes a retry
after a lost answer update the product rather than duplicate it. A refusal
for lack of rights (403, or the dispatcher's "privileges are not sufficient"
text) raises :class:`GalleryPermissionError` at once, naming the role
``gallery contributor`` and what to do. Other refusals raise
:class:`GalleryUploadError`. oda_api does not expose HTTP status codes of the
final POST (it returns the error text), so that answer is classified by its
text.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import hosts, provenance
from .products import GALLERY_KINDS, Product, isot_seconds
from .session import BackendUnavailable, Session, session_for

log = logging.getLogger(__name__)

__all__ = [
    "GALLERY_ROLE",
    "GALLERY_INSTRUMENTS",
    "PRODUCT_KINDS",
    "GalleryError",
    "GalleryPermissionError",
    "GalleryUploadError",
    "GalleryUnavailableError",
    "RetryPolicy",
    "GalleryProduct",
    "UploadResult",
    "isot_seconds",
    "product_type",
    "product_id",
    "detected_sources_html",
    "defining_parameters",
    "distinct_title",
    "build_upload_request",
    "upload_product",
    "upload_products",
    "gallery_product",
    "recorded_steps",
    "run_products",
    "find_executed_notebook",
    "upload_run_products",
    "write_upload_record",
    "products_table",
    "results_table",
    "list_products",
]

#: The MMODA role that allows uploading to the gallery.
GALLERY_ROLE = "gallery contributor"
#: Instruments as the gallery names them (a JEM-X unit is an instrument of its own there).
GALLERY_INSTRUMENTS = ("isgri", "jemx1", "jemx2", "spi_acs")
#: Product kinds, as they end the gallery's product types (``isgri_image``, ``jemx1_lc``, ``isgri_spectrum``).
PRODUCT_KINDS = ("image", "lc", "spectrum")
#: Where a notebook records what it uploaded: ``<output_dir>/<step>_gallery.json``.
UPLOAD_RECORD_SUFFIX = "_gallery.json"

_ISOT_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
_STATUS_IN_REMOTE_EXCEPTION = re.compile(r"status code:->\s*(\d{3})")
# Texts of refusals for lack of rights: the real dispatcher's 403 bodies (note its spelling "priviledge"),
# the expired/invalid token messages and plain HTTP reason phrases.
_PERMISSION_TEXT = re.compile(
    r"privile?dge|not sufficient|roles?\b|forbidden|unauthori[sz]ed|"
    r"token provided is (?:expired|not valid)|" + re.escape(GALLERY_ROLE),
    re.IGNORECASE,
)
# The refusal of a change to another contributor's product (the product exists, the token is fine).
_OWNED_TEXT = re.compile(r"belongs to another contributor", re.IGNORECASE)
_SERVER_ERROR_TEXT = re.compile(
    r"\b5\d\d\b|internal server error|bad gateway|service unavailable|"
    r"gateway time-?out|temporarily|overloaded|try again later",
    re.IGNORECASE,
)
_TEXT_SUFFIXES = (".ipynb", ".yaml", ".yml", ".json", ".ecsv", ".reg", ".txt", ".html", ".csv")


class GalleryError(RuntimeError):
    """An upload to the gallery did not happen."""


class GalleryPermissionError(GalleryError):
    """The gallery refused the token: missing, invalid, expired, or without the role ``gallery contributor``."""


class GalleryUploadError(GalleryError):
    """The gallery refused the product, or the product cannot be uploaded as described; retrying will not help."""


class GalleryUnavailableError(GalleryError):
    """The gallery kept failing (connection errors, 5xx) until the retries ran out."""


def _permission_message(detail: str) -> str:
    return (
        f"the MMODA gallery refused the upload for lack of rights ({detail}). Uploading to the product "
        f"gallery needs a token with the role '{GALLERY_ROLE}'. Ask the MMODA team (the 'Contact us' form of "
        f"the MMODA web site) to grant that role to your account, then sign in again, copy the new token "
        f"(the roles are written into it) into $ODA_TOKEN or a .oda-token file, and upload again, e.g. with "
        f"notebooks/gallery_upload.ipynb on the run folder. With the local MMODA: "
        f"python -m mmoda_local token --roles 'general,{GALLERY_ROLE}' --data-dir <its data folder>."
    )


# -- retries -------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried.

    Parameters
    ----------
    attempts : int
        Attempts in all (1: no retry).
    first_delay_s : float
        Wait after the first failure, s.
    factor : float
        Each further wait is this many times longer.
    max_delay_s : float
        Longest wait, s.
    """

    attempts: int = 5
    first_delay_s: float = 2.0
    factor: float = 2.0
    max_delay_s: float = 60.0

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"attempts = {self.attempts}: at least 1")
        if self.first_delay_s < 0 or self.factor < 1 or self.max_delay_s < 0:
            raise ValueError("delays must be >= 0 and the factor >= 1")

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after the ``failed_attempt``-th attempt failed (1-based)."""
        return min(self.first_delay_s * self.factor ** (failed_attempt - 1), self.max_delay_s)


# -- products ------------------------------------------------------------------------------------------------------


def product_type(instrument: str, kind: str) -> str:
    """The gallery's product type: ``<instrument>_<kind>``, e.g. ``isgri_image``, ``jemx1_lc``.

    Parameters
    ----------
    instrument : str
        One of :data:`GALLERY_INSTRUMENTS`.
    kind : str
        One of :data:`PRODUCT_KINDS`.

    Returns
    -------
    str
    """
    if instrument not in GALLERY_INSTRUMENTS:
        raise ValueError(f"instrument {instrument!r}: the gallery knows {', '.join(GALLERY_INSTRUMENTS)}")
    if kind not in PRODUCT_KINDS:
        raise ValueError(f"product kind {kind!r}: use one of {', '.join(PRODUCT_KINDS)}")
    return f"{instrument}_{kind}"


def _canonical(value: Any) -> Any:
    """A value in the one form that hashes the same however it was written (28 and 28.0 alike)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in sorted(value.items())}
    if hasattr(value, "item"):  # numpy scalars
        return _canonical(value.item())
    return str(value)


def product_id(defining: Mapping[str, Any]) -> str:
    """The gallery product id of a product: a stable hash of the parameters that define it.

    It is what the real gallery notebooks use, oda_api's
    ``DispatcherAPI.calculate_param_dict_id`` (an md5 prefix of the sorted
    items; None values left out), over canonical values, so that equal
    products always get the same id and a re-upload updates the product
    instead of adding a second one.

    Parameters
    ----------
    defining : mapping
        The parameters that make the product what it is (instrument, product
        type, source or observation, band, period or revolution...). Leave
        out what should *not* give a new product (e.g. ``data_version``, so
        that consolidated data replace near-real-time ones).

    Returns
    -------
    str
        16 hex digits.
    """
    from oda_api.api import DispatcherAPI

    if not defining:
        raise ValueError("a product id needs at least one defining parameter")
    return DispatcherAPI.calculate_param_dict_id({str(key): _canonical(value) for key, value in defining.items()})


def _paths(values: Iterable[Any]) -> tuple[Path, ...]:
    return tuple(Path(value) for value in values)


@dataclasses.dataclass(frozen=True)
class GalleryProduct:
    """A product as the gallery shows it: what it is, when, where, and its files.

    Attributes
    ----------
    title : str
        The product's title in the gallery.
    instrument : str
        ``isgri``, ``jemx1`` or ``jemx2``.
    kind : str
        ``image``, ``lc`` or ``spectrum``.
    product_id : str
        :func:`product_id` of its defining parameters.
    t1, t2 : str
        Time span of the data, UTC ISOT, whole seconds.
    src_names : tuple of str
        The sources it shows (an image: the catalogue sources it detected).
    ra, dec : float or None
        Image centre or source position, deg.
    e1_kev, e2_kev : float or None
        Energy band (images, light curves).
    obsids : tuple of str
        Observation ids (revolution products).
    revolutions : tuple of str
        Revolutions (kept for the title and the records; the gallery derives
        the span from ``t1``/``t2``).
    image : Path or None
        The PNG.
    fits_files : tuple of Path
        FITS files (a spectrum: PHA, ARF, RMF).
    region_file : Path or None
        DS9 regions of the detected sources (images).
    sources_table : Path or None
        ECSV of the detected sources with count rates (images).
    notebook : Path or None
        The executed notebook that made it (attached scrubbed).
    produced_by : str
        The notebook's name.
    parameters : mapping
        The run's parameters (JSON-safe).
    fields : mapping
        Further gallery fields (``time_bin`` for light curves).
    simulated : bool
        Made from the local MMODA's simulated sky: uploaded to the local gallery only.
    """

    title: str
    instrument: str
    kind: str
    product_id: str
    t1: str
    t2: str
    src_names: tuple = ()
    ra: float | None = None
    dec: float | None = None
    e1_kev: float | None = None
    e2_kev: float | None = None
    obsids: tuple = ()
    revolutions: tuple = ()
    image: Path | None = None
    fits_files: tuple = ()
    region_file: Path | None = None
    sources_table: Path | None = None
    notebook: Path | None = None
    produced_by: str = ""
    parameters: Mapping = dataclasses.field(default_factory=dict)
    fields: Mapping = dataclasses.field(default_factory=dict)
    simulated: bool = False

    def __post_init__(self):
        product_type(self.instrument, self.kind)  # validates both
        for name in ("t1", "t2"):
            if not _ISOT_SECONDS.match(str(getattr(self, name))):
                raise ValueError(
                    f"{name} = {getattr(self, name)!r}: the gallery takes UTC ISOT with whole seconds "
                    f"(use isot_seconds())"
                )
        if not self.title.strip():
            raise ValueError("a gallery product needs a title")
        object.__setattr__(self, "src_names", tuple(str(name) for name in self.src_names))
        object.__setattr__(self, "obsids", tuple(str(obsid) for obsid in self.obsids))
        object.__setattr__(self, "revolutions", tuple(str(rev) for rev in self.revolutions))
        object.__setattr__(self, "fits_files", _paths(self.fits_files))
        for name in ("image", "region_file", "sources_table", "notebook"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    @property
    def product_type(self) -> str:
        """``<instrument>_<kind>``."""
        return product_type(self.instrument, self.kind)

    @property
    def proposal_ids(self) -> tuple[str, ...]:
        """Proposals of its observations: the first seven digits of the observation ids."""
        return tuple(sorted({obsid[:7] for obsid in self.obsids if len(obsid) == 11 and obsid.isdigit()}))

    def attachments(self) -> list[Path]:
        """The files uploaded as attachments: FITS files, region file, notebook (not the PNG)."""
        files = list(self.fits_files)
        if self.region_file is not None:
            files.append(self.region_file)
        if self.notebook is not None:
            files.append(self.notebook)
        return files

    def replace(self, **changes: Any) -> GalleryProduct:
        """A copy with ``changes`` (e.g. ``notebook=...``)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self, *, relative_to: str | Path | None = None, include_parameters: bool = True) -> dict:
        """JSON-safe form, paths relative to ``relative_to`` when given (for step records).

        Parameters
        ----------
        relative_to : path-like, optional
            Folder the paths are written relative to.
        include_parameters : bool
            Include ``parameters`` (products of one run share them: a record
            may leave them out and take them from the manifest).

        Returns
        -------
        dict
        """

        def path_text(path: Path | None) -> str | None:
            if path is None:
                return None
            if relative_to is not None:
                try:
                    return Path(path).resolve().relative_to(Path(relative_to).resolve()).as_posix()
                except ValueError:
                    pass
            return Path(path).as_posix()

        data = {
            "title": self.title,
            "instrument": self.instrument,
            "kind": self.kind,
            "product_id": self.product_id,
            "product_type": self.product_type,
            "t1": self.t1,
            "t2": self.t2,
            "src_names": list(self.src_names),
            "ra": self.ra,
            "dec": self.dec,
            "e1_kev": self.e1_kev,
            "e2_kev": self.e2_kev,
            "obsids": list(self.obsids),
            "revolutions": list(self.revolutions),
            "image": path_text(self.image),
            "fits_files": [path_text(path) for path in self.fits_files],
            "region_file": path_text(self.region_file),
            "sources_table": path_text(self.sources_table),
            "notebook": path_text(self.notebook),
            "produced_by": self.produced_by,
            "fields": dict(self.fields),
            "simulated": self.simulated,
        }
        if include_parameters:
            data["parameters"] = dict(self.parameters)
        return provenance.scrub(data)[0]

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: str | Path | None = None, parameters: Mapping[str, Any] | None = None
    ) -> GalleryProduct:
        """Rebuild a product from :meth:`as_dict`, relative paths taken relative to ``base``.

        Parameters
        ----------
        data : mapping
            From :meth:`as_dict`.
        base : path-like, optional
            The folder relative paths refer to.
        parameters : mapping, optional
            Used when ``data`` holds none.

        Returns
        -------
        GalleryProduct
        """

        def path_of(text: str | None) -> Path | None:
            if text is None:
                return None
            path = Path(text)
            return path if path.is_absolute() or base is None else Path(base) / path

        return cls(
            title=data["title"],
            instrument=data["instrument"],
            kind=data["kind"],
            product_id=data["product_id"],
            t1=data["t1"],
            t2=data["t2"],
            src_names=data.get("src_names", ()),
            ra=data.get("ra"),
            dec=data.get("dec"),
            e1_kev=data.get("e1_kev"),
            e2_kev=data.get("e2_kev"),
            obsids=data.get("obsids", ()),
            revolutions=data.get("revolutions", ()),
            image=path_of(data.get("image")),
            fits_files=[path_of(p) for p in data.get("fits_files", ())],
            region_file=path_of(data.get("region_file")),
            sources_table=path_of(data.get("sources_table")),
            notebook=path_of(data.get("notebook")),
            produced_by=data.get("produced_by", ""),
            parameters=dict(data.get("parameters") or parameters or {}),
            fields=dict(data.get("fields") or {}),
            simulated=bool(data.get("simulated", False)),
        )


# -- the request ---------------------------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def detected_sources_html(table: Any) -> str:
    """An HTML table of detected sources with their count rates (the gallery's "detected sources" field).

    Parameters
    ----------
    table : astropy.table.Table
        Sources with ``name``, ``ra``, ``dec``, ``significance``, ``rate``,
        ``rate_error`` (:func:`integral_workflows.mosaic.find_sources`).

    Returns
    -------
    str
        ``<table>`` with one row per source.
    """
    rows = [
        "<table>",
        "<tr><th>Name</th><th>RA</th><th>Dec</th><th>Significance</th><th>Flux (cts/s)</th><th>Unc</th></tr>",
    ]
    for row in table:
        rows.append(
            f"<tr><td>{html.escape(str(row['name']))}</td><td>{float(row['ra']):.4f}</td>"
            f"<td>{float(row['dec']):.4f}</td><td>{float(row['significance']):.1f}</td>"
            f"<td>{float(row['rate']):.4g}</td><td>{float(row['rate_error']):.2g}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _secrets(token: str | None) -> list[str]:
    return [secret for secret in [token, *provenance.secret_values()] if secret]


def _scrubbed_copy(source: Path, destination: Path, *, token: str | None) -> Path:
    text, count = provenance.scrub_text(source.read_text(encoding="utf-8"), secrets=_secrets(token))
    if count:
        log.warning("%d token-like string(s) removed from the copy of %s that goes to the gallery", count, source.name)
    destination.write_text(text, encoding="utf-8")
    return destination


def _parameters_text(parameters: Mapping[str, Any], *, token: str | None) -> tuple[str, str]:
    """The parameters as YAML (for the attachment) and as JSON (``additional_information``), scrubbed."""
    clean = provenance.scrub(dict(parameters), secrets=_secrets(token))[0]
    return (
        yaml.safe_dump(clean, sort_keys=False, allow_unicode=True),
        "parameters = " + json.dumps(clean, indent=4, ensure_ascii=False),
    )


def build_upload_request(
    product: GalleryProduct, *, token: str | None, workdir: str | Path, validate_sources: bool = True
) -> dict:
    """The keyword arguments of ``post_data_product_to_gallery`` for a product.

    Scrubbed copies of the notebook and of the parameters (YAML) are written
    into ``workdir`` and attached from there; the product's own files are
    attached as they are.

    Parameters
    ----------
    product : GalleryProduct
        The product; its files must exist.
    token : str or None
        The MMODA token (only in the ``token`` argument).
    workdir : path-like
        A private temporary folder for the scrubbed copies.
    validate_sources : bool
        Let the gallery resolve the source names (unknown names are still
        inserted, as the real gallery notebooks do).

    Returns
    -------
    dict
        Arguments of ``GalleryDispatcherAPI.post_data_product_to_gallery``.

    Raises
    ------
    GalleryUploadError
        If a file is missing, or something other than the ``token``
        argument holds the token.
    """
    workdir = Path(workdir)
    missing = [
        str(path) for path in [product.image, *product.attachments()] if path is not None and not Path(path).is_file()
    ]
    if missing:
        raise GalleryUploadError(f"product {product.title!r}: missing file(s) {missing}")
    attachments = list(product.fits_files)
    if product.region_file is not None:
        attachments.append(product.region_file)
    stem = re.sub(r"[^A-Za-z0-9.+-]+", "_", product.title).strip("_") or product.product_id
    if product.notebook is not None:
        attachments.append(_scrubbed_copy(product.notebook, workdir / product.notebook.name, token=token))
    yaml_text, information = _parameters_text(product.parameters, token=token)
    yaml_path = workdir / f"{stem}_parameters.yaml"
    yaml_path.write_text(yaml_text, encoding="utf-8")

    fields: dict[str, Any] = {
        "instrument": product.instrument,
        "product_type": product.product_type,
        "T1": product.t1,
        "T2": product.t2,
    }
    if product.src_names:
        fields["src_name"] = list(product.src_names)
    for name, value in (
        ("RA", product.ra),
        ("DEC", product.dec),
        ("e1_kev", product.e1_kev),
        ("e2_kev", product.e2_kev),
    ):
        if _finite(value) is not None:
            fields[name] = _finite(value)
    if product.obsids:
        fields["obsid"] = ",".join(product.obsids)
    if product.kind == "image" and product.sources_table is not None and product.sources_table.is_file():
        from astropy.table import Table

        fields["detected_sources"] = detected_sources_html(Table.read(product.sources_table))
    fields["additional_information"] = information
    if product.produced_by:
        fields["produced_by"] = product.produced_by
    fields.update({key: value for key, value in product.fields.items() if value is not None})

    request = dict(
        product_title=product.title,
        product_id=product.product_id,
        gallery_image_path=str(product.image) if product.image is not None else None,
        fits_file_path=[str(path) for path in attachments] or None,
        yaml_file_path=str(yaml_path),
        token=token,
        insert_new_source=True,
        validate_source=validate_sources,
        force_insert_not_valid_new_source=True,
        apply_fields_source_resolution=False,
        in_evidence=False,
        observation_time_format="ISOT",
        **fields,
    )
    _refuse_secrets(request, token=token)
    return request


def _refuse_secrets(request: Mapping[str, Any], *, token: str | None) -> None:
    """Raise unless the token appears in the ``token`` argument only (fields and attached files checked)."""
    secrets = _secrets(token)
    for key, value in request.items():
        if key == "token" or value is None:
            continue
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and provenance.contains_secret(text, secrets=secrets):
                raise GalleryUploadError(f"refusing to upload: the field {key} would carry a token")
    files = [request.get("gallery_image_path"), request.get("yaml_file_path"), *(request.get("fits_file_path") or [])]
    for name in filter(None, files):
        path = Path(name)
        if _file_holds(path, [secret.encode("utf-8") for secret in secrets]):
            raise GalleryUploadError(f"refusing to upload {path.name}: it holds the MMODA token")
        if path.suffix.lower() in _TEXT_SUFFIXES and provenance.contains_secret(
            path.read_text(encoding="utf-8", errors="replace"), secrets=()
        ):
            raise GalleryUploadError(f"refusing to upload {path.name}: it holds something shaped like a token")


def _file_holds(path: Path, needles: Sequence[bytes], *, block_bytes: int = 1 << 23) -> bool:
    """Whether a file contains any of ``needles``, read block by block (mosaics of the whole mission are large)."""
    if not needles:
        return False
    overlap = max(len(needle) for needle in needles) - 1
    tail = b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_bytes), b""):
            window = tail + block
            if any(needle in window for needle in needles):
                return True
            tail = window[-overlap:] if overlap else b""
    return False


# -- the upload ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UploadResult:
    """What the gallery answered for one product.

    Attributes
    ----------
    product_id, title, instrument, product_type : str
        The product.
    link : str
        The product's page in the gallery (``_links.self.href`` without its query).
    node_id : object
        The gallery's node id, if given.
    created, changed : str
        Timestamps of the gallery's node; ``changed`` moves on every update.
    updated : bool
        True when the product existed and was updated (created ≠ changed).
    attempts : int
        Attempts it took.
    """

    product_id: str
    title: str
    instrument: str
    product_type: str
    link: str
    node_id: Any
    created: str
    changed: str
    updated: bool
    attempts: int

    def as_dict(self) -> dict:
        """JSON-safe form."""
        return dataclasses.asdict(self)


def _first_value(node: Mapping[str, Any], key: str) -> Any:
    value = node.get(key)
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return value[0].get("value")
    return value


def _result_from_answer(product: GalleryProduct, answer: Mapping[str, Any], attempts: int) -> UploadResult:
    created, changed = _first_value(answer, "created"), _first_value(answer, "changed")
    return UploadResult(
        product_id=product.product_id,
        title=str(_first_value(answer, "title") or product.title),
        instrument=product.instrument,
        product_type=product.product_type,
        link=str(answer["_links"]["self"]["href"]).split("?")[0],
        node_id=_first_value(answer, "nid"),
        created=str(created),
        changed=str(changed),
        updated=created is not None and created != changed,
        attempts=attempts,
    )


class _Transient(Exception):
    """A failure worth retrying."""


def _classify(text: str, *, status: int | None) -> Exception:
    """The exception a failed attempt stands for: transient, permission or refusal."""
    if _OWNED_TEXT.search(text):
        return GalleryPermissionError(
            f"the MMODA gallery refused the upload: {text.strip()[:300]}. A product id already taken by another "
            f"contributor's product cannot be reused; only its author or a gallery admin may change it."
        )
    if status in (401, 403) or (status is None and _PERMISSION_TEXT.search(text)):
        return GalleryPermissionError(_permission_message(text.strip()[:300] or f"HTTP {status}"))
    if (status is not None and status >= 500) or (status is None and _SERVER_ERROR_TEXT.search(text)):
        return _Transient(text.strip()[:300] or f"HTTP {status}")
    return GalleryUploadError(
        f"the gallery refused the product: {text.strip()[:500]}" + (f" (HTTP {status})" if status else "")
    )


def _attempt(session: Session, api, request: Mapping[str, Any], *, token: str | None) -> Mapping[str, Any] | Exception:
    """One call of the client through the session; returns the answer, or the exception that classifies the failure.

    A gallery the session finds gone (:class:`BackendUnavailable`) is a :class:`GalleryUnavailableError`, not
    retried: waiting does not bring back a server that has exited.
    """
    import requests
    from oda_api.api import RemoteException, UserError

    secrets = _secrets(token)
    try:
        answer = session.call(api, api.post_data_product_to_gallery, **request)
    except BackendUnavailable as error:
        return GalleryUnavailableError(provenance.scrub_text(str(error), secrets=secrets)[0])
    except (requests.ConnectionError, requests.Timeout) as error:
        # The client puts the token in GET query strings: the error's URL would show it.
        return _Transient(provenance.scrub_text(f"{type(error).__name__}: {error}", secrets=secrets)[0])
    except RemoteException as error:
        text = provenance.scrub_text(str(getattr(error, "message", error)), secrets=secrets)[0]
        match = _STATUS_IN_REMOTE_EXCEPTION.search(text)
        status = int(match[1]) if match else None
        body = text.split("--- response text ---", 1)[-1].split("--- res content ---", 1)[0]
        if status == 200:
            return GalleryUploadError(f"the gallery answered something that is not JSON: {body.strip()[:300]}")
        return _classify(body if match else text, status=status)
    except UserError as error:
        return GalleryUploadError(
            f"the gallery client refused the product: {provenance.scrub_text(str(error), secrets=secrets)[0]}"
        )
    except (KeyError, TypeError, IndexError) as error:
        # The client reads _links/created/changed of a 200 answer without checking they are there.
        return GalleryUploadError(f"the gallery's answer lacks an expected field ({type(error).__name__}: {error})")
    if isinstance(answer, Mapping) and isinstance(answer.get("_links"), Mapping) and "self" in answer["_links"]:
        return answer
    if isinstance(answer, Mapping):
        text = " - ".join(
            str(answer[key])
            for key in ("error_message", "drupal_helper_error_message", "error", "message")
            if answer.get(key)
        )
    else:
        text = str(answer)
    return _classify(provenance.scrub_text(text or "no product in the answer", secrets=secrets)[0], status=None)


def upload_product(
    product: GalleryProduct,
    *,
    url: str | None = None,
    session: Session | None = None,
    token: str | None = None,
    policy: RetryPolicy | None = None,
    validate_sources: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> UploadResult:
    """Upload (or update) one product with ``GalleryDispatcherAPI.post_data_product_to_gallery``.

    The request goes through the network seam (:class:`integral_workflows.session.Session`): the client is
    built by :meth:`Session.dispatcher` and called through :meth:`Session.call`, so a gallery whose server is
    gone fails at once instead of being retried.

    Parameters
    ----------
    product : GalleryProduct
        The product and its files.
    url : str, optional
        The dispatcher whose gallery receives it (joins the session open for it, if any).
    session : Session, optional
        The session to use instead of ``url``.
    token : str, optional
        The MMODA token; :func:`integral_workflows.hosts.discover_token` by default.
    policy : RetryPolicy, optional
        Retries of transient failures (connection errors, timeouts, 5xx).
    validate_sources : bool
        Let the gallery resolve the source names.
    sleep : callable
        Waits between attempts (tests pass a fake).

    Returns
    -------
    UploadResult
        The gallery's answer: link, created/changed, whether it was an update.

    Raises
    ------
    GalleryPermissionError
        No token, or the gallery refused it (the message names the role
        ``gallery contributor`` and what to do).
    GalleryUploadError
        The gallery refused the product, or a file is missing.
    GalleryUnavailableError
        Transient failures until the retries ran out.
        Also at once, without retries, when the session finds the gallery's server gone.
    """
    from oda_api.gallery_api import GalleryDispatcherAPI

    policy = policy or RetryPolicy()
    token = token if token is not None else hosts.discover_token()
    if not token:
        raise GalleryPermissionError(_permission_message("no MMODA token: neither $ODA_TOKEN nor a .oda-token file"))
    session = session_for(session, url=url)
    url = session.url
    api = session.dispatcher(api_class=GalleryDispatcherAPI)
    last = ""
    with tempfile.TemporaryDirectory(prefix="gallery-upload-") as workdir:
        request = build_upload_request(product, token=token, workdir=workdir, validate_sources=validate_sources)
        for attempt in range(1, policy.attempts + 1):
            outcome = _attempt(session, api, request, token=token)
            if not isinstance(outcome, Exception):
                result = _result_from_answer(product, outcome, attempt)
                log.info(
                    "gallery: %s %r (%s) at %s",
                    "updated" if result.updated else "posted",
                    result.title,
                    product.product_id,
                    result.link,
                )
                return result
            if not isinstance(outcome, _Transient):
                raise outcome
            last = str(outcome)
            if attempt < policy.attempts:
                delay = policy.delay(attempt)
                log.warning(
                    "gallery upload of %r failed (%s), attempt %d of %d; retrying in %.1f s",
                    product.title,
                    last,
                    attempt,
                    policy.attempts,
                    delay,
                )
                sleep(delay)
    raise GalleryUnavailableError(
        f"the gallery at {url} kept failing for {product.title!r} after {policy.attempts} attempts; last error: {last}"
    )


def upload_products(
    products: Sequence[GalleryProduct],
    *,
    host_type: str | None = None,
    url: str | None = None,
    token: str | None = None,
    policy: RetryPolicy | None = None,
    validate_sources: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> list[UploadResult]:
    """Upload several products to the gallery of ``host_type`` (or of ``url``).

    Parameters
    ----------
    products : sequence of GalleryProduct
    host_type : str, optional
        ``production``, ``staging``, ``esa`` or ``local``: the gallery is on
        that dispatcher. Simulated products go to the local gallery only.
    url : str, optional
        A dispatcher URL instead of ``host_type``.
    token, policy, validate_sources, sleep
        As for :func:`upload_product`.

    Returns
    -------
    list of UploadResult
        In the order of ``products``.

    Raises
    ------
    GalleryPermissionError, GalleryUploadError, GalleryUnavailableError
        As :func:`upload_product`, for the first product that fails (the
        earlier ones are uploaded).
    ValueError
        If neither or both of ``host_type`` and ``url`` are given.
    """
    if (host_type is None) == (url is None):
        raise ValueError("give host_type or url")
    if host_type is not None:
        simulated = [product.title for product in products if product.simulated]
        if simulated and host_type != "local":
            raise GalleryUploadError(
                f"{len(simulated)} product(s) come from the local MMODA's simulated sky "
                f"(e.g. {simulated[0]!r}): they may go to the local gallery only, not to "
                f"host_type {host_type!r}"
            )
        url = hosts.dispatcher_url(host_type)
    token = token if token is not None else hosts.discover_token()
    results = []
    for product in products:
        results.append(
            upload_product(product, url=url, token=token, policy=policy, validate_sources=validate_sources, sleep=sleep)
        )
    return results


# -- products of the suite's notebooks -----------------------------------------------------------------------------

_INSTRUMENT_LABELS = {"isgri": "ISGRI", "jemx1": "JEM-X1", "jemx2": "JEM-X2", "spi_acs": "SPI-ACS"}
_KIND_LABELS = {"image": "mosaic", "light_curve": "light curve", "spectrum": "spectrum"}


#: Parameters of the run that define each of its products, besides the descriptor's identity: the run's
#: target and centre (a source's light curve from the Crab field and from its own field are two products).
RUN_DEFINING = ("src_name", "RA", "DEC")


def _band_text(product: Product) -> str:
    return f"{product.band[0]:g}-{product.band[1]:g} keV" if product.band else ""


def _run_target(parameters: Mapping[str, Any]) -> str:
    return str(parameters.get("src_name") or "").strip()


def _default_title(product: Product, t1: str, t2: str) -> str:
    band = f" {_band_text(product)}" if product.band and product.kind != "spectrum" else ""
    return (
        f"{product.source or 'field'} {_INSTRUMENT_LABELS[product.instrument]} {_KIND_LABELS[product.kind]}"
        f"{band}, {t1[:10]} to {t2[:10]}"
    )


def distinct_title(product: Product, title: str, *, parameters: Mapping[str, Any]) -> str:
    """A title that tells this product from the others of its run and of other runs.

    What the title lacks of the product's instrument, band, observation and (for a source
    extracted from another target's field) that field is appended, e.g.
    ``Galactic Center Rev. 0300, ISGRI 28-40 keV, obs. 03000010001``.

    Parameters
    ----------
    product : Product
        The descriptor.
    title : str
        The writer's title (or the default one).
    parameters : mapping
        The run's parameters (its ``src_name`` is the field's target).

    Returns
    -------
    str
    """
    lowered = title.lower()
    parts = []
    label = _INSTRUMENT_LABELS[product.instrument]
    instrument = "" if label.lower() in lowered or product.instrument in lowered else label
    band = _band_text(product)
    if band and band.lower() not in lowered and product.kind != "spectrum":
        instrument = f"{instrument} {band}".strip()
    if instrument:
        parts.append(instrument)
    obsids = [str(obsid) for obsid in (product.details or {}).get("obsids") or ()]
    if len(obsids) == 1 and obsids[0] not in title:
        parts.append(f"obs. {obsids[0]}")
    target = _run_target(parameters)
    if (
        product.kind != "image"
        and target
        and product.source
        and target.lower() != product.source.lower()
        and target.lower() not in lowered
    ):
        parts.append(f"{target} field")
    return ", ".join([title, *parts])


def defining_parameters(product: Product, parameters: Mapping[str, Any]) -> dict:
    """What makes a product this product: the hash of it is its gallery product id.

    The descriptor's identity (what its writer says defines it), completed with what tells
    it from a product of the same name made by another run: its product type, instrument,
    band and period, and the run's target and centre (:data:`RUN_DEFINING`). Two uploads
    with the same defining parameters are the same product (the second updates the first);
    the light curve of a source extracted from its own field and from a neighbour's are two.

    Parameters
    ----------
    product : Product
        A descriptor the gallery shows.
    parameters : mapping
        The run's parameters.

    Returns
    -------
    dict
    """
    kind = GALLERY_KINDS[product.kind]
    defining: dict[str, Any] = {
        **product.identity,
        "product_type": product_type(product.instrument, kind),
        "gallery_instrument": product.instrument,
    }
    if product.band:
        defining["gallery_band_keV"] = [f"{product.band[0]:.2f}", f"{product.band[1]:.2f}"]
    if product.period:
        defining["gallery_period"] = [isot_seconds(product.period[0]), isot_seconds(product.period[1], round_up=True)]
    if _run_target(parameters):
        defining["run_src_name"] = _run_target(parameters)
    centre = [parameters.get(key) for key in ("RA", "DEC")]
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in centre):
        # 1e-4 deg: a centre written with more or fewer digits is the same centre
        defining["run_centre_deg"] = [f"{float(value):.4f}" for value in centre]
    return defining


def gallery_product(
    product: Product,
    *,
    parameters: Mapping[str, Any],
    produced_by: str,
    notebook: str | Path | None = None,
    simulated: bool = False,
) -> GalleryProduct:
    """The gallery's view of a product descriptor (image, light curve or spectrum).

    Parameters
    ----------
    product : Product
        A descriptor whose ``kind`` the gallery shows (:attr:`Product.in_gallery`).
    parameters : mapping
        The run's parameters (JSON-safe), attached to the gallery entry.
    produced_by : str
        The notebook that made it (``mosaic.ipynb``).
    notebook : path-like, optional
        The executed notebook to attach.
    simulated : bool
        Made from the local MMODA's simulated sky.

    Returns
    -------
    GalleryProduct
        Its product id is :func:`product_id` of :func:`defining_parameters`, its title
        :func:`distinct_title`.
    """
    if not product.in_gallery:
        raise ValueError(f"the gallery shows images, light curves and spectra, not {product.kind!r}")
    kind = GALLERY_KINDS[product.kind]
    if product.period is None:
        raise ValueError(f"product {product.path.name} has no period: the gallery needs T1 and T2")
    t1, t2 = isot_seconds(product.period[0]), isot_seconds(product.period[1], round_up=True)
    details = dict(product.details)
    ra, dec = product.position if product.position else (None, None)
    band = product.band if product.kind != "spectrum" else None
    fields = {"time_bin": details["time_bin"]} if details.get("time_bin") is not None else {}
    return GalleryProduct(
        title=distinct_title(product, product.title or _default_title(product, t1, t2), parameters=parameters),
        instrument=product.instrument,
        kind=kind,
        product_id=product_id(defining_parameters(product, parameters)),
        t1=t1,
        t2=t2,
        src_names=details.get("src_names") or ([product.source] if product.source else []),
        ra=ra,
        dec=dec,
        e1_kev=band[0] if band else None,
        e2_kev=band[1] if band else None,
        obsids=details.get("obsids") or (),
        revolutions=details.get("revolutions") or (),
        image=product.plot,
        fits_files=(product.path, *product.companions),
        region_file=product.region,
        sources_table=product.sources,
        notebook=Path(notebook) if notebook else None,
        produced_by=produced_by,
        parameters=dict(parameters),
        fields=fields,
        simulated=simulated,
    )


def recorded_steps(run_folder: str | Path) -> list[str]:
    """The steps whose notebooks recorded their products in ``run_folder`` (``<step>.step.json``)."""
    suffix = provenance.STEP_RECORD_SUFFIX
    return sorted(path.name[: -len(suffix)] for path in Path(run_folder).glob(f"*{suffix}"))


def run_products(
    run_folder: str | Path, *, steps: Sequence[str] | None = None, notebooks: Mapping[str, str | Path] | None = None
) -> list[GalleryProduct]:
    """The gallery products a finished run folder holds, from the descriptors its notebooks recorded.

    Parameters
    ----------
    run_folder : path-like
        A folder where notebooks ran (each wrote ``<step>.step.json`` in its outputs cell).
    steps : sequence of str, optional
        Only these steps; every recorded step by default.
    notebooks : mapping, optional
        Step → its executed notebook, to attach; by default the run folder's ``NN_<step>.ipynb``.

    Returns
    -------
    list of GalleryProduct
    """
    run_folder = Path(run_folder)
    products = []
    for step in steps or recorded_steps(run_folder):
        record = provenance.read_step_record(run_folder, step)
        if record is None:
            log.info("step %s recorded nothing in %s: no product to upload", step, run_folder)
            continue
        notebook = (notebooks or {}).get(step) or find_executed_notebook(run_folder, step)
        parameters = record.get("parameters") or {}
        simulated = bool((record.get("extra") or {}).get("simulated", parameters.get("host_type") == "local"))
        for data in record.get("descriptors") or []:
            product = Product.from_dict(data, base=run_folder)
            if product.in_gallery:
                products.append(
                    gallery_product(
                        product,
                        parameters=parameters,
                        produced_by=f"{step}.ipynb",
                        notebook=notebook,
                        simulated=simulated,
                    )
                )
    return products


def find_executed_notebook(output_dir: str | Path, step: str) -> Path | None:
    """The executed notebook of ``step`` in a run folder (``NN_<step>.ipynb``, as ``run_all.py`` names it).

    Parameters
    ----------
    output_dir : path-like
        The run folder.
    step : str
        The step name.

    Returns
    -------
    Path or None
        The most recent one, or None (e.g. under the plain papermill CLI).
    """
    candidates = sorted(Path(output_dir).glob(f"[0-9][0-9]_{step}.ipynb"), key=lambda path: path.stat().st_mtime)
    return candidates[-1] if candidates else None


def upload_run_products(
    run_folder: str | Path,
    *,
    steps: Sequence[str] | None = None,
    notebooks: Mapping[str, str | Path] | None = None,
    host_type: str | None = None,
    url: str | None = None,
    token: str | None = None,
    policy: RetryPolicy | None = None,
    dry_run: bool = False,
    record: bool = True,
) -> list[UploadResult]:
    """Upload a finished run folder's products to the gallery: the one way products reach it.

    The products are those the notebooks recorded (:meth:`integral_workflows.notebook.NotebookRun.record_outputs`),
    each with its files, the executed notebook and the run's parameters (scrubbed of any token).
    A pipeline calls it from a hook after a step; the ``gallery_upload`` notebook calls it on a run
    folder; a notebook run with ``upload_to_gallery`` calls it on its own output folder.

    Parameters
    ----------
    run_folder : path-like
        The folder the notebooks wrote their products and step records into.
    steps : sequence of str, optional
        Only the products of these steps; all recorded steps by default.
    notebooks : mapping, optional
        Step → executed notebook to attach (default: ``NN_<step>.ipynb`` in the folder, if any).
    host_type : str, optional
        The gallery of this MMODA; by default the ``host_type`` the step ran with.
    url : str, optional
        A dispatcher URL instead of ``host_type``.
    token, policy
        As for :func:`upload_product`.
    dry_run : bool
        Describe the products and upload nothing.
    record : bool
        Write ``<run_folder>/<step>_gallery.json`` per step with what was uploaded.

    Returns
    -------
    list of UploadResult
        One per product (empty for a dry run).

    Raises
    ------
    GalleryPermissionError, GalleryUploadError, GalleryUnavailableError
        As :func:`upload_products`.
    """
    run_folder = Path(run_folder)
    results: list[UploadResult] = []
    for step in steps or recorded_steps(run_folder):
        products = run_products(run_folder, steps=[step], notebooks=notebooks)
        if not products or dry_run:
            log.info("%s: %d gallery product(s)%s", step, len(products), " (dry run: not uploaded)" if dry_run else "")
            continue
        target_host = host_type if url is None else None
        if target_host is None and url is None:
            target_host = products[0].parameters.get("host_type", "production")
        step_results = upload_products(products, host_type=target_host, url=url, token=token, policy=policy)
        if record:
            write_upload_record(step_results, run_folder / f"{step}{UPLOAD_RECORD_SUFFIX}")
        results += step_results
    return results


def write_upload_record(results: Sequence[UploadResult], path: str | Path) -> Path:
    """Record what was uploaded (product ids, links, created/changed): never the token.

    Parameters
    ----------
    results : sequence of UploadResult
    path : path-like
        The JSON file.

    Returns
    -------
    Path
    """
    return provenance.write_json(
        path,
        {"uploaded_utc": provenance.utc_now(), "products": [result.as_dict() for result in results]},
        what="gallery upload record",
    )


def products_table(products: Sequence[GalleryProduct]):
    """The products as an astropy Table (title, instrument, type, product id, span, sources, files)."""
    from astropy.table import Table

    rows = [
        (
            p.title,
            p.instrument,
            p.product_type,
            p.product_id,
            p.t1,
            p.t2,
            ", ".join(p.src_names),
            ", ".join(p.obsids),
            len(p.attachments()) + (p.image is not None),
        )
        for p in products
    ]
    return Table(
        rows=rows or None,
        names=("title", "instrument", "product_type", "product_id", "t1", "t2", "sources", "obsids", "files"),
        dtype=(str, str, str, str, str, str, str, str, int),
    )


def results_table(results: Sequence[UploadResult]):
    """Upload results as an astropy Table (title, product id, posted/updated, link, changed, attempts)."""
    from astropy.table import Table

    rows = [
        (r.title, r.product_id, "updated" if r.updated else "posted", r.link, r.changed, r.attempts) for r in results
    ]
    return Table(
        rows=rows or None,
        names=("title", "product_id", "action", "link", "changed", "attempts"),
        dtype=(str, str, str, str, str, int),
    )


def list_products(*, url: str, token: str | None = None, **conditions: Any) -> list:
    """The gallery's products matching conditions (``GalleryDispatcherAPI.get_list_products_with_conditions``).

    Parameters
    ----------
    url : str
        The dispatcher.
    token : str, optional
        The MMODA token; :func:`integral_workflows.hosts.discover_token` by default.
    **conditions
        ``instrument_name``, ``product_type``, ``src_name``, ``rev1_value``,
        ``rev2_value``... as the client passes them.

    Returns
    -------
    list
        The gallery's answer (a list of products), or ``[]`` when it answered
        something else (logged).
    """
    from oda_api.gallery_api import GalleryDispatcherAPI

    token = token if token is not None else hosts.discover_token()
    session = session_for(url=url)
    api = session.dispatcher(api_class=GalleryDispatcherAPI)
    try:
        answer = session.call(api, api.get_list_products_with_conditions, token=token, **conditions)
    except ValueError as error:  # the client parses an error page as JSON without checking it is JSON
        log.warning("the gallery's answer to a product query is not JSON (%s)", error)
        return []
    if not isinstance(answer, list):
        log.warning("the gallery answered %s to a product query", provenance.scrub_text(str(answer)[:300])[0])
        return []
    return answer
