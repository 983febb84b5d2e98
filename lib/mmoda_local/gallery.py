"""The MMODA product gallery, locally: the dispatcher's gallery endpoints over SQLite and files.

The real gallery is a Drupal site behind the dispatcher (protocol notes §7,
dispatcher-app 1.3.6 ``drupal_helper.py``): ``oda_api``'s
``GalleryDispatcherAPI`` posts products to the dispatcher, which checks the
MMODA token (role ``gallery contributor`` for writes) and forwards them to
Drupal, whose answer (a HAL-JSON node) comes back to the client unchanged.
This module keeps that contract and stores what Drupal would store:

* ``<data_dir>/gallery/gallery.sqlite``: nodes (data products, observations,
  astrophysical entities) and the attached files' records;
* ``<data_dir>/gallery/files/<nid>/<fid>_<name>``: the attached files.

Routes (served by :func:`register_gallery` under the real paths):

==================================================  ==========================================================
``POST post_product_to_gallery``                    create, or update when ``product_id`` is known → HAL node
``POST delete_product_to_gallery``                  ``{}`` or ``{"output_message": ...}``
``POST post_observation_to_gallery``                observation node (``title``, ``T1``, ``T2``, ``obsid``, yaml)
``POST post_astro_entity_to_gallery``               astrophysical-entity node
``GET get_parents_term``                            parents of a product-type term, e.g. ``["image", "isgri_image"]``
``GET get_list_terms``                              instruments, product types (of an instrument), sources
``GET resolve_name``                                from the simulated sky's catalogue
``GET get_revnum``                                  ``{"revnum": int}`` from the simulated archive
``GET get_data_product_list_with_conditions``       list of products (Drupal view rows, ``field_`` stripped)
``GET get_data_product_list_by_source_name``        idem, for one source (name or alternative name)
``GET get_observation_attachments``                 ``{"title": ..., "file_content": ...}``
``GET get_all_revs``, ``get_all_astro_entities``    lists
``GET get_astro_entity_info_by_source_name``        entity fields without ``field_``
==================================================  ==========================================================

Writes need a token carrying ``gallery contributor`` (403, text, as the
real dispatcher's ``validate_token_from_request``); the product lists accept
no token. **No token is ever stored**: the request's ``token`` is only
checked, any other form value that looks like a JWT is dropped, and every
uploaded file is scrubbed of JWT-looking strings (and of the request's own
token) before it is written (:func:`scrub_bytes`).

The catalogue behind ``resolve_name`` and the revolution numbers are those of
the simulated sky and archive: this gallery belongs to the local, SIMULATED
MMODA, and products made from the simulated sky are flagged as such.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import gzip
import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote

from flask import Flask, Response, request
from werkzeug.utils import secure_filename

from . import auth, protocol

log = logging.getLogger(__name__)

ROLE = auth.ROLE_GALLERY

#: Drupal's HAL-JSON link relations live under ``<gallery>/rest/relation/node/<bundle>/<field>``.
RELATION = "rest/relation/node/{bundle}/{field}"

#: Instruments of the gallery's ``instruments`` vocabulary (what ``get_list_terms?group=instruments`` lists).
INSTRUMENTS = ("isgri", "jemx", "jemx1", "jemx2", "spi_acs")

#: Product-type families: the parents of the ``products`` vocabulary's terms.
FAMILIES = ("image", "lightcurve", "spectrum")

#: Product-type terms per instrument (``get_list_terms?group=products&parent=<instrument>``).
INSTRUMENT_PRODUCTS = {
    "isgri": ("isgri_image", "isgri_lc", "isgri_spectrum"),
    "jemx": ("jemx_image", "jemx_lc", "jemx_spectrum"),
    "jemx1": ("jemx_image", "jemx_lc", "jemx_spectrum"),
    "jemx2": ("jemx_image", "jemx_lc", "jemx_spectrum"),
    "spi_acs": ("spi_acs_lc",),
}

#: A JSON Web Token: base64url of ``{"`` twice (header and payload), then the signature. The signature
#: is optional here: a truncated token still tells who its owner is.
JWT_PATTERN = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")

#: What replaces a token in a text file (the file stays valid YAML, JSON or notebook).
TOKEN_MARKER = "<token removed>"

#: Form fields the client sends that steer the request rather than describe the product.
CONTROL_FIELDS = ("content_type", "product_title", "observation_id", "insert_new_source", "product_id",
                  "entity_portal_link_list", "source_coord_list", "object_ids_list", "object_type_list",
                  "in_evidence", "src_name", "instrument", "product_type", "T1", "T2")

#: Largest upload accepted (the real dispatcher has no stated limit; this one protects the disk).
MAX_UPLOAD_BYTES = 512 * 1024 * 1024

TEXT_KINDS = ("yaml", "notebook", "html", "table", "region", "json", "text")
EXTENSION_KINDS = {
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".gif": "image", ".svg": "image", ".webp": "image",
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".pha": "fits", ".arf": "fits", ".rmf": "fits",
    ".reg": "region", ".yaml": "yaml", ".yml": "yaml", ".ipynb": "notebook", ".html": "html", ".htm": "html",
    ".ecsv": "table", ".csv": "table", ".tsv": "table", ".dat": "table", ".json": "json", ".txt": "text",
    ".log": "text", ".md": "text", ".py": "text",
}

DRUPAL_TIME = "%Y-%m-%dT%H:%M:%S+00:00"


class GalleryError(Exception):
    """A request the gallery cannot honour; answered as the dispatcher answers Drupal errors.

    Parameters
    ----------
    message : str
        ``error_message`` of the answer.
    status : int, optional
        HTTP status (400 by default).
    detail : str, optional
        ``drupal_helper_error_message`` of the answer.
    """

    def __init__(self, message: str, *, status: int = 400, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail


# -- vocabulary -------------------------------------------------------------------------------------------------
def product_family(product_type: str | None) -> str | None:
    """The family (``image``, ``lightcurve``, ``spectrum``) of a product type, or None.

    Parameters
    ----------
    product_type : str or None
        A term such as ``isgri_image``, ``jemx_lc``, ``isgri_spectrum``,
        ``mosaic`` or a family name itself.

    Returns
    -------
    str or None
        The family; None when the name says nothing about it.
    """
    if not product_type:
        return None
    term = str(product_type).strip().lower()
    if term in FAMILIES:
        return term
    if "image" in term or "mosaic" in term:
        return "image"
    if term.endswith("_lc") or term == "lc" or "lightcurve" in term or "light_curve" in term:
        return "lightcurve"
    if "spectr" in term:
        return "spectrum"
    return None


def product_terms(parent: str | None = None) -> list[str]:
    """Terms of the ``products`` vocabulary, all of them or those of one instrument."""
    if parent and parent != "all":
        return list(INSTRUMENT_PRODUCTS.get(parent.lower(), ()))
    terms = list(FAMILIES)
    for names in INSTRUMENT_PRODUCTS.values():
        terms += [name for name in names if name not in terms]
    return terms


def term_id(vocabulary: str, name: str) -> int:
    """A stable taxonomy term id (Drupal's ``tid``) for a vocabulary term."""
    digest = hashlib.sha256(f"{vocabulary}:{name.lower()}".encode()).hexdigest()
    return 1000 + int(digest[:6], 16) % 900000


def normalised_name(name) -> str:
    """Case-, space- and underscore-insensitive form of a source name (as the simulated sky's)."""
    return "".join(str(name).split()).lower().replace("_", "")


# -- token hygiene ----------------------------------------------------------------------------------------------
def looks_like_token(value) -> bool:
    """True if ``value`` contains something shaped like a JWT."""
    if value is None:
        return False
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
    return JWT_PATTERN.search(data) is not None


def _secret_patterns(secrets: Iterable[str]) -> list[bytes]:
    # the request's own token is removed even if it does not look like a JWT; very short values would
    # match ordinary text, so they are left to the JWT pattern
    return [s.encode() for s in secrets if s and len(s) >= 16]


def scrub_text(text: str, *, secrets: Iterable[str] = ()) -> tuple[str, int]:
    """Replace JWT-looking strings (and the given secrets) in a text by :data:`TOKEN_MARKER`.

    Returns
    -------
    (str, int)
        The cleaned text and the number of replacements.
    """
    data, count = scrub_bytes(text.encode("utf-8", "surrogateescape"), kind="text", secrets=secrets)
    return data.decode("utf-8", "surrogateescape"), count


def scrub_bytes(data: bytes, *, kind: str, secrets: Iterable[str] = ()) -> tuple[bytes, int]:
    """Remove tokens from the content of an uploaded file.

    Parameters
    ----------
    data : bytes
        The file's content.
    kind : str
        What the file is (:func:`file_kind`): text kinds get
        :data:`TOKEN_MARKER`; binary ones (FITS, images, unknown) get a
        same-length run of ``X`` so FITS headers (80-character cards) and
        offsets stay valid. Gzip files are scrubbed inside and recompressed.
    secrets : iterable of str
        Exact strings to remove as well (the request's token).

    Returns
    -------
    (bytes, int)
        The cleaned content and the number of replacements.
    """
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError):
            inner = None
        if inner is not None:
            cleaned, count = scrub_bytes(inner, kind=kind, secrets=secrets)
            return (gzip.compress(cleaned, mtime=0) if count else data), count
    patterns = [re.escape(s) for s in _secret_patterns(secrets)] + [JWT_PATTERN.pattern]
    combined = re.compile(b"|".join(patterns))
    count = 0

    def replace(match):
        nonlocal count
        count += 1
        if kind in TEXT_KINDS:
            return TOKEN_MARKER.encode()
        return b"X" * len(match.group(0))

    cleaned = combined.sub(replace, data)
    return cleaned, count


def file_kind(filename: str, data: bytes = b"") -> str:
    """Classify an uploaded file: image, fits, region, yaml, notebook, html, table, json, text or other."""
    name = filename.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for extension, kind in EXTENSION_KINDS.items():
        if name.endswith(extension):
            return kind
    head = data[:16]
    if head[:2] == b"\x1f\x8b":
        try:
            head = gzip.decompress(data)[:16]
        except (OSError, EOFError):
            return "other"
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.startswith(b"\x89PNG") or head[:3] == b"\xff\xd8\xff":
        return "image"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "other"
    return "text"


# -- time -------------------------------------------------------------------------------------------------------
def drupal_time(seconds: float) -> str:
    """Drupal's time stamp format (``2024-01-01T00:00:00+00:00``) of a Unix time."""
    return _dt.datetime.fromtimestamp(int(seconds), tz=_dt.timezone.utc).strftime(DRUPAL_TIME)


def parse_isot(value) -> str | None:
    """Normalise a time to ``YYYY-MM-DDTHH:MM:SS`` (None when it is not a time)."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace(" ", "T")
    for pattern in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d", "%Y-%m-%dT%H:%M"):
        try:
            return _dt.datetime.strptime(text, pattern).strftime("%Y-%m-%dT%H:%M:%S")
        except ValueError:
            continue
    with contextlib.suppress(ValueError):
        return _dt.datetime.fromisoformat(text).strftime("%Y-%m-%dT%H:%M:%S")
    return None


def _number(value):
    """A form value as int or float when it is one (Drupal returns numeric fields as numbers)."""
    if isinstance(value, (int, float)) or value is None:
        return value
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _float_or_none(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int_or_none(value) -> int | None:
    number = _float_or_none(value)
    return int(number) if number is not None else None


def _json_list(text, *, what: str) -> list:
    if text in (None, ""):
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise GalleryError(f"{what} is not valid JSON", detail=f"error while posting data product: {what}") from None
    return value if isinstance(value, list) else [value]


# -- the catalogue behind resolve_name --------------------------------------------------------------------------
#: A coarse reading of the ISDC reference catalogue's CLASS code into SIMBAD-like object types.
CLASS_TYPES = ((1200, 1400, "HighMassXBin"), (1400, 1500, "LowMassXBin"), (1000, 1200, "XrayBin"),
               (1500, 1600, "XrayBin"), (1700, 1800, "Pulsar"), (3000, 4000, "SNRemnant"),
               (7100, 7200, "Seyfert"), (7200, 7300, "QSO"), (7300, 7400, "BLLac"), (7500, 7600, "RadioG"),
               (7000, 8000, "AGN"))


def object_type_of(class_code: int) -> str:
    """SIMBAD-like object type of an ISDC CLASS code (``X`` when the code says nothing usable)."""
    for low, high, name in CLASS_TYPES:
        if low <= class_code < high:
            return name
    return "X"


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, dict]:
    """The simulated sky's catalogue (ISDC reference catalogue subset), by normalised name."""
    import importlib.resources

    from astropy.table import Table

    resource = importlib.resources.files("mmoda_local") / "data" / "isdc_ref_cat_0043_subset.ecsv"
    with importlib.resources.as_file(resource) as path:
        table = Table.read(str(path), format="ascii.ecsv")
    entries = {}
    for row in table:
        name = str(row["NAME"]).strip()
        entries.setdefault(normalised_name(name), {
            "name": name, "source_id": str(row["SOURCE_ID"]).strip(), "ra": float(row["RA_OBJ"]),
            "dec": float(row["DEC_OBJ"]), "object_type": object_type_of(int(row["CLASS"]))})
    return entries


def resolve(name: str | None, *, portal: str = "") -> dict:
    """Answer of ``resolve_name`` for a name, from the simulated sky's catalogue.

    Parameters
    ----------
    name : str or None
        Source name (``_`` are read as spaces, as the real resolver does).
    portal : str, optional
        Base URL of this gallery's source pages (``entity_portal_link``).

    Returns
    -------
    dict
        ``{}`` without a name; else ``name``, ``message`` (``... successfully
        resolved`` or ``... could not be resolved: ...``) and, when resolved,
        ``RA``, ``DEC`` (deg), ``object_ids``, ``object_type``,
        ``entity_portal_link``.
    """
    if name is None:
        return {}
    shown = name.replace("_", " ").strip()
    entry = catalogue().get(normalised_name(shown))
    if entry is None:
        return {"name": shown, "message": f"{name} could not be resolved: not in the catalogue of the "
                                          f"simulated INTEGRAL sky"}
    return {"name": shown, "RA": entry["ra"], "DEC": entry["dec"],
            "object_ids": [entry["name"], entry["source_id"]], "object_type": entry["object_type"],
            "entity_portal_link": f"{portal}/source/{quote(entry['name'], safe='')}",
            "message": f"{name} successfully resolved"}


# -- storage ----------------------------------------------------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    nid INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    bundle TEXT NOT NULL,
    title TEXT NOT NULL,
    created INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    author TEXT
);
CREATE TABLE IF NOT EXISTS data_products (
    nid INTEGER PRIMARY KEY REFERENCES nodes(nid) ON DELETE CASCADE,
    product_id TEXT UNIQUE,
    instrument TEXT,
    product_type TEXT,
    family TEXT,
    t1 TEXT,
    t2 TEXT,
    rev1 INTEGER,
    rev2 INTEGER,
    e1_kev REAL,
    e2_kev REAL,
    ra REAL,
    dec REAL,
    obsids TEXT,
    proposals TEXT,
    src_names TEXT NOT NULL DEFAULT '[]',
    in_evidence INTEGER NOT NULL DEFAULT 0,
    simulated INTEGER NOT NULL DEFAULT 0,
    observation_nid INTEGER,
    fields TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS astro_entities (
    nid INTEGER PRIMARY KEY REFERENCES nodes(nid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    normalised TEXT NOT NULL UNIQUE,
    ra REAL,
    dec REAL,
    object_type TEXT,
    object_ids TEXT NOT NULL DEFAULT '[]',
    link TEXT
);
CREATE TABLE IF NOT EXISTS product_sources (
    product_nid INTEGER NOT NULL REFERENCES nodes(nid) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    entity_nid INTEGER NOT NULL REFERENCES nodes(nid) ON DELETE CASCADE,
    PRIMARY KEY (product_nid, position)
);
CREATE TABLE IF NOT EXISTS observations (
    nid INTEGER PRIMARY KEY REFERENCES nodes(nid) ON DELETE CASCADE,
    t1 TEXT,
    t2 TEXT,
    rev1 INTEGER,
    rev2 INTEGER,
    obsids TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS files (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    nid INTEGER NOT NULL REFERENCES nodes(nid) ON DELETE CASCADE,
    field TEXT NOT NULL,
    part TEXT NOT NULL,
    filename TEXT NOT NULL,
    stored TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    tokens_removed INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_node ON files(nid);
CREATE INDEX IF NOT EXISTS products_by_rev ON data_products(rev1, rev2);
"""


@dataclass
class Upload:
    """A file part of a gallery request.

    Attributes
    ----------
    part : str
        The multipart field name (``img``, ``fits_file_0``, ``yaml_file``, ...).
    filename : str
        The client's file name.
    data : bytes
        The content.
    """

    part: str
    filename: str
    data: bytes

    @property
    def field(self) -> str:
        """The Drupal field the file goes to (``field_image_png``, ``field_fits_file``, ...)."""
        if self.part == "img":
            return "image_png"
        for prefix in ("fits_file", "html_file", "yaml_file"):
            if self.part.startswith(prefix):
                return prefix
        return "attachments"


class GalleryStore:
    """Products, observations and sources of a local gallery: SQLite plus files.

    Parameters
    ----------
    root : Path
        The gallery folder (``<data_dir>/gallery``).
    revnum : callable, optional
        Maps a UTC time (``YYYY-MM-DDTHH:MM:SS``) to an INTEGRAL revolution
        number, or None when it cannot; products get ``rev1``/``rev2`` from
        their ``T1``/``T2`` with it.
    """

    def __init__(self, root: Path, *, revnum: Callable[[str], int | None] | None = None):
        self.root = Path(root)
        self.files_dir = self.root / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "gallery.sqlite"
        self.revnum = revnum or (lambda _t: None)
        # one writer at a time: SQLite serialises anyway, and a product's files and rows must change together
        self._write_lock = threading.RLock()
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        try:
            with db:
                yield db
        finally:
            db.close()

    # -- nodes ----------------------------------------------------------------------------------------------
    def _new_node(self, db, bundle: str, title: str, *, author: str | None = None) -> int:
        now = int(time.time())
        cursor = db.execute("INSERT INTO nodes (uuid, bundle, title, created, changed, author) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (str(uuid.uuid4()), bundle, title, now, now, author))
        return int(cursor.lastrowid)

    def _touch(self, db, nid: int, *, title: str | None = None) -> None:
        row = db.execute("SELECT changed FROM nodes WHERE nid = ?", (nid,)).fetchone()
        # Drupal keeps whole seconds; an update always moves `changed` past `created` so that clients
        # (oda_api compares the two) can tell an update from a creation
        changed = max(int(time.time()), int(row["changed"]) + 1)
        if title is not None:
            db.execute("UPDATE nodes SET changed = ?, revision = revision + 1, title = ? WHERE nid = ?",
                       (changed, title, nid))
        else:
            db.execute("UPDATE nodes SET changed = ?, revision = revision + 1 WHERE nid = ?", (changed, nid))

    def node(self, nid: int) -> dict | None:
        """A node's common columns (nid, uuid, bundle, title, created, changed, revision), or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM nodes WHERE nid = ?", (nid,)).fetchone()
        return dict(row) if row else None

    # -- astrophysical entities -----------------------------------------------------------------------------
    def entity(self, name: str) -> dict | None:
        """The source called ``name`` (or having it as an alternative name), or None."""
        key = normalised_name(name)
        with self._connect() as db:
            row = db.execute("SELECT e.*, n.title, n.created, n.changed, n.uuid FROM astro_entities e "
                             "JOIN nodes n USING (nid) WHERE e.normalised = ?", (key,)).fetchone()
            if row is None:
                for candidate in db.execute("SELECT e.*, n.title, n.created, n.changed, n.uuid FROM astro_entities e "
                                            "JOIN nodes n USING (nid)"):
                    if key in {normalised_name(alias) for alias in json.loads(candidate["object_ids"])}:
                        row = candidate
                        break
        return _entity_dict(row) if row else None

    def entities(self) -> list[dict]:
        """All sources, by name."""
        with self._connect() as db:
            rows = db.execute("SELECT e.*, n.title, n.created, n.changed, n.uuid FROM astro_entities e "
                              "JOIN nodes n USING (nid) ORDER BY e.name COLLATE NOCASE").fetchall()
        return [_entity_dict(row) for row in rows]

    def upsert_entity(self, name: str, *, ra=None, dec=None, object_type=None, object_ids=None, link=None,
                      update: bool = False) -> int:
        """Create a source (or update it when ``update``); returns its nid."""
        name = name.strip()
        with self._write_lock, self._connect() as db:
            existing = db.execute("SELECT nid FROM astro_entities WHERE normalised = ?",
                                  (normalised_name(name),)).fetchone()
            if existing is not None:
                nid = int(existing["nid"])
                if update:
                    updates = {"ra": _float_or_none(ra), "dec": _float_or_none(dec), "object_type": object_type or None,
                               "link": link or None,
                               "object_ids": json.dumps(list(object_ids)) if object_ids else None}
                    for column, value in updates.items():
                        if value is not None:
                            db.execute(f"UPDATE astro_entities SET {column} = ? WHERE nid = ?", (value, nid))
                    self._touch(db, nid)
                return nid
            nid = self._new_node(db, "astro_entity", name)
            db.execute("INSERT INTO astro_entities (nid, name, normalised, ra, dec, object_type, object_ids, link) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (nid, name, normalised_name(name), _float_or_none(ra), _float_or_none(dec), object_type or None,
                        json.dumps(list(object_ids or [])), link or None))
            return nid

    # -- observations ---------------------------------------------------------------------------------------
    def observation(self, *, nid: int | None = None, title: str | None = None) -> dict | None:
        """An observation by nid or title, with its attachments, or None."""
        with self._connect() as db:
            if nid is not None:
                row = db.execute("SELECT o.*, n.title, n.created, n.changed, n.uuid FROM observations o "
                                 "JOIN nodes n USING (nid) WHERE o.nid = ?", (nid,)).fetchone()
            else:
                row = db.execute("SELECT o.*, n.title, n.created, n.changed, n.uuid FROM observations o "
                                 "JOIN nodes n USING (nid) WHERE n.title = ? ORDER BY n.changed DESC",
                                 (title,)).fetchone()
        if row is None:
            return None
        record = dict(row)
        record["obsids"] = json.loads(record["obsids"])
        record["files"] = self.files_of(record["nid"])
        return record

    def post_observation(self, *, title: str | None, t1=None, t2=None, obsids=None, uploads=(), secrets=(),
                         update: bool = False, create_new: bool = True, author: str | None = None) -> int | None:
        """Create an observation, or update the one with this title; returns its nid (None: nothing done)."""
        t1, t2 = parse_isot(t1), parse_isot(t2)
        if title is None:
            title = f"observation_{t1}_{t2}" if t1 and t2 else f"observation_{uuid.uuid4()}"
        ids = [o.strip() for o in str(obsids).split(",") if o.strip()] if obsids else []
        rev1 = self.revnum(t1) if t1 else None
        rev2 = self.revnum(t2) if t2 else None
        with self._write_lock, self._connect() as db:
            row = None
            if update:
                row = db.execute("SELECT nid FROM nodes WHERE bundle = 'observation' AND title = ? "
                                 "ORDER BY changed DESC", (title,)).fetchone()
                if row is None and not create_new:
                    return None
            if row is None:
                nid = self._new_node(db, "observation", title, author=author)
                db.execute("INSERT INTO observations (nid, t1, t2, rev1, rev2, obsids) VALUES (?, ?, ?, ?, ?, ?)",
                           (nid, t1, t2, rev1, rev2, json.dumps(ids)))
            else:
                nid = int(row["nid"])
                db.execute("UPDATE observations SET t1 = coalesce(?, t1), t2 = coalesce(?, t2), "
                           "rev1 = coalesce(?, rev1), rev2 = coalesce(?, rev2) WHERE nid = ?",
                           (t1, t2, rev1, rev2, nid))
                if ids:
                    db.execute("UPDATE observations SET obsids = ? WHERE nid = ?", (json.dumps(ids), nid))
                self._touch(db, nid)
            self._store_files(db, nid, uploads, secrets=secrets, replace=True)
            return nid

    def _observation_for(self, db, *, title: str | None, t1: str | None, t2: str | None, obsids, author) -> int | None:
        # as drupal_helper.get_observation_drupal_id: a named observation, else the one of this time range,
        # else a new one for the time range
        if title:
            row = db.execute("SELECT nid FROM nodes WHERE bundle = 'observation' AND title = ? ORDER BY changed DESC",
                             (title,)).fetchone()
            if row is not None:
                return int(row["nid"])
        if not (t1 and t2):
            return None
        row = db.execute("SELECT nid FROM observations WHERE t1 = ? AND t2 = ?", (t1, t2)).fetchone()
        if row is not None:
            return int(row["nid"])
        nid = self._new_node(db, "observation", title or f"observation_{t1}_{t2}", author=author)
        ids = [o.strip() for o in str(obsids).split(",") if o.strip()] if obsids else []
        db.execute("INSERT INTO observations (nid, t1, t2, rev1, rev2, obsids) VALUES (?, ?, ?, ?, ?, ?)",
                   (nid, t1, t2, self.revnum(t1), self.revnum(t2), json.dumps(ids)))
        return nid

    # -- files ----------------------------------------------------------------------------------------------
    def _store_files(self, db, nid: int, uploads: Iterable[Upload], *, secrets=(), replace: bool) -> None:
        uploads = list(uploads)
        if replace:
            # a PATCH that brings a field replaces that field's files, as Drupal does
            for field in {upload.field for upload in uploads}:
                for old in db.execute("SELECT fid, stored FROM files WHERE nid = ? AND field = ?", (nid, field)):
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / old["stored"]).unlink()
                db.execute("DELETE FROM files WHERE nid = ? AND field = ?", (nid, field))
        folder = self.files_dir / str(nid)
        folder.mkdir(parents=True, exist_ok=True)
        for upload in uploads:
            filename, renamed = scrub_text(upload.filename, secrets=secrets)
            safe = secure_filename(filename) or "file"
            kind = file_kind(safe, upload.data)
            data, removed = scrub_bytes(upload.data, kind=kind, secrets=secrets)
            removed += renamed
            if removed:
                log.warning("gallery: removed %d token(s) from the uploaded file %s (%s)", removed, safe, upload.part)
            cursor = db.execute("INSERT INTO files (nid, field, part, filename, stored, kind, size, sha256, "
                                "tokens_removed, created) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?)",
                                (nid, upload.field, upload.part, safe, kind, len(data),
                                 hashlib.sha256(data).hexdigest(), removed, int(time.time())))
            fid = int(cursor.lastrowid)
            stored = Path("files") / str(nid) / f"{fid}_{safe}"
            (self.root / stored).write_bytes(data)
            db.execute("UPDATE files SET stored = ? WHERE fid = ?", (str(stored), fid))

    def files_of(self, nid: int) -> list[dict]:
        """Records of a node's files (fid, field, part, filename, kind, size, sha256...)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM files WHERE nid = ? ORDER BY fid", (nid,)).fetchall()
        return [dict(row) for row in rows]

    def file(self, fid: int) -> dict | None:
        """One file's record (with ``path``, its absolute location), or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM files WHERE fid = ?", (fid,)).fetchone()
        if row is None:
            return None
        record = dict(row)
        record["path"] = self.root / record["stored"]
        return record

    def read_file(self, fid: int) -> bytes:
        """A stored file's content."""
        record = self.file(fid)
        if record is None:
            raise KeyError(fid)
        return Path(record["path"]).read_bytes()

    # -- data products --------------------------------------------------------------------------------------
    def product_nid(self, product_id: str) -> int | None:
        """The nid of the product with this ``product_id``, or None."""
        with self._connect() as db:
            row = db.execute("SELECT nid FROM data_products WHERE product_id = ?", (product_id,)).fetchone()
        return int(row["nid"]) if row else None

    def post_product(self, values: dict, uploads: Iterable[Upload], *, secrets: Iterable[str] = (),
                     author: str | None = None) -> tuple[int, bool]:
        """Create a data product, or update the one with the same ``product_id``.

        Parameters
        ----------
        values : dict
            The request's form values, ``token`` already removed (see
            :func:`clean_form`).
        uploads : iterable of Upload
            The file parts.
        secrets : iterable of str
            Strings to scrub from the files (the request's token).
        author : str, optional
            Who posted (the token's e-mail), kept as the node's author.

        Returns
        -------
        (int, bool)
            The product's nid and whether it was an update.
        """
        values = dict(values)
        values.pop("content_type", None)
        product_id = values.pop("product_id", None) or None
        title = values.pop("product_title", None) or None
        observation_title = values.pop("observation_id", None) or None
        insert_new_source = str(values.pop("insert_new_source", "False")) == "True"
        in_evidence = values.pop("in_evidence", None)
        src_arg = values.pop("src_name", None)
        links = [s.strip() for s in str(values.pop("entity_portal_link_list", "") or "").split(",")]
        coords = _json_list(values.pop("source_coord_list", None), what="source_coord_list")
        object_ids = _json_list(values.pop("object_ids_list", None), what="object_ids_list")
        object_types = _json_list(values.pop("object_type_list", None), what="object_type_list")
        uploads = list(uploads)

        with self._write_lock, self._connect() as db:
            nid = None
            if product_id is not None:
                row = db.execute("SELECT nid FROM data_products WHERE product_id = ?", (product_id,)).fetchone()
                nid = int(row["nid"]) if row else None
            updating = nid is not None
            if updating:
                previous = db.execute("SELECT * FROM data_products WHERE nid = ?", (nid,)).fetchone()
                fields = json.loads(previous["fields"])
            else:
                fields = {}
            # every remaining value becomes field_<name> (lower case), as drupal_helper does
            for key, value in values.items():
                fields[key.lower()] = _number(value) if key.lower() not in ("obsid", "t1", "t2") else value
            sources = None
            if src_arg is not None:
                names = [s.strip() for s in str(src_arg).split(",") if s.strip()]
                sources = self._source_entities(db, names, links=links, coords=coords, object_ids=object_ids,
                                                object_types=object_types, insert=insert_new_source)
                fields["src_name"] = ",".join(names)
            t1, t2 = parse_isot(fields.get("t1")), parse_isot(fields.get("t2"))
            observation_nid = self._observation_for(db, title=observation_title, t1=t1, t2=t2,
                                                    obsids=fields.get("obsid"), author=author)
            if title is None and not updating:
                title = _default_title(fields.get("product_type"), fields.get("src_name"))
            if updating:
                self._touch(db, nid, title=title)
            else:
                nid = self._new_node(db, "data_product", title, author=author)
                db.execute("INSERT INTO data_products (nid, product_id) VALUES (?, ?)", (nid, product_id))
            if product_id is not None:
                fields["product_id"] = product_id
            if in_evidence is not None:
                fields["in_evidence"] = 1 if str(in_evidence).strip() in ("1", "True", "true") else 0
            if sources is not None:
                db.execute("DELETE FROM product_sources WHERE product_nid = ?", (nid,))
                for position, entity_nid in enumerate(sources):
                    db.execute("INSERT INTO product_sources (product_nid, position, entity_nid) VALUES (?, ?, ?)",
                               (nid, position, entity_nid))
            self._store_files(db, nid, uploads, secrets=secrets, replace=updating)
            files = [dict(r) for r in db.execute("SELECT * FROM files WHERE nid = ?", (nid,))]
            derived = self._derive(fields, files)
            if observation_nid is not None:
                derived["observation_nid"] = observation_nid
            assignments = ", ".join(f"{column} = ?" for column in derived)
            db.execute(f"UPDATE data_products SET {assignments}, fields = ? WHERE nid = ?",
                       (*derived.values(), json.dumps(fields), nid))
        log.info("gallery: %s data product %d (%s)", "updated" if updating else "created", nid, title)
        return nid, updating

    def _source_entities(self, db, names, *, links, coords, object_ids, object_types, insert) -> list[int]:
        entity_nids = []
        for index, name in enumerate(names):
            row = db.execute("SELECT nid FROM astro_entities WHERE normalised = ?",
                             (normalised_name(name),)).fetchone()
            if row is not None:
                entity_nids.append(int(row["nid"]))
                continue
            coord = coords[index] if index < len(coords) and isinstance(coords[index], dict) else {}
            resolved = resolve(name)
            # The real gallery knows every INTEGRAL source already; here the simulated sky's catalogue
            # stands for those pre-existing entities. Other names need insert_new_source, as on the real one.
            if "RA" not in resolved and not insert:
                continue
            ra = coord.get("source_ra", resolved.get("RA"))
            dec = coord.get("source_dec", resolved.get("DEC"))
            ids = object_ids[index] if index < len(object_ids) and object_ids[index] else resolved.get("object_ids", [])
            kind = object_types[index] if index < len(object_types) and object_types[index] else \
                resolved.get("object_type")
            link = links[index] if index < len(links) and links[index] else None
            nid = self._new_node(db, "astro_entity", name)
            db.execute("INSERT INTO astro_entities (nid, name, normalised, ra, dec, object_type, object_ids, link) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (nid, name, normalised_name(name), _float_or_none(ra), _float_or_none(dec), kind,
                        json.dumps([str(i) for i in ids]), link))
            entity_nids.append(nid)
        return entity_nids

    def _derive(self, fields: dict, files: list[dict]) -> dict:
        """Typed columns (for filters and lists) from a product's fields and files."""
        t1, t2 = parse_isot(fields.get("t1")), parse_isot(fields.get("t2"))
        rev1 = self.revnum(t1) if t1 else None
        rev2 = self.revnum(t2) if t2 else None
        if rev1 is None or rev2 is None:
            # without a time span, a revolution given as a parameter (revolution products) is used
            for key in ("rev_num", "revolution", "revnum", "rev1"):
                explicit = _int_or_none(fields.get(key))
                if explicit is not None and explicit > 0:
                    rev1 = rev1 if rev1 is not None else explicit
                    rev2 = rev2 if rev2 is not None else _int_or_none(fields.get("rev2")) or explicit
                    break
        src_names = [s for s in str(fields.get("src_name", "") or "").split(",") if s.strip()]
        obsids = fields.get("obsid") or fields.get("obs_id") or ""
        proposals = fields.get("proposal_id") or fields.get("proposal") or fields.get("proposal_ids") or ""
        instrument = fields.get("instrument")
        product_type = fields.get("product_type")
        return {
            "instrument": str(instrument).lower() if instrument not in (None, "") else None,
            "product_type": str(product_type) if product_type not in (None, "") else None,
            "family": product_family(product_type),
            "t1": t1, "t2": t2, "rev1": rev1, "rev2": rev2,
            "e1_kev": _float_or_none(fields.get("e1_kev")), "e2_kev": _float_or_none(fields.get("e2_kev")),
            "ra": _float_or_none(fields.get("ra")), "dec": _float_or_none(fields.get("dec")),
            "obsids": str(obsids), "proposals": str(proposals),
            "src_names": json.dumps(src_names),
            "in_evidence": int(fields.get("in_evidence") or 0),
            "simulated": int(self._simulated(fields, files)),
        }

    def _simulated(self, fields: dict, files: list[dict]) -> bool:
        """True when a product came from the simulated sky (FITS stamps, host_type local, or said so)."""
        if str(fields.get("host_type", "")).lower() == "local" or str(fields.get("simulated", "")).lower() in (
                "1", "true", "yes"):
            return True
        for record in files:
            if record["kind"] not in ("fits", "yaml", "notebook"):
                continue
            data = (self.root / record["stored"]).read_bytes()
            if data[:2] == b"\x1f\x8b":
                with contextlib.suppress(OSError, EOFError):
                    data = gzip.decompress(data)
            if record["kind"] == "fits":
                # the headers come first: ORIGIN = 'mmoda_local (SIMULATED DATA)' or SIMULATD = T
                head = data[:200 * 2880]
                if b"SIMULATED" in head or re.search(rb"SIMULATD=\s+T", head):
                    return True
            elif re.search(rb"host_type[\"']?\s*[:=]\s*[\"']?local", data):
                return True
        return False

    def delete_product(self, product_id: str) -> bool:
        """Delete the product with this ``product_id`` and its files; False when there is none."""
        with self._write_lock, self._connect() as db:
            row = db.execute("SELECT nid FROM data_products WHERE product_id = ?", (product_id,)).fetchone()
            if row is None:
                return False
            nid = int(row["nid"])
            for old in db.execute("SELECT stored FROM files WHERE nid = ?", (nid,)):
                with contextlib.suppress(FileNotFoundError):
                    (self.root / old["stored"]).unlink()
            with contextlib.suppress(OSError):
                (self.files_dir / str(nid)).rmdir()
            db.execute("DELETE FROM nodes WHERE nid = ?", (nid,))
        log.info("gallery: deleted data product %d (product_id %s)", nid, product_id)
        return True

    def product(self, nid: int) -> dict | None:
        """One product with its fields, sources, files and observation, or None."""
        rows = self._products("WHERE p.nid = ?", (nid,))
        return rows[0] if rows else None

    def _products(self, where: str = "", arguments: tuple = ()) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT p.*, n.title, n.created, n.changed, n.uuid, n.revision, n.author "
                              f"FROM data_products p JOIN nodes n USING (nid) {where} "
                              "ORDER BY n.changed DESC, p.nid DESC", arguments).fetchall()
            products = []
            for row in rows:
                record = dict(row)
                record["fields"] = json.loads(record["fields"])
                record["src_names"] = json.loads(record["src_names"])
                record["sources"] = [_entity_dict(e) for e in db.execute(
                    "SELECT e.*, n.title, n.created, n.changed, n.uuid FROM product_sources s "
                    "JOIN astro_entities e ON e.nid = s.entity_nid JOIN nodes n ON n.nid = e.nid "
                    "WHERE s.product_nid = ? ORDER BY s.position", (record["nid"],))]
                record["files"] = [dict(f) for f in db.execute("SELECT * FROM files WHERE nid = ? ORDER BY fid",
                                                               (record["nid"],))]
                products.append(record)
        return products

    def products(self, **conditions) -> list[dict]:
        """Products matching the gallery's conditions (see :func:`matches`), newest first."""
        return [p for p in self._products() if matches(p, **conditions)]

    def revolutions(self) -> list[dict]:
        """Revolutions having products: ``[{"rev": n, "count": products}]``, newest first."""
        counts: dict[int, int] = {}
        for product in self._products("WHERE p.rev1 IS NOT NULL"):
            last = product["rev2"] if product["rev2"] is not None else product["rev1"]
            # a long-term product spans many revolutions; only per-revolution ones are listed by revolution
            if last - product["rev1"] <= 1:
                for rev in range(product["rev1"], last + 1):
                    counts[rev] = counts.get(rev, 0) + 1
        return [{"rev": rev, "count": counts[rev]} for rev in sorted(counts, reverse=True)]


def _entity_dict(row) -> dict:
    record = dict(row)
    record["object_ids"] = json.loads(record.get("object_ids") or "[]")
    return record


def _default_title(product_type, src_name) -> str:
    src_concat = "_".join(s.strip() for s in str(src_name).split(",")) if src_name else None
    if product_type in (None, "") and src_concat is None:
        return f"data_product_{uuid.uuid4()}"
    if product_type in (None, ""):
        return src_concat
    if src_concat is None:
        return str(product_type)
    return f"{src_concat}_{product_type}"


def matches(product: dict, *, instrument=None, product_type=None, src_name=None, e1_kev=None, e2_kev=None,
            rev1=None, rev2=None, min_span_rev=None, max_span_rev=None, product_id=None, t1=None, t2=None,
            simulated=None) -> bool:
    """Whether a product meets the gallery's list conditions.

    The semantics are those the real gallery's test suite shows: the
    product's band lies within [``e1_kev``, ``e2_kev``], its revolutions
    within [``rev1``, ``rev2``] and its span (``rev2 - rev1``) within
    [``min_span_rev``, ``max_span_rev``]; ``product_type`` matches the term
    or its family (``image`` finds ``isgri_image``); ``instrument``
    ``jemx`` also finds ``jemx1``/``jemx2``; ``src_name`` matches a source's
    name or alternative names. ``t1``/``t2`` (website only) keep products
    overlapping the interval. A condition on a field the product lacks
    excludes it.
    """
    if product_id not in (None, "") and product.get("product_id") != product_id:
        return False
    if instrument not in (None, "", "all"):
        wanted = str(instrument).lower()
        have = product.get("instrument") or ""
        if have != wanted and not (wanted == "jemx" and have.startswith("jemx")):
            return False
    if product_type not in (None, "", "all"):
        wanted = str(product_type).lower()
        have = (product.get("product_type") or "").lower()
        if wanted not in (have, product.get("family")):
            return False
    if src_name not in (None, ""):
        key = normalised_name(src_name)
        names = {normalised_name(n) for n in product.get("src_names", [])}
        for entity in product.get("sources", []):
            names.add(normalised_name(entity["name"]))
            names.update(normalised_name(alias) for alias in entity["object_ids"])
        if key not in names:
            return False

    def within(value, low, high) -> bool:
        if low in (None, "") and high in (None, ""):
            return True
        if value is None:
            return False
        if low not in (None, "") and value < float(low):
            return False
        return not (high not in (None, "") and value > float(high))

    if not (within(product.get("e1_kev"), e1_kev, None) and within(product.get("e2_kev"), None, e2_kev)):
        return False
    if not (within(product.get("rev1"), rev1, None) and within(product.get("rev2"), None, rev2)):
        return False
    if min_span_rev not in (None, "") or max_span_rev not in (None, ""):
        if product.get("rev1") is None or product.get("rev2") is None:
            return False
        if not within(product["rev2"] - product["rev1"], min_span_rev, max_span_rev):
            return False
    if t1 not in (None, "") or t2 not in (None, ""):
        if product.get("t1") is None or product.get("t2") is None:
            return False
        start, stop = parse_isot(t1), parse_isot(t2)
        if start and product["t2"] < start:
            return False
        if stop and product["t1"] > stop:
            return False
    if simulated is not None and bool(product.get("simulated")) != bool(simulated):
        return False
    return True


# -- request hygiene --------------------------------------------------------------------------------------------
def clean_form(values: dict, *, secrets: Iterable[str] = ()) -> tuple[dict, list[str]]:
    """Drop the token and any JWT-looking value from a request's form values.

    Parameters
    ----------
    values : dict
        Form values, ``token`` included.
    secrets : iterable of str
        Exact strings never to keep (the request's token).

    Returns
    -------
    (dict, list of str)
        The values to store and the names of the fields that were dropped.
    """
    secrets = [s for s in secrets if s]
    kept, dropped = {}, []
    for key, value in values.items():
        if key.lower() == "token" or key.lower().endswith("_token") or looks_like_token(key):
            if key.lower() != "token":
                dropped.append(key)
            continue
        text = "" if value is None else str(value)
        if looks_like_token(text) or any(secret in text for secret in secrets if len(secret) >= 16):
            dropped.append(key)
            continue
        kept[key] = value
    if dropped:
        log.warning("gallery: dropped form field(s) holding a token: %s", ", ".join(sorted(dropped)))
    return kept, dropped


# -- HAL-JSON ---------------------------------------------------------------------------------------------------
def _value(value) -> list[dict]:
    return [{"value": value}]


def hal_node(store: GalleryStore, nid: int, site: str) -> dict:
    """A node as Drupal's HAL-JSON serialisation (what the dispatcher returns to oda_api).

    Parameters
    ----------
    store : GalleryStore
    nid : int
    site : str
        Base URL of the gallery (``http://host:port/gallery``); links are
        built under it as Drupal builds them under its own URL.
    """
    node = store.node(nid)
    if node is None:
        raise GalleryError(f"no node {nid}", status=404)
    bundle = node["bundle"]
    relation = lambda field: f"{site}/{RELATION.format(bundle=bundle, field=field)}"  # noqa: E731
    links = {"self": {"href": f"{site}/node/{nid}?_format=hal_json"},
             "type": {"href": f"{site}/rest/type/node/{bundle}"}}
    embedded: dict[str, list] = {}
    body = {
        "nid": _value(nid), "uuid": _value(node["uuid"]), "vid": _value(node["revision"]),
        "langcode": [{"value": "en", "lang": "en"}], "type": [{"target_id": bundle}],
        "revision_timestamp": [{"value": drupal_time(node["changed"])}],
        "status": [{"value": True, "lang": "en"}], "title": [{"value": node["title"], "lang": "en"}],
        "created": [{"value": drupal_time(node["created"]), "lang": "en"}],
        "changed": [{"value": drupal_time(node["changed"]), "lang": "en"}],
        "promote": [{"value": False, "lang": "en"}], "sticky": [{"value": False, "lang": "en"}],
        "body": [{"value": "", "format": "full_html", "summary": "", "lang": "en"}],
    }

    def relate(field: str, href: str, uuid_value: str | None = None):
        links.setdefault(relation(field), []).append({"href": href})
        embedded.setdefault(relation(field), []).append(
            {"_links": {"self": {"href": href}}, **({"uuid": _value(uuid_value)} if uuid_value else {})})

    def relate_files(records):
        for record in records:
            field = "field_" + record["field"]
            relate(field, f"{site}/files/{record['fid']}/{quote(record['filename'])}")

    if bundle == "data_product":
        product = store.product(nid)
        for key, value in product["fields"].items():
            if key in ("instrument", "product_type"):
                continue
            body["field_" + key] = _value(value)
        if product["instrument"] in INSTRUMENTS:
            relate("field_instrumentused", f"{site}/taxonomy/term/{term_id('instruments', product['instrument'])}"
                                           "?_format=hal_json")
        if product["family"] is not None:
            relate("field_data_product_type",
                   f"{site}/taxonomy/term/{term_id('products', product['product_type'])}?_format=hal_json")
        if product["observation_nid"] is not None:
            relate("field_derived_from_observation", f"{site}/node/{product['observation_nid']}?_format=hal_json")
        for entity in product["sources"]:
            relate("field_describes_astro_entity", f"{site}/node/{entity['nid']}?_format=hal_json", entity["uuid"])
        relate_files(product["files"])
    elif bundle == "observation":
        observation = store.observation(nid=nid)
        if observation["t1"] and observation["t2"]:
            body["field_timerange"] = [{"value": observation["t1"], "end_value": observation["t2"]}]
        for name in ("rev1", "rev2"):
            if observation[name] is not None:
                body["field_" + name] = _value(observation[name])
        if observation["rev1"] is not None and observation["rev2"] is not None:
            body["field_span_rev"] = _value(observation["rev2"] - observation["rev1"])
        if observation["obsids"]:
            body["field_obsid"] = [{"value": o} for o in observation["obsids"]]
        for record in observation["files"]:
            relate("field_attachments", f"{site}/files/{record['fid']}/{quote(record['filename'])}")
    elif bundle == "astro_entity":
        entity = store.entity(node["title"])
        body["field_source_name"] = _value(entity["name"])
        for column, field in (("ra", "field_source_ra"), ("dec", "field_source_dec"),
                              ("object_type", "field_object_type"), ("link", "field_link")):
            if entity[column] is not None:
                body[field] = _value(entity[column])
        if entity["object_ids"]:
            body["field_alternative_names_long_str"] = _value(",".join(entity["object_ids"]))
    return {"_links": links, **body, "_embedded": embedded} if embedded else {"_links": links, **body}


def product_row(product: dict, site: str) -> dict:
    """A product as a row of the gallery's Drupal views (``field_`` prefixes stripped, values as text)."""
    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.10g}"
        return str(value)

    files = product["files"]
    image = next((f for f in files if f["field"] == "image_png"), None)
    span = "" if product["rev1"] is None or product["rev2"] is None else str(product["rev2"] - product["rev1"])
    return {
        "nid": str(product["nid"]), "uuid": product["uuid"], "title": product["title"],
        "created": drupal_time(product["created"]), "changed": drupal_time(product["changed"]),
        "url": f"{site}/product/{product['nid']}",
        "product_id": text(product["product_id"]),
        "instrumentused": text(product["instrument"]), "data_product_type": text(product["product_type"]),
        "src_name": ",".join(product["src_names"]),
        "describes_astro_entity": ",".join(e["name"] for e in product["sources"]),
        "ra": text(product["ra"]), "dec": text(product["dec"]),
        "e1_kev": text(product["e1_kev"]), "e2_kev": text(product["e2_kev"]),
        "t1": text(product["t1"]), "t2": text(product["t2"]),
        "rev1": text(product["rev1"]), "rev2": text(product["rev2"]), "span_rev": span,
        "obsid": text(product["obsids"]), "proposal_id": text(product["proposals"]),
        "in_evidence": text(product["in_evidence"]), "simulated": text(product["simulated"]),
        "image_png": f"{site}/files/{image['fid']}/{quote(image['filename'])}" if image else "",
        "fits_file": ",".join(f"{site}/files/{f['fid']}/{quote(f['filename'])}" for f in files
                              if f["field"] == "fits_file"),
    }


class TokenRedactingFilter(logging.Filter):
    """Removes tokens from log records (``token=...`` query arguments and JWT-looking strings).

    The gallery's GET endpoints (``get_parents_term``, ``resolve_name``,
    ``get_list_terms``...) receive the token in the query string, and
    werkzeug's access log writes every request line, into
    ``<data_dir>/server.log`` under ``python -m mmoda_local serve``.
    """

    QUERY_TOKEN = re.compile(r"(token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message or looks_like_token(message):
            cleaned = self.QUERY_TOKEN.sub(r"\1<removed>", message)
            record.msg = JWT_PATTERN.sub(b"<removed>", cleaned.encode("utf-8", "surrogateescape")).decode(
                "utf-8", "surrogateescape")
            record.args = ()
        return True


def redact_tokens_in_access_log() -> None:
    """Install :class:`TokenRedactingFilter` on werkzeug's request logger (once)."""
    access_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, TokenRedactingFilter) for f in access_log.filters):
        access_log.addFilter(TokenRedactingFilter())


# -- HTTP -------------------------------------------------------------------------------------------------------
def _text(message: str, status: int) -> Response:
    # the dispatcher answers token problems with make_response(text, 403): text/html
    return Response(message, status=status, mimetype="text/html")


def _json(body, status: int = 200) -> Response:
    return Response(protocol.to_json(body), status=status, mimetype="application/json")


def validate_token(secret: str, token: str | None, *, required_roles=(),
                   action: str = "") -> tuple[dict | None, Response | None]:
    """Check a gallery request's token as ``tokenHelper.validate_token_from_request`` does.

    Returns
    -------
    (dict or None, Response or None)
        The decoded token, or the 403 answer to send.
    """
    if token in (None, ""):
        return None, _text("A token must be provided.", 403)
    try:
        decoded = auth.decode_token(secret, token)
    except auth.TokenError as exc:
        message = "The token provided is expired." if "expired" in str(exc) else "The token provided is not valid."
        return None, _text(message, 403)
    roles = auth.roles_of(decoded)
    lacking = sorted(set(required_roles) - set(roles))
    if lacking:
        return None, _text(f"Unfortunately, your privileges are not sufficient to {action}.\n"
                           f"Your privilege roles include {roles}, but the following roles are missing: "
                           f"{', '.join(lacking)}.", 403)
    return decoded, None


def site_url() -> str:
    """Base URL of the gallery website for the current request (``http://host:port/gallery``)."""
    return request.host_url.rstrip("/") + request.script_root + "/gallery"


def register_gallery(app: Flask, backend) -> GalleryStore:
    """Serve the gallery endpoints and the gallery website on ``app``.

    Parameters
    ----------
    app : flask.Flask
        The local MMODA application.
    backend : mmoda_local.app.Backend
        Its state: configuration (the gallery lives in
        ``<data_dir>/gallery``), token secret and simulated archive.

    Returns
    -------
    GalleryStore
        The store (also ``app.extensions["mmoda_local_gallery"]``).
    """
    def revnum(utc: str) -> int | None:
        from . import gateway
        status, value = gateway.converttime(backend.analysis.archive, "UTC", utc, "REVNUM")
        return int(value) if status == 200 else None

    redact_tokens_in_access_log()
    store = GalleryStore(Path(backend.config.data_dir) / "gallery", revnum=revnum)
    app.extensions["mmoda_local_gallery"] = store
    secret = backend.secret

    def values() -> dict:
        return request.values.to_dict()

    def guarded(action: str):
        token = request.values.get("token")
        return validate_token(secret, token, required_roles=[ROLE], action=action)

    def failure(exc: GalleryError) -> Response:
        return _json({"error_message": exc.message, "drupal_helper_error_message": exc.detail or exc.message},
                     exc.status)

    @app.route("/post_product_to_gallery", methods=["POST"])
    def post_product_to_gallery():
        decoded, denied = guarded("post on the product gallery")
        if denied:
            return denied
        if request.content_length and request.content_length > MAX_UPLOAD_BYTES:
            return failure(GalleryError("upload too large", status=413,
                                        detail=f"at most {MAX_UPLOAD_BYTES // 2**20} MiB per product"))
        token = request.values.get("token", "")
        form, _dropped = clean_form(values(), secrets=[token])
        content_type = str(form.get("content_type", "article")).lower()
        if content_type != "data_product":
            return failure(GalleryError(f"content_type {content_type!r} cannot be posted here",
                                        detail="error while posting content: only data_product is supported"))
        uploads = [Upload(part, storage.filename or part, storage.read())
                   for part, storage in request.files.items(multi=True)]
        try:
            nid, _updated = store.post_product(form, uploads, secrets=[token], author=decoded.get("email"))
            return _json(hal_node(store, nid, site_url()))
        except GalleryError as exc:
            return failure(exc)

    @app.route("/delete_product_to_gallery", methods=["POST"])
    def delete_product_to_gallery():
        _decoded, denied = guarded("delete from the product gallery")
        if denied:
            return denied
        product_id = request.values.get("product_id")
        if product_id and store.delete_product(product_id):
            return _json({})
        return _json({"output_message": f"no data-product with product_id {product_id} has been found, "
                                        "no data-product deletion will take place"})

    @app.route("/post_observation_to_gallery", methods=["POST"])
    def post_observation_to_gallery():
        decoded, denied = guarded("post on the product gallery")
        if denied:
            return denied
        token = request.values.get("token", "")
        form, _dropped = clean_form(values(), secrets=[token])
        uploads = [Upload(part, storage.filename or part, storage.read())
                   for part, storage in request.files.items(multi=True)]
        nid = store.post_observation(title=form.get("title"), t1=form.get("T1"), t2=form.get("T2"),
                                     obsids=form.get("obsid"), uploads=uploads, secrets=[token],
                                     update=form.get("update_observation", "False") == "True",
                                     create_new=form.get("create_new", "False") == "True",
                                     author=decoded.get("email"))
        return _json(hal_node(store, nid, site_url()) if nid is not None else {})

    @app.route("/post_astro_entity_to_gallery", methods=["POST"])
    def post_astro_entity_to_gallery():
        _decoded, denied = guarded("post on the product gallery")
        if denied:
            return denied
        form, _dropped = clean_form(values(), secrets=[request.values.get("token", "")])
        name = (form.get("src_name") or "").strip()
        if not name:
            return failure(GalleryError("Request data not found", detail="a src_name is needed"))
        update = form.get("update_astro_entity", "False") == "True"
        if update and store.entity(name) is None:
            return failure(GalleryError("Request data not found",
                                        detail="error while updating astrophysical and entity product: no "
                                               "correspondent entity could be found with the provided name"))
        details = dict(ra=form.get("source_ra"), dec=form.get("source_dec"), object_type=form.get("object_type"),
                       link=form.get("src_portal_link"), object_ids=_json_list(form.get("object_ids"),
                                                                              what="object_ids"))
        if form.get("auto_update", "False") == "True":
            resolved = resolve(name, portal=site_url())
            details = dict(ra=resolved.get("RA"), dec=resolved.get("DEC"), object_type=resolved.get("object_type"),
                           link=resolved.get("entity_portal_link"), object_ids=resolved.get("object_ids"))
        nid = store.upsert_entity(name, update=True, **details)
        return _json(hal_node(store, nid, site_url()))

    @app.route("/get_parents_term", methods=["GET"])
    def get_parents_term():
        _decoded, denied = guarded("post on the product gallery")
        if denied:
            return denied
        term = request.values.get("term")
        family = product_family(term)
        if not term or family is None:
            return _json([])
        return _json([family] if family == term.lower() else [family, term])

    @app.route("/get_list_terms", methods=["GET"])
    def get_list_terms():
        _decoded, denied = guarded("post on the product gallery")
        if denied:
            return denied
        group = (request.values.get("group") or "").lower()
        if group == "instruments":
            return _json(list(INSTRUMENTS))
        if group == "products":
            return _json(product_terms(request.values.get("parent")))
        if group == "sources":
            return _json([entity["name"] for entity in store.entities()])
        return _json([])

    @app.route("/resolve_name", methods=["GET"])
    def resolve_name():
        return _json(resolve(request.values.get("name"), portal=site_url()))

    @app.route("/get_revnum", methods=["GET"])
    def get_revnum():
        raw = request.values.get("time_to_convert")
        when = parse_isot(raw) if raw else _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        if when is None:
            return _json({})
        number = revnum(when)
        if number is None:
            return failure(GalleryError("issue when performing a request to the timesystem service", status=500,
                                        detail=f"conversion impossible: {when} is outside the mission"))
        return _json({"revnum": number})

    def list_conditions(arguments: dict) -> dict:
        names = {"instrument_name": "instrument", "product_type": "product_type", "src_name": "src_name",
                 "e1_kev_value": "e1_kev", "e2_kev_value": "e2_kev", "rev1_value": "rev1", "rev2_value": "rev2",
                 "min_span_rev_value": "min_span_rev", "max_span_rev_value": "max_span_rev",
                 "product_id_value": "product_id"}
        conditions = {}
        for key, value in arguments.items():
            if key in names and value not in (None, "", "None"):
                conditions[names[key]] = value
        return conditions

    @app.route("/get_data_product_list_with_conditions", methods=["GET"])
    def get_data_product_list_with_conditions():
        token = request.values.get("token")
        if token not in (None, ""):
            _decoded, denied = validate_token(secret, token, action="getting all the astro entities from the "
                                                                    "product gallery")
            if denied:
                return denied
        site = site_url()
        try:
            found = store.products(**list_conditions(values()))
        except ValueError as exc:
            return failure(GalleryError("issue when performing a request to the product gallery", status=500,
                                        detail=str(exc)))
        return _json([product_row(p, site) for p in found])

    @app.route("/get_data_product_list_by_source_name", methods=["GET"])
    def get_data_product_list_by_source_name():
        token = request.values.get("token")
        if token not in (None, ""):
            _decoded, denied = validate_token(secret, token, required_roles=[ROLE],
                                              action="getting all the astro entities from the product gallery")
            if denied:
                return denied
        name = request.values.get("src_name")
        site = site_url()
        return _json([product_row(p, site) for p in store.products(src_name=name)] if name else [])

    @app.route("/get_observation_attachments", methods=["GET"])
    def get_observation_attachments():
        _decoded, denied = guarded("post on the product gallery")
        if denied:
            return denied
        observation = store.observation(title=request.values.get("title"))
        if observation is None:
            return _json({})
        # the observation's own attachments, and (as Drupal attaches them to the observation) the YAML
        # files posted with its products
        files = list(observation["files"])
        for product in store.products():
            if product["observation_nid"] == observation["nid"]:
                files += [f for f in product["files"] if f["field"] == "yaml_file"]
        contents = [store.read_file(f["fid"]).decode("utf-8", "replace") for f in files
                    if f["kind"] in ("yaml", "text")]
        return _json({"title": observation["title"], "nid": str(observation["nid"]),
                      "file_content": "".join(json.dumps({"single_file_content": c}) for c in contents)})

    @app.route("/get_all_revs", methods=["GET"])
    def get_all_revs():
        _decoded, denied = guarded("getting all the revolutions from the product gallery")
        if denied:
            return denied
        return _json([str(r["rev"]) for r in store.revolutions()])

    @app.route("/get_all_astro_entities", methods=["GET"])
    def get_all_astro_entities():
        _decoded, denied = guarded("getting all the astro entities from the product gallery")
        if denied:
            return denied
        return _json([{"title": e["name"], "ra": "" if e["ra"] is None else str(e["ra"]),
                       "dec": "" if e["dec"] is None else str(e["dec"])} for e in store.entities()])

    @app.route("/get_astro_entity_info_by_source_name", methods=["GET"])
    def get_astro_entity_info_by_source_name():
        name = request.values.get("src_name")
        entity = store.entity(name) if name else None
        if entity is None:
            return _json({})
        return _json({"nid": str(entity["nid"]), "title": entity["name"], "source_name": entity["name"],
                      "source_ra": "" if entity["ra"] is None else str(entity["ra"]),
                      "source_dec": "" if entity["dec"] is None else str(entity["dec"]),
                      "object_type": entity["object_type"] or "", "link": entity["link"] or "",
                      "alternative_names_long_str": ",".join(entity["object_ids"]),
                      "url_preview": f"{site_url()}/source/{quote(entity['name'], safe='')}"})

    from .gallery_site import register_site
    register_site(app, store)
    return store


__all__ = ["GalleryStore", "GalleryError", "Upload", "register_gallery", "resolve", "product_family", "scrub_bytes",
           "scrub_text", "clean_form", "looks_like_token", "hal_node", "product_row", "matches", "validate_token"]
