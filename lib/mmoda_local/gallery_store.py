"""The gallery's store: nodes (data products, observations, sources) in SQLite, attached files on disk.

What Drupal would store behind the real gallery (see docs/gallery.md): ``<root>/gallery.sqlite`` and
``<root>/files/<nid>/<fid>_<name>``. Every file is scrubbed of tokens before it is written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from werkzeug.utils import secure_filename

from .gallery_terms import normalised_name, product_family, resolve
from .scrubbing import scrub_bytes, scrub_text

log = logging.getLogger(__name__)

#: What a file is, from its name's extension (:func:`file_kind`).
EXTENSION_KINDS = {
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".gif": "image",
    ".svg": "image",
    ".webp": "image",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".pha": "fits",
    ".arf": "fits",
    ".rmf": "fits",
    ".reg": "region",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".ipynb": "notebook",
    ".html": "html",
    ".htm": "html",
    ".ecsv": "table",
    ".csv": "table",
    ".tsv": "table",
    ".dat": "table",
    ".json": "json",
    ".txt": "text",
    ".log": "text",
    ".md": "text",
    ".py": "text",
}


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


def file_kind(filename: str, data: bytes = b"") -> str:
    """Classify an uploaded file: image, fits, region, yaml, notebook, html, table, json, text or other.

    Parameters
    ----------
    filename : str
        The file's name (its extension decides first).
    data : bytes, optional
        Its content (its first bytes decide otherwise).

    Returns
    -------
    str
    """
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


def parse_isot(value) -> str | None:
    """Normalise a time to ``YYYY-MM-DDTHH:MM:SS``.

    Parameters
    ----------
    value : object
        A time as text (ISO, ISOT, a date).

    Returns
    -------
    str or None
        None when it is not a time.
    """
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


def json_list(text, *, what: str) -> list:
    """A form value holding a JSON list (a single value becomes a one-item list; nothing, an empty one).

    Parameters
    ----------
    text : str or None
        The form value.
    what : str
        The field's name, for the error.

    Returns
    -------
    list

    Raises
    ------
    GalleryError
        When the value is not JSON.
    """
    if text in (None, ""):
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise GalleryError(f"{what} is not valid JSON", detail=f"error while posting data product: {what}") from None
    return value if isinstance(value, list) else [value]


#: The tables: Drupal's nodes and the fields of each bundle, the files, products' sources.
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
        cursor = db.execute(
            "INSERT INTO nodes (uuid, bundle, title, created, changed, author) VALUES (?, ?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), bundle, title, now, now, author),
        )
        return int(cursor.lastrowid)

    def _touch(self, db, nid: int, *, title: str | None = None) -> None:
        row = db.execute("SELECT changed FROM nodes WHERE nid = ?", (nid,)).fetchone()
        # Drupal keeps whole seconds; an update always moves `changed` past `created` so that clients
        # (oda_api compares the two) can tell an update from a creation
        changed = max(int(time.time()), int(row["changed"]) + 1)
        if title is not None:
            db.execute(
                "UPDATE nodes SET changed = ?, revision = revision + 1, title = ? WHERE nid = ?", (changed, title, nid)
            )
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
            row = db.execute(
                "SELECT e.*, n.title, n.created, n.changed, n.uuid FROM astro_entities e "
                "JOIN nodes n USING (nid) WHERE e.normalised = ?",
                (key,),
            ).fetchone()
            if row is None:
                for candidate in db.execute(
                    "SELECT e.*, n.title, n.created, n.changed, n.uuid FROM astro_entities e JOIN nodes n USING (nid)"
                ):
                    if key in {normalised_name(alias) for alias in json.loads(candidate["object_ids"])}:
                        row = candidate
                        break
        return _entity_dict(row) if row else None

    def entities(self) -> list[dict]:
        """All sources, by name."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT e.*, n.title, n.created, n.changed, n.uuid FROM astro_entities e "
                "JOIN nodes n USING (nid) ORDER BY e.name COLLATE NOCASE"
            ).fetchall()
        return [_entity_dict(row) for row in rows]

    def upsert_entity(
        self, name: str, *, ra=None, dec=None, object_type=None, object_ids=None, link=None, update: bool = False
    ) -> int:
        """Create a source (or update it when ``update``); returns its nid."""
        name = name.strip()
        with self._write_lock, self._connect() as db:
            existing = db.execute(
                "SELECT nid FROM astro_entities WHERE normalised = ?", (normalised_name(name),)
            ).fetchone()
            if existing is not None:
                nid = int(existing["nid"])
                if update:
                    updates = {
                        "ra": _float_or_none(ra),
                        "dec": _float_or_none(dec),
                        "object_type": object_type or None,
                        "link": link or None,
                        "object_ids": json.dumps(list(object_ids)) if object_ids else None,
                    }
                    for column, value in updates.items():
                        if value is not None:
                            db.execute(f"UPDATE astro_entities SET {column} = ? WHERE nid = ?", (value, nid))
                    self._touch(db, nid)
                return nid
            nid = self._new_node(db, "astro_entity", name)
            db.execute(
                "INSERT INTO astro_entities (nid, name, normalised, ra, dec, object_type, object_ids, link) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    nid,
                    name,
                    normalised_name(name),
                    _float_or_none(ra),
                    _float_or_none(dec),
                    object_type or None,
                    json.dumps(list(object_ids or [])),
                    link or None,
                ),
            )
            return nid

    # -- observations ---------------------------------------------------------------------------------------
    def observation(self, *, nid: int | None = None, title: str | None = None) -> dict | None:
        """An observation by nid or title, with its attachments, or None."""
        with self._connect() as db:
            if nid is not None:
                row = db.execute(
                    "SELECT o.*, n.title, n.created, n.changed, n.uuid FROM observations o "
                    "JOIN nodes n USING (nid) WHERE o.nid = ?",
                    (nid,),
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT o.*, n.title, n.created, n.changed, n.uuid FROM observations o "
                    "JOIN nodes n USING (nid) WHERE n.title = ? ORDER BY n.changed DESC",
                    (title,),
                ).fetchone()
        if row is None:
            return None
        record = dict(row)
        record["obsids"] = json.loads(record["obsids"])
        record["files"] = self.files_of(record["nid"])
        return record

    def post_observation(
        self,
        *,
        title: str | None,
        t1=None,
        t2=None,
        obsids=None,
        uploads=(),
        secrets=(),
        update: bool = False,
        create_new: bool = True,
        author: str | None = None,
    ) -> int | None:
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
                row = db.execute(
                    "SELECT nid FROM nodes WHERE bundle = 'observation' AND title = ? ORDER BY changed DESC", (title,)
                ).fetchone()
                if row is None and not create_new:
                    return None
            if row is None:
                nid = self._new_node(db, "observation", title, author=author)
                db.execute(
                    "INSERT INTO observations (nid, t1, t2, rev1, rev2, obsids) VALUES (?, ?, ?, ?, ?, ?)",
                    (nid, t1, t2, rev1, rev2, json.dumps(ids)),
                )
            else:
                nid = int(row["nid"])
                db.execute(
                    "UPDATE observations SET t1 = coalesce(?, t1), t2 = coalesce(?, t2), "
                    "rev1 = coalesce(?, rev1), rev2 = coalesce(?, rev2) WHERE nid = ?",
                    (t1, t2, rev1, rev2, nid),
                )
                if ids:
                    db.execute("UPDATE observations SET obsids = ? WHERE nid = ?", (json.dumps(ids), nid))
                self._touch(db, nid)
            self._store_files(db, nid, uploads, secrets=secrets, replace=True)
            return nid

    def _observation_for(self, db, *, title: str | None, t1: str | None, t2: str | None, obsids, author) -> int | None:
        # as drupal_helper.get_observation_drupal_id: a named observation, else the one of this time range,
        # else a new one for the time range
        if title:
            row = db.execute(
                "SELECT nid FROM nodes WHERE bundle = 'observation' AND title = ? ORDER BY changed DESC", (title,)
            ).fetchone()
            if row is not None:
                return int(row["nid"])
        if not (t1 and t2):
            return None
        row = db.execute("SELECT nid FROM observations WHERE t1 = ? AND t2 = ?", (t1, t2)).fetchone()
        if row is not None:
            return int(row["nid"])
        nid = self._new_node(db, "observation", title or f"observation_{t1}_{t2}", author=author)
        ids = [o.strip() for o in str(obsids).split(",") if o.strip()] if obsids else []
        db.execute(
            "INSERT INTO observations (nid, t1, t2, rev1, rev2, obsids) VALUES (?, ?, ?, ?, ?, ?)",
            (nid, t1, t2, self.revnum(t1), self.revnum(t2), json.dumps(ids)),
        )
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
            cursor = db.execute(
                "INSERT INTO files (nid, field, part, filename, stored, kind, size, sha256, "
                "tokens_removed, created) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?)",
                (
                    nid,
                    upload.field,
                    upload.part,
                    safe,
                    kind,
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                    removed,
                    int(time.time()),
                ),
            )
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

    def product_owner(self, product_id: str) -> dict | None:
        """``{"nid", "author"}`` of the product with this ``product_id`` (author None when unknown), or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT p.nid, n.author FROM data_products p JOIN nodes n USING (nid) WHERE p.product_id = ?",
                (product_id,),
            ).fetchone()
        return {"nid": int(row["nid"]), "author": row["author"]} if row else None

    def post_product(
        self, values: dict, uploads: Iterable[Upload], *, secrets: Iterable[str] = (), author: str | None = None
    ) -> tuple[int, bool]:
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
        coords = json_list(values.pop("source_coord_list", None), what="source_coord_list")
        object_ids = json_list(values.pop("object_ids_list", None), what="object_ids_list")
        object_types = json_list(values.pop("object_type_list", None), what="object_type_list")
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
                sources = self._source_entities(
                    db,
                    names,
                    links=links,
                    coords=coords,
                    object_ids=object_ids,
                    object_types=object_types,
                    insert=insert_new_source,
                )
                fields["src_name"] = ",".join(names)
            t1, t2 = parse_isot(fields.get("t1")), parse_isot(fields.get("t2"))
            observation_nid = self._observation_for(
                db, title=observation_title, t1=t1, t2=t2, obsids=fields.get("obsid"), author=author
            )
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
                    db.execute(
                        "INSERT INTO product_sources (product_nid, position, entity_nid) VALUES (?, ?, ?)",
                        (nid, position, entity_nid),
                    )
            self._store_files(db, nid, uploads, secrets=secrets, replace=updating)
            files = [dict(r) for r in db.execute("SELECT * FROM files WHERE nid = ?", (nid,))]
            derived = self._derive(fields, files)
            if observation_nid is not None:
                derived["observation_nid"] = observation_nid
            assignments = ", ".join(f"{column} = ?" for column in derived)
            db.execute(
                f"UPDATE data_products SET {assignments}, fields = ? WHERE nid = ?",
                (*derived.values(), json.dumps(fields), nid),
            )
        log.info("gallery: %s data product %d (%s)", "updated" if updating else "created", nid, title)
        return nid, updating

    def _source_entities(self, db, names, *, links, coords, object_ids, object_types, insert) -> list[int]:
        entity_nids = []
        for index, name in enumerate(names):
            row = db.execute("SELECT nid FROM astro_entities WHERE normalised = ?", (normalised_name(name),)).fetchone()
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
            kind = (
                object_types[index]
                if index < len(object_types) and object_types[index]
                else resolved.get("object_type")
            )
            link = links[index] if index < len(links) and links[index] else None
            nid = self._new_node(db, "astro_entity", name)
            db.execute(
                "INSERT INTO astro_entities (nid, name, normalised, ra, dec, object_type, object_ids, link) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    nid,
                    name,
                    normalised_name(name),
                    _float_or_none(ra),
                    _float_or_none(dec),
                    kind,
                    json.dumps([str(i) for i in ids]),
                    link,
                ),
            )
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
            "t1": t1,
            "t2": t2,
            "rev1": rev1,
            "rev2": rev2,
            "e1_kev": _float_or_none(fields.get("e1_kev")),
            "e2_kev": _float_or_none(fields.get("e2_kev")),
            "ra": _float_or_none(fields.get("ra")),
            "dec": _float_or_none(fields.get("dec")),
            "obsids": str(obsids),
            "proposals": str(proposals),
            "src_names": json.dumps(src_names),
            "in_evidence": int(fields.get("in_evidence") or 0),
            "simulated": int(self._simulated(fields, files)),
        }

    def _simulated(self, fields: dict, files: list[dict]) -> bool:
        """True when a product came from the simulated sky (FITS stamps, host_type local, or said so)."""
        if str(fields.get("host_type", "")).lower() == "local" or str(fields.get("simulated", "")).lower() in (
            "1",
            "true",
            "yes",
        ):
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
                head = data[: 200 * 2880]
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
            rows = db.execute(
                "SELECT p.*, n.title, n.created, n.changed, n.uuid, n.revision, n.author "
                f"FROM data_products p JOIN nodes n USING (nid) {where} "
                "ORDER BY n.changed DESC, p.nid DESC",
                arguments,
            ).fetchall()
            products = []
            for row in rows:
                record = dict(row)
                record["fields"] = json.loads(record["fields"])
                record["src_names"] = json.loads(record["src_names"])
                record["sources"] = [
                    _entity_dict(e)
                    for e in db.execute(
                        "SELECT e.*, n.title, n.created, n.changed, n.uuid FROM product_sources s "
                        "JOIN astro_entities e ON e.nid = s.entity_nid JOIN nodes n ON n.nid = e.nid "
                        "WHERE s.product_nid = ? ORDER BY s.position",
                        (record["nid"],),
                    )
                ]
                record["files"] = [
                    dict(f) for f in db.execute("SELECT * FROM files WHERE nid = ? ORDER BY fid", (record["nid"],))
                ]
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


def matches(
    product: dict,
    *,
    instrument=None,
    product_type=None,
    src_name=None,
    e1_kev=None,
    e2_kev=None,
    rev1=None,
    rev2=None,
    min_span_rev=None,
    max_span_rev=None,
    product_id=None,
    t1=None,
    t2=None,
    simulated=None,
) -> bool:
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
