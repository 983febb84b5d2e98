"""The one network seam to MMODA: HTTP session, token, retries, timeouts, dispatcher clients, liveness.

>>> session = Session("local")                                    # doctest: +SKIP
>>> table, report = scw.select_scws(parameters, session=session)   # doctest: +SKIP
>>> record = session.fetch(request, scw_ids, s_max=50)            # doctest: +SKIP

Every request to the dispatcher and its gateway services goes through a
:class:`Session`; design notes in ``docs/network.md``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

import requests
from requests.adapters import HTTPAdapter

from . import hosts
from .jobs import (
    BackendUnavailable,
    ChunkCache,
    JobRunner,
    ProductRequest,
    RetryPolicy,
    RunRecord,
    TooManyFailures,
    split_into_chunks,
)

log = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "BackendUnavailable", "Session", "TooManyFailures", "default_cache_dir", "session_for"]

#: Environment variable naming the chunk cache folder.
CACHE_ENV = "INTEGRAL_WORKFLOWS_CACHE"

#: HTTP statuses of a gateway or proxy in front of a dispatcher that is down: no answer from the dispatcher.
_GATEWAY_DOWN = (502, 503, 504)
#: Connections kept per host (the spacecraft service is asked by 8 threads, jobs by max_concurrent).
_POOL_SIZE = 16


def default_cache_dir() -> Path:
    """``$INTEGRAL_WORKFLOWS_CACHE`` or ``~/.cache/integral_workflows/chunks``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "integral_workflows" / "chunks"


def _is_loopback(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))


def _connection_failure(exc: BaseException) -> bool:
    """Whether an exception (or what caused it) means no answer came back from the dispatcher."""
    from oda_api.api import DispatcherNotAvailable

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, DispatcherNotAvailable)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


#: Sessions by every dispatcher URL they have used, so that a function given only ``url=`` joins the
#: session the notebook opened for that URL instead of opening another.
_sessions_by_url: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


class Session:
    """Where and as whom a workflow talks to MMODA, and the only way it does.

    A session owns one ``requests.Session`` (no proxy for a loopback server),
    the user's token (from ``ODA_TOKEN`` or ``.oda-token``, never a parameter,
    never logged), the retry and timeout settings (:class:`RetryPolicy`), the
    construction of every ``oda_api.api.DispatcherAPI`` (always with
    ``url=``), and the backend's liveness: a local MMODA that stops answering
    ``/local/health`` is started again once if this process started it, else
    (and for a remote dispatcher silent for ``retry.dead_after_s``) every
    call raises :class:`BackendUnavailable`.

    Parameters
    ----------
    host_type : str, optional
        ``production``, ``staging``, ``esa`` or ``local`` (the local MMODA is
        started if it does not run). Not needed with ``url``.
    url : str, optional
        An explicit dispatcher URL instead (a server run by someone else:
        never restarted).
    data_dir : path, optional
        Data directory of the local MMODA (``host_type='local'`` only).
    cache_dir : path, optional
        Chunk cache; :func:`default_cache_dir` by default. ``False`` disables it.
    max_concurrent : int, optional
        Jobs in flight at once (default 4; the real service queues the rest).
    retry : RetryPolicy, optional
        Retry, timeout and liveness settings; :meth:`RetryPolicy.for_local` or
        :meth:`RetryPolicy.for_remote` by default.
    progress : bool, optional
        Show progress bars.
    allowed_failed_fraction : float, optional
        Fraction of failed ScWs :meth:`fetch` tolerates (default 0: a ScW
        that cannot be delivered fails the step).
    """

    def __init__(
        self,
        host_type: str | None = None,
        *,
        url: str | None = None,
        data_dir: Path | str | None = None,
        cache_dir: Path | str | None | bool = None,
        max_concurrent: int = 4,
        retry: RetryPolicy | None = None,
        progress: bool = True,
        allowed_failed_fraction: float = 0.0,
    ):
        if (host_type is None) == (url is None):
            raise ValueError("give host_type ('production', 'staging', 'esa', 'local') or an explicit url")
        self._server: hosts.LocalServer | None = None
        self._data_dir = data_dir
        if url is not None:
            self.url = url.rstrip("/")
            self.host_type = "local" if _is_loopback(self.url) else "custom"
        elif host_type == "local":
            self._server = hosts.ensure_local_server(data_dir=data_dir)
            self.url, self.host_type = self._server.url, host_type
        else:
            self.url, self.host_type = hosts.dispatcher_url(host_type), host_type
        self._token = hosts.discover_token()
        self.retry = retry or (RetryPolicy.for_local() if _is_loopback(self.url) else RetryPolicy.for_remote())
        self._http = requests.Session()
        # a proxy from the environment must not be asked for a loopback server
        self._http.trust_env = not _is_loopback(self.url)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._finalizer = weakref.finalize(self, self._http.close)
        # re-entrant: a liveness decision may declare the backend dead while holding it
        self._liveness = threading.RLock()
        self._dead: BackendUnavailable | None = None
        self._silent_since: float | None = None
        self._silent_calls = 0
        self.restarts = 0
        self._identity: tuple[str, bool] | None = None
        if host_type is not None and host_type != "local":
            hosts.check_reachable(self.url, host_type=host_type)
        if cache_dir is False:
            self.cache = None
        else:
            self.cache = ChunkCache(Path(cache_dir) if cache_dir else default_cache_dir())
        self.max_concurrent = max_concurrent
        self.progress = progress
        if not 0.0 <= allowed_failed_fraction <= 1.0:
            raise ValueError(f"allowed_failed_fraction = {allowed_failed_fraction}: must be within [0, 1]")
        self.allowed_failed_fraction = allowed_failed_fraction
        self._register()
        log.info(
            "MMODA session on %s (host_type %s, %s)",
            self.url,
            self.host_type,
            "with a token" if self._token else "anonymous",
        )

    # -- identity ------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        who = "with a token" if self._token else "anonymous"
        return f"Session({self.host_type!r}, url={self.url!r}, {who})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections (the session cannot be used afterwards)."""
        self._finalizer()

    def _register(self) -> None:
        with _registry_lock:
            _sessions_by_url[self.url] = self

    @property
    def has_token(self) -> bool:
        """Whether requests carry the user's token."""
        return self._token is not None

    @property
    def is_local(self) -> bool:
        """Whether the dispatcher is a local MMODA on this machine."""
        return _is_loopback(self.url)

    @property
    def owns_server(self) -> bool:
        """Whether this process started the local MMODA it uses (only then is it restarted)."""
        return self._server is not None and hosts.started_by_this_process(self._server.pid)

    @property
    def is_dead(self) -> bool:
        """Whether the backend has been declared unavailable."""
        return self._dead is not None

    def _identify(self) -> tuple[str, bool]:
        """(backend id, simulated): the local MMODA by the fingerprint of its simulation, others by their URL."""
        if self._identity is None:
            identity = (self.url, False)
            if self.is_local:
                # any answer is final: a loopback dispatcher that is not a local MMODA has no health URL
                response = self.get(hosts.HEALTH_PATH, what="the local MMODA's health", is_answer=lambda answer: True)
                try:
                    health = response.json() if response.status_code == 200 else {}
                except ValueError:
                    health = {}
                if isinstance(health, dict) and health:
                    identity = (str(health.get("fingerprint", self.url)), bool(health.get("simulated", True)))
            self._identity = identity
        return self._identity

    @property
    def backend_id(self) -> str:
        """Identity of the backend for cache keys (its port may change; its simulation does not)."""
        return self._identify()[0]

    @property
    def simulated(self) -> bool:
        """Whether the products are simulated (the local MMODA)."""
        return self._identify()[1]

    def scrub(self, text: str) -> str:
        """``text`` without the token (oda_api quotes a failed call's arguments, token included)."""
        return text.replace(self._token, "<token>") if self._token and text else text

    # -- plain HTTP ----------------------------------------------------------------------------------------------
    def get(
        self,
        path: str,
        *,
        params: Mapping | None = None,
        timeout_s: float | None = None,
        what: str = "",
        is_answer: Callable[[requests.Response], bool] | None = None,
    ) -> requests.Response:
        """GET ``<dispatcher URL>/<path>``, retrying faults in transit within ``retry.request_budget_s``.

        Connection errors, timeouts and 5xx answers are retried with backoff
        (an HTTP 500 that ``is_answer`` accepts is the service's answer, e.g.
        converttime's refusal, and is returned). The URL is rebuilt at each
        attempt, so a restarted local MMODA is found at its new port.

        Parameters
        ----------
        path : str
            Path under the dispatcher URL, e.g. ``gw/timesystem/api/v1.0/converttime/REVNUM/300/IJD``.
        params : mapping, optional
            Query string.
        timeout_s : float, optional
            Timeout of each attempt; ``retry.request_timeout_s`` by default.
        what : str, optional
            The service's name, for messages.
        is_answer : callable, optional
            ``is_answer(response)`` True for a 5xx that must not be retried.

        Returns
        -------
        requests.Response
            The first answer below 500 (or accepted by ``is_answer``), else the
            last 5xx answer once the budget is spent.

        Raises
        ------
        BackendUnavailable
            If the backend is gone (or never answers within the budget).
        """
        timeout = self.retry.request_timeout_s if timeout_s is None else timeout_s
        what = what or path.split("?")[0]
        started, attempt = time.monotonic(), 0
        last: requests.Response | None = None
        while True:
            self._raise_if_dead()
            attempt += 1
            address = f"{self.url}/{path.lstrip('/')}"
            try:
                response = self._http.get(address, params=params, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = type(error).__name__
                self._note_no_answer(error, what=what)
            else:
                if response.status_code in _GATEWAY_DOWN:
                    self._note_no_answer(None, what=what)
                else:
                    self._note_answer()
                if response.status_code < 500 or (is_answer is not None and is_answer(response)):
                    return response
                last, problem = response, f"HTTP {response.status_code}"
            wait = self.retry.backoff(attempt)
            if time.monotonic() - started + wait > self.retry.request_budget_s:
                if last is not None:
                    return last
                raise self._declare_dead(
                    f"{what} did not answer for {time.monotonic() - started:.0f} s "
                    f"({attempt} attempts, last: {problem})"
                )
            log.warning("%s: %s; retrying in %.1f s (attempt %d)", what, problem, wait, attempt + 1)
            time.sleep(wait)

    # -- dispatcher ----------------------------------------------------------------------------------------------
    def dispatcher(self, *, instrument: str = "mock", api_class=None):
        """An ``oda_api`` client of this session's dispatcher, for :meth:`submit` and :meth:`poll`.

        Always built with ``url=`` and an explicit token (so oda_api neither
        falls back to its default URL nor runs its own token discovery, which
        logs the token's payload); with a token, queries are POSTed, so the
        token never appears in a URL; oda_api's own retries are off (ours are
        budgeted and accounted for).

        Parameters
        ----------
        instrument : str
            The client's default instrument.
        api_class : type, optional
            ``DispatcherAPI`` (default) or a subclass such as
            ``oda_api.gallery_api.GalleryDispatcherAPI``.

        Returns
        -------
        oda_api.api.DispatcherAPI
        """
        if api_class is None:
            from oda_api.api import DispatcherAPI as api_class
        self._raise_if_dead()
        disp = api_class(url=self.url, instrument=instrument, wait=False, token=self._token or "")
        if self._token:
            # in a form body, not the query string: URLs end up in logs and in connection errors' messages
            disp.preferred_request_method = "POST"
        else:
            disp.token = None  # "" only stops oda_api's discovery
        disp.n_max_tries = 1
        disp.retry_sleep_s = 0.0
        disp.timeout = self.retry.request_timeout_s  # oda_api reads this attribute for its requests
        return disp

    def submit(self, disp, query: Mapping) -> None:
        """Submit a product query without waiting (``get_product``); the token is added here.

        Parameters
        ----------
        disp : oda_api.api.DispatcherAPI
            From :meth:`dispatcher`.
        query : mapping
            ``get_product`` keyword arguments (instrument, product, parameters, ``scw_list``).
        """
        self.call(disp, disp.get_product, silent=True, with_token=True, **query)

    def poll(self, disp) -> None:
        """Poll a submitted job once (``disp.poll()``)."""
        self.call(disp, disp.poll)

    def call(self, disp, operation: Callable, *args, with_token: bool = False, **kwargs):
        """Run one oda_api call of ``disp`` through the seam.

        A call that got no answer (connection error, timeout, 502-504) makes
        the session check the backend's liveness: if the backend is gone,
        :class:`BackendUnavailable` is raised instead of the call's exception;
        otherwise the exception is raised for the caller to retry.

        Parameters
        ----------
        disp : oda_api.api.DispatcherAPI
            The client (pointed at the current URL first: the local MMODA may
            have been restarted on another port).
        operation : callable
            A method of ``disp``.
        *args, **kwargs
            Its arguments.
        with_token : bool
            Add ``token=<the user's token>`` to its keyword arguments, for the
            oda_api calls that take it as an argument (``get_product``,
            ``post_data_product_to_gallery``...); nothing when there is none.

        Returns
        -------
        object
            What the call returns.
        """
        self._raise_if_dead()
        if disp.url != self.url:
            disp.url = self.url
        if with_token and self._token:
            kwargs["token"] = self._token
        try:
            result = operation(*args, **kwargs)
        except Exception as exc:
            if _connection_failure(exc):
                self._note_no_answer(exc, what="the dispatcher")
            else:
                self._note_answer()
            raise
        self._note_answer()
        return result

    # -- products ------------------------------------------------------------------------------------------------
    def runner(self, **changes) -> JobRunner:
        """A :class:`JobRunner` bound to this session (``changes``: its keyword arguments)."""
        settings = {
            "cache": self.cache,
            "max_concurrent": self.max_concurrent,
            "retry": self.retry,
            "progress": self.progress,
        }
        settings.update(changes)
        return JobRunner(self, **settings)

    def fetch(
        self,
        request: ProductRequest,
        scw_ids: Sequence[str],
        *,
        s_max: int,
        description: str = "",
        allowed_failed_fraction: float | None = None,
    ) -> RunRecord:
        """Run ``request`` over ``scw_ids`` in chunks of ``s_max`` and return the record.

        Every ScW ends as done, skipped (with the reason) or failed (with the
        error) in the record; the finished pieces hold the products.

        Parameters
        ----------
        request : ProductRequest
            The product query.
        scw_ids : sequence of str
            The ScWs.
        s_max : int
            ScWs per job (see :func:`~integral_workflows.jobs.split_into_chunks`).
        description : str, optional
            Label of the progress bar and of messages.
        allowed_failed_fraction : float, optional
            Fraction of failed ScWs tolerated; the session's (default 0) if not given.

        Returns
        -------
        RunRecord

        Raises
        ------
        BackendUnavailable
            If the backend stopped answering and could not be brought back.
        TooManyFailures
            If more ScWs failed than allowed.
        FatalRequestError
            If the backend refuses the request itself.
        """
        chunks = split_into_chunks(scw_ids, s_max=s_max)
        log.info("%s: %d ScWs in %d jobs (s_max=%d) on %s", request.product, len(scw_ids), len(chunks), s_max, self.url)
        record = self.runner().run(request, chunks, description=description)
        allowed = self.allowed_failed_fraction if allowed_failed_fraction is None else allowed_failed_fraction
        record.raise_if_failed(allowed_fraction=allowed, what=description or request.product)
        return record

    def simulated_banner(self) -> str:
        """Markdown warning shown by notebooks when the products are simulated."""
        if not self.simulated:
            return ""
        return (
            "> **SIMULATED DATA.** These products come from the local MMODA (`host_type: local`), which "
            "simulates the INTEGRAL sky. They show how the workflow works; they are not INTEGRAL archive "
            "data. Set `host_type` to `production` to analyse real data."
        )

    # -- liveness ------------------------------------------------------------------------------------------------
    def _raise_if_dead(self) -> None:
        if self._dead is not None:
            raise self._dead

    def _note_answer(self) -> None:
        if self._silent_since is not None:
            with self._liveness:
                self._silent_since, self._silent_calls = None, 0

    def _note_no_answer(self, error: BaseException | None, *, what: str) -> None:
        """A call got no answer: decide whether the backend is gone (raises) or the fault was in transit."""
        with self._liveness:
            self._raise_if_dead()
            now = time.monotonic()
            self._silent_since = self._silent_since or now
            self._silent_calls += 1
            if self._answers_health():
                return
            if self.is_local:
                reason = f"the local MMODA at {self.url} stopped answering {hosts.HEALTH_PATH}"
                if self._server is not None and not hosts.process_alive(self._server.pid):
                    reason = f"the local MMODA (pid {self._server.pid}) at {self.url} has exited"
                if self._restart(reason):
                    return
                raise self._declare_dead(reason)
            silent_for = now - self._silent_since
            if silent_for < self.retry.dead_after_s or self._silent_calls < 3:
                return
            try:
                hosts.check_reachable(self.url, host_type=self.host_type, timeout_s=self.retry.request_timeout_s)
            except hosts.HostUnreachableError as unreachable:
                raise self._declare_dead(
                    f"{self._silent_calls} calls in a row got no answer over {silent_for:.0f} s and {unreachable}"
                ) from None

    def _answers_health(self) -> bool:
        """Liveness probe: for a local MMODA its health URL (a few tries), for a remote one None (see above)."""
        if not self.is_local:
            return False
        pid = self._server.pid if self._server is not None else None
        return hosts.probe_local_server(self.url, pid=pid, timeout_s=self.retry.dead_after_s)

    def _restart(self, reason: str) -> bool:
        """Start the local MMODA again, once, if this process started it; True if it answers again."""
        if not self.owns_server or self.restarts >= 1:
            return False
        log.warning("%s: starting it again (once), with the same options", reason)
        try:
            server = hosts.restart_local_server(self._server, timeout_s=120.0)
        except hosts.LocalServerError as error:
            log.error("the local MMODA could not be started again: %s", error)
            return False
        self.restarts += 1
        self._server, self.url = server, server.url
        self._silent_since, self._silent_calls = None, 0
        self._register()
        log.warning(
            "the local MMODA answers again at %s (pid %d); unfinished jobs are resubmitted", server.url, server.pid
        )
        return True

    def _declare_dead(self, reason: str) -> BackendUnavailable:
        """Remember that the backend is gone and return the exception every later call raises."""
        if self.is_local:
            if self._server is None:
                advice = "It was started by someone else (an explicit URL): start it again and rerun."
            elif self.owns_server:
                done = "already restarted once" if self.restarts else "could not be started again"
                advice = f"It was started by this process and {done}; see {self._server.output_file}."
            else:
                advice = (
                    f"It was started by another process, so it is not restarted from here; see "
                    f"{self._server.output_file}. The next run starts it again and resumes from the chunk "
                    "cache."
                )
        else:
            advice = "Try again later; finished chunks are kept in the cache, so a rerun resumes."
        dead = BackendUnavailable(
            self.scrub(f"MMODA backend unavailable (host_type {self.host_type}): {reason}. {advice}"), url=self.url
        )
        with self._liveness:
            if self._dead is None:
                self._dead = dead
                log.error("%s", dead)
            return self._dead


def session_for(session: Session | None = None, *, url: str | None = None) -> Session:
    """The session to use for a call given ``session=`` or only a dispatcher ``url=``.

    A URL joins the live session already open for it (the one a notebook
    created), so that a notebook run has one session whichever way its calls
    name the dispatcher; only a URL no session knows opens a new one.

    Parameters
    ----------
    session : Session, optional
        Returned as it is when given.
    url : str, optional
        Dispatcher URL.

    Returns
    -------
    Session

    Raises
    ------
    ValueError
        If neither is given.
    """
    if session is not None:
        return session
    if not url:
        raise ValueError("a session (integral_workflows.session.Session) or the dispatcher url is required")
    with _registry_lock:
        known = _sessions_by_url.get(url.rstrip("/"))
    if known is not None and not known.is_dead:
        return known
    return Session(url=url, cache_dir=False, progress=False)
