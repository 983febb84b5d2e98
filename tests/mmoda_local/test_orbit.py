"""INTEGRAL's simulated orbit and the spacecraft state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmoda_local import archive as A
from mmoda_local import orbit as O


def test_geocentric_distance_range(scw_archive):
    lo, hi = scw_archive.time_range
    t = np.linspace(lo, hi, 300_001)
    r = np.linalg.norm(O.integral_position_gcrs(t), axis=1)
    print(f"\ngeocentric distance {r.min():.0f}–{r.max():.0f} km")
    assert 7_000 < r.min() < 16_000
    assert 150_000 < r.max() < 170_000
    early = t < A.parse_time_to_ijd("2004-01-01")
    assert abs(r[early].min() - (O.R_EARTH + 9_000)) < 500, "9,000 km perigee altitude early on"
    assert abs(r[early].max() - (O.R_EARTH + 153_000)) < 3_000, "153,000 km apogee altitude early on"


@pytest.mark.parametrize("rev", [39, 300, 1000, 1499, 1600, 2000, 2885])
def test_perigee_at_every_revolution_start(scw_archive, rev):
    start, end = scw_archive.revolution_start(rev), scw_archive.revolution_start(rev + 1)
    t = np.linspace(start, end, 200_001)
    r = np.linalg.norm(O.integral_position_gcrs(t), axis=1)
    assert r[0] < r[1] and r[-1] < r[-2], "perigee at both revolution starts"
    interior_minima = (r[1:-1] < r[:-2]) & (r[1:-1] < r[2:])
    assert not interior_minima.any(), "and nowhere else"
    assert r[0] == pytest.approx(O.R_EARTH + float(O.perigee_altitude_km(start)), rel=1e-6)
    assert r.max() == pytest.approx(np.linalg.norm(O.integral_position_gcrs(0.5 * (start + end))), rel=1e-3)
    assert r[-1] == pytest.approx(O.R_EARTH + float(O.perigee_altitude_km(end)), rel=1e-6)
    elements = O.orbital_elements(0.5 * (start + end))
    assert elements["period"][0] == pytest.approx((end - start) * 86400, rel=1e-9)
    # Kepler's third law ties the period to the semi-major axis
    assert 2 * np.pi * np.sqrt(elements["a"][0] ** 3 / O.MU_EARTH) == pytest.approx(elements["period"][0])


def test_orbit_elements_are_plausible(scw_archive):
    t = np.array([A.parse_time_to_ijd(d) for d in ("2003-06-01", "2011-10-25", "2018-01-01", "2024-06-01")])
    el = O.orbital_elements(t)
    assert np.all((el["e"] > 0.75) & (el["e"] < 0.92))
    assert np.allclose(np.degrees(el["inc"]), 52.2)
    assert el["a"][0] == pytest.approx(87_700, rel=0.01) and el["a"][2] == pytest.approx(81_050, rel=0.01)
    assert O.perigee_altitude_km(t[1]) == pytest.approx(2756.0)


def test_kepler_solver():
    rng = np.random.default_rng(3)
    m = rng.uniform(0, 2 * np.pi, 10_000)
    e = rng.uniform(0, 0.95, 10_000)
    ecc = O.solve_kepler(m, e)
    np.testing.assert_allclose(ecc - e * np.sin(ecc), m, atol=1e-10)


def test_barycentric_delay(no_network):
    t = np.linspace(1500, 9000, 2000)
    delay = O.barycentric_delay_s(t, 83.633, 22.0145)
    assert np.max(np.abs(delay)) < 510.0 and np.max(np.abs(delay)) > 480.0
    # a source at the ecliptic pole sees only the small out-of-ecliptic terms (SSB wobble, INTEGRAL)
    pole = O.barycentric_delay_s(t, 270.0, 66.56)
    assert np.max(np.abs(pole)) < 10.0
    # INTEGRAL's own contribution is at most its distance / c (~0.55 s)
    pos = O.integral_position_gcrs(t)
    geo = O.barycentric_delay_s(t, 83.633, 22.0145, position_km=np.zeros_like(pos))
    assert np.max(np.abs(delay - geo)) < 170_000 / O.C_KM_S


def test_spacecraft_state(scw_archive, no_network):
    row = 12_345
    table = scw_archive.table
    ijd = 0.5 * (float(table["TSTART"][row]) + float(table["TSTOP"][row]))
    state = O.spacecraft_state(scw_archive, ijd, ra=266.4, dec=-28.9)
    assert set(state) == {"ephs", "scx", "scy", "scz", "barytime", "roemer_delay_s", "ijd", "utc", "revolution"}
    assert set(state["ephs"]) == {"ra", "dec", "alt"}
    for axis in ("scx", "scy", "scz"):
        assert set(state[axis]) == {"ra", "dec"}
    json.dumps(state, allow_nan=False)
    assert state["scx"] == {"ra": float(table["RA_SCX"][row]), "dec": float(table["DEC_SCX"][row])}
    assert state["scz"]["ra"] == pytest.approx(float(table["RA_SCZ"][row]))
    assert state["revolution"] == int(table["REVOL"][row])
    assert state["utc"] == A.ijd_to_utc_isot(ijd)
    pos = O.integral_position_gcrs(ijd)[0]
    assert state["ephs"]["alt"] == pytest.approx(np.linalg.norm(pos))
    u = A.radec_to_unit(state["ephs"]["ra"], state["ephs"]["dec"])
    np.testing.assert_allclose(u * state["ephs"]["alt"], pos, rtol=1e-9, atol=1e-6)
    x = A.radec_to_unit(state["scx"]["ra"], state["scx"]["dec"])
    y = A.radec_to_unit(state["scy"]["ra"], state["scy"]["dec"])
    z = A.radec_to_unit(state["scz"]["ra"], state["scz"]["dec"])
    np.testing.assert_allclose([x @ y, y @ z, x @ z], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.cross(x, y), z, atol=1e-6)
    assert abs(state["roemer_delay_s"]) <= 510.0
    # as the real service's documented check: a source in INTEGRAL's own direction gives distance / c
    own = O.spacecraft_state(scw_archive, ijd, ra=state["ephs"]["ra"], dec=state["ephs"]["dec"])
    assert own["barytime"] == pytest.approx(state["ephs"]["alt"] / O.C_KM_S, rel=1e-6)
    for value in (state["barytime"], state["ephs"]["ra"], state["ijd"]):
        assert type(value) is float
    assert type(state["revolution"]) is int


def test_spacecraft_state_between_pointings_uses_the_nearest(scw_archive):
    tstart, tstop = np.asarray(scw_archive.table["TSTART"]), np.asarray(scw_archive.table["TSTOP"])
    i = int(np.flatnonzero(tstart[1:] - tstop[:-1] > 0.01)[100])
    state = O.spacecraft_state(scw_archive, tstop[i] + 1e-4)
    assert state["scx"]["ra"] == float(scw_archive.table["RA_SCX"][i])
    state = O.spacecraft_state(scw_archive, tstart[i + 1] - 1e-4)
    assert state["scx"]["ra"] == float(scw_archive.table["RA_SCX"][i + 1])
