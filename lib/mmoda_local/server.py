"""Run a local MMODA inside the current process (tests, benchmarks, notebooks).

Example
-------
>>> from mmoda_local.server import ServerThread
>>> with ServerThread(ServerConfig(data_dir=tmp)) as server:   # doctest: +SKIP
...     DispatcherAPI(url=server.url).get_product(...)
"""

from __future__ import annotations

import logging
import threading

import requests
from werkzeug.serving import make_server

from .app import create_app
from .config import ServerConfig

log = logging.getLogger(__name__)


class ServerThread:
    """A real HTTP server on 127.0.0.1 served by a background thread.

    Parameters
    ----------
    config : ServerConfig
        Server configuration.
    port : int, optional
        Port; 0 picks a free one.
    analysis : object, optional
        Replacement for the product computation (tests of the protocol only).
    quiet : bool, optional
        Silence the per-request access log.
    """

    def __init__(self, config: ServerConfig, *, port: int = 0, analysis=None, quiet: bool = True):
        if quiet:
            # one access-log line per poll drowns a notebook or a test log
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.config = config
        self.app = create_app(config, analysis=analysis)
        self._server = make_server("127.0.0.1", port, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="mmoda-local-server", daemon=True)

    @property
    def backend(self):
        """The server's :class:`mmoda_local.backend.Backend` (jobs, counters, secret, gallery)."""
        return self.app.extensions["mmoda_local"]

    def start(self) -> ServerThread:
        """Start serving in the background thread; return the server itself (for chaining)."""
        self._thread.start()
        log.info("local MMODA thread serving %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, wait (up to 10 s) for the thread to end and shut the job workers down."""
        self._server.shutdown()
        self._thread.join(timeout=10)
        self.backend.jobs.shutdown()

    def stats(self) -> dict:
        """The server's counters (``/local/stats``)."""
        return requests.get(f"{self.url}/local/stats", timeout=10).json()["counters"]

    def token(self, roles="general", *, email: str = "tester@localhost", lifetime_s: float = 3600.0) -> str:
        """Mint a token this server accepts."""
        from .auth import mint_token

        return mint_token(self.backend.secret, roles=roles, email=email, lifetime_s=lifetime_s)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
