"""The template process of notebook kernels: imports a kernel's modules once, then forks each kernel from itself.

Started by :mod:`integral_pipeline.kernels` as ``python [options] kernel_template.py FD`` (a script, not
imported: the package is not loaded into the kernels), with the interpreter options of the kernelspec.
It talks to its parent over the connected Unix socket ``FD``, one JSON object per line:

- ``{"op": "preload", "modules": [...]}``: import the modules not yet imported (as ahead of a launch),
  answer ``{"op": "preloaded", "failed": [...]}`` with those that failed to import now.
- ``{"op": "launch", "preload": [...], "argv": [...], "env": {...}, "cwd": "..."}``: import the modules of
  ``preload`` not yet imported (a module that fails to import is left to the kernel, which will fail on it
  as it would have anyway), fork, and answer ``{"op": "launched", "pid": N}`` (or ``{"op": "error", ...}``).
  The child becomes the kernel ``python -m ipykernel_launcher ARGV`` in ``cwd`` with exactly ``env``.
- ``{"op": "exit", "pid": N, "returncode": R}`` is sent when a kernel ends (R < 0: killed by signal -R).

The template stays single-threaded and creates no sockets, files or threads of the kernel's before it
forks, so each kernel starts from the state a fresh ``python -m ipykernel_launcher`` reaches after the same
imports, with an empty user namespace. It exits when its parent closes the socket (the parent ended);
its kernels then see their parent gone and end, as kernels do when their manager dies.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading

#: What every kernel imports before it runs any code (measured on ipykernel 7.4, IPython 9).
KERNEL_MODULES = [
    "ipykernel_launcher",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "sqlite3",
    "tornado.platform.asyncio",
]

#: Longest wait at a kernel's end for its control thread to finish the shutdown request (seconds).
CONTROL_THREAD_WAIT_S = 2.0

#: What a kernel's matplotlib backend is when nothing sets it: ipykernel sets this before running any code.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


class _BecomeKernel(BaseException):
    """Raised in a forked child to leave the template's loop and run the kernel from the top of the stack."""

    def __init__(self, request: dict):
        super().__init__()
        self.request = request


def _preload(modules: list[str], failed: set[str]) -> None:
    for name in modules:
        if name in sys.modules or name in failed:
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - any failure is the kernel's to meet, not the template's
            failed.add(name)


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall((json.dumps(message) + "\n").encode())


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"op": "exit", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _serve(sock: socket.socket) -> None:
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    failed: set[str] = set()

    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wakeup_r, selectors.EVENT_READ)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fileobj == wakeup_r:
                os.read(wakeup_r, 4096)
                _reap(sock)
                continue
            chunk = sock.recv(65536)
            if not chunk:  # the parent is gone
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                if request.get("op") == "preload":
                    before = set(failed)
                    _preload(request.get("modules", []), failed)
                    _send(sock, {"op": "preloaded", "failed": sorted(failed - before)})
                    continue
                if request.get("op") != "launch":
                    _send(sock, {"op": "error", "message": f"unknown request {request.get('op')!r}"})
                    continue
                _preload(request.get("preload", []), failed)
                if threading.active_count() > 1:  # a module started a thread, which a fork would not copy
                    _send(sock, {"op": "error", "message": f"threads in the template: {threading.enumerate()}"})
                    continue
                # What the template imported is never collected: out of the collector's sight, its objects' pages
                # stay shared with the kernels instead of being copied into each by its first collection.
                gc.freeze()
                try:
                    pid = os.fork()
                except OSError as error:
                    _send(sock, {"op": "error", "message": f"fork: {error}"})
                    continue
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    selector.close()
                    sock.close()
                    os.close(wakeup_r)
                    os.close(wakeup_w)
                    raise _BecomeKernel(request)
                _send(sock, {"op": "launched", "pid": pid})
                _reap(sock)


def _run_kernel(request: dict) -> int:
    """Become the kernel of ``request`` (in the forked child); return its exit status."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any new Python process
    os.setsid()  # a session of its own, as jupyter_client starts kernels (start_new_session)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "JPY_PARENT_PID" in os.environ:  # its parent is this template, not the process that asked for it
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
    if "matplotlib" in sys.modules:  # matplotlib read $MPLBACKEND when the template imported it
        sys.modules["matplotlib"].rcParams["backend"] = os.environ.get("MPLBACKEND") or INLINE_BACKEND
    if "numpy.random" in sys.modules:  # the legacy global generator was seeded once, in the template
        sys.modules["numpy.random"].seed()
    argv = list(request["argv"])
    import ipykernel_launcher
    from ipykernel.kernelapp import IPKernelApp

    sys.argv = [ipykernel_launcher.__file__, *argv]
    # It ends when the template does (ipykernel read $JPY_PARENT_PID when the template imported it).
    app = IPKernelApp.instance(parent_handle=os.getppid())
    app.initialize(argv)
    app.start()
    # A shutdown request stops the control thread's loop, but that thread still publishes the request's "idle"
    # status on IOPub; if the IOPub thread is closed meanwhile (``app.close``, at exit) the publication can block
    # for good, and the kernel is terminated by its manager seconds later. Let the control thread finish first.
    control = getattr(app, "control_thread", None)
    if control is not None and control.is_alive():
        control.join(CONTROL_THREAD_WAIT_S)
    return 0


def main(fd: int) -> None:
    """Serve launch requests on the connected socket ``fd`` until it closes."""
    # As ipykernel_launcher does: the working folder (here the script's) is not importable while modules load;
    # IPython puts the kernel's working folder back at its start.
    del sys.path[0]
    sock = socket.socket(fileno=fd)
    # Ctrl-C in a terminal reaches the whole process group: the template ends when its parent does, not before.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
    # What every kernel imports as it starts (its debugger support, history and completer included).
    _preload(KERNEL_MODULES, set())
    _serve(sock)


def _exit_kernel(request: dict) -> None:
    """Run the kernel of ``request``, then end the process as Python ends one, without tearing its modules down.

    What an interpreter does at its end that anyone can see is done: non-daemon threads are joined, the
    ``atexit`` functions run (IPython's resets the user namespace, so the notebook's objects are released
    there; ``logging`` flushes its handlers; ``weakref.finalize`` objects run) and the standard streams are
    flushed. What is skipped is the teardown of every module, which in a fork would first copy the pages of
    all the modules the template imported (about 0.15 s of CPU per kernel).
    """
    try:
        code = _run_kernel(request)
    except SystemExit as stop:
        code = stop.code
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then the status is 1
        sys.excepthook(*sys.exc_info())
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        threading._shutdown()  # noqa: SLF001 - what the interpreter calls at its end (multiprocessing does too)
        atexit._run_exitfuncs()  # noqa: SLF001
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - a closed or replaced stream has nothing to flush
                pass
        os._exit(code)


if __name__ == "__main__":
    try:
        main(int(sys.argv[1]))
    except _BecomeKernel as become:
        _exit_kernel(become.request)
