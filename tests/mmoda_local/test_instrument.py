"""The instrument models: calibration on the Crab, ageing, responses, noise, geometry.

Also home of :func:`scw_table`, the synthetic ScW records the product tests use
(the columns of "The ScW record" in docs/architecture.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table

from mmoda_local.instrument import (
    CRAB_CATALOGUE_RATES,
    REFERENCE_IJD,
    instrument_for,
    noise_rng,
    power_law_bin_flux,
    problem_with_scw,
    sky_to_plane,
    tangent_basis,
    year_to_ijd,
)

CRAB_RA, CRAB_DEC = 83.63321, 22.014471


def scw_table(
    count: int = 1,
    *,
    ra: float = CRAB_RA,
    dec: float = CRAB_DEC,
    ijd: float = 1500.0,
    step_days: float = 0.03,
    good_time: float = 2000.0,
    posangle=0.0,
    dither_deg: float = 0.0,
    first_pointing: int = 1,
    revolution: int | None = None,
    seed: int = 1,
) -> Table:
    """Synthetic ScW records.

    Parameters
    ----------
    count : int
        Number of pointings, ``step_days`` apart from ``ijd``.
    ra, dec : float
        Pointing (deg), dithered by ``dither_deg`` (Gaussian) when non-zero.
    good_time : float
        Good time of every instrument (s); elapsed time is 10 % longer.
    posangle : float or None
        Position angle (deg); None draws it at random.
    """
    rng = np.random.default_rng(seed)
    revolution = int(ijd / 3) + 100 if revolution is None else revolution
    records = []
    for k in range(count):
        tstart = ijd + k * step_days
        telapse = good_time * 1.1
        offset_ra, offset_dec = dither_deg * rng.normal(size=2)
        records.append(
            {
                "SWID": f"{revolution:04d}{first_pointing + k:04d}0010",
                "REVOL": np.int32(revolution),
                "TSTART": tstart,
                "TSTOP": tstart + telapse / 86400.0,
                "TELAPSE": np.float32(telapse),
                "RA_SCX": (ra + offset_ra / max(math.cos(math.radians(dec)), 0.05)) % 360.0,
                "DEC_SCX": float(np.clip(dec + offset_dec, -89.0, 89.0)),
                "RA_SCZ": 0.0,
                "DEC_SCZ": 0.0,
                "POSANGLE": np.float32(rng.uniform(0, 360) if posangle is None else posangle),
                "GOOD_ISGRI": np.float32(good_time),
                "GOOD_JEMX1": np.float32(good_time),
                "GOOD_JEMX2": np.float32(good_time),
                "IBISMODE": np.int16(41),
                "OBS_ID": "03200010001",
                "IN_BELT": False,
                "FILLED": False,
            }
        )
    return Table(rows=records)


@pytest.fixture(scope="module")
def isgri():
    return instrument_for("isgri")


def test_instrument_names_and_extensions():
    isgri = instrument_for("isgri")
    assert (isgri.instrume, isgri.detnam) == ("IBIS", "ISGRI")
    assert (isgri.image_extname, isgri.lc_extname, isgri.spectrum_extname) == (
        "ISGR-MOSA-IMA",
        "ISGR-SRC.-LCR",
        "ISGR-EVTS-SPE",
    )
    assert isgri.intensity_imatype == "INTENSITY"
    for unit in (1, 2):
        jemx = instrument_for("jemx", jemx_unit=unit)
        assert jemx is instrument_for(f"jemx{unit}")
        assert jemx.instrume == f"JMX{unit}"
        assert (jemx.image_extname, jemx.lc_extname, jemx.spectrum_extname) == (
            f"JMX{unit}-MOSA-IMA",
            f"JMX{unit}-SRC.-LCR",
            f"JMX{unit}-PHA1-SPE",
        )
        assert jemx.intensity_imatype == "RECONSTRUCTED"
    assert instrument_for("jemx").key == "jemx2"
    with pytest.raises(ValueError):
        instrument_for("spi")
    with pytest.raises(ValueError):
        instrument_for("jemx", jemx_unit=3)


def test_crab_gives_the_catalogue_rates_at_the_reference_epoch(isgri):
    assert isgri.crab_band_rate(20, 60) == pytest.approx(CRAB_CATALOGUE_RATES["ISGR_FLUX_1"], rel=1e-6)
    assert isgri.crab_band_rate(60, 200) == pytest.approx(CRAB_CATALOGUE_RATES["ISGR_FLUX_2"], rel=1e-6)
    for unit in ("jemx1", "jemx2"):
        jemx = instrument_for(unit)
        assert jemx.crab_band_rate(3, 10) == pytest.approx(CRAB_CATALOGUE_RATES["JEMX_FLUX_1"], rel=1e-6)
        assert jemx.crab_band_rate(10, 30) == pytest.approx(CRAB_CATALOGUE_RATES["JEMX_FLUX_2"], rel=1e-6)


@pytest.mark.parametrize(
    "year, band, low, high",
    [
        # science notes §3 (real MMODA OSA11.2 single-ScW Crab rates), with a few per cent of slack
        (2003.5, (30, 60), 108, 116),
        (2010.5, (30, 60), 112, 120),
        (2017.5, (30, 60), 118, 125),
        (2022.5, (30, 60), 90, 100),
        (2025.0, (30, 60), 96, 104),
        (2003.5, (60, 100), 39, 42.5),
        (2014.5, (60, 100), 40.5, 43.5),
        (2022.5, (60, 100), 30, 33.5),
        (2025.0, (60, 100), 30, 33.5),
        (2003.5, (15, 30), 155, 168),
        (2016.0, (15, 30), 170, 182),
        (2023.0, (15, 30), 125, 150),
    ],
)
def test_crab_rates_follow_the_mission(isgri, year, band, low, high):
    assert low <= isgri.crab_band_rate(*band, float(year_to_ijd(year))) <= high


def test_ageing_shapes(isgri):
    def rate(year, band):
        return isgri.crab_band_rate(*band, float(year_to_ijd(year)))

    # 30-60 keV rises slowly to 2017, then drops by 15-25 % after 2019.
    assert rate(2017.5, (30, 60)) > rate(2003.5, (30, 60))
    assert 0.75 < rate(2022.5, (30, 60)) / rate(2017.5, (30, 60)) < 0.85
    # The low threshold rises after 2016: 15-30 keV falls more than 30-60 keV.
    assert isgri.threshold_keV(year_to_ijd(2023)) > isgri.threshold_keV(year_to_ijd(2015)) + 0.5
    assert rate(2023, (15, 30)) / rate(2016, (15, 30)) < rate(2023, (30, 60)) / rate(2016, (30, 60))


def test_sensitivity_calibration(isgri):
    # The Crab on axis at 128 sigma per 2 ks in 30-60 keV (1 sigma = 7.8 mCrab), about 7 mCrab empty field.
    assert isgri.sigma_2ks_mcrab(30, 60, with_crab=True) == pytest.approx(1000 / 128, rel=1e-9)
    assert 6.5 < isgri.sigma_2ks_mcrab(30, 60) < 8.0
    sigma_rate = isgri.sigma_2ks_mcrab(30, 60) / 1000 * isgri.crab_band_rate(30, 60)
    assert 0.7 < sigma_rate < 0.96
    jemx = instrument_for("jemx2")
    assert jemx.sigma_2ks_mcrab(3, 10, with_crab=True) == pytest.approx(10.0, rel=1e-9)
    assert 6 < jemx.sigma_2ks_mcrab(3, 10) < 10


def test_isgri_effective_area_shape(isgri):
    energy = isgri.true_centres_keV
    arf = isgri.arf(REFERENCE_IJD)

    def area(e):
        return float(np.interp(e, energy, arf))

    assert 900 < area(40) < 1050
    assert all(abs(area(e) / area(40) - 1) < 0.12 for e in (25, 60, 100))
    assert area(13) < 0.05 * area(40)
    assert area(300) < 0.3 * area(60)
    assert area(150) < area(100) < area(60) * 1.01


def test_jemx_effective_area_peaks_between_5_and_15_keV():
    jemx = instrument_for("jemx1")
    arf = jemx.arf(0.0)
    peak_energy = jemx.true_centres_keV[np.argmax(arf)]
    assert 5 <= peak_energy <= 15
    assert arf[0] < 0.3 * arf.max()


def test_resolution_and_redistribution(isgri):
    assert isgri.resolution_fwhm_keV(60.0) == pytest.approx(4.8)
    assert isgri.resolution_fwhm_keV(240.0) == pytest.approx(9.6)
    jemx = instrument_for("jemx2")
    assert jemx.resolution_fwhm_keV(10.0) / 10.0 == pytest.approx(0.4 * math.sqrt(0.1 + 1 / 60))
    for instrument in (isgri, jemx):
        sums = instrument.rmf.sum(axis=1)
        assert np.all(sums <= 1 + 1e-9)
        middle = (instrument.true_centres_keV > 2 * instrument.channel_edges_keV[0]) & (
            instrument.true_centres_keV < 0.7 * instrument.channel_edges_keV[-1]
        )
        assert np.allclose(sums[middle], 1.0, atol=1e-4)
    assert (isgri.n_channels, jemx.n_channels) == (256, 16)
    assert isgri.channel_edges_keV[0] == pytest.approx(13) and isgri.channel_edges_keV[-1] == pytest.approx(1000)
    assert jemx.channel_edges_keV[0] == pytest.approx(3) and jemx.channel_edges_keV[-1] == pytest.approx(35)


def test_band_rates_are_channel_sums_through_the_rmf(isgri):
    flux = power_law_bin_flux(isgri.true_edges_keV, 1.7, 1e-3)
    ijd = float(year_to_ijd(2019))
    channels = isgri.fold(flux, ijd)
    lo, hi = isgri.channel_edges_keV[:-1], isgri.channel_edges_keV[1:]
    # 31.7 and 57.3 keV cut channels: the edge channels count pro rata.
    e1, e2 = 31.7, 57.3
    fraction = np.clip((np.minimum(hi, e2) - np.maximum(lo, e1)) / (hi - lo), 0, 1)
    assert isgri.band_rate(flux, e1, e2, ijd) == pytest.approx(float(channels @ fraction), rel=1e-12)
    assert isgri.band_rate(flux, 13, 1000, ijd) == pytest.approx(channels.sum(), rel=1e-12)


def test_field_responses():
    isgri = instrument_for("isgri")
    assert isgri.field_response(0.0, 0.0) == 1.0
    assert isgri.field_response(4.5, -4.5) == 1.0
    assert isgri.field_response(9.5, 0.0) == pytest.approx(0.5)
    assert isgri.field_response(9.5, 9.5) == pytest.approx(0.25)
    assert isgri.field_response(14.5, 0.0) == 0.0
    assert isgri.field_response(0.0, 20.0) == 0.0
    jemx = instrument_for("jemx1")
    assert jemx.field_response(0.0, 0.0) == 1.0
    assert jemx.field_response(3.3, 0.0) == pytest.approx(0.5)
    assert jemx.field_response(0.0, -6.6) == 0.0
    # The ISGRI field is a square in the instrument frame: rotating by 45 degrees turns a side into a corner.
    pointing_0 = (CRAB_RA, CRAB_DEC, 0.0)
    pointing_45 = (CRAB_RA, CRAB_DEC, 45.0)
    north_12 = (CRAB_RA, CRAB_DEC + 12.0)
    assert isgri.sky_position_response(pointing_0, *north_12) == pytest.approx(0.25, abs=0.02)
    assert isgri.sky_position_response(pointing_45, *north_12) == pytest.approx(
        isgri.field_response(12 / math.sqrt(2) * 1.003, 12 / math.sqrt(2) * 1.003), abs=0.03
    )


def test_problem_with_scw():
    isgri, jemx = instrument_for("isgri"), instrument_for("jemx1")
    table = scw_table(3)
    assert problem_with_scw(table[0], isgri) is None
    table["IN_BELT"][1] = True
    assert problem_with_scw(table[1], isgri) == "radiation belt"
    table["GOOD_JEMX1"][2] = 0.0
    assert problem_with_scw(table[2], isgri) is None
    assert "no good time" in problem_with_scw(table[2], jemx)
    table["GOOD_ISGRI"][2] = 0.5
    assert "no good time" in problem_with_scw(table[2], isgri)


def test_noise_generators_are_deterministic_and_distinct():
    def draws(*args):
        return noise_rng(*args).standard_normal(4)

    base = (7, "004300100010", "isgri", "30-60", "lc", "Crab")
    assert np.array_equal(draws(*base), draws(*base))
    assert np.array_equal(draws(*base), draws(7, "004300100010.001", "isgri", "30-60", "lc", " crab "))
    for changed in [
        (8,) + base[1:],
        base[:1] + ("004300110010",) + base[2:],
        base[:2] + ("jemx2",) + base[3:],
        base[:3] + ("20-40",) + base[4:],
        base[:4] + ("image",) + base[5:],
        base[:5] + ("Cyg X-1",),
    ]:
        assert not np.array_equal(draws(*base), draws(*changed))


def test_gnomonic_projection_matches_astropy():
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [266.4, -28.9]
    wcs.wcs.crpix = [1.0, 1.0]
    wcs.wcs.cdelt = [1.0, 1.0]
    ra = np.array([266.4, 270.0, 260.0, 280.0])
    dec = np.array([-28.9, -20.0, -35.0, -30.0])
    x, y = wcs.wcs_world2pix(ra, dec, 0)
    xi, eta, _ = sky_to_plane(tangent_basis(266.4, -28.9), ra, dec)
    # astropy's intermediate x increases eastward when CDELT1 > 0, as ξ does.
    assert np.allclose(xi, x, atol=1e-9) and np.allclose(eta, y, atol=1e-9)
