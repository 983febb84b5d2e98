"""Notebook kernels forked from a template process that has already imported what the notebooks import.

A notebook kernel started the ordinary way (``python -m ipykernel_launcher``) spends most of a short
step starting Python and ipykernel and importing the scientific stack (numpy, scipy, astropy,
matplotlib, oda_api: about 2 s of CPU of a 5 s step). Instead, each process that executes steps keeps a
**kernel template** (``kernel_template.py``): a single-threaded process, started with the kernelspec's
interpreter and options, that imports ipykernel and the notebooks' modules once and forks every kernel
from itself. Each kernel is still a process of its own, with its own working folder, environment,
connection file and an empty namespace; papermill and nbclient drive it exactly as before (parameters
cell, saved executed notebook, interrupts, shutdown, kill). What a forked kernel has more than a fresh one
is modules already in ``sys.modules``; at its end it skips the teardown of every module (see
``kernel_template._exit_kernel``).

The modules imported in the template are :data:`PRELOAD` and the top-level imports of the step's notebook
(:func:`integral_pipeline.notebooks.notebook_imports`), imported before the kernel is forked; the template
keeps them for the next kernels. A module that fails to import there is left to the kernel (which fails on
it as it would have). Library code is therefore the code of when the template imported it: a change to
``lib/`` reaches the kernels of the next batch.

Kernels are launched from the template when the kernelspec's command is ``PYTHON [OPTIONS] -m
ipykernel_launcher ARGS``; otherwise, when the template cannot fork (a module started a thread in it), or
with ``INTEGRAL_PIPELINE_KERNEL_TEMPLATE=0`` in the environment, they are started the ordinary way; and always
on other systems than Linux.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from integral_workflows.hosts import process_alive

from .notebooks import KERNEL_NAME

log = logging.getLogger(__name__)

__all__ = [
    "PRELOAD",
    "TEMPLATE_ENV",
    "ForkedKernel",
    "KernelTemplate",
    "KernelTemplateError",
    "TemplateProvisioner",
    "warm_template",
]

#: Set to ``0`` to start every kernel the ordinary way.
TEMPLATE_ENV = "INTEGRAL_PIPELINE_KERNEL_TEMPLATE"

#: Imported in the template besides each notebook's own imports: the scientific stack of the suite's notebooks and
#: what ``integral_workflows`` imports only when a function needs it (``notebook.setup``: the MMODA session and
#: ``oda_api``; the mosaic's combination, source finding and plots: reproject, photutils, regions, WCS axes).
PRELOAD: tuple[str, ...] = (
    "numpy",
    "scipy.stats",
    "scipy.optimize",
    "astropy.units",
    "astropy.time",
    "astropy.table",
    "astropy.io.fits",
    "astropy.coordinates",
    "astropy.modeling",
    "astropy.visualization.wcsaxes",
    "matplotlib.pyplot",
    "matplotlib.dates",
    "matplotlib.patheffects",
    "reproject",
    "photutils.detection",
    "regions",
    "oda_api.api",
    "IPython.display",
    "integral_workflows.session",
    "integral_workflows.mosaic",
    "integral_workflows.photometry",
    "integral_workflows.plotting",
)

#: The template's program (run as a script, so that it loads nothing of this package into the kernels).
TEMPLATE_SCRIPT = Path(__file__).with_name("kernel_template.py")

#: How long a launch may take (the template may first import a notebook's modules).
LAUNCH_TIMEOUT_S = 300.0

_TEMPLATES: dict[tuple, KernelTemplate] = {}
_TEMPLATES_LOCK = threading.Lock()


class KernelTemplateError(RuntimeError):
    """The template could not launch a kernel (the kernel is then started the ordinary way)."""


def templates_enabled() -> bool:
    """Whether kernels are forked from templates (on Linux, unless ``$INTEGRAL_PIPELINE_KERNEL_TEMPLATE`` is ``0``)."""
    # Linux only: macOS's system libraries do not support fork without exec once loaded (numpy's Accelerate).
    return sys.platform.startswith("linux") and os.environ.get(TEMPLATE_ENV, "1").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    }


def _split_command(cmd: Sequence[str]) -> tuple[str, tuple[str, ...], list[str]] | None:
    """Split ``PYTHON [OPTIONS] -m ipykernel_launcher ARGS`` into its parts; None for any other command."""
    cmd = [os.path.expanduser(part) for part in cmd]
    try:
        module = cmd.index("-m")
    except ValueError:
        return None
    if module + 1 >= len(cmd) or cmd[module + 1] != "ipykernel_launcher":
        return None
    options = tuple(cmd[1:module])
    if not all(option.startswith("-") for option in options):
        return None
    return cmd[0], options, cmd[module + 2 :]


class ForkedKernel:
    """A kernel forked by a template, with the part of :class:`subprocess.Popen` that jupyter_client uses.

    Parameters
    ----------
    pid : int
        The kernel's process.
    template : KernelTemplate
        Its template, which reports its exit status.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int, template: KernelTemplate):
        self.pid = pid
        self.returncode: int | None = None
        self._template = template
        self._ended = threading.Event()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd (macOS), or already ended and reaped
            self._pidfd = None

    def _exited(self, returncode: int) -> None:
        self.returncode = returncode
        self._ended.set()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self) -> int | None:
        """Return the exit status, or None while the kernel runs."""
        if self.returncode is None and not self._template.alive and not process_alive(self.pid):
            self._exited(1)  # the template ended before it could report: the status is unknown
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the kernel to end; return its exit status (:class:`subprocess.TimeoutExpired` on timeout)."""
        step = 0.1
        waited = 0.0
        while self.poll() is None:
            if timeout is not None and waited >= timeout:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            self._ended.wait(step)
            waited += step
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the kernel (nothing once it has ended, as :class:`subprocess.Popen` does)."""
        if self.poll() is not None:
            return
        if self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, signum)
        else:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(signal.SIGKILL)


class KernelTemplate:
    """A template process (``kernel_template.py``) and the kernels it forked.

    Parameters
    ----------
    python : str
        The kernelspec's interpreter.
    options : tuple of str
        Its interpreter options (e.g. ``-Xfrozen_modules=off``).
    env : mapping
        The template's environment (a kernel's; each kernel gets its own).
    """

    def __init__(self, python: str, options: Sequence[str], env: Mapping[str, str]):
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [python, *options, str(TEMPLATE_SCRIPT), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=dict(env),
            )
        finally:
            theirs.close()
        self._socket = ours
        self._launch_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._replies: queue.Queue[dict] = queue.Queue()
        self._kernels: dict[int, ForkedKernel] = {}
        self._early_exits: dict[int, int] = {}
        self.alive = True
        #: False once the template refused to fork (e.g. a module it imported started a thread).
        self.usable = True
        #: Kernels forked so far.
        self.launched = 0
        self._reader = threading.Thread(target=self._read, name=f"kernel-template-{self.process.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            with self._socket.makefile("rb") as stream:
                for line in stream:
                    message = json.loads(line)
                    if message.get("op") == "exit":
                        with self._state_lock:
                            kernel = self._kernels.pop(message["pid"], None)
                            if kernel is None:
                                self._early_exits[message["pid"]] = message["returncode"]
                        if kernel is not None:
                            kernel._exited(message["returncode"])
                    else:
                        self._replies.put(message)
        except (OSError, ValueError) as error:
            log.debug("kernel template %d: %s", self.process.pid, error)
        finally:
            self.alive = False
            self._replies.put({"op": "error", "message": "the kernel template ended"})

    def _ask(self, request: dict) -> dict:
        """Send ``request`` and return the template's answer (the caller holds the launch lock)."""
        if not self.alive:
            raise KernelTemplateError("the kernel template ended")
        try:
            self._socket.sendall((json.dumps(request) + "\n").encode())
            return self._replies.get(timeout=LAUNCH_TIMEOUT_S)
        except (OSError, queue.Empty) as error:
            raise KernelTemplateError(f"the kernel template did not answer: {error}") from None

    def launch(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | Path, preload: Sequence[str] = ()
    ) -> ForkedKernel:
        """Fork a kernel: ``python -m ipykernel_launcher ARGV`` in ``cwd`` with exactly ``env``.

        Parameters
        ----------
        argv : sequence of str
            The arguments after ``-m ipykernel_launcher`` (``-f CONNECTION_FILE ...``).
        env : mapping
            The kernel's environment.
        cwd : str or Path
            Its working folder.
        preload : sequence of str
            Modules the template imports first (kept for the next kernels).

        Returns
        -------
        ForkedKernel
            The kernel's process.

        Raises
        ------
        KernelTemplateError
            If the template is gone or could not fork.
        """
        request = {
            "op": "launch",
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd),
            "preload": list(dict.fromkeys(preload)),
        }
        with self._launch_lock:
            reply = self._ask(request)
            if reply.get("op") != "launched":
                if self.alive:
                    self.usable = False
                raise KernelTemplateError(reply.get("message", str(reply)))
            kernel = ForkedKernel(reply["pid"], self)
            self.launched += 1
            with self._state_lock:
                early = self._early_exits.pop(kernel.pid, None)
                if early is None:
                    self._kernels[kernel.pid] = kernel
            if early is not None:
                kernel._exited(early)
            return kernel

    def preload(self, modules: Sequence[str]) -> list[str]:
        """Have the template import ``modules`` now, ahead of any launch.

        Parameters
        ----------
        modules : sequence of str
            Dotted module names.

        Returns
        -------
        list of str
            Those that failed to import (left to the kernels, as in a launch).

        Raises
        ------
        KernelTemplateError
            If the template is gone or did not answer.
        """
        with self._launch_lock:
            reply = self._ask({"op": "preload", "modules": list(dict.fromkeys(modules))})
        if reply.get("op") != "preloaded":
            raise KernelTemplateError(reply.get("message", str(reply)))
        return list(reply["failed"])

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the template (its running kernels end too, as when their manager's process ends)."""
        self.alive = False
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _shapes_imports(name: str) -> bool:
    """Whether the variable ``name`` is read as the interpreter starts or as the template's modules load."""
    return name.startswith(("PYTHON", "MPL")) or name.endswith("_NUM_THREADS") or name == "VECLIB_MAXIMUM_THREADS"


def template_for(python: str, options: Sequence[str], env: Mapping[str, str]) -> KernelTemplate | None:
    """Return this process's template for ``python`` and ``options`` (started on first use).

    One per interpreter, options and variables read when modules load (``PYTHON*``, BLAS and OpenMP thread
    counts, matplotlib's); the other variables are each kernel's own. None if that template refused to fork
    (its kernels are started the ordinary way).
    """
    key = (python, tuple(options), tuple(sorted((k, v) for k, v in env.items() if _shapes_imports(k))))
    with _TEMPLATES_LOCK:
        template = _TEMPLATES.get(key)
        if template is not None and not template.usable:
            return None
        if template is None or not template.alive:
            if template is not None:
                template.close()
                if not template.launched:  # it ended before forking anything: it would again
                    template.usable = False
                    return None
            template = _TEMPLATES[key] = KernelTemplate(python, options, env)
            log.debug("kernel template %d started for %s %s", template.process.pid, python, " ".join(options))
        return template


def close_templates() -> None:
    """Close this process's templates (at exit; the next kernel starts a new one)."""
    with _TEMPLATES_LOCK:
        templates = list(_TEMPLATES.values())
        _TEMPLATES.clear()
    for template in templates:
        template.close()


atexit.register(close_templates)


def warm_template(kernel_name: str = KERNEL_NAME) -> KernelTemplate | None:
    """Start this process's template for the kernelspec ``kernel_name`` and import :data:`PRELOAD` in it now.

    The first kernel then starts without waiting for them: e.g. ``client.run(lambda: warm_template() is not
    None)`` readies the templates of a Dask cluster's workers before a batch. It is the template that the kernels of
    that kernelspec launched later from this process are forked from (same interpreter, options and
    environment).

    Parameters
    ----------
    kernel_name : str
        The Jupyter kernelspec.

    Returns
    -------
    KernelTemplate or None
        None when that kernelspec's kernels are not forked (templates disabled, another command or
        provisioner, no such kernelspec, or a template that cannot fork).
    """
    if not templates_enabled():
        return None
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return None
    parts = _split_command(spec.argv)
    if parts is None or spec.metadata.get("kernel_provisioner"):
        return None
    python, options, _ = parts
    template = template_for(python, options, {**os.environ, **spec.env})
    if template is not None:
        failed = template.preload(PRELOAD)
        if failed:
            log.warning("kernel template %d: could not import %s", template.process.pid, ", ".join(failed))
    return template


class TemplateProvisioner(LocalProvisioner):
    """The local provisioner, launching kernels from this process's :class:`KernelTemplate` when it can.

    Everything else (connection file, signals to the kernel's process group, wait, cleanup) is
    :class:`jupyter_client.provisioning.LocalProvisioner`'s.
    """

    #: Modules the template imports before forking this kernel (set by the kernel manager).
    preload: Sequence[str] = ()
    #: Variables of this kernel's environment that the template does not get (the kernel's secrets).
    private_variables: Sequence[str] = ()

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        """Fork the kernel from the template; start it the ordinary way if that cannot be done."""
        parts = _split_command(cmd) if templates_enabled() else None
        cwd = str(kwargs.get("cwd") or os.getcwd())
        if parts is not None and os.path.isdir(cwd):  # a missing folder: Popen says so
            python, options, argv = parts
            env = dict(kwargs.get("env") or os.environ)
            if not kwargs.get("independent", False):
                env["JPY_PARENT_PID"] = str(os.getpid())
            try:
                template = template_for(
                    python, options, {k: v for k, v in env.items() if k not in self.private_variables}
                )
                process = (
                    template.launch(argv, env=env, cwd=cwd, preload=[*PRELOAD, *self.preload])
                    if template is not None
                    else None
                )
            except (KernelTemplateError, OSError) as error:
                log.warning("kernel not forked from a template (%s): started the ordinary way", error)
            else:
                if process is not None:
                    self.process, self.pid, self.pgid, self.cwd = process, process.pid, process.pid, cwd
                    return self.connection_info
        return await super().launch_kernel(cmd, **kwargs)
