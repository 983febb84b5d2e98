"""pytest plugin that runs oda_api 1.3.5's own tests against local MMODA servers, offline.

Loaded with ``-p mmoda_conformance`` by ``tests/conformance/test_oda_api_suite.py``
in a pytest subprocess whose working folder holds an unmodified copy of
oda_api's tests. It

* keeps the run offline: every socket connection and name lookup to a host
  other than the loopback is refused (``NetworkRefused``), whatever library
  tries it;
* answers oda_api's look-up of the MMODA site list
  (``https://odahub.io/oda-sites.ttl``, read with rdflib through urllib when
  ``DispatcherAPI`` gets ``host=`` or no URL) from a file given on the command line;
* serves the production URL that ``test_live.py`` hard-codes
  (``https://www.astro.unige.ch/mmoda/dispatch-data``, also used by its
  ``pick_scw`` for the ``gw`` ScW-list service) from a long-living local MMODA
  without test instruments, as production has none: a ``requests`` transport
  adapter rewrites those URLs to the local server before anything is sent;
* starts the local servers behind the dispatcher fixtures of
  ``cdci_data_analysis.pytest_fixtures`` (the stand-in module beside this one);
* deselects the tests listed in the exclusion file (one place, with reasons:
  ``EXCLUDED`` in ``test_oda_api_suite.py``) and reports which exclusions
  matched no test, so that the list cannot silently go stale;
* seeds :mod:`random` per test from the test's id, so that ``pick_scw("any")``
  (a ``random.choice`` over the ScW list) picks the same ScW in every run;
* writes every test's outcome to a JSON report read by the outer test.
"""

from __future__ import annotations

import email.message
import io
import json
import logging
import os
import random
import socket
import tempfile
import threading
import urllib.error
import urllib.request
import urllib.response
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests.adapters

log = logging.getLogger("mmoda_conformance")

#: URLs of real services hard-coded in the upstream tests, served by the local production-like server.
PRODUCTION_URLS = ("https://www.astro.unige.ch/mmoda/dispatch-data",)
#: The secret of the dispatcher test configuration (``dispatcher_test_conf['secret_key']`` upstream).
TEST_SECRET_KEY = "secretkey_test"
#: Where oda_api reads the list of MMODA sites (``DispatcherAPI.known_sites_dict``).
SITES_URL = "https://odahub.io/oda-sites.ttl"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class NetworkRefused(ConnectionError):
    """A connection to a host other than the loopback, refused by the conformance harness."""


def _is_loopback(host) -> bool:
    if host is None:
        return False
    host = str(host).strip("[]")
    return host in LOOPBACK_NAMES or host.startswith("127.")


# -- servers ----------------------------------------------------------------------------------------------------


class LocalServers:
    """Local MMODA servers of one run: per-test ones and the long-living ones, all stopped at the end."""

    def __init__(self, work_dir: Path, archive_cache: Path):
        self.work_dir = Path(work_dir)
        self.archive_cache = Path(archive_cache)
        self._lock = threading.Lock()
        self._long_living: dict[str, object] = {}

    def start(self, *, secret_key: str, debug_instruments: bool, name: str = "dispatcher"):
        """Start a fresh local MMODA (its own data folder) signing tokens with ``secret_key``."""
        from mmoda_local.config import ServerConfig
        from mmoda_local.server import ServerThread

        self.work_dir.mkdir(parents=True, exist_ok=True)
        data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work_dir))
        # the server reads its signing secret from <data_dir>/secret_key (mode 0600)
        descriptor = os.open(data_dir / "secret_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret_key)
        config = ServerConfig(
            data_dir=data_dir, debug_instruments=debug_instruments, archive_cache_dir=self.archive_cache
        )
        server = ServerThread(config).start()
        log.info("local MMODA %s (debug instruments: %s) at %s", data_dir.name, debug_instruments, server.url)
        return server

    def long_living(self, kind: str):
        """The long-living server of a kind: ``production`` (no test instruments) or ``debug``."""
        with self._lock:
            server = self._long_living.get(kind)
        if server is None:
            server = self.start(secret_key=TEST_SECRET_KEY, debug_instruments=(kind == "debug"), name=kind)
            with self._lock:
                self._long_living.setdefault(kind, server)
                server_kept = self._long_living[kind]
            if server_kept is not server:
                server.stop()
                server = server_kept
        return server

    def stop_long_living(self) -> None:
        with self._lock:
            servers, self._long_living = list(self._long_living.values()), {}
        for server in servers:
            server.stop()


_servers: LocalServers | None = None
#: Outcome per test (``module.py::name[params]``), failure texts, and what the network guard did.
_OUTCOMES: dict[str, str] = {}
_FAILURES: dict[str, str] = {}
_NETWORK = {"redirected_to_local_production": 0, "refused": 0}


def servers() -> LocalServers:
    """The servers of this run (for the fixtures of ``cdci_data_analysis.pytest_fixtures``)."""
    if _servers is None:
        raise RuntimeError("the mmoda_conformance plugin is not configured (run pytest with -p mmoda_conformance)")
    return _servers


# -- network guard and redirection ----------------------------------------------------------------------------


def _install_network_guard() -> None:
    """Refuse name lookups and connections that leave the loopback (the suite must never use the network)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host.decode() if isinstance(host, bytes) else host):
            _NETWORK["refused"] += 1
            raise NetworkRefused(f"conformance harness: name lookup of {host!r} refused (offline run)")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            _NETWORK["refused"] += 1
            raise NetworkRefused(f"conformance harness: connection to {address!r} refused (offline run)")
        return real_connect(sock, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect


class OfflineUrllibHandler(urllib.request.BaseHandler):
    """urllib handler answering known URLs from local files and refusing other non-loopback URLs."""

    handler_order = 100  # consulted before the default HTTP(S) handlers

    def __init__(self, served: dict[str, tuple[Path, str]]):
        self.served = served

    def default_open(self, request):
        url = request.full_url
        if url in self.served:
            path, content_type = self.served[url]
            headers = email.message.Message()
            headers["Content-Type"] = content_type
            response = urllib.response.addinfourl(io.BytesIO(path.read_bytes()), headers, url, code=200)
            response.msg = "OK"  # read by urllib's HTTPErrorProcessor
            return response
        if not _is_loopback(urlsplit(url).hostname):
            _NETWORK["refused"] += 1
            raise urllib.error.URLError(NetworkRefused(f"conformance harness: {url} is not served offline"))
        return None


def _install_urllib_handler(sites_file: Path | None) -> None:
    served = {SITES_URL: (Path(sites_file), "text/turtle")} if sites_file else {}
    urllib.request.install_opener(urllib.request.build_opener(OfflineUrllibHandler(served)))


def _install_production_redirect() -> None:
    """Send requests for the production URLs to the long-living production-like local server."""
    real_send = requests.adapters.HTTPAdapter.send

    def send(adapter, request, *args, **kwargs):
        for prefix in PRODUCTION_URLS:
            if request.url == prefix or request.url.startswith(prefix + "/") or request.url.startswith(prefix + "?"):
                target = servers().long_living("production").url
                request.url = target + request.url[len(prefix) :]
                _NETWORK["redirected_to_local_production"] += 1
                break
        host = urlsplit(request.url).hostname
        if not _is_loopback(host):
            _NETWORK["refused"] += 1
            raise requests.exceptions.ConnectionError(
                f"conformance harness: {request.url} is not served offline (no network)", request=request
            )
        return real_send(adapter, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send


# -- pytest hooks ---------------------------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("mmoda_conformance")
    group.addoption("--mmoda-exclusions", default=None, help="JSON file: test id -> reason it is excluded")
    group.addoption("--mmoda-report", default=None, help="where to write the JSON report of outcomes")
    group.addoption("--mmoda-archive-cache", default=None, help="ScW archive cache folder shared by the servers")
    group.addoption("--mmoda-sites-file", default=None, help=f"local copy of {SITES_URL}")


def pytest_configure(config):
    global _servers
    work_dir = Path(config.rootpath) / "mmoda-servers"
    archive_cache = config.getoption("--mmoda-archive-cache") or (work_dir / "archive-cache")
    _servers = LocalServers(work_dir, Path(archive_cache))
    _install_network_guard()
    _install_urllib_handler(config.getoption("--mmoda-sites-file"))
    _install_production_redirect()
    config._mmoda_excluded = {}
    config._mmoda_unmatched_exclusions = []


def _test_key(item) -> tuple[str, str]:
    """(``module.py::name[params]``, ``module.py::name``) of a test item."""
    module = Path(str(item.fspath)).name
    full = f"{module}::{item.name}"
    return full, full.split("[", 1)[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    path = config.getoption("--mmoda-exclusions")
    exclusions = json.loads(Path(path).read_text()) if path else {}
    matched, kept, deselected = set(), [], []
    for item in items:
        full, base = _test_key(item)
        reason_key = full if full in exclusions else base if base in exclusions else None
        if reason_key is None:
            kept.append(item)
        else:
            matched.add(reason_key)
            deselected.append(item)
            config._mmoda_excluded[full] = exclusions[reason_key]
    config._mmoda_unmatched_exclusions = sorted(set(exclusions) - matched)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_runtest_setup(item):
    # pick_scw("any") draws with random.choice: one reproducible draw per test
    random.seed(zlib.crc32(item.nodeid.encode()))


def pytest_runtest_logreport(report):
    """Keep one outcome per test: the call's, unless setup or teardown went wrong."""
    key = f"{Path(str(report.fspath)).name}::{report.nodeid.split('::', 1)[-1]}"
    if report.when == "call":
        outcome = report.outcome
    elif report.outcome == "failed":
        outcome = f"error in {report.when}"
    elif report.outcome == "skipped":
        outcome = "skipped"
    else:
        _OUTCOMES.setdefault(key, "passed")
        return
    if _OUTCOMES.get(key, "passed") == "passed":
        _OUTCOMES[key] = outcome
    if report.outcome == "failed":
        crash = getattr(report.longrepr, "reprcrash", None)
        # the exception line first (long values cut in the middle), then the end of the traceback
        headline = f"{crash.path}:{crash.lineno}: {_shorten(crash.message)}\n" if crash is not None else ""
        _FAILURES[key] = headline + report.longreprtext[-2500:]
    elif report.outcome == "skipped":
        _FAILURES[key] = str(report.longrepr)[-1000:]


def _shorten(text: str, keep: int = 600) -> str:
    return text if len(text) <= 2 * keep else f"{text[:keep]} [...] {text[-keep:]}"


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if _servers is not None:
        _servers.stop_long_living()
    path = config.getoption("--mmoda-report")
    if not path:
        return
    report = {
        "outcomes": _OUTCOMES,
        "excluded": config._mmoda_excluded,
        "unmatched_exclusions": config._mmoda_unmatched_exclusions,
        "failures": _FAILURES,
        "network": _NETWORK,
        "exitstatus": int(exitstatus),
    }
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=True))
