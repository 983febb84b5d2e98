"""Hosts, tokens and the local MMODA's life cycle (one test starts real server subprocesses)."""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import jwt
import pytest
import requests

from integral_workflows import hosts
from integral_workflows.parameters import ParameterError
from integral_workflows.session import Session


def make_token(*, expires_in_s: float = 3600.0, email: str = "someone@example.org") -> str:
    return jwt.encode(
        {"sub": email, "email": email, "roles": "general", "exp": int(time.time() + expires_in_s)},
        "a-test-secret-of-at-least-32-bytes!",
        algorithm="HS256",
    )


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- URLs --------------------------------------------------------------------------------------------------------------


def test_remote_host_urls():
    assert hosts.dispatcher_url("production") == "https://www.astro.unige.ch/mmoda/dispatch-data"
    assert hosts.dispatcher_url("staging") == hosts.STAGING_URL
    assert hosts.dispatcher_url("esa") == hosts.ESA_URL
    from oda_api.misc_helpers import validate_url

    assert all(validate_url(url) for url in hosts.REMOTE_URLS.values())


def test_unknown_host_type_names_the_parameter():
    with pytest.raises(ParameterError) as caught:
        hosts.dispatcher_url("prod")
    assert caught.value.name == "host_type" and "'local'" in str(caught.value)


def test_the_session_builds_dispatchers_with_url_and_discovered_token(monkeypatch):
    import oda_api.token

    monkeypatch.setattr(
        oda_api.token, "discover_token", lambda *a, **k: pytest.fail("oda_api's own token discovery must not run")
    )
    token = make_token()
    monkeypatch.setenv("ODA_TOKEN", token)
    dispatcher = Session(url=hosts.PRODUCTION_URL, cache_dir=False).dispatcher(instrument="isgri")
    assert dispatcher.url == hosts.PRODUCTION_URL
    assert dispatcher.instrument == "isgri" and dispatcher.wait is False
    assert dispatcher.token == token
    assert dispatcher.preferred_request_method == "POST", "a token never goes in a URL"
    assert dispatcher.n_max_tries == 1, "retries are the session's, budgeted"


def test_the_session_builds_dispatchers_without_token(monkeypatch):
    import oda_api.token

    monkeypatch.setattr(
        oda_api.token, "discover_token", lambda *a, **k: pytest.fail("oda_api's own token discovery must not run")
    )
    dispatcher = Session(url=hosts.STAGING_URL, cache_dir=False).dispatcher()
    assert dispatcher.url == hosts.STAGING_URL and dispatcher.token is None


# -- token -------------------------------------------------------------------------------------------------------------


def test_no_token_anywhere():
    assert hosts.discover_token() is None


def test_token_from_environment(monkeypatch):
    token = make_token()
    monkeypatch.setenv("ODA_TOKEN", f"  {token}\n")
    found = hosts.find_token()
    assert found.value == token and found.location == "$ODA_TOKEN"
    assert token not in repr(found)


def test_token_from_working_folder_then_home(tmp_path):
    home_token, cwd_token = make_token(email="home@example.org"), make_token(email="cwd@example.org")
    (tmp_path / "home" / ".oda-token").write_text(home_token)
    assert hosts.discover_token() == home_token
    (tmp_path / ".oda-token").write_text(cwd_token + "\n")
    assert hosts.discover_token() == cwd_token


def test_environment_wins_over_files(monkeypatch, tmp_path):
    env_token = make_token(email="env@example.org")
    (tmp_path / ".oda-token").write_text(make_token())
    monkeypatch.setenv("ODA_TOKEN", env_token)
    assert hosts.discover_token() == env_token


def test_expired_and_malformed_tokens_are_skipped(monkeypatch, tmp_path, caplog):
    expired, malformed, good = make_token(expires_in_s=-7200), "not-a-jwt-secret-value", make_token()
    monkeypatch.setenv("ODA_TOKEN", expired)
    (tmp_path / ".oda-token").write_text(malformed)
    (tmp_path / "home" / ".oda-token").write_text(good)
    with caplog.at_level(logging.DEBUG):
        found = hosts.find_token()
    assert found.value == good and found.location.endswith(os.path.join("home", ".oda-token"))
    assert "expired 2.0 h ago" in caplog.text and "not a valid JWT" in caplog.text
    for secret in (expired, malformed, good):
        assert secret not in caplog.text


def test_nothing_logs_the_token(monkeypatch, caplog):
    token = make_token()
    monkeypatch.setenv("ODA_TOKEN", token)
    with caplog.at_level(logging.DEBUG):
        hosts.discover_token()
        Session(url=hosts.PRODUCTION_URL, cache_dir=False).dispatcher()
    assert token not in caplog.text
    assert token.split(".")[1] not in caplog.text  # nor its payload


def test_world_readable_token_file_warns(tmp_path, caplog):
    path = tmp_path / ".oda-token"
    path.write_text(make_token())
    path.chmod(0o644)
    hosts.discover_token()
    assert "chmod 600" in caplog.text


# -- reachability --------------------------------------------------------------------------------------------------


def test_unreachable_host_error_names_url_and_suggests_local():
    url = closed_port_url()
    with pytest.raises(hosts.HostUnreachableError) as caught:
        hosts.check_reachable(url, host_type="production", timeout_s=5)
    message = str(caught.value)
    assert url in message and "host_type: production" in message and "host_type: local" in message
    assert caught.value.url == url and caught.value.host_type == "production"


def test_failing_host_is_reported():
    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(502)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(hosts.HostUnreachableError, match="HTTP 502.*host_type: local"):
            hosts.check_reachable(url, host_type="staging")
    finally:
        server.shutdown()
        server.server_close()


# -- local server ------------------------------------------------------------------------------------------------------


def test_local_data_dir_rule(monkeypatch, tmp_path):
    assert hosts.local_data_dir() == tmp_path / "home" / ".cache" / "mmoda_local"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(tmp_path / "elsewhere"))
    assert hosts.local_data_dir() == tmp_path / "elsewhere"
    assert hosts.local_data_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_stop_without_server_is_harmless(tmp_path):
    assert hosts.stop_local_server(tmp_path / "nothing") is False


def test_server_that_cannot_start_shows_its_output(tmp_path):
    with pytest.raises(hosts.LocalServerError) as caught:
        hosts.ensure_local_server(data_dir=tmp_path / "mmoda", serve_args=["--no-such-option"], timeout_s=60)
    assert "exited with code 2" in str(caught.value)
    assert "--no-such-option" in str(caught.value)  # the tail of server.out (argparse's complaint)


def test_server_too_slow_to_answer_gives_a_clear_timeout(tmp_path):
    data_dir = tmp_path / "mmoda"
    with pytest.raises(hosts.LocalServerError) as caught:
        hosts.ensure_local_server(data_dir=data_dir, timeout_s=0)
    message = str(caught.value)
    assert "did not answer /local/health within 0 s" in message and str(data_dir / "server.out") in message
    # It is left running in case it is only slow: this test started it, so it ends it.
    os.kill(caught.value.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while hosts._process_alive(caught.value.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not hosts._process_alive(caught.value.pid)


@pytest.fixture
def local_home(monkeypatch, tmp_path):
    """MMODA_LOCAL_HOME in the test's folder; whatever server runs there is stopped afterwards."""
    home = tmp_path / "mmoda-local"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(home))
    yield home
    hosts.stop_local_server()


def test_local_server_life_cycle(local_home):
    first = hosts.ensure_local_server(timeout_s=60)
    assert first.started and first.data_dir == local_home and first.url.startswith("http://127.0.0.1:")
    state = json.loads((local_home / "server.json").read_text())
    assert (state["url"], state["pid"]) == (first.url, first.pid)
    assert requests.get(first.url + "/local/health", timeout=5).status_code == 200

    # A second call (a second notebook) reuses it; so do concurrent ones.
    again = hosts.ensure_local_server()
    assert (again.pid, again.url, again.started) == (first.pid, first.url, False)
    assert hosts.dispatcher_url("local") == first.url
    assert Session("local", cache_dir=False).dispatcher(instrument="isgri").url == first.url
    hosts.check_reachable(first.url, host_type="local")

    # A killed server is replaced by a new one.
    os.kill(first.pid, signal.SIGKILL)
    results = []
    starters = [
        threading.Thread(target=lambda: results.append(hosts.ensure_local_server(timeout_s=60))) for _ in range(3)
    ]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    assert len(results) == 3 and len({r.pid for r in results}) == 1, "concurrent starters must share one server"
    restarted = results[0]
    assert restarted.pid != first.pid and sum(r.started for r in results) == 1
    assert "started by pid" in (local_home / "server.out").read_text()

    # Stopping ends the process and its state file.
    assert hosts.stop_local_server() is True
    assert not (local_home / "server.json").exists()
    with pytest.raises(hosts.HostUnreachableError, match="ensure_local_server"):
        hosts.check_reachable(restarted.url, host_type="local", timeout_s=2)
    assert hosts.stop_local_server() is False


def test_a_busy_server_that_is_slow_to_answer_is_reused_not_restarted(local_home, monkeypatch):
    first = hosts.ensure_local_server(timeout_s=60)
    real_health = hosts._health
    silences = []

    def slow_at_first(url, *, timeout_s=2.0):
        # the first answers time out, as when the server encodes a large product on a loaded machine
        if len(silences) < 3:
            silences.append(url)
            return "silent"
        return real_health(url, timeout_s=timeout_s)

    monkeypatch.setattr(hosts, "_health", slow_at_first)
    again = hosts.ensure_local_server(timeout_s=60)
    assert len(silences) == 3
    assert (again.pid, again.url, again.started) == (first.pid, first.url, False)
    assert hosts._process_alive(first.pid)


def test_the_server_states_its_code_and_another_checkouts_idle_server_is_replaced(local_home, monkeypatch):
    first = hosts.ensure_local_server(serve_args=["--seed", "7", "--fault-http500", "0.01"], timeout_s=60)
    state = json.loads((local_home / "server.json").read_text())
    assert state["code_digest"] == hosts.package_digest() and state["idle_minutes"] > 0
    health = requests.get(first.url + "/local/health", timeout=5).json()
    assert health["code_digest"] == state["code_digest"] and health["busy"] is False

    # the same server seen from a checkout whose mmoda_local differs: not reused
    monkeypatch.setattr(hosts, "package_digest", lambda: "sha256:another-checkout")
    # as from another process (run_all's kernels): the options are read from the data folder, not memory
    monkeypatch.setattr(hosts, "_serve_args_here", {})
    replaced = hosts.ensure_local_server(timeout_s=60)
    assert replaced.started and replaced.pid != first.pid
    assert not hosts._process_alive(first.pid)
    # the replacement keeps the options the first one was started with
    config = json.loads((local_home / "server.json").read_text())["config"]
    assert config["seed"] == 7 and config["faults"]["http_500"] == 0.01


def test_another_checkouts_busy_server_is_left_alone_with_a_clear_error(local_home, monkeypatch):
    first = hosts.ensure_local_server(timeout_s=60)
    monkeypatch.setattr(hosts, "package_digest", lambda: "sha256:another-checkout")
    monkeypatch.setattr(hosts, "_server_busy", lambda url: True)
    with pytest.raises(hosts.LocalServerError, match="computing jobs: it is not stopped.*MMODA_LOCAL_HOME"):
        hosts.ensure_local_server(timeout_s=60)
    assert hosts._process_alive(first.pid)


def test_a_second_server_on_the_same_data_folder_is_refused(local_home):
    first = hosts.ensure_local_server(timeout_s=60)
    second = subprocess.run(
        [sys.executable, "-m", "mmoda_local", "serve", "--port", "0", "--data-dir", str(local_home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 3, second.stderr
    assert f"local MMODA pid {first.pid} already serves {local_home}" in second.stderr
    # the first one's state file is untouched and it still answers
    assert json.loads((local_home / "server.json").read_text())["pid"] == first.pid
    assert hosts._healthy(first.url)


def test_an_idle_server_stops_by_itself(tmp_path):
    data_dir = tmp_path / "idle"
    # 0.05 min = 3 s without requests or jobs
    server = hosts.ensure_local_server(data_dir=data_dir, serve_args=["--idle-minutes", "0.05"], timeout_s=60)
    deadline = time.monotonic() + 120  # a bound for a loaded machine, not a measure of speed
    while hosts._process_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not hosts._process_alive(server.pid)
    assert not (data_dir / "server.json").exists()
    assert "no request and no running job" in (data_dir / "server.log").read_text()
