"""After a step: the executed notebook scrubbed of tokens, and any other new file holding the token masked.

The token (``$ODA_TOKEN``, or anything shaped like a JWT) must never be written into a run
folder; a product that holds it fails the step. The patterns are
:func:`integral_workflows.provenance.scrub_text`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from integral_workflows import provenance

log = logging.getLogger(__name__)

__all__ = ["scrub_notebook", "mask_leaks"]

#: Shorter strings are not masked (``provenance.secret_values`` keeps the same floor for ``$ODA_TOKEN``).
MIN_SECRET_LENGTH = 8


def scrub_notebook(path: Path, *, secrets: Iterable[str] = ()) -> int:
    """Redact secrets in an executed notebook in place; return how many were redacted.

    Parameters
    ----------
    path : Path
        The executed notebook.
    secrets : iterable of str
        Secrets besides ``$ODA_TOKEN`` (the token the kernel was given).

    Returns
    -------
    int
        How many token-like strings were replaced.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    # JWT characters and the redaction text need no JSON escaping, so a text-level replacement keeps valid JSON.
    clean, count = provenance.scrub_text(text, secrets=_secrets(secrets))
    if count:
        path.write_text(clean, encoding="utf-8")
        log.warning(
            "%d token-like string(s) redacted from %s: the notebook printed or stored a token", count, path.name
        )
    return count


def _mask_secret_in_file(path: Path, secret: bytes) -> bool:
    """Overwrite every occurrence of ``secret`` in a file with ``*`` of the same length; return whether any."""
    try:
        content = path.read_bytes()
    except OSError:
        return False
    if secret not in content:
        return False
    # Same length, so a FITS file keeps its 2880-byte blocks and stays readable.
    path.write_bytes(content.replace(secret, b"*" * len(secret)))
    return True


def _secrets(extra: Iterable[str]) -> list[str]:
    # A very short "secret" would mask ordinary text: the same floor as provenance.secret_values.
    given = [secret for secret in extra if len(secret or "") >= MIN_SECRET_LENGTH]
    return list(dict.fromkeys([*provenance.secret_values(), *given]))


def mask_leaks(run_dir: Path, *, since: float, exclude: Iterable[Path], secrets: Iterable[str] = ()) -> list[Path]:
    """Mask the token in the files of a run folder written since ``since``; return those that held it.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    since : float
        Files older than this (epoch seconds, one second of slack) are not read.
    exclude : iterable of Path
        Files handled otherwise (the executed notebook, the step record).
    secrets : iterable of str
        Secrets besides ``$ODA_TOKEN`` (the token the kernel was given).

    Returns
    -------
    list of Path
        The files that held the token (now masked).
    """
    secrets = _secrets(secrets)
    if not secrets:
        return []
    excluded = {path.resolve() for path in exclude}
    leaked = []
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or path.resolve() in excluded or path.stat().st_mtime < since - 1:
            continue
        if any(_mask_secret_in_file(path, secret.encode("utf-8")) for secret in secrets):
            leaked.append(path)
    return leaked
