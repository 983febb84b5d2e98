"""Test isolation shared by the whole suite.

No test may see the developer's token, home folder or a running server: each
test gets a fresh HOME and no ``ODA_TOKEN``. Tests never touch the network:
servers are started on 127.0.0.1 and ``DispatcherAPI`` always gets ``url=``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Fixtures committed with the tests (captured exchanges, real products, vendored upstream tests), with provenance.
TEST_DATA = REPO / "tests" / "data"

# tests/data holds fixtures, among them oda_api's own tests, which tests/conformance runs in a subprocess
collect_ignore_glob = ["data/*"]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """Fresh HOME and working folder, no token in the environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ODA_TOKEN", raising=False)
    monkeypatch.delenv("MMODA_LOCAL_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def archive_cache(tmp_path_factory) -> Path:
    """One ScW-archive cache for the whole session (the archive is built once)."""
    return tmp_path_factory.mktemp("archive-cache")


@pytest.fixture
def server_factory(tmp_path, archive_cache):
    """Start local MMODA servers (threads on 127.0.0.1) with given settings; stop them after the test."""
    from mmoda_local.config import ServerConfig
    from mmoda_local.server import ServerThread

    started = []

    def start(**settings):
        settings.setdefault("data_dir", tmp_path / f"server{len(started)}")
        settings.setdefault("archive_cache_dir", archive_cache)
        server = ServerThread(ServerConfig(**settings)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory):
    """A local MMODA with the test instruments enabled and no latency."""
    return server_factory(debug_instruments=True)
