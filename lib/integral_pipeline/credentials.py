"""The batch's MMODA token: found where the batch starts, handed to each notebook's kernel by its environment.

A notebook's kernel works in its run folder, where the ``.oda-token`` of the folder ``run_all.py`` was
started from is not found. So the token's *location* is resolved once, where the batch starts
(:func:`integral_workflows.hosts.find_token`: ``$ODA_TOKEN``, else ``./.oda-token``, else
``~/.oda-token``), only that location travels (to Dask workers too), and each kernel gets the token
as ``ODA_TOKEN`` in its environment. The token is never a parameter and never written: not into a
notebook, a manifest, a log or the task graph.
"""

from __future__ import annotations

import logging
from pathlib import Path

from integral_workflows import hosts

log = logging.getLogger(__name__)

__all__ = ["locate_token_file", "kernel_environment"]


def locate_token_file() -> Path | None:
    """Return the token file of this batch, or None when ``$ODA_TOKEN`` holds the token or there is none.

    Called where the batch starts (``run_all.py``'s working folder), before anything changes folder.
    A token in ``$ODA_TOKEN`` needs no handing over: the kernels inherit this process's environment
    (and workers of an existing cluster have their own, see ``docs/pipeline.md``).

    Returns
    -------
    Path or None
        The absolute path of the ``.oda-token`` file to read for each kernel.
    """
    found = hosts.find_token()
    if found is None or found.location == f"${hosts.TOKEN_ENV}":
        return None
    return Path(found.location).resolve()


def kernel_environment(token_file: str | Path | None) -> dict[str, str]:
    """Return the variables a notebook's kernel gets on top of this process's environment.

    Parameters
    ----------
    token_file : str or Path or None
        From :func:`locate_token_file`; None adds nothing.

    Returns
    -------
    dict
        ``{"ODA_TOKEN": token}``, or empty when there is no file or it cannot be read here (a worker
        that does not see it): the notebook then looks for a token itself, and says so.
    """
    if token_file is None:
        return {}
    try:
        token = Path(token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        log.warning(
            "cannot read the MMODA token file %s here (%s): the notebooks look for a token themselves",
            token_file,
            getattr(error, "strerror", None) or type(error).__name__,
        )
        return {}
    return {hosts.TOKEN_ENV: token} if token else {}
