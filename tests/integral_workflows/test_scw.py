"""ScW selection: queries of the local MMODA's ScW-list service and of a mocked HEASARC, cuts, sampling, files, plots.

Everything is offline: the ScW-list service is the local MMODA (``server`` fixture, 127.0.0.1), HEASARC's TAP
service is replaced by a fake ``query_tap`` answering from a small table shaped like ``intscw``.
"""

from __future__ import annotations

import json
import logging
import re
import time

import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from integral_workflows import parameters as workflow_parameters
from integral_workflows import scw

log = logging.getLogger(__name__)

CRAB = (83.63321, 22.014471)
YEAR = ("2005-01-01T00:00:00", "2006-01-01T00:00:00")
SCWLIST = "gw/timesystem/api/v1.0/scwlist"
SCW_ID = re.compile(r"^\d{12}\.\d{3}$")


@pytest.fixture(autouse=True)
def no_real_network(monkeypatch):
    """Only loopback may be asked: a request anywhere else fails the test."""
    original = requests.Session.request

    def loopback_only(self, method, url, *args, **kwargs):
        if not str(url).startswith(("http://127.0.0.1", "http://localhost")):
            raise AssertionError(f"a test tried to reach {url}")
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", loopback_only)


def full_list(url: str, t1_ijd: float, t2_ijd: float, version: str = "cons") -> list[str]:
    """Every SWID of the service in [t1, t2] (no cone), asked directly."""
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(f"{url}/{SCWLIST}/{version}/{t1_ijd!r}/{t2_ijd!r}", timeout=60)
    assert response.status_code == 200
    return response.json()


def highest_pointings(swids) -> dict[str, int]:
    out: dict[str, int] = {}
    for swid in swids:
        if swid.endswith("0"):
            out[swid[:4]] = max(out.get(swid[:4], 0), int(swid[4:8]))
    return out


# -- queries of the local MMODA ------------------------------------------------------------------------------------


def test_crab_year_query_is_plausible(server):
    table = scw.query_scws(ra=CRAB[0], dec=CRAB[1], radius=10.5, t1=YEAR[0], t2=YEAR[1], url=server.url)
    # The Crab is visible twice a year; a year of Crab-field ScWs is a few hundred pointings.
    assert 100 < len(table) < 2000
    assert set(scw.SCW_COLUMNS) <= set(table.colnames)
    ids = scw.scw_ids(table)
    assert all(SCW_ID.match(s) and s.endswith(".001") for s in ids)
    assert len(set(ids)) == len(ids)
    assert np.all(np.diff(table["tstart"]) >= 0), "sorted by time"
    assert all(s[:4] == r for s, r in zip(ids, table["revolution"]))
    assert all(int(s[4:8]) == p for s, p in zip(ids, table["pointing"]))
    assert set(table["scw_type"]) == {"pointing"}
    t1, t2 = (Time(t, scale="utc").tt.mjd - 51544 for t in YEAR)
    assert np.all((table["tstart"] < t2) & (table["tstop"] > t1)), "every ScW overlaps the period"
    assert np.allclose(table["telapse"], (table["tstop"] - table["tstart"]) * 86400, atol=2)
    assert np.allclose(table["mjd_mid"], (table["tstart"] + table["tstop"]) / 2 + 51544)
    assert np.all(np.isfinite(table["good_isgri"])) and np.all(table["good_isgri"] <= table["telapse"] + 1)
    assert "obs_id" in table.colnames and set(table["ibismode"]) == {41}
    query = table.meta["query"]
    assert query["source"] == "mmoda" and not query["minimal_columns_fallback"] and query["n_scw"] == len(table)


def test_every_scw_is_within_radius_and_none_is_missed(server):
    radius = 10.5
    table = scw.query_scws(ra=CRAB[0], dec=CRAB[1], radius=radius, t1=YEAR[0], t2=YEAR[1], url=server.url)
    crab = SkyCoord(*CRAB, unit="deg")
    brute = np.array(
        [crab.separation(SkyCoord(ra, dec, unit="deg")).deg for ra, dec in zip(table["ra_x"], table["dec_x"])]
    )
    assert np.all(brute < radius)
    assert np.allclose(brute, table["offaxis_deg"], atol=1e-9)
    # Completeness: a wider query, cut by hand at the radius, gives the same ScWs.
    wide = scw.query_scws(ra=CRAB[0], dec=CRAB[1], radius=20.0, t1=YEAR[0], t2=YEAR[1], url=server.url)
    wide_sep = crab.separation(SkyCoord(wide["ra_x"], wide["dec_x"], unit="deg")).deg
    assert len(wide) > len(table)
    assert sorted(wide["scw_id"][wide_sep < radius]) == sorted(table["scw_id"])


def test_nrt_gives_version_000(server):
    cons = scw.query_scws(ra=CRAB[0], dec=CRAB[1], radius=10.5, t1=YEAR[0], t2=YEAR[1], url=server.url)
    nrt = scw.query_scws(
        ra=CRAB[0], dec=CRAB[1], radius=10.5, t1=YEAR[0], t2=YEAR[1], url=server.url, data_version="NRT"
    )
    assert all(s.endswith(".000") for s in nrt["scw_id"])
    assert [s[:12] for s in nrt["scw_id"]] == [s[:12] for s in cons["scw_id"]]


def test_radiation_belt_cut_uses_the_whole_revolution(server):
    table = scw.query_scws(ra=CRAB[0], dec=CRAB[1], radius=10.5, t1=YEAR[0], t2=YEAR[1], url=server.url)
    cache: dict[str, int] = {}
    extents = scw.revolution_extents(table, url=server.url, cache=cache)
    # The truth: the service's full list (no cone) over the period widened by more than a revolution.
    truth = highest_pointings(full_list(server.url, float(table["tstart"].min()) - 4, float(table["tstop"].max()) + 4))
    assert set(extents) == set(table["revolution"])
    assert extents == {rev: truth[rev] for rev in extents}
    in_cone = {rev: int(table["pointing"][table["revolution"] == rev].max()) for rev in extents}
    assert sum(in_cone[rev] < extents[rev] for rev in extents) > len(extents) // 2, (
        "the cone misses the end of most revolutions: the test would not tell the two rules apart"
    )
    assert cache == extents, "the cache holds what was asked"

    kept, report = scw.apply_cuts(table, revolution_extents=extents, min_good_time_s=None, bad_revolutions=None)
    for rev, pointing in zip(kept["revolution"], kept["pointing"]):
        assert 5 < pointing <= extents[rev] - 10
    removed = report.removed_rows
    assert report.removed_by_cut["radiation belts"] == len(removed) > 0
    for rev, pointing in zip(removed["revolution"], removed["pointing"]):
        assert pointing <= 5 or pointing > truth[rev] - 10
    # The simulated archive marks its belt pointings: none survives.
    archive = server.backend.analysis.archive
    rows = archive.index_of(list(kept["scw_id"]))
    assert not np.any(np.asarray(archive.table["IN_BELT"])[rows])
    # With the cone's highest pointing (the student's first version) pointings near the belts would be dropped
    # or kept wrongly: the two selections differ.
    kept_cone, _ = scw.apply_cuts(table, revolution_extents=in_cone, min_good_time_s=None, bad_revolutions=None)
    assert sorted(kept_cone["scw_id"]) != sorted(kept["scw_id"])


def test_missing_extents_fall_back_to_the_table_with_a_note(server, caplog):
    table = scw.query_scws(ra=CRAB[0], dec=CRAB[1], radius=10.5, t1=YEAR[0], t2=YEAR[1], url=server.url)
    with caplog.at_level(logging.WARNING, logger="integral_workflows.scw"):
        kept, report = scw.apply_cuts(table, revolution_extents=None)
    assert any("no full-revolution extent" in note for note in report.notes)
    assert "no full-revolution extent" in caplog.text


def test_bad_revolutions_are_removed(server):
    with requests.Session() as session:
        session.trust_env = False
        start = float(
            session.get(f"{server.url}/gw/timesystem/api/v1.0/converttime/REVNUM/128/IJD", timeout=30).text.split()[1]
        )
    # Revolutions 128-131, whole sky.
    table = scw.query_scws(ra=0.0, dec=0.0, radius=180.0, t1=start + 0.01, t2=start + 11.9, url=server.url)
    revolutions = set(table["revolution"])
    assert {"0128", "0129", "0130", "0131"} <= revolutions
    kept, report = scw.apply_cuts(table, revolution_extents=scw.revolution_extents(table, url=server.url))
    assert not set(kept["revolution"]) & set(scw.DEFAULT_BAD_REVOLUTIONS)
    assert "0131" in set(kept["revolution"])
    expected = int(np.isin(table["revolution"], scw.DEFAULT_BAD_REVOLUTIONS).sum())
    assert report.removed_by_cut["bad revolutions"] == expected > 0
    step = next(s for s in report.steps if s.name == "bad revolutions")
    assert all("bad-revolution list" in r for r in step.reasons)
    # ints are accepted and normalised
    kept_int, report_int = scw.apply_cuts(table, revolution_extents=None, bad_revolutions=[128, 129, 130])
    assert report_int.removed_by_cut["bad revolutions"] == expected


def test_default_bad_revolutions_are_the_students_list():
    assert scw.DEFAULT_BAD_REVOLUTIONS == (
        "0128",
        "0129",
        "0130",
        "0277",
        "0355",
        "0507",
        "0509",
        "1319",
        "1320",
        "1321",
        "1322",
        "1323",
        "1324",
        "1557",
        "1574",
        "1802",
        "1803",
    )


# -- cuts on a hand-made table -------------------------------------------------------------------------------------


def hand_made_table() -> Table:
    """Two revolutions (0100: pointings 1-40, 0128: 1-20), one slew, a few ScWs with little good time."""
    rows = []
    t = 1000.0
    for rev, last in (("0100", 40), ("0128", 20)):
        for pointing in range(1, last + 1):
            rows.append((f"{rev}{pointing:04d}0010.001", rev, pointing, "pointing", t, 3000.0))
            t += 0.04
    rows.append(("010000200011.001", "0100", 20, "slew", t, 200.0))
    table = Table(rows=rows, names=("scw_id", "revolution", "pointing", "scw_type", "tstart", "telapse"))
    n = len(table)
    table["tstop"] = table["tstart"] + table["telapse"] / 86400
    table["mjd_mid"] = (table["tstart"] + table["tstop"]) / 2 + 51544
    table["ra_x"], table["dec_x"], table["offaxis_deg"] = np.zeros(n), np.zeros(n), np.ones(n)
    table["good_isgri"] = 0.95 * table["telapse"]
    table["good_jemx1"] = np.full(n, np.nan)
    table["good_jemx2"] = 0.9 * table["telapse"]
    table["ibismode"] = np.full(n, 41)
    # Little ISGRI good time in revolution 0100, pointings 10 and 11 (kept by the belt rule) and 3 (in the belts).
    for pointing in (3, 10, 11):
        table["good_isgri"][(table["revolution"] == "0100") & (table["pointing"] == pointing)] = 500.0
    return table


def test_each_cut_is_counted_in_order():
    table = hand_made_table()
    kept, report = scw.apply_cuts(table, revolution_extents={"0100": 40, "0128": 20})
    assert report.initial == 61
    # slew: 1; revolution 0128: 20; belts of 0100: 1-5 and 31-40 (15); good time: pointings 10 and 11 (3 is gone).
    assert report.removed_by_cut == {"pointings only": 1, "bad revolutions": 20, "radiation belts": 15, "good time": 2}
    assert report.final == len(kept) == 61 - 38
    assert [s.remaining for s in report.steps] == [60, 40, 25, 23]
    assert sorted(kept["pointing"]) == [p for p in range(6, 31) if p not in (10, 11)]
    assert report.good_exposure_s == pytest.approx(23 * 0.95 * 3000)
    assert report.reason_of("010000200011.001") == "pointings only: slew ScW, not a pointing"
    assert "highest 0040" in report.reason_of("010000310010.001")
    assert "good_isgri 500 s <= 1000 s" in report.reason_of("010000100010.001")
    assert report.reason_of("010000200010.001") is None
    assert set(report.removed_rows["cut"]) == {"pointings only", "bad revolutions", "radiation belts", "good time"}
    assert len(report.removed_rows) == 38 and "cut_reason" in report.removed_rows.colnames
    assert kept.meta["cut_report"]["final"] == 23
    # revolution numbers as ints in the extents are understood too
    _, again = scw.apply_cuts(table, revolution_extents={100: 40, 128: 20})
    assert again.removed_by_cut == report.removed_by_cut and not again.notes


def test_cuts_can_be_switched_off():
    table = hand_made_table()
    kept, report = scw.apply_cuts(
        table, pointings_only=False, min_good_time_s=None, exclude_radiation_belts=False, bad_revolutions=None
    )
    assert len(kept) == len(table) and report.final == 61
    assert [s.enabled for s in report.steps] == [False] * 4
    assert all(s.removed == 0 for s in report.steps)
    assert "(off)" in report.to_markdown()
    # min_good_time_s = 0 still drops ScWs without any good time.
    table["good_isgri"][0] = 0.0
    _, report = scw.apply_cuts(
        table, pointings_only=False, min_good_time_s=0, exclude_radiation_belts=False, bad_revolutions=None
    )
    assert report.removed_by_cut["good time"] == 1


def test_jemx_good_time_and_telapse_fallback():
    table = hand_made_table()
    extents = {"0100": 40, "0128": 20}
    kept2, report2 = scw.apply_cuts(table, instrument="jemx", jemx_unit=2, revolution_extents=extents)
    assert report2.instrument == "jemx2" and report2.removed_by_cut["good time"] == 0
    assert np.allclose(kept2["good_time_s"], 0.9 * kept2["telapse"])
    # JEM-X1 good time is missing: TELAPSE stands in, with a note.
    kept1, report1 = scw.apply_cuts(table, instrument="jemx", jemx_unit=1, revolution_extents=extents)
    assert np.allclose(kept1["good_time_s"], kept1["telapse"])
    assert any("TELAPSE" in note for note in report1.notes)
    with pytest.raises(ValueError, match="jemx_unit"):
        scw.apply_cuts(table, instrument="jemx", jemx_unit=3)
    with pytest.raises(ValueError, match="instrument"):
        scw.apply_cuts(table, instrument="spi")


# -- sampling ------------------------------------------------------------------------------------------------------


def test_sample_sizes_determinism_and_order():
    table = hand_made_table()
    table = table[np.random.default_rng(1).permutation(len(table))]  # shuffled: the result must be time-ordered
    assert len(scw.sample(table, -1, seed=0)) == 61
    assert len(scw.sample(table, -0.2, seed=0)) == round(0.2 * 61)
    assert len(scw.sample(table, -0.001, seed=0)) == 1, "a fraction gives at least one ScW"
    assert len(scw.sample(table, 10, seed=0)) == 10
    assert len(scw.sample(table, 1000, seed=0)) == 61
    first = scw.sample(table, 10, seed=42)
    again = scw.sample(table, 10, seed=42)
    other = scw.sample(table, 10, seed=43)
    assert list(first["scw_id"]) == list(again["scw_id"])
    assert list(first["scw_id"]) != list(other["scw_id"])
    assert np.all(np.diff(first["tstart"]) >= 0)
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match="n_scw_image"):
            scw.sample(table, bad, seed=0)


def test_sample_is_counted_in_the_report():
    kept, report = scw.apply_cuts(hand_made_table(), revolution_extents={"0100": 40, "0128": 20})
    drawn = scw.sample(kept, 5, seed=0, report=report)
    step = report.steps[-1]
    assert step.name == "sample" and step.removed == len(kept) - 5 and step.remaining == 5
    assert report.final == 5 and report.good_exposure_s == pytest.approx(float(np.sum(drawn["good_time_s"])))
    assert set(step.scw_ids) == set(kept["scw_id"]) - set(drawn["scw_id"])
    assert drawn.meta["cut_report"]["final"] == 5


# -- report --------------------------------------------------------------------------------------------------------


def test_report_markdown_table_and_dict():
    kept, report = scw.apply_cuts(hand_made_table(), revolution_extents={"0100": 40, "0128": 20})
    text = report.to_markdown(list_removed=2)
    assert "**ScW selection (ISGRI)**: 61 ScWs listed, 23 kept" in text
    assert "| cut | removed | remaining | rule |" in text
    for line in (
        "| pointings only | 1 | 60 |",
        "| bad revolutions | 20 | 40 |",
        "| radiation belts | 15 | 25 |",
        "| good time | 2 | 23 |",
    ):
        assert line in text
    assert "- ... and 18 more" in text and "`012800010010.001`" in text
    summary = report.as_table()
    assert list(summary["cut"]) == ["query", "pointings only", "bad revolutions", "radiation belts", "good time"]
    assert list(summary["remaining"]) == [61, 60, 40, 25, 23]
    removed = report.removed_table()
    assert len(removed) == 38 and set(removed.colnames) == {"scw_id", "cut", "reason"}
    data = report.as_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    again = scw.CutReport.from_dict(data)
    assert again.as_dict() == data
    assert "scw_ids" not in report.as_dict(include_removed=False)["steps"][0]


# -- files ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["selection.ecsv", "selection.fits"])
def test_table_round_trip(server, tmp_path, name):
    parameters = workflow_parameters.validate(
        "scw_selection", {"T1": YEAR[0], "T2": YEAR[1], "RA": CRAB[0], "DEC": CRAB[1]}
    )
    kept, report = scw.select_scws(parameters, url=server.url)
    path = scw.write_scw_table(kept, tmp_path / "out" / name)
    back = scw.read_scw_table(path)
    assert back.colnames == kept.colnames
    for column in kept.colnames:
        if kept[column].dtype.kind == "f":
            assert np.allclose(back[column], kept[column], equal_nan=True, rtol=0, atol=0), column
        else:
            assert list(back[column]) == list(kept[column]), column
    assert back["tstart"].unit == kept["tstart"].unit
    assert back.meta["query"] == json.loads(json.dumps(kept.meta["query"]))
    assert back.meta["cut_report"] == report.as_dict()
    assert scw.CutReport.from_dict(back.meta["cut_report"]).final == len(kept)
    assert scw.scw_ids(back) == scw.scw_ids(kept)
    # A report given explicitly (after a sample) replaces the one in meta.
    drawn = scw.sample(kept, 3, seed=0, report=report)
    back = scw.read_scw_table(scw.write_scw_table(drawn, tmp_path / name, report=report))
    assert back.meta["cut_report"]["final"] == 3 and len(back) == 3
    with pytest.raises(ValueError, match="ecsv"):
        scw.write_scw_table(kept, tmp_path / "selection.txt")


def test_scw_ids_refuses_malformed_ids():
    with pytest.raises(ValueError, match="RRRRPPPPSSSF.VVV"):
        scw.scw_ids(Table({"scw_id": ["026700060010"]}))


# -- the service's answers -----------------------------------------------------------------------------------------


def _fake_response(status: int, body) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    response.url = "http://127.0.0.1/fake"
    return response


def test_fallback_to_the_minimal_columns(server, monkeypatch):
    """A service that knows only the real minimal columns answers 400 to the extra ones."""
    original = requests.Session.get
    asked = []

    def refuse_extra_columns(self, url, params=None, **kwargs):
        columns = (params or {}).get("return_columns", "")
        asked.append(columns)
        unknown = [c for c in columns.split(",") if c and c not in scw.MINIMAL_RETURN_COLUMNS]
        if unknown:
            return _fake_response(400, [{"problem in CONS": f"undefined column name {unknown[0]}"}])
        return original(self, url, params=params, **kwargs)

    monkeypatch.setattr(requests.Session, "get", refuse_extra_columns)
    table = scw.query_scws(ra=CRAB[0], dec=CRAB[1], radius=10.5, t1=YEAR[0], t2=YEAR[1], url=server.url)
    assert len(asked) == 2 and asked[1] == ",".join(scw.MINIMAL_RETURN_COLUMNS)
    assert table.meta["query"]["minimal_columns_fallback"]
    assert len(table) > 100 and all(s.endswith(".001") for s in table["scw_id"])
    assert np.all(np.isnan(table["good_isgri"])) and "obs_id" not in table.colnames
    kept, report = scw.apply_cuts(table, revolution_extents=None)
    assert np.allclose(kept["good_time_s"], kept["telapse"])
    assert any("TELAPSE" in note for note in report.notes)


def test_refusal_of_the_minimal_columns_is_an_error(monkeypatch):
    monkeypatch.setattr(
        requests.Session, "get", lambda self, url, params=None, **kw: _fake_response(400, {"bad request": "nope"})
    )
    with pytest.raises(scw.ScwQueryError, match="HTTP 400"):
        scw.query_scws(ra=1.0, dec=2.0, radius=3.0, t1=YEAR[0], t2=YEAR[1], url="http://127.0.0.1:9")


def test_wrapped_answer_and_retry_after_a_server_error(monkeypatch):
    """``return_index_version=yes`` wraps the columns; a 500 is retried."""
    body = {
        "scwlist": {
            "SWID": ["026700060010", "026700070010"],
            "RA_SCX": [83.6, 84.0],
            "DEC_SCX": [22.0, 22.5],
            "TSTART": [1820.1, 1820.2],
            "TSTOP": [1820.12, 1820.22],
            "TELAPSE": [1728.0, 1728.0],
            "IBISMODE": [41, 41],
        },
        "index_version": "1",
    }
    answers = [_fake_response(500, "down"), _fake_response(400, "unknown column"), _fake_response(200, body)]
    monkeypatch.setattr(requests.Session, "get", lambda self, url, params=None, **kw: answers.pop(0))
    monkeypatch.setattr(scw.time, "sleep", lambda seconds: None)
    table = scw.query_scws(
        ra=83.63, dec=22.01, radius=5, t1=1820.0, t2=1821.0, url="http://127.0.0.1:9", data_version="NRT"
    )
    assert list(table["scw_id"]) == ["026700060010.000", "026700070010.000"]
    assert list(table["revolution"]) == ["0267", "0267"] and list(table["pointing"]) == [6, 7]


def test_bad_arguments():
    with pytest.raises(ValueError, match="url is required"):
        scw.query_scws(ra=1.0, dec=2.0, radius=3.0, t1=YEAR[0], t2=YEAR[1])
    with pytest.raises(ValueError, match="later than"):
        scw.query_scws(ra=1.0, dec=2.0, radius=3.0, t1=YEAR[1], t2=YEAR[0], url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="radius"):
        scw.query_scws(ra=1.0, dec=2.0, radius=0.0, t1=YEAR[0], t2=YEAR[1], url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="source"):
        scw.query_scws(ra=1.0, dec=2.0, radius=3.0, t1=YEAR[0], t2=YEAR[1], source="isdc")
    with pytest.raises(ValueError, match="not a time"):
        scw.query_scws(ra=1.0, dec=2.0, radius=3.0, t1="yesterday", t2=YEAR[1], url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="consolidated"):
        scw.query_scws(ra=1.0, dec=2.0, radius=3.0, t1=YEAR[0], t2=YEAR[1], source="heasarc", data_version="NRT")


# -- HEASARC (mocked) ----------------------------------------------------------------------------------------------


def fake_intscw() -> Table:
    """A small ``intscw`` as HEASARC's TAP answers it: integer ids, integer versions, UTC MJD dates, lower case."""
    rows = []
    mjd = Time("2005-03-01T00:00:00", scale="utc").mjd
    for rev, last in ((300, 30), (301, 25)):
        for pointing in range(1, last + 1):
            near = 8 <= pointing <= 14  # only these point at the Crab; the rest of the revolution is far away
            ra, dec = (CRAB[0] + 0.5 * (pointing - 11), CRAB[1]) if near else (200.0, -30.0)
            rows.append(
                (
                    rev * 10**8 + pointing * 10**4 + 10,
                    1,
                    "pointing",
                    ra,
                    dec,
                    mjd,
                    mjd + 0.025,
                    1900.0,
                    0.0,
                    1800.0,
                    "03200010001",
                )
            )
            rows.append(
                (
                    rev * 10**8 + (pointing + 1) * 10**4 + 11,
                    1,
                    "slew",
                    ra,
                    dec,
                    mjd + 0.025,
                    mjd + 0.0265,
                    0.0,
                    0.0,
                    0.0,
                    "03200010001",
                )
            )
            mjd += 0.027
        mjd += 1.0
    # The same pointing in a second version: the highest is kept.
    rows.append(
        (
            300 * 10**8 + 9 * 10**4 + 10,
            2,
            "pointing",
            CRAB[0] - 1.0,
            CRAB[1],
            rows[16][5],
            rows[16][6],
            1950.0,
            0.0,
            1800.0,
            "03200010001",
        )
    )
    return Table(
        rows=rows,
        names=(
            "scw_id",
            "scw_ver",
            "scw_type",
            "ra",
            "dec",
            "start_date",
            "end_date",
            "good_isgri",
            "good_jemx1",
            "good_jemx2",
            "obs_id",
        ),
        dtype=("i8", "i4", "U12", "f8", "f8", "f8", "f8", "f8", "f8", "f8", "U11"),
    )


class FakeTap:
    """Answers the ADQL that scw.heasarc_adql writes, from :func:`fake_intscw`, honouring maxrec."""

    def __init__(self):
        self.catalogue = fake_intscw()
        self.queries: list[tuple[str, int]] = []

    def __call__(self, query, *, maxrec=None):
        self.queries.append((query, maxrec))
        match = re.fullmatch(r"SELECT (?P<columns>[\w,]+) FROM intscw WHERE (?P<where>.*)", query)
        assert match, query
        rows = self.catalogue
        cone = re.search(r"CIRCLE\('ICRS',([-\d.]+),([-\d.]+),([-\d.]+)\)\)=1", query)
        if cone:
            ra, dec, radius = map(float, cone.groups())
            sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(rows["ra"], rows["dec"], unit="deg")).deg
            rows = rows[sep < radius]
        lo, hi = map(float, re.search(r"end_date > ([\d.]+) AND start_date < ([\d.]+)", query).groups())
        rows = rows[(rows["end_date"] > lo) & (rows["start_date"] < hi)]
        return rows[match["columns"].split(",")][:maxrec]


@pytest.fixture
def fake_tap(monkeypatch):
    from astroquery.heasarc import Heasarc

    tap = FakeTap()
    monkeypatch.setattr(Heasarc, "query_tap", tap)
    return tap


def test_heasarc_adql_is_explicit():
    adql = scw.heasarc_adql(mjd_start=53000.0, mjd_stop=53100.5, ra=83.63, dec=22.01, radius=10.0)
    assert adql == (
        "SELECT scw_id,scw_ver,scw_type,ra,dec,start_date,end_date,good_isgri,good_jemx1,good_jemx2,"
        "obs_id FROM intscw WHERE CONTAINS(POINT('ICRS',ra,dec),CIRCLE('ICRS',83.630000,22.010000,"
        "10.000000))=1 AND end_date > 53000.00000000 AND start_date < 53100.50000000"
    )
    assert "CONTAINS" not in scw.heasarc_adql(mjd_start=53000.0, mjd_stop=53001.0, ra=1, dec=2, radius=180)


def test_heasarc_query_and_extents(fake_tap):
    table = scw.query_scws(
        ra=CRAB[0], dec=CRAB[1], radius=3.0, t1="2005-02-28T00:00:00", t2="2005-03-10T00:00:00", source="heasarc"
    )
    assert fake_tap.queries[0][1] == scw.HEASARC_MAX_ROWS
    assert table.meta["query"]["source"] == "heasarc"
    # Leading zeros restored, version from scw_ver, type from the last digit.
    assert all(SCW_ID.match(s) and s.startswith("030") for s in table["scw_id"])
    assert "030000090010.002" in table["scw_id"] and "030000090010.001" not in table["scw_id"]
    assert set(table["scw_type"]) == {"pointing", "slew"}
    assert np.all(table["offaxis_deg"] < 3.0)
    # UTC MJD → IJD (TT): 64.184 s apart in 2005.
    catalogue = fake_tap.catalogue
    first = catalogue[catalogue["scw_id"] == 30000080010][0]
    row = table[table["scw_id"] == "030000080010.001"][0]
    assert (row["tstart"] - (first["start_date"] - 51544)) * 86400 == pytest.approx(64.184, abs=1e-3)
    assert row["telapse"] == pytest.approx(0.025 * 86400)
    assert row["good_isgri"] == 1900.0 and row["obs_id"] == "03200010001" and row["ibismode"] == -1

    extents = scw.revolution_extents(table, source="heasarc")
    assert extents == {"0300": 30, "0301": 25}, "the whole revolution, not the cone (pointings 8-14)"
    kept, report = scw.apply_cuts(table, revolution_extents=extents, bad_revolutions=None)
    assert report.removed_by_cut["pointings only"] == int(np.sum(table["scw_type"] == "slew"))
    assert set(kept["pointing"]) <= set(range(6, 16))


def test_heasarc_truncated_answers_are_split(fake_tap):
    everything = scw.query_scws(
        ra=0.0, dec=0.0, radius=180.0, t1="2005-02-28T00:00:00", t2="2005-03-10T00:00:00", source="heasarc"
    )
    split = scw.query_scws(
        ra=0.0,
        dec=0.0,
        radius=180.0,
        t1="2005-02-28T00:00:00",
        t2="2005-03-10T00:00:00",
        source="heasarc",
        heasarc_max_rows=20,
    )
    assert len(everything) == 110  # 55 pointings + 55 slews; the two versions of one pointing count once
    assert list(split["scw_id"]) == list(everything["scw_id"])
    assert len(fake_tap.queries) > 3


def test_heasarc_failure_is_reported(monkeypatch):
    from astroquery.heasarc import Heasarc

    def offline(query, *, maxrec=None):
        raise ConnectionError("Failed to resolve 'heasarc.gsfc.nasa.gov'")

    monkeypatch.setattr(Heasarc, "query_tap", offline)
    with pytest.raises(scw.ScwQueryError, match="HEASARC TAP query failed"):
        scw.query_scws(ra=1.0, dec=2.0, radius=3.0, t1=YEAR[0], t2=YEAR[1], source="heasarc")


# -- the whole chain -----------------------------------------------------------------------------------------------


def test_select_scws_from_parameters(server):
    # The selection reads any mapping; names it lacks take their blocks' defaults (radius: the instrument's).
    parameters = {
        "T1": YEAR[0],
        "T2": YEAR[1],
        "RA": CRAB[0],
        "DEC": CRAB[1],
        "instrument": "jemx",
        "jemx_unit": 2,
        "bad_revolutions": ["0300"],
        "n_scw_image": -0.5,
        "random_seed": 3,
    }
    kept, report = scw.select_scws(parameters, url=server.url)
    assert kept.meta["query"]["radius"] == 3.5, "the JEM-X default radius"
    assert report.instrument == "jemx2"
    assert np.all(kept["good_jemx2"] > 1000) and np.all(kept["offaxis_deg"] < 3.5)
    step = next(s for s in report.steps if s.name == "bad revolutions")
    assert "0300" in step.rule and "0128" in step.rule
    drawn, drawn_report = scw.select_scws(parameters, url=server.url, draw_sample=True)
    assert len(drawn) == round(0.5 * len(kept)) and drawn_report.steps[-1].name == "sample"
    with pytest.raises(ValueError, match="resolve the coordinates"):
        scw.select_scws({**parameters, "RA": 0.0, "DEC": 0.0}, url=server.url)


def test_full_mission_crab(server):
    """The whole mission around the Crab: seconds, not the student's 20 minutes. Times are logged, not asserted."""
    parameters = workflow_parameters.validate(
        "scw_selection",
        {"T1": "2003-01-01T00:00:00", "T2": "2025-03-01T00:00:00", "RA": CRAB[0], "DEC": CRAB[1], "radius": 10.5},
    )
    started = time.perf_counter()
    kept, report = scw.select_scws(parameters, url=server.url)
    elapsed = time.perf_counter() - started
    message = (
        f"full-mission Crab (radius 10.5 deg): {report.initial} ScWs listed, removed per cut "
        f"{report.removed_by_cut}, {report.final} kept, {report.good_exposure_s / 1e6:.2f} Ms good ISGRI "
        f"time, in {elapsed:.2f} s (query {kept.meta['query']['elapsed_s']:.2f} s)"
    )
    log.info(message)
    print(message)
    assert report.initial > 5000 and 0 < report.final < report.initial
    assert report.initial - sum(report.removed_by_cut.values()) == report.final
    years = {int(Time(m, format="mjd").decimalyear) for m in kept["mjd_mid"]}
    assert len(years) >= 20


# -- plots ---------------------------------------------------------------------------------------------------------


def test_plots(server, tmp_path):
    parameters = workflow_parameters.validate(
        "scw_selection", {"T1": "2004-01-01T00:00:00", "T2": "2007-01-01T00:00:00", "RA": CRAB[0], "DEC": CRAB[1]}
    )
    kept, report = scw.select_scws(parameters, url=server.url)
    figure = scw.plot_scws_per_month(kept, cut=report.removed_rows, path=tmp_path / "per_month.png")
    assert len(figure.axes) == 1 and (tmp_path / "per_month.png").stat().st_size > 1000
    bars = figure.axes[0].patches
    assert sum(bar.get_height() for bar in bars) == pytest.approx(report.initial)
    figure = scw.plot_offaxis_vs_time(kept, path=tmp_path / "offaxis.png")
    assert figure.axes[0].get_ylabel().startswith("off-axis")
    figure = scw.plot_exposure_per_month(kept, path=tmp_path / "exposure.png")
    assert len(figure.axes) == 2  # bars and the cumulative axis
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    assert sum(heights) == pytest.approx(report.good_exposure_s / 1e3)
    figure = scw.plot_selection_summary(kept, report=report, path=tmp_path / "summary.png")
    assert len(figure.axes) == 4 and "kept" in figure.get_suptitle()
    assert (tmp_path / "summary.png").exists()
    # cut_rows gives the same removed ScWs as the report
    queried = scw.query_scws(
        ra=CRAB[0], dec=CRAB[1], radius=10.5, t1="2004-01-01T00:00:00", t2="2007-01-01T00:00:00", url=server.url
    )
    assert sorted(scw.cut_rows(queried, kept)["scw_id"]) == sorted(report.removed_rows["scw_id"])
    # empty tables do not break the plots
    scw.plot_selection_summary(kept[:0], cut=None)
