"""An HTTP proxy on 127.0.0.1 that answers a few public URLs from files and refuses every other request.

Third-party tools run in subprocesses (and the Jupyter kernels they start) fetch public files at import time, e.g.
nb2workflow reads ``http://odahub.io/ontology/ontology.ttl``. Pointing ``http_proxy``/``https_proxy`` of those
processes at this proxy keeps them offline whatever library they use: the known URLs are served from committed
copies, anything else (an HTTPS ``CONNECT`` included) gets 403 and is recorded, so a test can assert that nothing
tried to leave the machine. Loopback addresses stay direct (``no_proxy``), so the local MMODA is reached as usual.
"""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1,localhost,::1"


class OfflineProxy:
    """Serve ``{url: (file, content type)}`` as a forward HTTP proxy; refuse and record the rest.

    Parameters
    ----------
    served : dict
        Absolute URL -> (path of the file answering it, its ``Content-Type``).

    Examples
    --------
    >>> with OfflineProxy({url: (path, "text/turtle")}) as proxy:  # doctest: +SKIP
    ...     subprocess.run(command, env={**os.environ, **proxy.environment()})
    ...     assert proxy.refused == []
    """

    def __init__(self, served: dict[str, tuple[Path, str]]):
        self.served = {url: (Path(path), content_type) for url, (path, content_type) in served.items()}
        self.answered: list[str] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running proxy."""
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        """Variables that send a process's HTTP(S) requests here, except to the loopback (both spellings)."""
        names = {"http_proxy": self.url, "https_proxy": self.url, "no_proxy": LOOPBACK}
        return {**names, **{name.upper(): value for name, value in names.items()}}

    def _record(self, kind: str, target: str) -> None:
        with self._lock:
            (self.answered if kind == "answered" else self.refused).append(target)

    def start(self) -> OfflineProxy:
        """Listen on a free port of 127.0.0.1 in a daemon thread."""
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server hook's name
                entry = proxy.served.get(self.path)
                if entry is None:
                    self._refuse()
                    return
                body = entry[0].read_bytes()
                proxy._record("answered", self.path)
                self.send_response(200)
                self.send_header("Content-Type", entry[1])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _refuse(self):
                proxy._record("refused", f"{self.command} {self.path}")
                log.warning("offline proxy refused %s %s", self.command, self.path)
                self.send_error(403, "offline: not served by the test proxy")

            do_HEAD = do_POST = do_PUT = do_DELETE = do_CONNECT = _refuse  # noqa: N815

            def log_message(self, format, *args):  # noqa: A002 - the http.server hook's signature
                log.debug("offline proxy: " + format, *args)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="offline-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> OfflineProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
