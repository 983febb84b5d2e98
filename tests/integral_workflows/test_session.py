"""The network seam: one session per run, every request through it, the token kept out, dead backends, stalls.

In-process local MMODA servers (``server_factory``) for the seam's behaviour; real ``mmoda_local serve``
subprocesses (through ``integral_workflows.hosts``) where a server must be killed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import threading
import traceback
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from integral_workflows import ephemeris, hosts, revolution, scw
from integral_workflows.jobs import (
    DONE,
    FAILED,
    RetryPolicy,
    RunRecord,
    ScwOutcome,
    TooManyFailures,
)
from integral_workflows.session import BackendUnavailable, Session

from .test_jobs import FAST, crab_scws, image_request

SEAM = str(Path(scw.__file__).with_name("session.py"))
CRAB_2005 = {
    "RA": 83.633,
    "DEC": 22.0145,
    "T1": "2005-03-01T00:00:00",
    "T2": "2005-04-15T00:00:00",
    "instrument": "isgri",
}
#: Short waits everywhere; a backend that does not answer within 3 s of probing is gone.
QUICK = RetryPolicy.for_local(
    budget_s=120.0,
    backoff_s=0.05,
    max_backoff_s=0.2,
    poll_interval_s=0.05,
    max_poll_interval_s=0.2,
    poll_failure_budget_s=2.0,
    request_timeout_s=10.0,
    request_budget_s=60.0,
    dead_after_s=3.0,
)


def test_every_request_of_a_run_goes_through_one_session(server, tmp_path, monkeypatch):
    """ScW list, time conversion, spacecraft and products: one Session, one requests.Session, all sends inside it."""
    sends: list[tuple[str, bool]] = []
    our_http_sessions: list[requests.Session] = []
    sessions: list[Session] = []
    original_send, original_init = requests.Session.send, requests.Session.__init__
    original_session_init = Session.__init__

    def send(self, request, **kwargs):
        through_the_seam = any(frame.filename == SEAM for frame in traceback.extract_stack())
        sends.append((request.url, through_the_seam))
        return original_send(self, request, **kwargs)

    def http_init(self, *args, **kwargs):
        # requests.get() and friends (oda_api) make a throw-away session in requests/api.py
        if not any(frame.filename.endswith(os.path.join("requests", "api.py")) for frame in traceback.extract_stack()):
            our_http_sessions.append(self)
        original_init(self, *args, **kwargs)

    def session_init(self, *args, **kwargs):
        sessions.append(self)
        original_session_init(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    monkeypatch.setattr(requests.Session, "__init__", http_init)
    monkeypatch.setattr(Session, "__init__", session_init)

    session = Session(url=server.url, cache_dir=tmp_path / "chunks", retry=FAST, progress=False)
    # as the notebooks do today: the dispatcher named by URL joins the notebook's session
    table, _ = scw.select_scws(CRAB_2005, url=session.url)
    revolution.revolution_span("0300", url=session.url)
    ephemeris.SpacecraftService(session.url).positions_km([3000.1, 3000.6])
    record = session.fetch(image_request(), scw.scw_ids(table)[:4], s_max=2)

    assert record.counts()[DONE] == 4
    assert sessions == [session]
    assert our_http_sessions == [session._http]
    paths = {urlsplit(url).path for url, _ in sends}
    for service in (
        "/run_analysis",
        "/gw/timesystem/api/v1.0/scwlist",
        "/gw/timesystem/api/v1.0/converttime",
        "/gw/scsystem/api/v1.0/sc",
    ):
        assert any(path.startswith(service) for path in paths), service
    outside = [url for url, through in sends if not through]
    assert outside == []


def test_the_token_stays_out_of_urls_logs_and_records(server_factory, tmp_path, monkeypatch, caplog):
    """With dropped connections and HTTP 500s, every log line (urllib3's included) and outcome is token-free."""
    server = server_factory(debug_instruments=True, faults={"http_500": 0.3, "drop_connection": 0.3}, seed=11)
    token = server.token()
    monkeypatch.setenv("ODA_TOKEN", token)
    urls: list[str] = []
    original_send = requests.Session.send

    def send(self, request, **kwargs):
        urls.append(request.url)
        return original_send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    caplog.set_level(logging.DEBUG)
    session = Session(url=server.url, cache_dir=tmp_path / "chunks", retry=FAST, progress=False)
    record = session.fetch(image_request(), crab_scws(server, good=6), s_max=2)

    assert record.counts()[DONE] == 6
    stats = server.stats()
    assert stats.get("faults_http_500", 0) + stats.get("faults_dropped_connections", 0) > 0
    assert session.has_token and token not in repr(session)
    assert token not in caplog.text
    assert not any(token in url for url in urls)
    assert not any(token in outcome.reason for outcome in record.outcomes.values())


def test_a_failure_fraction_is_refused_unless_allowed():
    record = RunRecord()
    for index in range(10):
        status = FAILED if index < 2 else DONE
        record.outcomes[f"{index:012d}.001"] = ScwOutcome(f"{index:012d}.001", status, "chunk", "HTTP 500")
    with pytest.raises(TooManyFailures, match=r"2 of 10 ScWs of isgri_image failed \(20.0%; allowed: 0.0%\)"):
        record.raise_if_failed(what="isgri_image")
    with pytest.raises(TooManyFailures) as caught:
        record.raise_if_failed(allowed_fraction=0.1)
    assert caught.value.failed == ["000000000000.001", "000000000001.001"] and caught.value.total == 10
    record.raise_if_failed(allowed_fraction=0.2)


def test_the_stall_bound_grows_with_the_job_and_stays_within_a_minute_locally():
    local, remote = RetryPolicy.for_local(), RetryPolicy.for_remote()
    assert local.stall_bound(1) < local.stall_bound(20) < local.stall_bound(50) <= 60.0
    assert local.stall_bound(10_000) == 60.0
    assert remote.stall_bound(1) < remote.stall_bound(50) <= remote.max_stall_timeout_s


def test_a_stalled_job_is_resubmitted_after_the_bound_of_its_size(server_factory, tmp_path, caplog):
    server = server_factory(debug_instruments=True, faults={"stall_job": 0.5}, seed=2)
    policy = RetryPolicy.for_local(
        backoff_s=0.05,
        max_backoff_s=0.1,
        poll_interval_s=0.05,
        max_poll_interval_s=0.1,
        stall_timeout_s=0.5,
        stall_per_scw_s=0.25,
        max_stall_timeout_s=60.0,
    )
    caplog.set_level(logging.INFO, logger="integral_workflows.jobs")
    scws = crab_scws(server, good=6)
    session = Session(url=server.url, cache_dir=tmp_path / "chunks", retry=policy, progress=False)
    record = session.fetch(image_request(), scws, s_max=3)
    assert record.scws(DONE) == sorted(scws)
    stalls = [re.search(r"\((\d+) ScWs\) made no progress for ([\d.]+) s", r.getMessage()) for r in caplog.records]
    stalls = [(int(match[1]), float(match[2])) for match in stalls if match]
    # every injected stall was noticed (a slow job on a loaded machine may add a harmless false alarm)
    assert len(stalls) >= server.stats()["faults_stalled_jobs"] > 0
    # each job's silence was cut at 0.5 s + 0.25 s per ScW of that job
    assert all(bound == 0.5 + 0.25 * size for size, bound in stalls), stalls
    # resubmissions start stalled jobs again, or attach to running ones: no job is computed twice
    assert server.stats()["jobs_computed"] == len(record.jobs)


def _deterministic_faults(monkeypatch, *, rate: float, seed: int = 0) -> dict[str, int]:
    """Fail ``rate`` of all HTTP requests (connection errors and HTTP 500), chosen by what is asked, not when.

    Whether a request fails depends only on its method, path, parameters (without the random session id) and
    how many times the same request was made before, so the faults do not depend on thread timing. The
    liveness probe (``/local/health``) is the seam's oracle and is left alone.
    """
    seen: dict[str, int] = {}
    counts = {"faults": 0, "requests": 0}
    lock = threading.Lock()
    original_send = requests.Session.send

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        if parts.path == hosts.HEALTH_PATH:
            return original_send(self, request, **kwargs)
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        fields = [(k, v) for k, v in parse_qsl(parts.query) + parse_qsl(body) if k not in ("session_id", "token")]
        key = f"{request.method} {parts.path} {sorted(fields)}"
        with lock:
            occurrence = seen[key] = seen.get(key, 0) + 1
            counts["requests"] += 1
        draw = int(hashlib.sha256(f"{seed}|{key}|{occurrence}".encode()).hexdigest()[:8], 16) / 16**8
        if draw >= rate:
            return original_send(self, request, **kwargs)
        with lock:
            counts["faults"] += 1
        if occurrence % 2:
            raise requests.ConnectionError(f"injected: connection dropped ({parts.path})")
        response = requests.Response()
        response.status_code, response._content, response.url = 500, b"injected fault", request.url
        response.request = request
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    return counts


def test_faults_in_transit_at_a_high_rate_still_deliver_everything(server, tmp_path, monkeypatch):
    """Half of all requests fail (ScW list, time conversion, spacecraft, submissions, polls): nothing is lost."""
    counts = _deterministic_faults(monkeypatch, rate=0.5)
    session = Session(url=server.url, cache_dir=tmp_path / "chunks", retry=QUICK, progress=False)
    table, _ = scw.select_scws(CRAB_2005, session=session)
    start, end = revolution.revolution_span("0300", session=session)
    positions = ephemeris.SpacecraftService(session).positions_km([3000.1, 3000.6, 3001.2])
    record = session.fetch(image_request(), scw.scw_ids(table)[:6], s_max=2)
    assert len(table) > 10 and end > start and positions.shape == (3, 3)
    assert record.counts()[DONE] == 6 and record.retries > 0
    assert counts["faults"] > 0 and not session.is_dead


def test_a_dead_server_not_started_here_fails_the_step(server_factory, tmp_path):
    """The server stops mid-run and nobody brings it back: the fetch raises, naming what was lost."""
    server = server_factory(debug_instruments=True, latency_per_scw_s=0.2, workers=1)
    scws = crab_scws(server, good=12)
    session = Session(url=server.url, cache_dir=tmp_path / "chunks", retry=QUICK, progress=False, max_concurrent=2)
    outcome: dict = {}

    def fetch():
        try:
            outcome["record"] = session.fetch(image_request(), scws, s_max=2)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    worker = threading.Thread(target=fetch)
    worker.start()
    while server.stats().get("jobs_computed", 0) < 1 and worker.is_alive():
        worker.join(timeout=0.05)
    server.stop()
    server._server.server_close()  # refuse connections, as a killed process does
    worker.join(timeout=120)
    assert not worker.is_alive()
    error = outcome.get("error")
    assert isinstance(error, BackendUnavailable), outcome
    message = str(error)
    assert "stopped answering /local/health" in message and "started by someone else" in message
    assert "ScWs of isgri_image were not analysed" in message
    lost = error.record.scws(FAILED)
    assert lost and len(lost) + len(error.record.scws(DONE)) == len(scws)
    assert session.is_dead
    with pytest.raises(BackendUnavailable):
        scw.select_scws(CRAB_2005, session=session)


@pytest.fixture
def local_home(tmp_path, monkeypatch):
    home = tmp_path / "mmoda"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(home))
    yield home
    hosts.stop_local_server(home)


def _fetch_in_thread(session: Session, scws, *, s_max: int) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def fetch():
        try:
            outcome["record"] = session.fetch(image_request(), scws, s_max=s_max)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    worker = threading.Thread(target=fetch)
    worker.start()
    return worker, outcome


def _when_jobs_computed(url: str, worker: threading.Thread, *, at_least: int) -> None:
    with requests.Session() as probe:
        probe.trust_env = False
        while worker.is_alive():
            if probe.get(f"{url}/local/stats", timeout=10).json()["counters"].get("jobs_computed", 0) >= at_least:
                return
            worker.join(timeout=0.05)


def test_a_server_this_process_started_is_restarted_once_then_the_step_fails(local_home, tmp_path):
    server = hosts.ensure_local_server(data_dir=local_home, serve_args=["--latency-per-scw", "0.2", "--workers", "1"])
    session = Session(
        "local", data_dir=local_home, cache_dir=tmp_path / "chunks", retry=QUICK, progress=False, max_concurrent=2
    )
    assert session.owns_server
    table, _ = scw.select_scws(CRAB_2005, session=session)
    scws = scw.scw_ids(table)[:12]

    worker, outcome = _fetch_in_thread(session, scws, s_max=2)
    _when_jobs_computed(server.url, worker, at_least=1)
    os.kill(server.pid, signal.SIGKILL)
    worker.join(timeout=300)
    assert not worker.is_alive() and "error" not in outcome, outcome
    assert outcome["record"].scws(DONE) == sorted(scws)
    assert session.restarts == 1 and session.url != server.url
    restarted = hosts.ensure_local_server(data_dir=local_home)
    assert restarted.url == session.url

    more = scw.scw_ids(table)[12:24]
    worker, outcome = _fetch_in_thread(session, more, s_max=2)
    _when_jobs_computed(restarted.url, worker, at_least=1)
    os.kill(restarted.pid, signal.SIGKILL)
    worker.join(timeout=300)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), BackendUnavailable), outcome
    assert "has exited" in str(outcome["error"]) and "already restarted once" in str(outcome["error"])


def test_a_remote_dispatcher_silent_beyond_the_bound_is_declared_unavailable(monkeypatch):
    """Transient silence is retried; silence for longer than dead_after_s, root URL included, is fatal."""
    answers = iter([None, None, "ok"])  # two dropped connections, then an answer
    sent = []
    original_send = requests.Session.send

    def send(self, request, **kwargs):
        if urlsplit(request.url).hostname != "mmoda.invalid":
            return original_send(self, request, **kwargs)
        sent.append(request.url)
        if next(answers, None) is None:
            raise requests.ConnectionError("injected: no route to host")
        response = requests.Response()
        response.status_code, response._content, response.url, response.request = 200, b"[]", request.url, request
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    policy = RetryPolicy.for_remote(backoff_s=0.01, max_backoff_s=0.05, request_budget_s=60.0, dead_after_s=0.3)
    session = Session(url="https://mmoda.invalid/dispatch-data", cache_dir=False, retry=policy)
    assert session.get("gw/timesystem/api/v1.0/converttime/REVNUM/300/IJD").status_code == 200
    assert not session.is_dead and len(sent) == 3

    with pytest.raises(BackendUnavailable, match=r"calls in a row got no answer over .* unreachable") as caught:
        session.get("gw/timesystem/api/v1.0/converttime/REVNUM/301/IJD")
    assert caught.value.url == "https://mmoda.invalid/dispatch-data" and session.is_dead
    sent.clear()
    with pytest.raises(BackendUnavailable):
        session.dispatcher()
    assert sent == [], "once declared unavailable, nothing more is sent"
