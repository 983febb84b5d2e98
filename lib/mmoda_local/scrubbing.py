"""Token hygiene: no token is kept in an uploaded file, a stored form value or the access log."""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

#: A JSON Web Token: base64url of ``{"`` twice (header and payload), then the signature. The signature
#: is optional here: a truncated token still tells who its owner is.
JWT_PATTERN = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")

#: What replaces a token in a text file (the file stays valid YAML, JSON or notebook).
TOKEN_MARKER = "<token removed>"

#: Kinds of files (:func:`mmoda_local.gallery_store.file_kind`) scrubbed as text.
TEXT_KINDS = ("yaml", "notebook", "html", "table", "region", "json", "text")


def looks_like_token(value) -> bool:
    """Whether ``value`` contains something shaped like a JWT.

    Parameters
    ----------
    value : str, bytes or None

    Returns
    -------
    bool
    """
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

    Parameters
    ----------
    text : str
    secrets : iterable of str, optional
        Exact strings to remove as well (the request's token).

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
        What the file is (:func:`mmoda_local.gallery_store.file_kind`): text kinds get
        :data:`TOKEN_MARKER`; binary ones (FITS, images, unknown) get a
        same-length run of ``X`` so FITS headers (80-character cards) and
        offsets stay valid. Gzip files are scrubbed inside and recompressed.
    secrets : iterable of str, optional
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


def clean_form(values: dict, *, secrets: Iterable[str] = ()) -> tuple[dict, list[str]]:
    """Drop the token and any JWT-looking value from a request's form values.

    Parameters
    ----------
    values : dict
        Form values, ``token`` included.
    secrets : iterable of str, optional
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


class TokenRedactingFilter(logging.Filter):
    """Removes tokens from log records (``token=...`` query arguments and JWT-looking strings).

    The gallery's GET endpoints (``get_parents_term``, ``resolve_name``,
    ``get_list_terms``...) receive the token in the query string, and
    werkzeug's access log writes every request line, into
    ``<data_dir>/server.log`` under ``python -m mmoda_local serve``.
    """

    QUERY_TOKEN = re.compile(r"(token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        """Clean the record in place; never drops it.

        Parameters
        ----------
        record : logging.LogRecord

        Returns
        -------
        bool
            Always True.
        """
        message = record.getMessage()
        if "token=" in message or looks_like_token(message):
            cleaned = self.QUERY_TOKEN.sub(r"\1<removed>", message)
            record.msg = JWT_PATTERN.sub(b"<removed>", cleaned.encode("utf-8", "surrogateescape")).decode(
                "utf-8", "surrogateescape"
            )
            record.args = ()
        return True


def redact_tokens_in_access_log() -> None:
    """Install :class:`TokenRedactingFilter` on werkzeug's request logger (once)."""
    access_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, TokenRedactingFilter) for f in access_log.filters):
        access_log.addFilter(TokenRedactingFilter())
