"""Where MMODA is (``host_type``) and who the user is (the token).

``host_type`` picks a dispatcher: UNIGE ``production`` or ``staging``, ESA's
(reachable only inside ESAC Datalabs), or ``local``, the local MMODA over a
simulated sky (package ``mmoda_local``), which this module starts on demand
as a subprocess ``python -m mmoda_local serve`` and finds through its state
file ``<data_dir>/server.json``. The two packages share no code: everything
about the local server is learnt from that file and over HTTP.

The token comes from ``$ODA_TOKEN`` or a ``.oda-token`` file (working folder,
then home), never from a parameter, and is never logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests

from .parameters import ParameterError
from .parameters.types import HOST_TYPES

log = logging.getLogger(__name__)

__all__ = [
    "ESA_URL",
    "PRODUCTION_URL",
    "REMOTE_URLS",
    "STAGING_URL",
    "FoundToken",
    "HostUnreachableError",
    "LocalServer",
    "LocalServerError",
    "check_reachable",
    "discover_token",
    "dispatcher_url",
    "ensure_local_server",
    "find_token",
    "local_data_dir",
    "package_digest",
    "probe_local_server",
    "process_alive",
    "restart_local_server",
    "started_by_this_process",
    "stop_local_server",
]

#: UNIGE production dispatcher (MMODA's documented default; oda_api falls back to it too).
PRODUCTION_URL = "https://www.astro.unige.ch/mmoda/dispatch-data"
#: UNIGE staging (development) dispatcher. Taken from oda_integral_wrapper (wrapper.py, host_type 'staging'),
#: the client the real long-term INTEGRAL notebooks use; nb2workflow uses the same default. It cannot be checked
#: offline; the staging frontend is https://frontend-staging.obsuks1.unige.ch/mmoda/.
STAGING_URL = "https://dispatcher-staging.obsuks1.unige.ch"
#: ESA dispatcher, reachable only from ESAC Datalabs. Taken from oda_integral_wrapper (wrapper.py, host_type 'esa');
#: an internal name (.lan) that cannot be checked from outside ESA nor offline.
ESA_URL = "http://mmoda-dispatcher.scikubepre.ebe.lan"
REMOTE_URLS = {"production": PRODUCTION_URL, "staging": STAGING_URL, "esa": ESA_URL}

#: Same variable and default as the server (mmoda_local.config.default_data_dir), reimplemented, not imported.
LOCAL_HOME_ENV = "MMODA_LOCAL_HOME"
STATE_FILE_NAME = "server.json"
LOCK_FILE_NAME = "server.lock"
OUTPUT_FILE_NAME = "server.out"
#: The ``serve`` options of the last server a client started in a data folder (a JSON list): a server
#: replaced because it hung or runs other code comes back with the options it was started with.
SERVE_ARGS_FILE_NAME = "server.args.json"
HEALTH_PATH = "/local/health"
#: How long a live server may leave its health check unanswered before it counts as hung and is restarted.
BUSY_SERVER_PATIENCE_S = 60.0
TOKEN_ENV = "ODA_TOKEN"
TOKEN_FILE_NAME = ".oda-token"


class LocalServerError(RuntimeError):
    """The local MMODA could not be started, found or stopped.

    Attributes
    ----------
    pid : int or None
        The server process concerned, if one was started.
    """

    def __init__(self, message: str, *, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class HostUnreachableError(ConnectionError):
    """An MMODA dispatcher does not answer.

    Attributes
    ----------
    url : str
        The URL that failed.
    host_type : str
        The host_type it stands for.
    """

    def __init__(self, message: str, *, url: str, host_type: str):
        super().__init__(message)
        self.url = url
        self.host_type = host_type


# -- token -----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FoundToken:
    """A discovered MMODA token and where it was found.

    Attributes
    ----------
    value : str
        The token itself (kept out of ``repr`` so it is never printed by accident).
    location : str
        Where it was found, e.g. ``"$ODA_TOKEN"`` or a file path.
    expires_at : float or None
        Expiry (Unix time) from the token's ``exp`` claim, if any.
    """

    value: str = dataclasses.field(repr=False)
    location: str
    expires_at: float | None


def _token_candidates() -> Iterator[tuple[str, str | None]]:
    """(location, text) in the order tokens are looked for; text None if absent."""
    yield f"${TOKEN_ENV}", os.environ.get(TOKEN_ENV)
    for folder in dict.fromkeys((Path.cwd(), Path.home())):  # once each, when working in the home folder
        path = folder / TOKEN_FILE_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            yield str(path), None
            continue
        except OSError as error:
            log.warning("cannot read %s (%s); skipped", path, error.strerror)
            yield str(path), None
            continue
        if path.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; `chmod 600 %s` keeps your token yours", path, path)
        yield str(path), text


def find_token(*, now: float | None = None) -> FoundToken | None:
    """Find the user's MMODA token: ``$ODA_TOKEN``, else ``./.oda-token``, else ``~/.oda-token``.

    Expired tokens and text that is not a JWT are skipped with a warning that
    names where they were (never their content).

    Parameters
    ----------
    now : float, optional
        Unix time to compare expiry with (tests); the current time by default.

    Returns
    -------
    FoundToken or None
        The first valid token, or None (anonymous access: public data only).
    """
    import jwt

    now = time.time() if now is None else now
    for location, text in _token_candidates():
        token = (text or "").strip()
        if not token:
            continue
        try:
            claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
        except jwt.PyJWTError:
            # Only the location is logged: even a malformed token may be a secret.
            log.warning("the token in %s is not a valid JWT; skipped", location)
            continue
        expires_at = claims.get("exp")
        if isinstance(expires_at, (int, float)) and expires_at <= now:
            log.warning(
                "the token in %s expired %.1f h ago; skipped (get a new one from the MMODA web page)",
                location,
                (now - expires_at) / 3600,
            )
            continue
        log.info("using the MMODA token from %s", location)
        return FoundToken(
            value=token,
            location=location,
            expires_at=float(expires_at) if isinstance(expires_at, (int, float)) else None,
        )
    log.info(
        "no MMODA token found ($%s, ./%s, ~/%s): anonymous access, public data only",
        TOKEN_ENV,
        TOKEN_FILE_NAME,
        TOKEN_FILE_NAME,
    )
    return None


def discover_token() -> str | None:
    """Return the user's MMODA token, or None.

    Looks at ``$ODA_TOKEN``, then ``.oda-token`` in the working folder, then
    in the home folder, skipping expired or malformed tokens (see
    :func:`find_token`). Unlike ``oda_api.token.discover_token`` it never
    logs the token nor its payload, and it does not read oda_api's context
    file. The token is never a workflow parameter.

    Returns
    -------
    str or None
        The token, or None for anonymous access.
    """
    found = find_token()
    return found.value if found is not None else None


# -- local server ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LocalServer:
    """A running local MMODA.

    Attributes
    ----------
    url : str
        Its dispatcher URL (``http://127.0.0.1:<port>``).
    pid : int
        Process id of the server.
    data_dir : Path
        Its data directory (state file, secret, caches, ``server.out``).
    started : bool
        True if this call started it, False if an existing one was reused.
    """

    url: str
    pid: int
    data_dir: Path
    started: bool

    @property
    def output_file(self) -> Path:
        """Where the server's output goes."""
        return self.data_dir / OUTPUT_FILE_NAME


def local_data_dir(data_dir: str | Path | None = None) -> Path:
    """The local MMODA's data directory: ``data_dir``, else ``$MMODA_LOCAL_HOME``, else ``~/.cache/mmoda_local``.

    Parameters
    ----------
    data_dir : str or Path, optional
        An explicit directory.

    Returns
    -------
    Path
        The directory (not created).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(LOCAL_HOME_ENV):
        return Path(os.environ[LOCAL_HOME_ENV]).expanduser()
    return Path.home() / ".cache" / "mmoda_local"


#: Servers this process started, kept so that they can be reaped (no zombies) and so that
#: dropping the Popen does not warn "subprocess is still running".
_started_here: dict[int, subprocess.Popen] = {}
#: The ``serve`` options each of them was started with (a restart repeats them).
_serve_args_here: dict[int, tuple[str, ...]] = {}


def _read_state(data_dir: Path) -> dict | None:
    try:
        state = json.loads((data_dir / STATE_FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("url"), str) or not isinstance(state.get("pid"), int):
        return None
    return state


def _process_alive(pid: int) -> bool:
    child = _started_here.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A dead child not yet reaped still answers kill(pid, 0): look at its state where /proc exists.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _is_local_mmoda(pid: int) -> bool:
    """Whether ``pid`` runs mmoda_local (guards against a recycled pid before sending it signals)."""
    if pid in _started_here:
        return True
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True  # no /proc (macOS): trust the state file
    return b"mmoda_local" in command


def _health(url: str, *, timeout_s: float = 2.0) -> str:
    """``ok``, ``refused`` (nothing listens: the server is gone) or ``silent`` (no answer in time, or not ok)."""
    # The server is on loopback: a proxy from the environment must not be asked.
    with requests.Session() as session:
        session.trust_env = False
        try:
            ok = session.get(url.rstrip("/") + HEALTH_PATH, timeout=timeout_s).status_code == 200
        except requests.ConnectionError as error:
            return "refused" if "refused" in str(error).lower() else "silent"
        except requests.RequestException:
            return "silent"
    return "ok" if ok else "silent"


def _healthy(url: str, *, timeout_s: float = 2.0) -> bool:
    return _health(url, timeout_s=timeout_s) == "ok"


def _health_report(url: str, *, timeout_s: float = 5.0) -> dict:
    """The server's ``/local/health`` answer (empty when it cannot be read)."""
    with requests.Session() as session:
        session.trust_env = False
        try:
            answer = session.get(url.rstrip("/") + HEALTH_PATH, timeout=timeout_s)
            report = answer.json() if answer.status_code == 200 else {}
        except (requests.RequestException, ValueError):
            return {}
    return report if isinstance(report, dict) else {}


@functools.lru_cache(maxsize=1)
def package_digest() -> str | None:
    """Identity of the ``mmoda_local`` code this process would start, as the server states its own.

    SHA-256 over the package's ``.py`` files (sorted relative paths and bytes),
    the rule the server applies to itself (``code_digest`` in its state file and
    ``/local/health``); computed here from the files, without importing the
    package (the two packages share no code).

    Returns
    -------
    str or None
        ``sha256:<hex>``, or None when ``mmoda_local`` is not installed.
    """
    spec = importlib.util.find_spec("mmoda_local")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))).resolve()
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def _same_code(state: dict) -> bool:
    return state.get("code_digest") == package_digest()


def _running_server(data_dir: Path) -> LocalServer | None:
    """The server of ``data_dir`` if it runs this checkout's code and answers at once."""
    state = _read_state(data_dir)
    if state is None or not _same_code(state) or not _process_alive(state["pid"]) or not _healthy(state["url"]):
        return None
    return LocalServer(url=state["url"], pid=state["pid"], data_dir=data_dir, started=False)


def _server_busy(url: str) -> bool:
    """Whether the server computes jobs (``busy`` of its health report; older servers: their job counts)."""
    report = _health_report(url)
    if "busy" in report:
        return bool(report["busy"])
    with requests.Session() as session:
        session.trust_env = False
        try:
            states = session.get(url.rstrip("/") + "/local/stats", timeout=5).json().get("jobs_by_status", {})
        except (requests.RequestException, ValueError, AttributeError):
            return True  # cannot tell: assume it works for someone
    return bool(states.get("submitted") or states.get("progress"))


def _recorded_serve_args(data_dir: Path) -> tuple[str, ...]:
    """The ``serve`` options the running server of ``data_dir`` was started with by a client (none if unknown)."""
    try:
        recorded = json.loads((data_dir / SERVE_ARGS_FILE_NAME).read_text())
    except (OSError, ValueError):
        return ()
    if not isinstance(recorded, list) or not all(isinstance(item, str) for item in recorded):
        return ()
    return tuple(recorded)


def _replace_other_code(state: dict, data_dir: Path) -> None:
    """Stop an idle server of another checkout or version; refuse to stop one that computes jobs."""
    if _server_busy(state["url"]):
        raise LocalServerError(
            f"the local MMODA serving {data_dir} (pid {state['pid']}) runs other code "
            f"({state.get('package_dir', 'an older version')}) and is computing jobs: it is not stopped. "
            f"Wait for its runs to end (it stops by itself when idle), or set {LOCAL_HOME_ENV} to another folder.",
            pid=state["pid"],
        )
    log.info(
        "the local MMODA (pid %d) runs other code (%s): stopping it to start this checkout's",
        state["pid"],
        state.get("package_dir", "an older version"),
    )
    _terminate(state["pid"], timeout_s=10.0)


@contextlib.contextmanager
def _exclusive_lock(data_dir: Path, *, timeout_s: float) -> Iterator[None]:
    """Hold ``<data_dir>/server.lock`` so that two notebooks starting at once share one server."""
    path = data_dir / LOCK_FILE_NAME
    deadline = time.monotonic() + timeout_s
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LocalServerError(
                        f"another process holds {path} for more than {timeout_s:.0f} s "
                        "(a server still starting?); try again, or remove the file if no "
                        "process uses it"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _tail(path: Path, *, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _terminate(pid: int, *, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; reaps the process if it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _process_alive(pid):
        log.warning("local MMODA (pid %d) ignored SIGTERM for %.0f s: killing it", pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        child = _started_here.get(pid)
        if child is not None:
            child.wait(timeout=5)
    _started_here.pop(pid, None)
    _serve_args_here.pop(pid, None)


def _start_server(data_dir: Path, serve_args: Sequence[str], *, timeout_s: float) -> LocalServer:
    state_file = data_dir / STATE_FILE_NAME
    # Waiting for a *fresh* state file: one left by a dead server must not be mistaken for the new one.
    state_file.unlink(missing_ok=True)
    output_file = data_dir / OUTPUT_FILE_NAME
    command = [
        sys.executable,
        "-m",
        "mmoda_local",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        *map(str, serve_args),
    ]
    with open(output_file, "ab") as output:
        output.write(
            f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} started by pid {os.getpid()}: {' '.join(command)}\n".encode()
        )
        output.flush()
        # A new session detaches the server from the notebook's terminal and signals: it outlives the kernel.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _started_here[process.pid] = process
    _serve_args_here[process.pid] = tuple(map(str, serve_args))
    (data_dir / SERVE_ARGS_FILE_NAME).write_text(json.dumps(list(_serve_args_here[process.pid])))
    log.info("starting the local MMODA (pid %d, data in %s); the first start may take a while", process.pid, data_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        exit_code = process.poll()
        if exit_code is not None:
            _started_here.pop(process.pid, None)
            _serve_args_here.pop(process.pid, None)
            raise LocalServerError(
                f"the local MMODA exited with code {exit_code} while starting; "
                f"its output ({output_file}) ends with:\n{_tail(output_file)}",
                pid=process.pid,
            )
        state = _read_state(data_dir)
        if state is not None and state["pid"] == process.pid and _healthy(state["url"]):
            log.info("local MMODA ready at %s (pid %d)", state["url"], process.pid)
            return LocalServer(url=state["url"], pid=process.pid, data_dir=data_dir, started=True)
        time.sleep(0.2)
    raise LocalServerError(
        f"the local MMODA (pid {process.pid}) did not answer {HEALTH_PATH} within "
        f"{timeout_s:.0f} s; it is left running in case it is only slow (the first start builds "
        f"the ScW archive). See {output_file}; stop it with "
        f"integral_workflows.hosts.stop_local_server(). Its output ends with:\n{_tail(output_file)}",
        pid=process.pid,
    )


def ensure_local_server(
    *, data_dir: str | Path | None = None, serve_args: Sequence[str] = (), timeout_s: float = 120.0
) -> LocalServer:
    """Return the running local MMODA of ``data_dir``, starting it if needed.

    A server whose state file names a live process of this checkout's code
    (:func:`package_digest`) that answers ``/local/health`` is reused; one
    busy computing is given :data:`BUSY_SERVER_PATIENCE_S` to answer before it
    counts as hung and is replaced. A server of other code is stopped when
    idle, and left alone (:class:`LocalServerError`) while it computes jobs.
    Otherwise ``python -m mmoda_local serve
    --data-dir <dir> --port 0 [serve_args]`` is started in its own session
    (output appended to ``<dir>/server.out``) and awaited. A file lock makes
    concurrent callers (two notebooks starting at once) share one server.

    Parameters
    ----------
    data_dir : str or Path, optional
        The server's data directory; see :func:`local_data_dir`.
    serve_args : sequence of str
        Extra arguments of ``serve`` (e.g. ``["--latency-per-scw", "0.1"]``);
        used only when a server is started. A server replaced because it
        hung or runs other code is started again with the options a client
        started it with (``<dir>/server.args.json``) when none are given.
    timeout_s : float
        Longest wait for a new server to answer (the first start may build
        the simulated ScW archive).

    Returns
    -------
    LocalServer
        Its URL and pid, and whether this call started it.

    Raises
    ------
    LocalServerError
        If the server exits while starting or does not answer in time; the
        message shows the end of ``server.out``.
    """
    directory = local_data_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    running = _running_server(directory)
    if running is not None:
        log.debug("reusing the local MMODA at %s (pid %d)", running.url, running.pid)
        return running
    with _exclusive_lock(directory, timeout_s=timeout_s):
        # Someone may have started it while we waited for the lock.
        running = _running_server(directory)
        if running is not None:
            return running
        state = _read_state(directory)
        if state is not None and _process_alive(state["pid"]) and _is_local_mmoda(state["pid"]):
            # Its replacement keeps its options (faults, seed, injections...) unless the caller gives others.
            serve_args = tuple(serve_args) or _recorded_serve_args(directory)
            # A server busy encoding a large product may be slow to answer: only a long silence means hung.
            if not probe_local_server(state["url"], pid=state["pid"], timeout_s=BUSY_SERVER_PATIENCE_S):
                log.warning(
                    "the local MMODA (pid %d) has not answered %s for %.0f s: restarting it",
                    state["pid"],
                    HEALTH_PATH,
                    BUSY_SERVER_PATIENCE_S,
                )
                _terminate(state["pid"], timeout_s=10.0)
            elif _same_code(state):
                return LocalServer(url=state["url"], pid=state["pid"], data_dir=directory, started=False)
            else:
                _replace_other_code(state, directory)
        return _start_server(directory, serve_args, timeout_s=timeout_s)


def started_by_this_process(pid: int) -> bool:
    """Whether the local MMODA with process id ``pid`` was started by this process (through this module).

    Parameters
    ----------
    pid : int
        The server's process id.

    Returns
    -------
    bool
    """
    return pid in _serve_args_here


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a dead child not yet reaped counts as dead).

    Parameters
    ----------
    pid : int

    Returns
    -------
    bool
    """
    return _process_alive(pid)


def probe_local_server(url: str, *, pid: int | None = None, timeout_s: float = 10.0) -> bool:
    """Whether the local MMODA at ``url`` is alive: its process runs and it answers ``/local/health``.

    A server busy computing may be slow to answer: it is asked again until
    ``timeout_s`` has passed before being declared silent. A known process
    that has exited is declared dead at once, and so is a URL where nothing
    listens any more (connections refused three times over a second).

    Parameters
    ----------
    url : str
        Its dispatcher URL.
    pid : int, optional
        Its process id, when known (from its state file).
    timeout_s : float
        Longest time spent probing.

    Returns
    -------
    bool
    """
    deadline = time.monotonic() + timeout_s
    refusals = 0
    while True:
        if pid is not None and not _process_alive(pid):
            return False
        remaining = deadline - time.monotonic()
        health = _health(url, timeout_s=max(0.5, min(remaining, timeout_s / 3)))
        if health == "ok":
            return True
        refusals = refusals + 1 if health == "refused" else 0
        if refusals >= 3 or time.monotonic() >= deadline:
            return False
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def restart_local_server(server: LocalServer, *, timeout_s: float = 120.0) -> LocalServer:
    """Start again, with the same options, a local MMODA this process started and that died or hung.

    Parameters
    ----------
    server : LocalServer
        The server as it was (from :func:`ensure_local_server`).
    timeout_s : float
        Longest wait for the new server to answer.

    Returns
    -------
    LocalServer
        The new server (another port, the same data directory), or the one
        that answers there meanwhile.

    Raises
    ------
    LocalServerError
        If this process did not start ``server``, or it cannot be started.
    """
    if not started_by_this_process(server.pid):
        raise LocalServerError(
            f"the local MMODA (pid {server.pid}) was not started by this process: it is not restarted from here",
            pid=server.pid,
        )
    serve_args = _serve_args_here[server.pid]
    with _exclusive_lock(server.data_dir, timeout_s=timeout_s):
        running = _running_server(server.data_dir)
        if running is not None:
            return running  # it answers again, or another process started a new one meanwhile
        if _process_alive(server.pid):
            if probe_local_server(server.url, pid=server.pid, timeout_s=BUSY_SERVER_PATIENCE_S):
                return server  # only busy: a server that answers is never stopped
            log.warning("the local MMODA (pid %d) does not answer %s: stopping it", server.pid, HEALTH_PATH)
        _terminate(server.pid, timeout_s=10.0)
        _serve_args_here.pop(server.pid, None)
        current = _read_state(server.data_dir)
        if current is not None and current["pid"] == server.pid:
            (server.data_dir / STATE_FILE_NAME).unlink(missing_ok=True)
        return _start_server(server.data_dir, serve_args, timeout_s=timeout_s)


def stop_local_server(data_dir: str | Path | None = None, *, timeout_s: float = 15.0) -> bool:
    """Stop the local MMODA of ``data_dir``, if one runs.

    Parameters
    ----------
    data_dir : str or Path, optional
        The server's data directory; see :func:`local_data_dir`.
    timeout_s : float
        Wait this long after SIGTERM before SIGKILL.

    Returns
    -------
    bool
        True if a running server was stopped.
    """
    directory = local_data_dir(data_dir)
    state = _read_state(directory)
    if state is None:
        return False
    pid = state["pid"]
    stopped = False
    if _process_alive(pid) and _is_local_mmoda(pid):
        _terminate(pid, timeout_s=timeout_s)
        log.info("stopped the local MMODA (pid %d)", pid)
        stopped = True
    # The server removes its state file on a clean stop; not after SIGKILL.
    current = _read_state(directory)
    if current is not None and current["pid"] == pid:
        (directory / STATE_FILE_NAME).unlink(missing_ok=True)
    return stopped


# -- dispatchers -------------------------------------------------------------------------------------------------------


def _check_host_type(host_type: str) -> str:
    if host_type not in HOST_TYPES:
        raise ParameterError(
            f"host_type = {host_type!r} is not allowed; allowed: one of {', '.join(repr(h) for h in HOST_TYPES)}",
            name="host_type",
        )
    return host_type


def dispatcher_url(host_type: str, *, data_dir: str | Path | None = None) -> str:
    """Return the dispatcher URL of ``host_type``, starting the local MMODA if ``host_type`` is ``'local'``.

    Parameters
    ----------
    host_type : str
        ``'production'``, ``'staging'``, ``'esa'`` or ``'local'``.
    data_dir : str or Path, optional
        Data directory of the local server (``'local'`` only).

    Returns
    -------
    str
        The dispatcher URL (clients are built by :meth:`integral_workflows.session.Session.dispatcher`).

    Raises
    ------
    ParameterError
        For an unknown host_type.
    """
    if _check_host_type(host_type) == "local":
        return ensure_local_server(data_dir=data_dir).url
    return REMOTE_URLS[host_type]


def check_reachable(url: str, *, host_type: str, timeout_s: float = 10.0) -> None:
    """Raise a clear error if the dispatcher at ``url`` does not answer.

    Parameters
    ----------
    url : str
        Dispatcher URL.
    host_type : str
        The host_type it stands for (named in the error).
    timeout_s : float
        Connection and read timeout, seconds.

    Raises
    ------
    HostUnreachableError
        If the connection fails, times out or the server answers with a 5xx
        status; the message names the URL and suggests ``host_type: local``.
    """
    if host_type == "local":
        advice = (
            "The local MMODA is not running at that URL: integral_workflows.hosts.ensure_local_server() "
            "starts it (its output goes to server.out in its data directory)."
        )
    else:
        advice = (
            "For offline work use the local MMODA over a simulated sky: set `host_type: local` "
            "(parameter host_type='local')."
        )
    try:
        with requests.Session() as session:
            if url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
                session.trust_env = False  # loopback: no proxy
            response = session.get(url, timeout=timeout_s)
    except requests.RequestException as error:
        reason = type(error).__name__
        raise HostUnreachableError(
            f"MMODA dispatcher {url} (host_type: {host_type}) is unreachable ({reason}: {error}). {advice}",
            url=url,
            host_type=host_type,
        ) from None
    if response.status_code >= 500:
        raise HostUnreachableError(
            f"MMODA dispatcher {url} (host_type: {host_type}) answers HTTP "
            f"{response.status_code}: the service is down or failing. {advice}",
            url=url,
            host_type=host_type,
        )
    log.debug("%s (host_type %s) answers HTTP %d", url, host_type, response.status_code)
