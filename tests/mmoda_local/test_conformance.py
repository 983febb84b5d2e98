"""Conformance with the real dispatcher, scenario by scenario.

Each test repeats the oda_api 1.3.5 calls of one captured scenario
(``tests/data/dispatcher-captures/s*.py``) against a local MMODA,
records every HTTP exchange, and compares it with the exchange captured from
the real dispatcher: same endpoint, same status, same keys and value types in
the JSON answers, and the same client-side exceptions.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import requests
from oda_api.api import DispatcherAPI, RemoteException, RequestNotUnderstood, Unauthorized

from mmoda_local.protocol import strings_containing_null

from ..conftest import TEST_DATA

CAPTURES = TEST_DATA / "dispatcher-captures"

#: Places where the real and local answers legitimately differ in content, not in contract.
VOLATILE = {
    "config",  # the real server dumps its configuration
    "installed_instruments",  # the real one has more test instruments
    "api_code",
    "analysis_parameters.token",  # the real server echoes the token; the local one never does
    "job_monitor.full_report_dict",
}


def captured(scenario: str) -> list[dict]:
    """Exchanges of a captured scenario, as recorded by the logging proxy."""
    path = CAPTURES / f"{scenario}_exchanges.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Recorder:
    """Records the HTTP exchanges oda_api makes (through requests' Session.send)."""

    def __init__(self, monkeypatch):
        self.exchanges = []
        original = requests.sessions.Session.send

        def send(session, prepared, **kwargs):
            response = original(session, prepared, **kwargs)
            # with redirects followed, this call's own answer is the first of the history
            first = response.history[0] if response.history else response
            self.exchanges.append(
                {
                    "method": prepared.method,
                    "path": urlsplit(prepared.url).path,
                    "status": first.status_code,
                    "body": first.text,
                }
            )
            return response

        monkeypatch.setattr(requests.sessions.Session, "send", send)


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", shape(value[0]) if value else None]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def shape_differences(ours, theirs, path="") -> list[str]:
    """Differences of keys and value types, outside the volatile places."""
    if any(path.endswith("." + place) for place in VOLATILE):
        return []
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{path}: {type(ours).__name__} instead of dict"]
        problems = []
        missing = set(theirs) - set(ours)
        extra = set(ours) - set(theirs)
        problems += [f"{path}.{k}: missing" for k in sorted(missing) if k not in VOLATILE]
        problems += [f"{path}.{k}: unexpected" for k in sorted(extra) if k not in VOLATILE]
        for key in set(theirs) & set(ours):
            problems += shape_differences(ours[key], theirs[key], f"{path}.{key}")
        return problems
    if isinstance(theirs, list) and theirs and isinstance(ours, list) and ours:
        return shape_differences(ours[0], theirs[0], f"{path}[0]")
    if shape(ours) != shape(theirs) and not (isinstance(theirs, list) or isinstance(ours, list)):
        return [f"{path}: {shape(ours)} instead of {shape(theirs)}"]
    return []


def compare(ours: list[dict], theirs: list[dict], *, product_keys_only: bool = False) -> None:
    """Assert the recorded exchanges match the captured ones, one by one."""
    assert [(e["method"], e["path"]) for e in ours] == [(e["method"], urlsplit(e["path"]).path) for e in theirs]
    for mine, real in zip(ours, theirs):
        assert mine["status"] == real["status"], (mine["path"], mine["body"][:300])
        try:
            real_json = json.loads(real["resp_body"])
        except json.JSONDecodeError:
            continue
        my_json = json.loads(mine["body"])
        assert not strings_containing_null(my_json)
        if product_keys_only and isinstance(real_json, dict) and "products" in real_json:
            assert set(my_json["products"]) == set(real_json["products"]), mine["path"]
            real_json = {k: v for k, v in real_json.items() if k != "products"}
            my_json = {k: v for k, v in my_json.items() if k != "products"}
        assert shape_differences(my_json, real_json) == [], (mine["path"], mine["body"][:500])


def dispatcher(url: str, **kwargs) -> DispatcherAPI:
    disp = DispatcherAPI(url=url, instrument="mock", **kwargs)
    disp.n_max_tries = 1
    return disp


def test_s1_instruments_products_and_errors(server, monkeypatch):
    recorder = Recorder(monkeypatch)
    d = dispatcher(server.url)
    assert "isgri" in d.get_instruments_list()
    assert d.get_instrument_description("isgri")[0][0] == {"instrumet": "isgri"}
    assert len(d.get_product_description("isgri", "isgri_image")[0]) == 5

    outcomes = {}
    for name, kwargs in [
        ("dummy", dict(instrument="empty", product="dummy", product_type="Dummy")),
        ("numerical", dict(instrument="empty", product="numerical", product_type="Dummy", p=5)),
        ("failing", dict(instrument="empty", product="failing", product_type="Dummy")),
        ("bad p", dict(instrument="empty", product="numerical", product_type="Dummy", p=900)),
        ("unknown product", dict(instrument="empty", product="nonexistent", product_type="Dummy")),
        ("unknown instrument", dict(instrument="nonexist", product="x", product_type="Dummy")),
    ]:
        try:
            result = dispatcher(server.url).get_product(silent=True, **kwargs)
            outcomes[name] = result.as_list()
        except Exception as exc:  # noqa: BLE001 - the exception class is what we compare
            outcomes[name] = type(exc).__name__
    assert outcomes == {
        "dummy": [],
        "numerical": "Unauthorized",
        "failing": "RemoteException",
        "bad p": "RequestNotUnderstood",
        "unknown product": "RequestNotUnderstood",
        "unknown instrument": "RequestNotUnderstood",
    }
    real = captured("s1")
    # requests follows the 302 of api/instr-list to /instr-list; the capturing proxy only saw the 302
    ours = [e for e in recorder.exchanges if e["path"] != "/instr-list"]
    assert any(e["path"] == "/instr-list" and e["status"] == 200 for e in recorder.exchanges)
    compare(ours, real)


def test_s2_token_roles_and_none_values(server, monkeypatch):
    recorder = Recorder(monkeypatch)
    token = server.token("general, unige-hpc-full", email="a@b.c")
    result = dispatcher(server.url).get_product(
        instrument="empty", product="numerical", product_type="Dummy", p=5, token=token, silent=True
    )
    assert result._p_list[0].data_unit[0].data.shape == (100, 100)
    with pytest.raises(RequestNotUnderstood, match="src_name is set to None"):
        dispatcher(server.url).get_product(
            instrument="empty",
            product="numerical",
            product_type="Dummy",
            p=6,
            token=token,
            src_name=None,
            scw_list=["066500220010.001", "066500230010.001"],
            silent=True,
        )
    compare(recorder.exchanges, captured("s2"))
    for exchange in recorder.exchanges:
        assert token not in exchange["body"], "the token must never be echoed"


def test_s3_asynchronous_job_completed_by_a_backend_callback(server, monkeypatch):
    recorder = Recorder(monkeypatch)
    d = dispatcher(server.url, wait=False)
    assert d.get_product(instrument="empty-async", product="dummy", product_type="Real", silent=True) is None
    assert d.query_status == "submitted"
    for _ in range(4):
        d.poll()
        assert d.query_status == "submitted"
    callback = requests.get(
        f"{server.url}/call_back",
        params=dict(
            session_id=d.session_id,
            job_id=d.job_id,
            instrument_name="empty-async",
            action="done",
            node_id="node1",
            message="main done",
        ),
    )
    assert callback.status_code == 200
    d.poll()
    assert d.query_status == "ready"
    result = d.poll()
    assert d.query_status == "done"
    assert result is not None
    compare(recorder.exchanges, captured("s3"), product_keys_only=True)


def test_s5_token_tools_need_their_roles(server, monkeypatch):
    recorder = Recorder(monkeypatch)
    d = dispatcher(server.url)
    outcomes = []
    for roles in ["general", "general, job manager, refresh-tokens"]:
        monkeypatch.setenv("ODA_TOKEN", server.token(roles, email="a@b.c"))
        for call in [
            lambda: d.inspect_state(),
            lambda: d.inspect_state(job_id="c675ecfddcceecb7", group_by_job=True),
            lambda: d.refresh_token(),
            lambda: d.disable_email_token(),
        ]:
            try:
                call()
                outcomes.append("ok")
            except RuntimeError:
                outcomes.append("refused")
    assert outcomes == ["refused", "refused", "refused", "ok", "ok", "ok", "ok", "ok"]
    real = [
        e
        for e in captured("s5")
        if "gallery" not in e["path"] and "resolve_name" not in e["path"] and "get_parents_term" not in e["path"]
    ]
    compare(recorder.exchanges, real)


def test_s7_asynchronous_job_failed_by_a_backend_callback(server, monkeypatch):
    recorder = Recorder(monkeypatch)
    d = dispatcher(server.url, wait=False)
    d.get_product(instrument="empty-async", product="dummy", product_type="Real", silent=True, src_name="failcase")
    assert d.query_status == "submitted"
    requests.get(
        f"{server.url}/call_back",
        params=dict(
            session_id=d.session_id,
            job_id=d.job_id,
            instrument_name="empty-async",
            action="failed",
            node_id="n",
            message="boom",
        ),
    )
    d.poll()
    assert d.query_status == "failed"
    with pytest.raises(RemoteException):
        d.process_failure()
    compare(
        [e for e in recorder.exchanges if e["path"] != "/call_back"],
        [e for e in captured("s7") if "/call_back" not in e["path"]],
    )


def test_unknown_instrument_and_expired_token(server):
    answer = requests.get(f"{server.url}/run_analysis", params=dict(instrument="nonexist", product_type="x"))
    assert answer.status_code == 400 and "InstrumentNotRecognized" in answer.json()["error"]
    expired = server.token("general", lifetime_s=-10)
    with pytest.raises(Unauthorized, match="expired"):
        dispatcher(server.url).get_product(
            instrument="empty", product="numerical", product_type="Dummy", p=5, token=expired, silent=True
        )
    forged = server.token("general")[:-4] + "AAAA"
    with pytest.raises(Unauthorized, match="not valid"):
        dispatcher(server.url).get_product(
            instrument="empty", product="numerical", product_type="Dummy", p=5, token=forged, silent=True
        )


def test_job_id_is_stable_and_depends_on_parameters_and_user(server):
    def job_id(**extra):
        params = dict(
            instrument="empty-async",
            product_type="dummy",
            query_type="Real",
            off_line="False",
            query_status="new",
            api="True",
            oda_api_version="1.3.5",
            **extra,
        )
        return requests.get(f"{server.url}/run_analysis", params=params).json()["job_monitor"]["job_id"]

    first = job_id(session_id="AAAAAAAAAAAAAAAA", src_name="X")
    assert job_id(session_id="BBBBBBBBBBBBBBBB", src_name="X") == first
    assert job_id(session_id="AAAAAAAAAAAAAAAA", src_name="Y") != first
    assert job_id(session_id="AAAAAAAAAAAAAAAA", src_name="X", token=server.token("general")) != first
