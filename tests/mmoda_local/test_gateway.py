"""The gw/timesystem (ScW lists, time conversion) and gw/scsystem (spacecraft) services."""

from __future__ import annotations

import json

import numpy as np
import pytest
from werkzeug.datastructures import MultiDict

from mmoda_local import archive as A
from mmoda_local import gateway as G

T1, T2 = "2019-10-11T11:11:11", "2019-11-11T11:11:11"


def strict_json(body):
    """The body as the wire would carry it: JSON without NaN."""
    return json.loads(json.dumps(body, allow_nan=False))


# -- scwlist ------------------------------------------------------------------------------------------------------
def test_scwlist_plain_list(scw_archive):
    status, body = G.scwlist(scw_archive, "cons", T1, T2, MultiDict())
    assert status == 200 and isinstance(body, list) and len(body) > 500
    assert body == sorted(set(body))
    assert all(isinstance(s, str) and len(s) == 12 and s.isdigit() for s in body)
    rows = scw_archive.select(A.parse_time_to_ijd(T1), A.parse_time_to_ijd(T2))
    assert body == sorted(scw_archive.table["SWID"][rows].tolist())
    assert G.scwlist(scw_archive, "any", T1, T2, None) == (200, body), "any: the union, sorted"
    assert G.scwlist(scw_archive, "NRT", T1, T2, {})[1] == body
    # IJD and MJD give the same answer as ISOT
    t1, t2 = A.parse_time_to_ijd(T1), A.parse_time_to_ijd(T2)
    assert G.scwlist(scw_archive, "cons", str(t1), str(t2), {})[1] == body
    assert G.scwlist(scw_archive, "cons", str(t1 + 51544), str(t2 + 51544), {})[1] == body


def test_scwlist_cone_and_min_good_isgri(scw_archive):
    args = MultiDict({"ra": "83.633", "dec": "22.0145", "radius": "10"})
    t1, t2 = "2005-01-01T00:00:00", "2025-03-01T00:00:00"
    status, body = G.scwlist(scw_archive, "cons", t1, t2, args)
    assert status == 200 and len(body) > 3000
    rows = scw_archive.index_of(body)
    sep = A._angular_distance_deg(
        scw_archive.table["RA_SCX"][rows], scw_archive.table["DEC_SCX"][rows], 83.633, 22.0145
    )
    assert sep.max() < 10
    args["min_good_isgri"] = "1000"
    status, kept = G.scwlist(scw_archive, "cons", t1, t2, args)
    rows = scw_archive.index_of(kept)
    assert np.all(np.asarray(scw_archive.table["TELAPSE"][rows]) > 1000)
    # like the real service: TELAPSE, not GOOD_ISGRI, so radiation-belt pointings stay
    belt = np.asarray(scw_archive.table["IN_BELT"][rows])
    low_good = np.asarray(scw_archive.table["GOOD_ISGRI"][rows]) < 1000
    assert (belt & low_good).sum() > 100
    # an argument that is not a number is ignored (request.args.get(..., type=float))
    args = MultiDict({"ra": "eighty-three", "dec": "22", "radius": "10"})
    assert G.scwlist(scw_archive, "cons", T1, T2, args)[1] == G.scwlist(scw_archive, "cons", T1, T2, {})[1]


def test_scwlist_return_columns(scw_archive):
    columns = (
        "SWID,SW_VER,REVOL,TSTART,TSTOP,TELAPSE,RA_SCX,DEC_SCX,RA_SCZ,DEC_SCZ,POSANGLE,GOOD_ISGRI,"
        "GOOD_JEMX1,GOOD_JEMX2,IBISMODE,OBS_ID,FILLED"
    )
    args = {"ra": "161.2647", "dec": "-59.68443", "radius": "8", "return_columns": columns}
    status, body = G.scwlist(scw_archive, "cons", T1, "2020-11-11T11:11:11", args)
    assert status == 200 and list(body) == columns.split(",")
    n = len(body["SWID"])
    assert n > 20 and all(len(v) == n for v in body.values())
    assert set(body["SW_VER"]) == {"001"}
    assert body == strict_json(body)
    types = {"SWID": str, "SW_VER": str, "OBS_ID": str, "REVOL": int, "IBISMODE": int, "FILLED": bool}
    for name, values in body.items():
        assert all(type(v) is types.get(name, float) for v in values), name
    status, nrt = G.scwlist(scw_archive, "nrt", T1, "2020-11-11T11:11:11", args)
    assert set(nrt["SW_VER"]) == {"000"} and nrt["SWID"] == body["SWID"]
    status, both = G.scwlist(scw_archive, "any", T1, "2020-11-11T11:11:11", args)
    assert status == 200
    assert both["SWID"] == nrt["SWID"] + body["SWID"], "any: NRT then CONS, concatenated"
    assert both["SW_VER"] == ["000"] * n + ["001"] * n


def test_scwlist_index_version(scw_archive):
    status, body = G.scwlist(scw_archive, "any", T1, T2, {"return_index_version": "yes"})
    assert status == 200 and set(body) == {"scwlist", "index_version"}
    assert body["index_version"] == A.INDEX_VERSION and body["index_version"].isdigit()
    assert body["scwlist"] == G.scwlist(scw_archive, "any", T1, T2, {})[1]
    args = {"return_index_version": "yes", "return_columns": "SWID,TSTART"}
    status, body = G.scwlist(scw_archive, "cons", T1, T2, args)
    assert set(body["scwlist"]) == {"SWID", "TSTART"}
    assert G.scwlist(scw_archive, "cons", T1, T2, {"index_version": A.INDEX_VERSION})[0] == 200
    assert G.scwlist(scw_archive, "cons", T1, T2, {"index_version": "1"})[0] == 200, "older: the first index"
    status, body = G.scwlist(scw_archive, "cons", T1, T2, {"index_version": "9" * 12})
    assert status == 400 and "no index with requested version" in body[0]["problem in CONS"]
    assert G.scwlist(scw_archive, "any", T1, T2, {"index_version": A.INDEX_VERSION}) == (
        400,
        {"bad request": 'index version can only be set with "cons" or "nrt" source, not "any"'},
    )
    assert G.scwlist(scw_archive, "nrt", T1, T2, {"index_version": "latest"}) == (
        400,
        {"bad request": "non-conforming index version"},
    )


def test_scwlist_errors(scw_archive):
    assert G.scwlist(scw_archive, "consolidated", T1, T2, {}) == (400, {"bad request": "readiness undefined"})
    status, body = G.scwlist(scw_archive, "cons", "not-a-time", T2, {})
    assert status == 400 and body["bad request"].startswith("failed to interpret time: ")
    status, body = G.scwlist(scw_archive, "cons", T1, T2, {"return_columns": "SWID,NOPE"})
    assert status == 400 and isinstance(body, list) and len(body) == 1
    message = body[0]["problem in CONS"]
    assert "NOPE" in message and "RA_SCX" in message and "GOOD_ISGRI" in message
    status, body = G.scwlist(scw_archive, "any", T1, T2, {"return_columns": "NOPE"})
    assert status == 400 and [list(p) for p in body] == [["problem in NRT"], ["problem in CONS"]]
    strict_json(body)


def test_scwlist_empty_and_debug(scw_archive):
    assert G.scwlist(scw_archive, "cons", "100", "101", {}) == (200, [])
    status, body = G.scwlist(scw_archive, "cons", "100", "101", {"return_columns": "SWID,RA_SCX"})
    assert body == {"SWID": [], "RA_SCX": []}
    status, body = G.scwlist(scw_archive, "cons", T1, T2, {"debug": ""})
    assert status == 200 and {"output", "t1_ijd", "t2_ijd", "lastscw", "index_version"} <= set(body)
    strict_json(body)


# -- spacecraft ---------------------------------------------------------------------------------------------------
def test_spacecraft(scw_archive, no_network):
    status, body = G.spacecraft(scw_archive, "2023-08-12T18:58:00", "0", "0")
    assert status == 200
    assert {"ephs", "scx", "scy", "scz", "barytime"} <= set(body)
    strict_json(body)
    assert 9_000 < body["ephs"]["alt"] < 170_000
    ijd = A.parse_time_to_ijd("2023-08-12T18:58:00")
    status, by_ijd = G.spacecraft(scw_archive, repr(ijd), 83.633, 22.0145)
    assert status == 200 and by_ijd["ephs"] == body["ephs"] and by_ijd["scx"] == body["scx"]
    assert by_ijd["barytime"] != body["barytime"] and abs(by_ijd["barytime"]) <= 510


@pytest.mark.parametrize(
    "when, ra, dec",
    [
        ("whenever", "0", "0"),
        ("3000", "east", "0"),
        ("3000", "0", "95"),
        ("3000", "nan", "0"),
        ("100", "0", "0"),
        ("2030-01-01T00:00:00", "0", "0"),
    ],
)
def test_spacecraft_bad_requests(scw_archive, when, ra, dec):
    status, body = G.spacecraft(scw_archive, when, ra, dec)
    assert status == 400 and set(body) == {"bad request"}
    strict_json(body)


# -- converttime --------------------------------------------------------------------------------------------------
def test_converttime_known_values_in_the_real_text_shapes(scw_archive, no_network):
    # science notes §1: IJD 2000 -> UTC 2005-06-22T23:58:55.816; OSA prints IJDs with 20 decimals
    assert G.converttime(scw_archive, "IJD", "2000", "UTC") == (200, "2005-06-22T23:58:55.816")
    status, text = G.converttime(scw_archive, "UTC", "2005-06-22T23:58:55.816", "IJD")
    assert status == 200 and isinstance(text, str) and float(text) == pytest.approx(2000.0)
    assert G.converttime(scw_archive, "IJD", "2000", "REVNUM") == (200, "0328")
    assert G.converttime(scw_archive, "MJD", "53544", "IJD") == (200, "2000.00000000000000000000")


def wrapper_revolution_bounds(text):
    """What oda-integral-wrapper 1.5.19's get_utc_from_revnum does with the answer's text."""
    try:
        json_res = json.loads(text)
        return json_res[1], json_res[2]
    except ValueError:
        split = text.split()
        return split[1], split[2]


def test_revolution_to_ijd_is_the_boundary_text_the_wrapper_splits(scw_archive):
    status, text = G.converttime(scw_archive, "REVNUM", "0300", "IJD")
    assert status == 200 and text.startswith("Boundary ")
    start, stop = wrapper_revolution_bounds(text)
    assert float(start) == pytest.approx(scw_archive.revolution_start(300), abs=1e-12)
    assert float(stop) == pytest.approx(scw_archive.revolution_start(301), abs=1e-12)
    # the wrapper then asks IJD -> UTC with these strings
    assert G.converttime(scw_archive, "IJD", start, "UTC") == (200, A.ijd_to_utc_isot(float(start)))
    # the OSA tool's own form: "Boundary 1088.19982851851864324999 1091.19060398148167223553"
    assert len(start.split(".")[1]) == 20


def test_converttime_round_trips(scw_archive):
    rng = np.random.default_rng(11)
    lo, hi = scw_archive.time_range
    for ijd in rng.uniform(lo, hi, 20).tolist():
        status, utc = G.converttime(scw_archive, "IJD", repr(ijd), "UTC")
        assert status == 200 and isinstance(utc, str)
        status, back = G.converttime(scw_archive, "UTC", utc, "IJD")
        assert abs(float(back) - ijd) * 86400 < 1e-3
        status, rev = G.converttime(scw_archive, "IJD", repr(ijd), "REVNUM")
        assert status == 200 and len(rev) == 4
        start, stop = (float(t) for t in G.converttime(scw_archive, "REVNUM", rev, "IJD")[1].split()[1:])
        assert start <= ijd < stop
        assert G.converttime(scw_archive, "IJD", repr(start), "REVNUM") == (200, rev)
    for row in rng.choice(len(scw_archive), 20, replace=False):
        swid = str(scw_archive.table["SWID"][row])
        status, text = G.converttime(scw_archive, "SCWID", swid + ".001", "IJD")
        # integralclient splits this answer at ":" into the ScW's start and stop
        start, stop = (float(t) for t in text.split(":"))
        assert status == 200 and start == float(scw_archive.table["TSTART"][row])
        assert stop == float(scw_archive.table["TSTOP"][row])
        assert G.converttime(scw_archive, "IJD", repr(start), "SCWID") == (200, swid)
        assert G.converttime(scw_archive, "ANY", swid, "SCWID") == (200, swid)
        assert G.converttime(scw_archive, "SCWID", swid, "UTC")[1] == A.ijd_to_utc_isot(start)
        middle = A.ijd_to_utc_isot(0.5 * (start + stop))
        assert G.converttime(scw_archive, "UTC", middle, "SCWID") == (200, swid)


def test_converttime_any(scw_archive):
    status, body = G.converttime(scw_archive, "ANY", "2000", "ANY")
    assert status == 200 and set(body) == {"IJD", "UTC", "REVNUM", "SCWID"}
    # the real service jsonifies the tool's texts: every value is a string
    assert body == {
        "IJD": "2000.00000000000000000000",
        "UTC": "2005-06-22T23:58:55.816",
        "REVNUM": "0328",
        "SCWID": body["SCWID"],
    } and all(isinstance(v, str) for v in body.values())
    strict_json(body)
    assert G.converttime(scw_archive, "ANY", "53544", "IJD") == (200, "2000.00000000000000000000")
    assert float(G.converttime(scw_archive, "ANY", "2005-06-22T23:58:55.816", "IJD")[1]) == pytest.approx(2000.0)
    # itime.Time.adopt of oda-integral-wrapper reads a revolution's IJD as "Boundary <start> <stop>"
    status, body = G.converttime(scw_archive, "REVNUM", "300", "ANY")
    assert body["IJD"].startswith("Boundary ") and body["REVNUM"] == "0300"


@pytest.mark.parametrize(
    "informat, value, outformat",
    [
        ("JD", "2000", "UTC"),
        ("IJD", "2000", "GPS"),
        ("IJD", "two thousand", "UTC"),
        ("UTC", "2000", "IJD"),
        ("REVNUM", "5000", "IJD"),
        ("REVNUM", "x", "IJD"),
        ("SCWID", "999999990010", "IJD"),
        ("IJD", "100", "REVNUM"),
        ("ANY", "whenever", "IJD"),
        ("IJD", "nan", "UTC"),
    ],
)
def test_converttime_failures_are_the_real_500_problem_lists(scw_archive, informat, value, outformat):
    status, body = G.converttime(scw_archive, informat, value, outformat)
    assert status == 500 and isinstance(body, list) and len(body) == 2
    assert all({"error from converttime", "output", "traceback"} <= set(problem) for problem in body)
    strict_json(body)


def test_converttime_scwid_in_a_gap(scw_archive):
    tstart, tstop = np.asarray(scw_archive.table["TSTART"]), np.asarray(scw_archive.table["TSTOP"])
    i = int(np.flatnonzero(tstart[1:] - tstop[:-1] > 0.01)[0])
    status, body = G.converttime(scw_archive, "IJD", repr(float(tstop[i]) + 0.005), "SCWID")
    assert status == 500 and "conversion impossible" in body[0]["error from converttime"]
    # ANY still answers, with the nearest ScW "is close" (itime.Time.adopt strips the suffix)
    status, body = G.converttime(scw_archive, "IJD", repr(float(tstop[i]) + 0.005), "ANY")
    assert status == 200 and body["SCWID"].endswith(" is close")
