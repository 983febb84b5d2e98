"""The lock of a run folder: one writer at a time, across processes and machines sharing the output folder.

``flock`` on ``<run folder>/.run_all.lock``: released by the kernel when its holder dies
(a killed worker leaves no stale lock), and honoured across NFS v4 clients.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from .layout import LOCK_FILE_NAME

__all__ = ["RunFolderBusy", "run_folder_lock"]


class RunFolderBusy(RuntimeError):
    """Another process is writing the run folder."""


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of a run folder, or fail at once if another process holds it.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (it must exist).

    Yields
    ------
    None
        While the lock is held.

    Raises
    ------
    RunFolderBusy
        If another process (another invocation, another worker) holds it.
    """
    with open(Path(run_dir) / LOCK_FILE_NAME, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"{run_dir} is being written by another run_all process or worker") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
