"""The simulated ScW archive: contract columns, real facts kept, invented parts flagged, queries."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from mmoda_local import archive as A
from mmoda_local.archive import ScwArchive

log = logging.getLogger(__name__)

CONTRACT = {
    "SWID": "U",
    "REVOL": np.int32,
    "TSTART": np.float64,
    "TSTOP": np.float64,
    "TELAPSE": np.float32,
    "RA_SCX": np.float64,
    "DEC_SCX": np.float64,
    "RA_SCZ": np.float64,
    "DEC_SCZ": np.float64,
    "POSANGLE": np.float32,
    "GOOD_ISGRI": np.float32,
    "GOOD_JEMX1": np.float32,
    "GOOD_JEMX2": np.float32,
    "IBISMODE": np.int16,
    "OBS_ID": "U",
    "IN_BELT": np.bool_,
    "FILLED": np.bool_,
}
ANCHORS = {39: "2003-02-07T05:16", 300: "2005-03-29T12:00", 2000: "2018-09-15T20:06", 2885: "2025-02-24T20:06"}


def col(archive, name):
    return np.asarray(archive.table[name])


def year_bounds(year):
    return A.parse_time_to_ijd(f"{year}-01-01T00:00:00"), A.parse_time_to_ijd(f"{year + 1}-01-01T00:00:00")


# -- contract --------------------------------------------------------------------------------------------
def test_contract_columns_and_types(scw_archive):
    table = scw_archive.table
    for name, kind in CONTRACT.items():
        assert name in table.colnames, name
        if kind == "U":
            assert table[name].dtype.kind == "U"
        else:
            assert table[name].dtype == np.dtype(kind), (name, table[name].dtype)
    assert table["SWID"].dtype.itemsize // 4 == 12 and table["OBS_ID"].dtype.itemsize // 4 == 11
    swid = col(scw_archive, "SWID")
    assert all(len(s) == 12 and s.isdigit() and s.endswith("0") for s in swid[::997])
    assert len(np.unique(swid)) == len(swid)
    assert np.all(np.char.str_len(col(scw_archive, "OBS_ID")) == 11)
    assert np.all(col(scw_archive, "REVOL") == swid.astype(np.int64) // 100_000_000)
    tstart, tstop = col(scw_archive, "TSTART"), col(scw_archive, "TSTOP")
    assert np.all(np.diff(tstart) > 0), "sorted by TSTART"
    assert np.all(tstart[1:] >= tstop[:-1] - 1e-9), "no overlapping pointings"
    np.testing.assert_allclose(col(scw_archive, "TELAPSE"), (tstop - tstart) * 86400, rtol=1e-6)
    assert np.all(col(scw_archive, "IBISMODE") == 41)
    for name in ("RA_SCX", "DEC_SCX", "RA_SCZ", "DEC_SCZ", "POSANGLE", "GOOD_ISGRI", "GOOD_JEMX1", "GOOD_JEMX2"):
        assert np.all(np.isfinite(col(scw_archive, name))), name
    assert np.all((col(scw_archive, "RA_SCX") >= 0) & (col(scw_archive, "RA_SCX") < 360))
    assert np.all(np.abs(col(scw_archive, "DEC_SCX")) <= 90)


def test_build_is_deterministic_offline_and_cached(tmp_path, no_network, scw_archive):
    for cached in (A.revolution_model, A.load_crab_scws, A.load_pointing_ids, A.load_observations):
        cached.cache_clear()  # rebuild from the shipped files, with the network refused
    started = time.perf_counter()
    first = A.build_table()
    build_s = time.perf_counter() - started
    second = A.build_table()
    log.info("archive build: %.2f s for %d pointings", build_s, len(first))
    print(f"\narchive build: {build_s:.2f} s for {len(first)} pointings")
    for name in A.COLUMNS:
        assert np.array_equal(np.asarray(first[name]), np.asarray(second[name])), name
        assert np.array_equal(np.asarray(first[name]), col(scw_archive, name)), name

    ScwArchive.load(cache_dir=tmp_path)  # builds and writes the cache
    path = ScwArchive.cache_path(tmp_path)
    assert path.exists() and A.GENERATOR_VERSION in path.name
    started = time.perf_counter()
    loaded = ScwArchive.load(cache_dir=tmp_path)
    load_s = time.perf_counter() - started
    print(f"archive load from cache: {load_s:.3f} s")
    assert load_s < 1.0
    for name in A.COLUMNS:
        assert np.array_equal(np.asarray(loaded.table[name]), np.asarray(first[name])), name


def test_damaged_cache_is_rebuilt(tmp_path, scw_archive, monkeypatch):
    path = ScwArchive.cache_path(tmp_path)
    path.write_bytes(b"not an npz file")
    monkeypatch.setattr(A, "build_table", lambda: scw_archive.table)
    archive = ScwArchive.load(cache_dir=tmp_path)
    assert len(archive) == len(scw_archive)
    assert ScwArchive.load(cache_dir=tmp_path).table["SWID"][0] == scw_archive.table["SWID"][0]


# -- revolutions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rev, when", sorted(ANCHORS.items()))
def test_revolution_anchors(scw_archive, rev, when):
    anchor = A.parse_time_to_ijd(when)
    start = scw_archive.revolution_start(rev)
    assert start <= anchor, "the revolution began by the anchor time"
    assert anchor - start < 1.0, f"rev {rev} starts {(anchor - start) * 24:.1f} h before its anchor"
    assert scw_archive.revolution_of(anchor) == rev


def test_revolution_periods(scw_archive):
    starts = scw_archive.revolutions.starts
    periods = np.diff(starts)
    early, late = periods[A.FIRST_REV : 1460], periods[1520 : A.LAST_REV + 1]
    assert abs(np.median(early) - 2.99) < 0.01 and abs(np.median(late) - 2.66) < 0.01
    assert np.all((periods[A.FIRST_REV :] > 2.5) & (periods[A.FIRST_REV :] < 3.1))
    change = A.ijd_to_utc_isot(scw_archive.revolution_start(1500))
    assert change.startswith("2015-01"), change
    assert A.ijd_to_utc_isot(scw_archive.time_range[1]) < "2025-02-28T23:59"
    revs = np.arange(A.FIRST_REV, A.LAST_REV + 1)
    mid = scw_archive.revolution_start(revs) + 1.0
    assert np.array_equal(scw_archive.revolution_of(mid), revs)
    assert scw_archive.revolution_of(scw_archive.revolution_start(1000)) == 1000
    assert scw_archive.revolution_of(0.0) == -1


def test_real_crab_scws_fall_inside_their_revolutions(scw_archive):
    crab = A.load_crab_scws()
    model = scw_archive.revolutions
    rev = crab.ids // 100_000_000
    assert np.all(crab.tstart >= model.starts[rev]) and np.all(crab.tstop <= model.starts[rev + 1])
    print(
        f"\nsmooth revolution model: worst real Crab ScW outside its revolution by "
        f"{model.worst_mismatch_s:.0f} s; {model.n_nudged} revolution starts nudged"
    )
    assert model.worst_mismatch_s < 3600.0
    assert model.n_nudged < 30


# -- real facts kept -------------------------------------------------------------------------------------
def test_every_real_crab_scw_is_present_exactly(scw_archive):
    crab = A.load_crab_scws()
    assert len(crab.ids) == 7748
    ids = [f"{i:012d}.001" for i in crab.ids]
    rows = scw_archive.index_of(ids)
    table = scw_archive.table
    assert np.all(col(scw_archive, "REAL_TIME")[rows]) and np.all(col(scw_archive, "REAL_ID")[rows])
    assert col(scw_archive, "REAL_TIME").sum() == len(crab.ids)
    np.testing.assert_array_equal(col(scw_archive, "TSTART")[rows], crab.tstart)
    np.testing.assert_array_equal(col(scw_archive, "TSTOP")[rows], crab.tstop)
    back = A.ijd_to_utc_mjd(col(scw_archive, "TSTART")[rows])
    assert np.max(np.abs(back - crab.start_mjd_utc)) * 86400 < 1e-3
    sep = (
        SkyCoord(table["RA_SCX"][rows], table["DEC_SCX"][rows], unit="deg")
        .separation(SkyCoord(A.CRAB_RA, A.CRAB_DEC, unit="deg"))
        .deg
    )
    assert sep.max() < 6.2
    assert not np.any(col(scw_archive, "FILLED")[rows])


def test_crab_cone_holds_only_real_crab_scws(scw_archive):
    lo, hi = scw_archive.time_range
    rows = scw_archive.select(lo, hi, ra=A.CRAB_RA, dec=A.CRAB_DEC, radius=4.0)
    assert len(rows) > 3000
    assert np.all(col(scw_archive, "REAL_TIME")[rows])


def test_real_pointing_ids_are_kept(scw_archive):
    real = A.load_pointing_ids()
    present = np.isin(real, col(scw_archive, "SWID").astype(np.int64))
    missing = (~present).sum()
    print(f"\nreal pointing ids kept: {present.sum()} of {len(real)} ({missing} without room in their revolution)")
    assert missing < 50
    assert scw_archive.table.meta["N_DROPPED"] < 300
    assert np.all(col(scw_archive, "REAL_ID")[scw_archive.index_of([f"{i:012d}" for i in real[present][::50]])])


def test_rows_and_exposure_per_year(scw_archive):
    summary = scw_archive.summary_per_year()
    print()
    summary.pprint(max_lines=-1, max_width=-1)
    total = col(scw_archive, "TELAPSE").sum() / 1e6
    print(
        f"total: {len(scw_archive)} pointings, {total:.0f} Ms elapsed, "
        f"{col(scw_archive, 'GOOD_ISGRI').sum() / 1e6:.0f} Ms ISGRI good time"
    )
    full = summary[(summary["YEAR"] >= 2003) & (summary["YEAR"] <= 2024)]
    assert len(full) == 22
    assert np.all((full["N_SCW"] > 7000) & (full["N_SCW"] < 11000))
    assert np.all((full["TELAPSE_MS"] > 15) & (full["TELAPSE_MS"] < 28)), "real INTEGRAL: ~25 Ms a year"
    assert 150_000 < len(scw_archive) < 230_000
    revs = col(scw_archive, "REVOL")
    assert revs.min() == A.FIRST_REV and revs.max() == A.LAST_REV
    assert len(np.unique(revs)) == A.LAST_REV - A.FIRST_REV + 1
    telapse = col(scw_archive, "TELAPSE")[~col(scw_archive, "REAL_TIME")]
    assert 1800 <= np.median(telapse) <= 2500
    assert np.percentile(telapse, 5) > 1200 and telapse.max() <= 3700


# -- invented parts flagged ----------------------------------------------------------------------------------
def test_radiation_belt_flags(scw_archive):
    revs = col(scw_archive, "REVOL")
    in_belt = col(scw_archive, "IN_BELT")
    first = np.r_[0, np.flatnonzero(np.diff(revs)) + 1]
    last = np.r_[first[1:], len(revs)]
    expected = np.zeros(len(revs), bool)
    for a, b in zip(first, last):
        expected[a : a + 3] = True
        expected[max(a, b - 4) : b] = True
    assert np.array_equal(in_belt, expected)
    telapse, good = col(scw_archive, "TELAPSE"), col(scw_archive, "GOOD_ISGRI")
    assert np.all(good[in_belt] <= 0.4 * telapse[in_belt] + 1e-3)
    ordinary = good[~in_belt] / telapse[~in_belt]
    zero = ordinary == 0
    assert 0.005 < zero.mean() < 0.015, "about 1 % anomalies"
    assert np.all((ordinary[~zero] >= 0.88 - 1e-6) & (ordinary[~zero] <= 0.99 + 1e-6))


def test_filled_covers_the_gaps_of_the_observation_list(scw_archive):
    tstart = col(scw_archive, "TSTART")
    filled, crab = col(scw_archive, "FILLED"), col(scw_archive, "REAL_TIME")
    gap = (tstart >= A.parse_time_to_ijd("2011-01-01")) & (tstart < A.parse_time_to_ijd("2013-01-01"))
    assert filled[gap].mean() > 0.9
    late = tstart >= A.parse_time_to_ijd("2022-03-01")
    assert np.all(filled[late & ~crab]) and late.sum() > 20_000
    listed = (tstart >= A.parse_time_to_ijd("2003-03-01")) & (tstart < A.parse_time_to_ijd("2010-12-01"))
    assert 0.2 < filled[listed].mean() < 0.8
    shift = col(scw_archive, "FILL_SHIFT_YR")
    assert np.all((shift != 0) == filled)
    print(
        f"\nFILLED: {filled.mean():.1%} of all pointings; 2011-2012: {filled[gap].mean():.1%}; "
        f"after 2022-03: {filled[late].mean():.1%}"
    )


def test_pointings_dither_around_their_observation(scw_archive):
    sep = A._angular_distance_deg(
        col(scw_archive, "RA_SCX"), col(scw_archive, "DEC_SCX"), col(scw_archive, "RA_OBS"), col(scw_archive, "DEC_OBS")
    )
    assert sep.max() < 6.2
    assert 0.05 < (sep < 1e-6).mean() < 0.5  # pattern centres and staring observations
    assert np.any(np.abs(sep - 2.17) < 0.01) and np.any(np.abs(sep - 2.0) < 0.01)


def test_attitude_follows_the_sun(scw_archive):
    rows = np.random.default_rng(1).choice(len(scw_archive), 5000, replace=False)
    table = scw_archive.table
    x, y, z = A.spacecraft_axes(table["RA_SCX"][rows], table["DEC_SCX"][rows], table["POSANGLE"][rows])
    z_table = A.radec_to_unit(table["RA_SCZ"][rows], table["DEC_SCZ"][rows])
    assert np.max(np.abs(np.sum(x * z_table, axis=1))) < 1e-9, "Z ⟂ X"
    assert np.max(np.linalg.norm(z - z_table, axis=1)) < 1e-6, "POSANGLE and Z agree"
    np.testing.assert_allclose(np.cross(x, y), z, atol=1e-6)
    t = 0.5 * (np.asarray(table["TSTART"][rows]) + np.asarray(table["TSTOP"][rows]))
    sun = A.sun_unit_vectors(t)
    assert np.max(np.abs(np.sum(sun * y, axis=1))) < 1e-5, "Sun in the X–Z plane"
    assert np.all(np.sum(sun * z_table, axis=1) > 0), "Sun on the +Z side"
    sun_angle = np.degrees(np.arccos(np.sum(sun * x, axis=1)))
    assert np.all((sun_angle > 40) & (sun_angle < 140))


def test_jemx_operating_history(scw_archive):
    tstart = col(scw_archive, "TSTART")
    j1, j2 = col(scw_archive, "GOOD_JEMX1") > 0, col(scw_archive, "GOOD_JEMX2") > 0
    early, middle, recent = tstart < 1796, (tstart >= 1796) & (tstart < 3653), tstart >= 3653
    assert not j1[early].any() and j2[early].mean() > 0.9
    assert not j2[middle].any() and j1[middle].mean() > 0.9
    assert j1[recent].mean() > 0.9 and j2[recent].mean() > 0.9


# -- queries --------------------------------------------------------------------------------------------------
def test_select_agrees_with_skycoord(scw_archive):
    rng = np.random.default_rng(7)
    table = scw_archive.table
    lo, hi = scw_archive.time_range
    tstart, tstop = col(scw_archive, "TSTART"), col(scw_archive, "TSTOP")
    for _ in range(25):
        t1 = rng.uniform(lo, hi - 200)
        t2 = t1 + rng.uniform(0.01, 200)
        ra, dec, radius = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1))), rng.uniform(1, 40)
        got = scw_archive.select(t1, t2, ra=ra, dec=dec, radius=radius)
        window = np.flatnonzero((tstart < t2) & (tstop > t1))
        sep = (
            SkyCoord(table["RA_SCX"][window], table["DEC_SCX"][window], unit="deg")
            .separation(SkyCoord(ra, dec, unit="deg"))
            .deg
        )
        expected = window[sep < radius]
        assert np.array_equal(got, expected)
        assert np.array_equal(scw_archive.select(t1, t2), window)
    # a field that is observed: the Galactic Centre in spring 2005
    t1, t2 = A.parse_time_to_ijd("2005-02-01"), A.parse_time_to_ijd("2005-05-01")
    assert len(scw_archive.select(t1, t2, ra=266.4, dec=-28.9, radius=10)) > 50


def test_select_filters(scw_archive):
    t1, t2 = A.parse_time_to_ijd("2016-01-01"), A.parse_time_to_ijd("2016-03-01")
    everything = scw_archive.select(t1, t2)
    belt = col(scw_archive, "IN_BELT")[everything]
    assert belt.any()
    assert np.array_equal(scw_archive.select(t1, t2, include_belt=False), everything[~belt])
    long = scw_archive.select(t1, t2, min_telapse=3000)
    assert np.all(col(scw_archive, "TELAPSE")[long] > 3000) and 0 < len(long) < len(everything)
    assert len(scw_archive.select(t1, t2, ibismode=41)) == len(everything)
    assert len(scw_archive.select(t1, t2, ibismode=42)) == 0
    assert len(scw_archive.select(t2, t1)) == 0
    assert np.array_equal(scw_archive.select(t1, t2, ra=10.0, dec=20.0), everything), "cone needs all three"


def test_index_of(scw_archive):
    swid = col(scw_archive, "SWID")
    picks = [5, 1000, 77, 150_000]
    ids = [swid[picks[0]], swid[picks[1]] + ".001", swid[picks[2]] + ".000", swid[picks[3]]]
    assert list(scw_archive.index_of(ids)) == picks
    assert list(scw_archive.index_of(swid[42])) == [42]
    with pytest.raises(KeyError, match="999999990010"):
        scw_archive.index_of([swid[0], "999999990010.001"])
    with pytest.raises(KeyError, match="not-an-id"):
        scw_archive.index_of(["not-an-id"])


def test_pointing_at(scw_archive):
    tstart, tstop = col(scw_archive, "TSTART"), col(scw_archive, "TSTOP")
    rows = np.array([0, 10, 5000, len(tstart) - 1])
    assert np.array_equal(scw_archive.pointing_at(0.5 * (tstart[rows] + tstop[rows])), rows)
    assert scw_archive.pointing_at(float(tstart[10])) == 10
    i = int(np.flatnonzero(tstart[1:] - tstop[:-1] > 60 / 86400)[0])
    gap_t = 0.5 * (tstop[i] + tstart[i + 1])
    assert scw_archive.pointing_at(gap_t) == -1
    assert scw_archive.nearest_pointing(gap_t) in (i, i + 1)
    assert scw_archive.nearest_pointing(tstop[i] + 1 / 86400) == i
    assert scw_archive.pointing_at(100.0) == -1 and scw_archive.pointing_at(20000.0) == -1


def test_time_parsing():
    assert A.parse_time_to_ijd(2000) == 2000.0
    assert A.parse_time_to_ijd("2000.5") == 2000.5
    assert A.parse_time_to_ijd("53544") == 2000.0
    assert A.parse_time_to_ijd("2005-06-22T23:58:55.816") == pytest.approx(2000.0, abs=1e-9)
    assert A.parse_time_to_ijd("2005-06-22 23:58:55.816") == pytest.approx(2000.0, abs=1e-9)
    assert A.ijd_to_utc_isot(2000.0) == "2005-06-22T23:58:55.816"
    assert list(A.ijd_to_utc_isot([2000.0, 2000.5])) == ["2005-06-22T23:58:55.816", "2005-06-23T11:58:55.816"]
    for bad in ("yesterday", "", "2005-13-45T00:00:00", "nan"):
        with pytest.raises(ValueError):
            A.parse_time_to_ijd(bad)
