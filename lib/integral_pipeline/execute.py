"""Execute one step: its notebook through papermill in the run folder, then the checks of what it left there.

The kernel starts in the run folder (given to nbclient, not by ``os.chdir``, which parallel
runs in one process would race on) and talks to papermill over Unix sockets (IPC), not TCP.
The kernel gets the batch's MMODA token as ``ODA_TOKEN`` in its environment (never as a parameter;
see ``credentials``). A failing notebook keeps its partial executed notebook; the executed notebook is
scrubbed of tokens; any other new file holding the token is masked and fails the step; a notebook that
ends without its step record fails.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from jupyter_client.manager import KernelManager
from traitlets import CaselessStrEnum, default

from integral_workflows import provenance

from .credentials import kernel_environment
from .kernels import TemplateProvisioner
from .manifest import FAILED, OK, StepEntry, StepError, UpstreamProduct
from .notebooks import notebook_imports
from .plan import PlannedRun, PlannedStep
from .scrubbing import mask_leaks, scrub_notebook

log = logging.getLogger(__name__)

__all__ = ["IPCKernelManager", "execute_step", "error_text"]

_SOCKET_DIR: Path | None = None
_SOCKET_DIR_LOCK = threading.Lock()


def _private_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of this user that nobody else can enter."""
    try:
        stat = path.lstat()
    except FileNotFoundError:
        return False
    return path.is_dir() and not path.is_symlink() and stat.st_uid == os.getuid() and not stat.st_mode & 0o077


def _socket_dir() -> Path:
    """Return the folder (0700) of this user's kernel sockets, with a short path (a socket's: at most 107 bytes).

    One folder for every process of the user, so that processes killed before cleaning up leave
    no folder behind; the kernel manager removes its sockets when its kernel shuts down.
    """
    global _SOCKET_DIR
    with _SOCKET_DIR_LOCK:
        if _SOCKET_DIR is None or not _private_folder(_SOCKET_DIR):
            folder = Path(tempfile.gettempdir()) / f"integral-kernels-{os.getuid()}"
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
            if not _private_folder(folder):
                # Someone else's, or open to others: a folder of our own for this process instead.
                folder = Path(tempfile.mkdtemp(prefix="integral-kernels-"))
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _SOCKET_DIR = folder
        return _SOCKET_DIR


class IPCKernelManager(KernelManager):
    """A kernel manager whose kernel listens on Unix sockets in a private folder instead of TCP ports.

    Faster to start than TCP (no port probing), reachable by this user only, and the kernel
    has no reason to warn that it runs "over TCP without encryption". The kernel is forked from this
    process's kernel template when it can be (:mod:`integral_pipeline.kernels`).
    """

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    #: Variables added to the kernel's environment; set per step by :meth:`configured` (papermill builds
    #: the kernel manager from its class alone, so the class carries them).
    extra_environment: ClassVar[Mapping[str, str]] = {}
    #: Modules the kernel template imports before forking the kernel (the notebook's imports).
    kernel_preload: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def configured(
        cls, *, environment: Mapping[str, str] | None = None, preload: Sequence[str] = ()
    ) -> type[IPCKernelManager]:
        """Return a kernel manager class for one step.

        Parameters
        ----------
        environment : mapping, optional
            Variables for the kernel (e.g. ``ODA_TOKEN``) on top of this process's.
        preload : sequence of str
            Modules the kernel template imports before forking the kernel
            (:func:`integral_pipeline.notebooks.notebook_imports`).

        Returns
        -------
        type
            A subclass (kept in memory only: its variables are never written anywhere), or this class
            when there is nothing to set.
        """
        if not environment and not preload:
            return cls
        return type(
            cls.__name__, (cls,), {"extra_environment": dict(environment or {}), "kernel_preload": tuple(preload)}
        )

    async def _async_pre_start_kernel(self, **kw: Any):
        if self.extra_environment:
            kw["env"] = {**(kw.get("env") or os.environ), **self.extra_environment}
        if (
            self.provisioner is None
            and self.kernel_spec is not None
            and not self.kernel_spec.metadata.get("kernel_provisioner")
        ):
            # The kernelspec names no provisioner of its own: the local one, forking from the kernel template.
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = TemplateProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
            self.provisioner.preload = self.kernel_preload
            self.provisioner.private_variables = tuple(self.extra_environment)
        return await super()._async_pre_start_kernel(**kw)

    @default("ip")
    def _ip_default(self) -> str:
        if self.transport == "ipc":
            return str(_socket_dir() / uuid.uuid4().hex[:12])
        return super()._ip_default()

    async def _async_interrupt_kernel(self) -> None:
        # jupyter_client interrupts a kernel before asking it to shut down; papermill shuts kernels down once the
        # notebook has ended, so the interrupt only makes an idle kernel print "KeyboardInterrupt caught in kernel".
        # A kernel that does not then shut down is killed after shutdown_wait_time.
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def error_text(planned: PlannedStep, error: StepError, run: PlannedRun) -> str:
    """Say why a step failed: step, notebook, cell, exception name and message."""
    cell = f" at cell {error.cell} of the executed notebook" if error.cell is not None else ""
    hook = f" (hook {error.hook})" if error.hook else ""
    return (
        f"step {planned.name} ({run.project.display(planned.notebook)}) failed{cell}{hook}: "
        f"{error.type}: {error.message}"
    )


def _run_papermill(
    planned: PlannedStep,
    output_notebook: Path,
    run_dir: Path,
    *,
    kernel_name: str,
    log_output: bool,
    environment: Mapping[str, str],
) -> StepError | None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .engine import ENGINE_NAME

    try:
        papermill.execute_notebook(
            str(planned.notebook),
            str(output_notebook),
            parameters=planned.notebook_values,
            engine_name=ENGINE_NAME,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=log_output,
            kernel_manager_class=IPCKernelManager.configured(
                environment=environment, preload=notebook_imports(planned.notebook)
            ),
            # The kernel's working folder, set per kernel: papermill's cwd= would os.chdir
            # the whole process, which parallel runs would race on.
            resources={"metadata": {"path": str(run_dir)}},
        )
    except PapermillExecutionError as failure:
        return StepError(type=failure.ename, message=str(failure.evalue), cell=failure.cell_index)
    except Exception as failure:  # a dead kernel, a timeout, an unreadable notebook: the run must go on
        return StepError(type=type(failure).__name__, message=str(failure))
    return None


def _read_record(planned: PlannedStep, run_dir: Path) -> tuple[dict | None, StepError | None]:
    record_path = provenance.step_record_path(run_dir, planned.name)
    try:
        record = provenance.read_step_record(run_dir, planned.name)
    except ValueError as failure:
        return None, StepError(type="BadStepRecord", message=str(failure))
    if record is None:
        others = sorted(path.name for path in run_dir.glob(f"*{provenance.STEP_RECORD_SUFFIX}"))
        return None, StepError(
            type="MissingStepRecord",
            message=f"the notebook finished without writing {record_path.name}: its 'outputs' "
            f"cell must record the step {planned.name!r} (provenance.record_step or "
            f"the notebook run's record_outputs) (records present: {others or 'none'})",
        )
    return record, None


def execute_step(
    planned: PlannedStep,
    run: PlannedRun,
    *,
    key: str,
    digest: str,
    portable: dict,
    upstream: dict[str, UpstreamProduct],
    reason: str,
    log_output: bool = False,
    kernel_name: str = "python3",
    token_file: str | Path | None = None,
) -> tuple[StepEntry, dict | None]:
    """Execute a step's notebook and check what it left in the run folder.

    Parameters
    ----------
    planned : PlannedStep
        The step.
    run : PlannedRun
        Its run.
    key : str
        The step key (recorded).
    digest : str
        The notebook's code digest (recorded).
    portable : dict
        The step's parameters as the manifest records them.
    upstream : dict
        Its upstream products with their checksums.
    reason : str
        Why it executes (recorded).
    log_output : bool
        Copy the notebook's output to the log.
    kernel_name : str
        The Jupyter kernel.
    token_file : str or Path, optional
        The batch's ``.oda-token`` (:func:`integral_pipeline.credentials.locate_token_file`): the kernel
        gets its token as ``ODA_TOKEN``.

    Returns
    -------
    tuple of (StepEntry, dict or None)
        The manifest entry (``ok`` or ``failed`` with the error) and the step record, if read.
    """
    run_dir = run.run_dir
    output_notebook = run_dir / planned.executed_notebook_name
    record_path = provenance.step_record_path(run_dir, planned.name)
    # A record left by an earlier attempt must not vouch for this one.
    record_path.unlink(missing_ok=True)
    started_wall, started = time.time(), time.monotonic()
    entry = StepEntry(
        name=planned.name,
        index=planned.index,
        status=OK,
        reason=reason,
        notebook=run.project.display(planned.notebook),
        notebook_digest=digest,
        started_utc=provenance.utc_now(),
        parameters=portable,
        upstream=upstream,
        step_key=key,
    )
    log.debug(
        "%s: step %d/%d %s: executing %s (%s)",
        run.label,
        planned.index,
        len(run.steps),
        planned.name,
        entry.notebook,
        reason,
    )
    environment = kernel_environment(token_file)
    error = _run_papermill(
        planned, output_notebook, run_dir, kernel_name=kernel_name, log_output=log_output, environment=environment
    )
    entry.ended_utc, entry.duration_s = provenance.utc_now(), round(time.monotonic() - started, 3)
    # The kernel's token is a secret here too, even when this process's $ODA_TOKEN is not set.
    secrets = list(environment.values())
    if output_notebook.is_file():
        scrub_notebook(output_notebook, secrets=secrets)
        entry.executed_notebook = output_notebook.name
    leaked = mask_leaks(run_dir, since=started_wall, exclude=[output_notebook, record_path], secrets=secrets)
    if error is None and leaked:
        names = ", ".join(path.relative_to(run_dir).as_posix() for path in leaked)
        error = StepError(
            type="TokenLeak",
            message=f"the MMODA token was written into {names} (masked there); a product must never hold it",
        )
    record = None
    if error is None:
        record, error = _read_record(planned, run_dir)
    if record is not None:
        entry.record = record_path.name
        entry.take_record(record)
    if error is not None:
        entry.status, entry.error = FAILED, error
        log.debug(
            "%s: %s; partial notebook kept: %s",
            run.label,
            error_text(planned, error, run),
            output_notebook if output_notebook.is_file() else "none",
        )
    return entry, record
