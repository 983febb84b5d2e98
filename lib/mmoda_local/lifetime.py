"""How long a ``serve`` process lives: one server per data folder, idle shutdown, code identity."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: Held (``flock``) by the serving process for its whole life; the kernel releases it when the process dies.
SERVE_LOCK_NAME = "serve.lock"


class DataDirInUse(RuntimeError):
    """Another ``serve`` process already serves this data folder."""


def code_digest(package_dir: Path | None = None) -> str:
    """Identity of the server's code: SHA-256 over the package's ``.py`` files (sorted relative paths and bytes).

    Clients compare it with the digest of the package they would start, to reuse
    only a server of their own checkout and version.

    Parameters
    ----------
    package_dir : Path, optional
        The ``mmoda_local`` package folder; this module's by default.

    Returns
    -------
    str
        ``sha256:<hex>``.
    """
    folder = Path(package_dir) if package_dir else Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def claim_data_dir(data_dir: Path):
    """Take the data folder for this process, or raise :class:`DataDirInUse`.

    Parameters
    ----------
    data_dir : Path
        The server's data folder.

    Returns
    -------
    file object
        Keep it open for the life of the server: closing it releases the claim.
    """
    handle = open(Path(data_dir) / SERVE_LOCK_NAME, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUse(f"{holder} already serves {data_dir}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"local MMODA pid {os.getpid()}")
    handle.flush()
    return handle


class IdleWatch:
    """Stop the server after ``idle_s`` seconds without requests and without running jobs.

    Parameters
    ----------
    idle_s : float
        Allowed idle time; 0 or less never stops.
    busy : callable
        Returns True while jobs run (a long job is not idleness).
    on_idle : callable
        Called once, from the watch thread, when the server has been idle long enough.
    """

    def __init__(self, idle_s: float, *, busy: Callable[[], bool], on_idle: Callable[[], None]):
        self.idle_s = float(idle_s)
        self._busy = busy
        self._on_idle = on_idle
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mmoda-local-idle-watch", daemon=True)

    def touch(self) -> None:
        """Record activity (a request arrived)."""
        self._last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last activity."""
        return time.monotonic() - self._last

    def start(self) -> IdleWatch:
        """Start watching (does nothing when ``idle_s`` <= 0); return the watch."""
        if self.idle_s > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()

    def _watch(self) -> None:
        period = min(10.0, max(0.2, self.idle_s / 4))
        while not self._stop.wait(period):
            with contextlib.suppress(Exception):
                if self._busy():
                    self.touch()
                    continue
            if self.idle_for() >= self.idle_s:
                log.info("no request and no running job for %.0f s: stopping", self.idle_for())
                self._on_idle()
                return
