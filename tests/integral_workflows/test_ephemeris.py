"""Ephemerides of moving targets: offline kernels against each other, Horizons requests, INTEGRAL's parallax."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from astropy.table import Table

from integral_workflows import ephemeris

#: 400 epochs spread over the mission, fixed (science notes §6 used the same span).
EPOCHS_IJD = np.sort(np.random.default_rng(6).uniform(1096.5, 9131.5, 400))  # 2003-01-01 .. 2025-01-01


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_de421_is_shipped_and_used_by_default():
    path = ephemeris.de421_path()
    assert path is not None and path.name == "de421.bsp" and path.stat().st_size > 15e6
    assert ephemeris.resolve_ephemeris("auto") == str(path)
    assert ephemeris.resolve_ephemeris("builtin") == "builtin"
    with pytest.raises(ValueError, match="horizons"):
        ephemeris.resolve_ephemeris("horizons")


def test_two_independent_ephemerides_agree_within_an_arcminute_over_the_mission(no_network):
    ra1, dec1, d1 = ephemeris.geocentric_positions("jupiter", EPOCHS_IJD, ephemeris="de421")
    ra2, dec2, d2 = ephemeris.geocentric_positions("jupiter", EPOCHS_IJD, ephemeris="builtin")
    separation = ephemeris.separation_deg(ra1, dec1, ra2, dec2) * 3600
    # DE421 (numerical integration) and ERFA's analytical series are independent; they differ by up to ~41".
    assert separation.max() < 60.0
    assert separation.max() > 1.0, "two different ephemerides, not one twice"
    assert np.all((d1 > 3.9 * 1.496e8) & (d1 < 6.5 * 1.496e8))
    np.testing.assert_allclose(d1, d2, rtol=1e-3)


def test_the_barycentric_mistake_is_about_ten_degrees(no_network):
    ra, dec, _ = ephemeris.geocentric_positions("jupiter", EPOCHS_IJD)
    bary_ra, bary_dec = ephemeris.barycentric_directions("jupiter", EPOCHS_IJD)
    separation = ephemeris.separation_deg(ra, dec, bary_ra, bary_dec)
    assert 6.0 < np.median(separation) < 10.5 and 10.0 < separation.max() < 12.5


def test_astrometric_positions_differ_from_apparent_ones_by_the_aberration_only():
    from astropy.coordinates import get_body, solar_system_ephemeris

    ra, dec, distance = ephemeris.geocentric_positions("jupiter", EPOCHS_IJD[:50], ephemeris="builtin")
    with solar_system_ephemeris.set("builtin"):
        apparent = get_body("jupiter", ephemeris.to_time(EPOCHS_IJD[:50]))
    separation = ephemeris.separation_deg(ra, dec, apparent.ra.deg, apparent.dec.deg) * 3600
    assert 5.0 < separation.max() < 21.5  # the annual aberration, v/c = 20.5"
    np.testing.assert_allclose(distance, apparent.distance.km, rtol=1e-5)


def test_positions_are_vectorised_over_thousands_of_times():
    times = np.linspace(1100.0, 9100.0, 5000)
    ra, dec, distance = ephemeris.geocentric_positions("saturn", times)
    assert ra.shape == dec.shape == distance.shape == (5000,)
    assert np.all(np.isfinite(ra))
    with pytest.raises(ValueError, match="solar-system body"):
        ephemeris.geocentric_positions("Crab", times[:2])


def test_the_horizons_request_is_geocentric_and_built_offline(no_network):
    request = ephemeris.horizons_request("Jupiter", EPOCHS_IJD[:3])
    payload = request.ephemerides(get_query_payload=True)
    assert payload["CENTER"] == "'500@399'", "the geocentre, not the barycentre @0"
    assert payload["COMMAND"] == '"599"'
    epochs = [float(line) for line in payload["TLIST"].split("\n")]
    utc_jd = ephemeris.to_time(EPOCHS_IJD[:3]).utc.jd
    np.testing.assert_allclose(epochs, utc_jd, atol=1e-8)
    with pytest.raises(ValueError, match="at most"):
        ephemeris.horizons_request("jupiter", np.linspace(2000, 3000, ephemeris.HORIZONS_MAX_EPOCHS + 1))


def test_horizons_positions_are_split_in_requests_and_read(monkeypatch):
    from astroquery.jplhorizons import HorizonsClass

    calls = []

    def fake_ephemerides(self, quantities=None, **kwargs):
        # Answer what Horizons would: astrometric RA/DEC and delta, from the DE421 kernel.
        jd = np.asarray(self.epochs, dtype=float)
        times = ephemeris.to_time(jd - 2400000.5 - 51544.0 + 0.0008)  # UTC JD -> IJD (TT ~ UTC + 69 s)
        ra, dec, distance = ephemeris.geocentric_positions("jupiter", times)
        calls.append(len(jd))
        return Table({"RA": ra, "DEC": dec, "delta": distance / 1.495978707e8})

    monkeypatch.setattr(HorizonsClass, "ephemerides", fake_ephemerides)
    times = np.linspace(3000.0, 3100.0, 450)
    track = ephemeris.body_track("jupiter", times, ephemeris="horizons")
    assert calls == [400, 50]
    truth_ra, truth_dec, _ = ephemeris.geocentric_positions("jupiter", times)
    assert ephemeris.separation_deg(track["ra"], track["dec"], truth_ra, truth_dec).max() * 3600 < 1.0
    assert "Horizons" in track.meta["ephemeris"]


def test_integral_positions_come_from_the_spacecraft_service_once_per_scw(server, tmp_path):
    from mmoda_local.orbit import integral_position_gcrs

    times = np.array([3000.1, 3000.6, 3001.2, 3001.2 + 0.1 / 86400])  # the last two share a second
    service = ephemeris.SpacecraftService(server.url, cache_dir=tmp_path, backend_id="simulation")
    positions = service.positions_km(times)
    truth = integral_position_gcrs(times)
    assert np.abs(positions - truth).max() < 20.0  # km: the service answers for whole seconds
    assert service.requests_sent == 3
    again = ephemeris.SpacecraftService(server.url, cache_dir=tmp_path, backend_id="simulation")
    np.testing.assert_allclose(again.positions_km(times), positions)
    assert again.requests_sent == 0, "answers are cached on disk"
    with pytest.raises(ephemeris.SpacecraftServiceError):
        ephemeris.SpacecraftService(server.url).positions_km([12000.0])  # after the mission


def test_the_parallax_correction_recovers_where_the_simulation_puts_jupiter(server):
    from mmoda_local.sky import Sky

    times = np.linspace(7000.0, 7300.0, 40)
    service = ephemeris.SpacecraftService(server.url)
    # the local MMODA places bodies with DE421, as the client does by default
    track = ephemeris.body_track("jupiter", times, ephemeris="de421", spacecraft=service)
    assert 5.0 < np.median(track["parallax_arcsec"]) and track["parallax_arcsec"].max() < 62.0
    sky_ra, sky_dec = Sky.default().body_position("jupiter", times, exact=True)
    corrected = ephemeris.separation_deg(track["ra"], track["dec"], sky_ra, sky_dec) * 3600
    geocentric = ephemeris.separation_deg(track["ra_geo"], track["dec_geo"], sky_ra, sky_dec) * 3600
    assert corrected.max() < 0.5, "same ephemeris, same orbit: the same position"
    assert geocentric.max() > 10 * corrected.max()
