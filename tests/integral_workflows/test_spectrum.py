"""Spectra: products in, OGIP files out, and the power-law science tested like science.

The synthetic instrument has an ISGRI-like response: a smooth effective area
and a redistribution that is a diagonal part plus a Gaussian of the ISGRI
resolution. Spectra are a Γ = 2.1 power law (Crab-like normalisation) with
background-dominated Gaussian noise whose σ comes from the *expected* counts,
so that inverse-variance weighting is unbiased.
"""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from astropy.io import fits
from oda_api.api import DataCollection
from oda_api.data_products import NumpyDataProduct, NumpyDataUnit
from scipy import stats

from integral_workflows import spectrum as sp

GAMMA_TRUE = 2.1
NORM_TRUE = 6.2e-4  # ph/cm²/s/keV at 100 keV
PIVOT = 100.0
EXPOSURE = 20_000.0
SIMULATION_MARK = {"ORIGIN": "mmoda_local (SIMULATED DATA)", "CREATOR": "mmoda_local test", "SIMULATD": True}


# -- synthetic instrument ---------------------------------------------------------------------------------
def make_response(
    *, first_channel: int = 0, arf_scale: float = 1.0, redistribution: tuple[float, float] = (0.7, 0.2)
) -> sp.Response:
    """The synthetic ISGRI-like response, 15–600 keV; ``redistribution`` weighs its Gaussian and diagonal parts."""
    true_edges = np.geomspace(15.0, 600.0, 301)
    channel_edges = np.geomspace(15.0, 600.0, 129)
    energ_lo, energ_hi = true_edges[:-1], true_edges[1:]
    centre = np.sqrt(energ_lo * energ_hi)
    sigma = 0.08 * 60.0 * np.sqrt(centre / 60.0) / 2.3548
    gaussian = stats.norm.cdf(channel_edges[None, 1:], centre[:, None], sigma[:, None]) - stats.norm.cdf(
        channel_edges[None, :-1], centre[:, None], sigma[:, None]
    )
    diagonal = np.zeros_like(gaussian)
    index = np.clip(np.searchsorted(channel_edges, centre) - 1, 0, len(channel_edges) - 2)
    diagonal[np.arange(len(centre)), index] = 1.0
    matrix = redistribution[0] * gaussian + redistribution[1] * diagonal
    area = arf_scale * 900.0 * np.exp(-centre / 400.0) * (1.0 - np.exp(-((centre / 22.0) ** 3)))
    channels = np.arange(first_channel, first_channel + len(channel_edges) - 1)
    return sp.Response(
        energ_lo=energ_lo,
        energ_hi=energ_hi,
        specresp=area,
        matrix=matrix,
        channel=channels,
        e_min=channel_edges[:-1],
        e_max=channel_edges[1:],
        instrument="ISGRI",
        meta=dict(SIMULATION_MARK),
    )


RESPONSE = make_response()


def expected_rate(response: sp.Response, gamma=GAMMA_TRUE, norm=NORM_TRUE) -> np.ndarray:
    return sp.fold_power_law(response, gamma, norm, pivot_keV=PIVOT)


def background_rate(response: sp.Response) -> np.ndarray:
    """The coded-mask noise: every source's variance carries the whole detector's background (~1000 ct/s)."""
    width = response.e_max - response.e_min
    return 10.0 * width * (response.e_min / 30.0) ** -1.0


def model_sigma(response: sp.Response, exposure: float) -> np.ndarray:
    return np.sqrt((expected_rate(response) + background_rate(response)) / exposure)


def make_spectrum(
    seed: int, *, exposure: float = EXPOSURE, response: sp.Response = RESPONSE, source: str = "Crab"
) -> sp.Spectrum:
    rng = np.random.default_rng(seed)
    sigma = model_sigma(response, exposure)
    rate = expected_rate(response) + sigma * rng.standard_normal(response.n_channels)
    return sp.Spectrum(
        source=source,
        channel=response.channel,
        rate=rate,
        stat_err=sigma,
        sys_err=0.0,
        quality=0,
        grouping=1,
        exposure=exposure,
        instrument="ISGRI",
        e_min=response.e_min,
        e_max=response.e_max,
        meta=dict(SIMULATION_MARK),
    )


# -- products as the dispatcher sends them -----------------------------------------------------------------
def osa_like_hdus(spectrum: sp.Spectrum, response: sp.Response):
    """Spectrum, ARF and RMF HDU lists shaped like OSA's (RMF as fixed-length rows, no TLMIN on F_CHAN)."""
    primary = fits.PrimaryHDU()
    spe = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "I", array=spectrum.channel),
            fits.Column("RATE", "E", array=spectrum.rate),
            fits.Column("SYS_ERR", "E", array=spectrum.sys_err),
            fits.Column("STAT_ERR", "E", array=spectrum.stat_err),
            fits.Column("QUALITY", "I", array=spectrum.quality),
            fits.Column("GROUPING", "I", array=spectrum.grouping),
        ],
        name="ISGR-EVTS-SPE",
    )
    spe.header.update(
        {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "SPECTRUM",
            "HDUCLAS3": "RATE",
            "ANCRFILE": "NONE",
            "RESPFILE": "NONE",
            "EXPOSURE": spectrum.exposure,
            "NAME": spectrum.source,
            "DETCHANS": spectrum.n_channels,
            "TELESCOP": "INTEGRAL",
            "INSTRUME": "IBIS",
            "DETNAM": "ISGRI",
            "TSTART": 1000.0,
            "TSTOP": 1001.0,
        }
    )
    arf = fits.BinTableHDU.from_columns(
        [
            fits.Column("ENERG_LO", "E", array=response.energ_lo),
            fits.Column("ENERG_HI", "E", array=response.energ_hi),
            fits.Column("SPECRESP", "E", array=response.specresp),
        ],
        name="SPECRESP",
    )
    n_channels = response.n_channels
    matrix = fits.BinTableHDU.from_columns(
        [
            fits.Column("ENERG_LO", "E", array=response.energ_lo),
            fits.Column("ENERG_HI", "E", array=response.energ_hi),
            fits.Column("N_GRP", "I", array=np.ones(len(response.energ_lo))),
            fits.Column("F_CHAN", "J", array=np.full(len(response.energ_lo), response.channel[0])),
            fits.Column("N_CHAN", "J", array=np.full(len(response.energ_lo), n_channels)),
            fits.Column("MATRIX", f"{n_channels}E", array=response.matrix),
        ],
        name="SPECRESP MATRIX",
    )
    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "I", array=response.channel),
            fits.Column("E_MIN", "E", array=response.e_min),
            fits.Column("E_MAX", "E", array=response.e_max),
        ],
        name="EBOUNDS",
    )
    grouping = fits.BinTableHDU.from_columns(
        [fits.Column("MEMBER_NAME", "32A", array=["SPECRESP MATRIX"])], name="GROUPING"
    )
    hdu_lists = ([primary.copy(), spe], [primary.copy(), arf], [primary.copy(), grouping, matrix, ebounds])
    for hdus in hdu_lists:
        for hdu in hdus:
            hdu.header.update(SIMULATION_MARK)
            hdu.header.setdefault("TELESCOP", "INTEGRAL")
            hdu.header.setdefault("INSTRUME", "IBIS")
    return hdu_lists


def wire_products(spectrum: sp.Spectrum, response: sp.Response, source: str, instrument: str = "isgri"):
    """The three NumpyDataProducts of one source, after an encode/decode round trip like the HTTP answer."""
    products = []
    for hdus, role in zip(osa_like_hdus(spectrum, response), ("spectrum", "arf", "rmf")):
        units = [NumpyDataUnit.from_fits_hdu(hdu) for hdu in hdus]
        product = NumpyDataProduct(units, name="", meta_data={"src_name": source, "product": f"{instrument}_{role}"})
        products.append(NumpyDataProduct.decode(product.encode()))
    return products


# -- tests -----------------------------------------------------------------------------------------------------
def test_products_selected_by_meta_data_not_position():
    crab = make_spectrum(1)
    background = make_spectrum(2, source="Background")
    crab_products = wire_products(crab, RESPONSE, "Crab")
    other_products = wire_products(background, RESPONSE, "Background")
    # The RMF first and another source's products in between: only meta_data can tell them apart.
    collection = DataCollection(
        [crab_products[2], *other_products, crab_products[0], crab_products[1]],
        instrument="isgri",
        product="isgri_spectrum",
    )
    spectrum, response = sp.from_data_collection(collection, "Crab")
    assert spectrum.source == "Crab"
    assert spectrum.instrument == "ISGRI"
    assert spectrum.extname == "ISGR-EVTS-SPE"
    np.testing.assert_allclose(spectrum.rate, crab.rate, rtol=1e-6)
    np.testing.assert_allclose(spectrum.stat_err, crab.stat_err, rtol=1e-6)
    assert spectrum.exposure == EXPOSURE
    np.testing.assert_allclose(response.matrix, RESPONSE.matrix, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(response.specresp, RESPONSE.specresp, rtol=1e-6)
    np.testing.assert_array_equal(response.channel, RESPONSE.channel)
    np.testing.assert_allclose(spectrum.e_min, RESPONSE.e_min, rtol=1e-6)
    assert spectrum.simulated and response.simulated
    assert spectrum.meta["ORIGIN"] == SIMULATION_MARK["ORIGIN"]
    assert spectrum.meta["CREATOR"] == SIMULATION_MARK["CREATOR"]
    with pytest.raises(ValueError, match="no spectrum"):
        sp.from_data_collection(collection, "Cyg X-1")


def test_source_name_matching_tolerates_blanks_and_case():
    products = wire_products(make_spectrum(3, source="GX 339-4"), RESPONSE, "GX 339-4")
    spectrum, _ = sp.from_data_collection(DataCollection(products), "gx339-4")
    assert spectrum.source == "GX 339-4"


def test_fit_recovers_gamma_and_norm_within_errors():
    spectrum = make_spectrum(11)
    fit = sp.fit_power_law(spectrum, RESPONSE, energy_range=(20.0, 300.0))
    assert fit.success
    assert fit.pivot_keV == PIVOT
    assert abs(fit.gamma - GAMMA_TRUE) < 3 * fit.gamma_error
    assert abs(fit.norm - NORM_TRUE) < 3 * fit.norm_error
    assert 0.001 < fit.gamma_error < 0.02
    assert 0.001 < fit.p_value
    assert fit.dof == fit.n_groups - 2
    assert fit.model_rate.shape == (RESPONSE.n_channels,)


def test_fit_starts_far_from_the_truth():
    fit = sp.fit_power_law(make_spectrum(12), RESPONSE, initial=(3.0, 1e-1))
    assert abs(fit.gamma - GAMMA_TRUE) < 3 * fit.gamma_error


def test_fit_pulls_are_standard_normal_over_seeds():
    pulls_gamma, pulls_norm = [], []
    for seed in range(100, 120):
        fit = sp.fit_power_law(make_spectrum(seed), RESPONSE, energy_range=(20.0, 300.0))
        pulls_gamma.append((fit.gamma - GAMMA_TRUE) / fit.gamma_error)
        pulls_norm.append((fit.norm - NORM_TRUE) / fit.norm_error)
    for pulls in (np.array(pulls_gamma), np.array(pulls_norm)):
        # 20 draws: the mean of N(0,1) pulls has σ = 0.22, their std has σ ≈ 0.16.
        assert abs(pulls.mean()) < 0.7, pulls
        assert 0.6 < pulls.std(ddof=1) < 1.5, pulls


def test_chi2_of_the_true_model_follows_its_distribution():
    p_values = [sp.fit_power_law(make_spectrum(seed), RESPONSE).p_value for seed in range(200, 220)]
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def test_profile_interval_matches_covariance_error():
    fit = sp.fit_power_law(make_spectrum(13), RESPONSE, profile=True)
    low, high = fit.gamma_interval
    assert low < fit.gamma < high
    assert (high - low) / 2 == pytest.approx(fit.gamma_error, rel=0.1)


def test_crab_band_flux_matches_the_analytic_formula_and_table():
    gamma, norm, e1, e2 = 2.13, 6.2e-4, 20.0, 80.0
    flux = sp.power_law_energy_flux(e1, e2, gamma, norm, pivot_keV=100.0)
    analytic = norm * 100.0**gamma * (e2 ** (2 - gamma) - e1 ** (2 - gamma)) / (2 - gamma) * 1.602176634e-9
    assert flux == pytest.approx(analytic, rel=1e-12)
    assert flux == pytest.approx(1.55e-8, rel=0.01)  # science notes §4
    photons = float(sp.power_law_bin_flux(e1, e2, gamma, norm, pivot_keV=100.0))
    assert photons == pytest.approx(0.268, rel=0.01)
    # Γ = 2 exactly: the energy integral is a logarithm.
    assert sp.power_law_energy_flux(20, 80, 2.0, 1.0, pivot_keV=1.0) == pytest.approx(np.log(4) * 1.602176634e-9)


def test_band_flux_error_matches_monte_carlo_draws():
    fit = sp.fit_power_law(make_spectrum(14), RESPONSE)
    flux, error = fit.band_flux(20.0, 80.0)
    true_flux = sp.power_law_energy_flux(20.0, 80.0, GAMMA_TRUE, NORM_TRUE, pivot_keV=PIVOT)
    assert abs(flux - true_flux) < 3 * error
    draws = np.random.default_rng(0).multivariate_normal([fit.gamma, fit.norm], fit.covariance, 20000)
    sampled = [sp.power_law_energy_flux(20.0, 80.0, g, k, pivot_keV=fit.pivot_keV) for g, k in draws]
    assert error == pytest.approx(np.std(sampled), rel=0.05)
    photons, photon_error = fit.photon_flux(20.0, 80.0)
    assert photons == pytest.approx(
        float(sp.power_law_bin_flux(20.0, 80.0, GAMMA_TRUE, NORM_TRUE, pivot_keV=PIVOT)), abs=3 * photon_error
    )


def test_grouping_logarithmic_linear_and_none():
    spectrum = make_spectrum(15)
    centre = 0.5 * (spectrum.e_min + spectrum.e_max)
    inside = (centre >= 25.0) & (centre <= 250.0)
    for factor, spacing in ((-12, np.geomspace), (12, np.linspace)):
        grouped = sp.group(spectrum, min_energy=25.0, max_energy=250.0, factor=factor)
        assert np.all(grouped.quality[~inside] == sp.QUALITY_BAD_USER)
        assert np.all(grouped.quality[inside] == 0)
        starts = np.flatnonzero(grouped.grouping[inside] == 1)
        assert set(np.unique(grouped.grouping[inside])) <= {1, -1}
        assert 1 < len(starts) <= 12
        # Every group's channels share one interval of the requested spacing.
        edges = spacing(25.0, 250.0, 13)
        label = np.searchsorted(edges, centre[inside], side="right")
        group_id = np.cumsum(grouped.grouping[inside] == 1)
        for g in np.unique(group_id):
            assert len(np.unique(label[group_id == g])) == 1
        binned = grouped.binned()
        assert len(binned) == len(starts)
        assert binned.e_lo[0] >= spectrum.e_min[inside][0] and binned.e_hi[-1] <= spectrum.e_max[inside][-1]
        assert binned.rate.sum() == pytest.approx(spectrum.rate[inside].sum())
    log_groups = sp.group(spectrum, min_energy=25.0, max_energy=250.0, factor=-12).binned()
    linear_groups = sp.group(spectrum, min_energy=25.0, max_energy=250.0, factor=12).binned()
    # Logarithmic groups have constant width ratio, linear ones constant width (to channel granularity).
    assert np.std(np.log(log_groups.width[1:-1] / log_groups.centre[1:-1])) < 0.3
    assert np.std(linear_groups.width[1:-1]) / np.mean(linear_groups.width[1:-1]) < 0.3
    ungrouped = sp.group(spectrum, min_energy=25.0, max_energy=250.0, factor=0)
    assert np.all(ungrouped.grouping == 1)
    assert len(ungrouped.binned()) == np.count_nonzero(inside)


def test_grouping_keeps_existing_bad_channels_and_sums_errors():
    spectrum = make_spectrum(16)
    spectrum.quality[40] = sp.QUALITY_BAD_SOFTWARE
    spectrum = sp.add_systematics(spectrum, 0.01)
    grouped = sp.group(spectrum, min_energy=20.0, max_energy=400.0, factor=-8)
    assert grouped.quality[40] == sp.QUALITY_BAD_SOFTWARE
    binned = grouped.binned()
    members = binned.membership.astype(bool)
    assert not members[:, 40].any()
    for row, rate, stat_err, sys_err in zip(members, binned.rate, binned.stat_err, binned.sys_err):
        assert rate == pytest.approx(spectrum.rate[row].sum())
        assert stat_err == pytest.approx(np.sqrt(np.sum(spectrum.stat_err[row] ** 2)))
        assert sys_err == pytest.approx(0.01 * np.sum(np.abs(spectrum.rate[row])))


def test_grouping_needs_channel_energies():
    spectrum = dataclasses.replace(make_spectrum(17), e_min=None, e_max=None)
    with pytest.raises(ValueError, match="channel energies"):
        sp.group(spectrum, min_energy=20, max_energy=200, factor=-10)
    assert len(sp.group(spectrum, min_energy=20, max_energy=200, factor=-10, response=RESPONSE).binned()) <= 10


def test_grouped_fit_recovers_gamma():
    grouped = sp.group(make_spectrum(18), min_energy=20.0, max_energy=300.0, factor=-25)
    fit = sp.fit_power_law(grouped, RESPONSE)
    assert fit.n_groups <= 25
    assert abs(fit.gamma - GAMMA_TRUE) < 3 * fit.gamma_error


def test_systematics_in_quadrature_widen_the_errors():
    spectrum = make_spectrum(19)
    with_sys = sp.add_systematics(sp.add_systematics(spectrum, 0.03), 0.04)
    np.testing.assert_allclose(with_sys.sys_err, 0.05)
    binned = with_sys.binned()
    np.testing.assert_allclose(binned.error, np.hypot(spectrum.stat_err, 0.05 * np.abs(spectrum.rate)))
    plain = sp.fit_power_law(spectrum, RESPONSE)
    widened = sp.fit_power_law(with_sys, RESPONSE)
    assert widened.gamma_error > plain.gamma_error
    with pytest.raises(ValueError):
        sp.add_systematics(spectrum, -0.1)


def test_combine_of_two_halves_equals_the_whole():
    rng = np.random.default_rng(21)
    exposures = np.array([0.3, 0.7]) * EXPOSURE
    truth = expected_rate(RESPONSE)
    halves = []
    for exposure in exposures:
        sigma = model_sigma(RESPONSE, exposure)
        halves.append(
            dataclasses.replace(
                make_spectrum(0),
                rate=truth + sigma * rng.standard_normal(len(truth)),
                stat_err=sigma,
                exposure=exposure,
            )
        )
    # The whole observation is the same photons: the exposure-weighted mean of the halves.
    whole = dataclasses.replace(
        halves[0],
        rate=(exposures[0] * halves[0].rate + exposures[1] * halves[1].rate) / exposures.sum(),
        stat_err=model_sigma(RESPONSE, exposures.sum()),
        exposure=exposures.sum(),
    )
    combined, response = sp.combine([(halves[0], RESPONSE), (halves[1], RESPONSE)])
    assert combined.exposure == pytest.approx(EXPOSURE)
    np.testing.assert_allclose(combined.rate, whole.rate, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(combined.stat_err, whole.stat_err, rtol=1e-10)
    np.testing.assert_allclose(response.matrix, RESPONSE.matrix)
    fit_whole = sp.fit_power_law(whole, RESPONSE)
    fit_combined = sp.fit_power_law(combined, response)
    assert abs(fit_combined.gamma - fit_whole.gamma) < 0.05 * fit_whole.gamma_error
    assert fit_combined.gamma_error == pytest.approx(fit_whole.gamma_error, rel=1e-3)
    assert abs(fit_combined.gamma - GAMMA_TRUE) < 3 * fit_combined.gamma_error
    assert combined.meta["NCHUNKS"] == 2 and combined.simulated


def test_combine_weights_the_response_by_exposure_and_skips_bad_channels():
    old, new = make_response(), make_response(arf_scale=0.8)
    first, second = make_spectrum(22, exposure=1000.0), make_spectrum(23, exposure=3000.0)
    second.quality[5] = sp.QUALITY_BAD_SOFTWARE
    first.quality[6] = second.quality[6] = sp.QUALITY_BAD_SOFTWARE
    combined, response = sp.combine([(first, old), (second, new)])
    np.testing.assert_allclose(response.specresp, 0.25 * old.specresp + 0.75 * new.specresp)
    assert combined.rate[5] == first.rate[5] and combined.stat_err[5] == first.stat_err[5]
    assert combined.quality[6] != 0 and combined.quality[5] == 0


def test_combine_refuses_different_grids():
    other = make_response()
    other = dataclasses.replace(other, e_min=other.e_min * 1.1)
    with pytest.raises(ValueError, match="channel energies"):
        sp.combine([(make_spectrum(24), RESPONSE), (make_spectrum(25), other)])
    coarse = sp.Response(
        energ_lo=RESPONSE.energ_lo[::2],
        energ_hi=RESPONSE.energ_hi[::2],
        specresp=RESPONSE.specresp[::2],
        matrix=RESPONSE.matrix[::2],
        channel=RESPONSE.channel,
        e_min=RESPONSE.e_min,
        e_max=RESPONSE.e_max,
    )
    with pytest.raises(ValueError, match="true-energy"):
        sp.combine([(make_spectrum(24), RESPONSE), (make_spectrum(25), coarse)])


def test_written_ogip_files_reload_identically_and_pass_checks(tmp_path):
    spectrum = sp.group(sp.add_systematics(make_spectrum(26), 0.0015), min_energy=20, max_energy=300, factor=-30)
    response = make_response(first_channel=1)
    spectrum = dataclasses.replace(spectrum, channel=response.channel)
    pha, arf, rmf = sp.write(spectrum, response, tmp_path / "crab_isgri.fits", provenance={"WFVERS": "0.1.0"})
    assert (arf.name, rmf.name) == ("crab_isgri_arf.fits", "crab_isgri_rmf.fits")
    for path in (pha, arf, rmf):
        with fits.open(path) as hdul:
            hdul.verify("exception")
            for hdu in hdul:
                assert hdu.header["ORIGIN"] == SIMULATION_MARK["ORIGIN"]
                assert hdu.header["SIMULATD"] is True
                assert hdu.header["WFVERS"] == "0.1.0"
    with fits.open(pha) as hdul:
        header = hdul[1].header
        required = {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "SPECTRUM",
            "HDUCLAS2": "NET",
            "HDUCLAS3": "RATE",
            "POISSERR": False,
            "CHANTYPE": "PI",
            "DETCHANS": 128,
            "EXPOSURE": EXPOSURE,
            "BACKSCAL": 1.0,
            "AREASCAL": 1.0,
            "CORRSCAL": 1.0,
            "BACKFILE": "NONE",
            "ANCRFILE": arf.name,
            "RESPFILE": rmf.name,
            "TLMIN1": 1,
            "TLMAX1": 128,
            "TELESCOP": "INTEGRAL",
            "INSTRUME": "IBIS",
        }
        for key, value in required.items():
            assert header[key] == value, key
        assert hdul[1].columns.names == ["CHANNEL", "RATE", "STAT_ERR", "SYS_ERR", "QUALITY", "GROUPING"]
        np.testing.assert_allclose(hdul[1].data["SYS_ERR"], 0.0015, rtol=1e-6)
    with fits.open(arf) as hdul:
        assert (hdul[1].name, hdul[1].header["HDUCLAS1"], hdul[1].header["HDUCLAS2"]) == (
            "SPECRESP",
            "RESPONSE",
            "SPECRESP",
        )
        assert hdul[1].columns["SPECRESP"].unit == "cm**2"
    with fits.open(rmf) as hdul:
        matrix, ebounds = hdul["SPECRESP MATRIX"], hdul["EBOUNDS"]
        assert (matrix.header["HDUCLAS1"], matrix.header["HDUCLAS2"]) == ("RESPONSE", "RSP_MATRIX")
        assert (ebounds.header["HDUCLAS1"], ebounds.header["HDUCLAS2"]) == ("RESPONSE", "EBOUNDS")
        assert matrix.header["DETCHANS"] == ebounds.header["DETCHANS"] == 128
        assert matrix.header["TLMIN4"] == 1 and ebounds.header["TLMIN1"] == 1
        assert matrix.columns["MATRIX"].format.startswith("PE")
    reread, reread_response = sp.read(pha)
    np.testing.assert_allclose(reread.rate, spectrum.rate, rtol=1e-6)
    np.testing.assert_allclose(reread.stat_err, spectrum.stat_err, rtol=1e-6)
    np.testing.assert_array_equal(reread.quality, spectrum.quality)
    np.testing.assert_array_equal(reread.grouping, spectrum.grouping)
    np.testing.assert_array_equal(reread.channel, spectrum.channel)
    assert reread.exposure == spectrum.exposure and reread.source == "Crab" and reread.simulated
    np.testing.assert_allclose(reread_response.matrix, response.matrix, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(reread_response.specresp, response.specresp, rtol=1e-6)
    np.testing.assert_allclose(reread_response.e_min, response.e_min, rtol=1e-6)
    # A second round trip is exact (float32 columns already), and the fit is the same.
    again, again_response = sp.read(sp.write(reread, reread_response, tmp_path / "again.fits")[0])
    for name in ("rate", "stat_err", "sys_err", "e_min", "e_max"):
        np.testing.assert_array_equal(getattr(again, name), getattr(reread, name))
    np.testing.assert_array_equal(again_response.matrix, reread_response.matrix)
    original_fit = sp.fit_power_law(spectrum, response)
    reread_fit = sp.fit_power_law(again, again_response)
    assert reread_fit.gamma == pytest.approx(original_fit.gamma, abs=1e-3 * original_fit.gamma_error)


def test_written_files_survive_the_oda_api_encoding(tmp_path):
    """Our own files, served back through NumpyDataProduct (variable-length RMF rows included)."""
    spectrum = make_spectrum(27)
    paths = sp.write(spectrum, RESPONSE, tmp_path / "s.fits")
    products = []
    for path, role in zip(paths, ("spectrum", "arf", "rmf")):
        # As NumpyDataProduct.from_fits_file does, but closing the file (oda_api leaves it open).
        with fits.open(path) as hdul:
            units = [NumpyDataUnit.from_fits_hdu(hdu) for hdu in hdul]
            product = NumpyDataProduct(units, name="", meta_data={"src_name": "Crab", "product": f"isgri_{role}"})
            products.append(NumpyDataProduct.decode(product.encode()))
    reread, response = sp.from_products(*products)
    np.testing.assert_allclose(reread.rate, spectrum.rate, rtol=1e-6)
    np.testing.assert_allclose(response.matrix, RESPONSE.matrix, rtol=1e-6, atol=1e-30)


def test_rmf_with_several_channel_groups_per_row():
    """F_CHAN/N_CHAN as variable-length arrays with two groups in a row (valid OGIP, as some RMFs store)."""
    matrix = np.zeros((2, 6))
    matrix[0, [0, 1, 4]] = [0.1, 0.2, 0.3]
    matrix[1, 2:4] = [0.5, 0.4]
    rows = np.empty(2, dtype=object)
    rows[0], rows[1] = np.array([0.1, 0.2, 0.3], np.float32), np.array([0.5, 0.4], np.float32)
    f_chan, n_chan = np.empty(2, dtype=object), np.empty(2, dtype=object)
    f_chan[0], f_chan[1] = np.array([1, 5], np.int32), np.array([3], np.int32)
    n_chan[0], n_chan[1] = np.array([2, 1], np.int32), np.array([2], np.int32)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("ENERG_LO", "E", array=[10.0, 20.0]),
            fits.Column("ENERG_HI", "E", array=[20.0, 30.0]),
            fits.Column("N_GRP", "I", array=[2, 1]),
            fits.Column("F_CHAN", "PJ()", array=f_chan),
            fits.Column("N_CHAN", "PJ()", array=n_chan),
            fits.Column("MATRIX", "PE()", array=rows),
        ],
        name="MATRIX",
    )
    table.header["TLMIN4"] = 1
    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "J", array=np.arange(1, 7)),
            fits.Column("E_MIN", "E", array=np.arange(6) * 5.0 + 5),
            fits.Column("E_MAX", "E", array=np.arange(6) * 5.0 + 10),
        ],
        name="EBOUNDS",
    )
    response = sp.Response.from_hdus(None, [fits.PrimaryHDU(), table, ebounds])
    np.testing.assert_allclose(response.matrix, matrix, rtol=1e-6)
    np.testing.assert_array_equal(response.specresp, 1.0)


def test_plot_draws_data_model_and_residuals(tmp_path):
    spectrum = sp.group(make_spectrum(28), min_energy=20, max_energy=300, factor=-20)
    fit = sp.fit_power_law(spectrum, RESPONSE, energy_range=(25, 200))
    figure = sp.plot(spectrum, RESPONSE, fit, path=tmp_path / "spectrum.png")
    top, unfolded, bottom, _ = figure.axes  # the last: the unfolded panel's erg cm⁻² s⁻¹ axis
    assert "[SIMULATED DATA]" in top.get_title()
    assert top.get_xscale() == "log" and top.get_yscale() == "log"
    assert unfolded.get_ylabel() == sp.E2F_LABEL and unfolded.get_yscale() == "log"
    assert "σ" in bottom.get_ylabel()
    assert (tmp_path / "spectrum.png").stat().st_size > 1000
    import matplotlib.pyplot as plt

    plt.close(figure)


# -- the real ISGRI response (tests/data/real_products/isgri_rmf_Crab.fits, from oda_api's test data) --------------
REAL_RMF = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "real_products" / "isgri_rmf_Crab.fits"


def test_real_isgri_rmf_is_read_as_file_and_as_oda_api_product():
    response = sp.Response.read(None, REAL_RMF)
    assert response.matrix.shape == (2466, 256) and response.instrument == "ISGRI" and not response.simulated
    assert list(response.channel[:3]) == [0, 1, 2] and response.e_min[0] == pytest.approx(12.5)
    assert np.all(np.diff(response.e_min) > 0) and np.all(response.matrix >= 0)
    # OSA 11 keeps the effective area in this matrix (cm², no separate ARF needed here)
    assert 500 < response.matrix.sum(axis=1).max() < 3000
    product = NumpyDataProduct.from_fits_file(str(REAL_RMF), meta_data={"src_name": "Crab", "product": "isgri_rmf"})
    from_product = sp.Response.from_products(None, product)
    assert np.array_equal(from_product.matrix, response.matrix)


def test_spectra_folded_through_the_real_isgri_response_combine_and_fit_back():
    response = sp.Response.read(None, REAL_RMF)
    model = sp.fold_power_law(response, 2.1, 6e-4, pivot_keV=100.0)
    rng = np.random.default_rng(5)
    good = (response.e_min > 20) & (response.e_max < 300)
    chunks = []
    for exposure in (2000.0, 3000.0):
        error = 0.02 * model.max() * np.sqrt(2000.0 / exposure) * np.ones_like(model)
        noisy = model + error * rng.normal(size=len(model))
        spectrum = sp.Spectrum(
            source="Crab",
            channel=response.channel,
            rate=noisy,
            stat_err=error,
            sys_err=0.0,
            quality=np.where(good, 0, 1),
            grouping=1,
            exposure=exposure,
            instrument="ISGRI",
        )
        chunks.append((spectrum, response))
    combined, combined_response = sp.combine(chunks)
    assert combined.exposure == 5000.0 and np.allclose(combined_response.matrix, response.matrix)
    fit = sp.fit_power_law(combined, combined_response, energy_range=(20.0, 300.0))
    assert abs(fit.gamma - 2.1) < 4 * fit.gamma_error + 1e-3
    assert abs(fit.norm / 6e-4 - 1) < 4 * fit.norm_error / 6e-4 + 1e-3


# -- chunks that did not see the source (issue 10) -----------------------------------------------------------
def unexposed(spectrum: sp.Spectrum) -> sp.Spectrum:
    """A chunk none of whose ScWs had the source in the field: no exposure, no measurement."""
    return dataclasses.replace(
        spectrum, rate=np.zeros(spectrum.n_channels), stat_err=np.zeros(spectrum.n_channels), exposure=0.0
    )


def test_combine_skips_a_chunk_without_exposure_and_counts_it():
    first, second = make_spectrum(30, exposure=1000.0), make_spectrum(31, exposure=3000.0)
    expected, expected_response = sp.combine([(first, RESPONSE), (second, RESPONSE)])
    combined, response = sp.combine([(first, RESPONSE), (unexposed(make_spectrum(32)), RESPONSE), (second, RESPONSE)])
    np.testing.assert_array_equal(combined.rate, expected.rate)
    np.testing.assert_array_equal(combined.stat_err, expected.stat_err)
    np.testing.assert_allclose(response.specresp, expected_response.specresp)
    assert combined.exposure == 4000.0
    assert combined.meta["NCHUNKS"] == 2 and combined.meta["NSKIPPED"] == 1


def test_combine_of_chunks_that_never_saw_the_source_raises_its_own_error():
    with pytest.raises(sp.NoExposureError, match="no exposure"):
        sp.combine([(unexposed(make_spectrum(33)), RESPONSE), (unexposed(make_spectrum(34)), RESPONSE)])


class FakePiece:
    """A finished job as :func:`spectrum.spectra_from_pieces` sees it: its ScWs and its decoded answer."""

    def __init__(self, scw_ids, spectra):
        self.scw_ids = tuple(scw_ids)
        self.spectra = spectra

    def data_collection(self):
        return self.spectra


def test_spectra_from_pieces_skips_unseeing_chunks_and_reports_unseen_sources(monkeypatch, caplog):
    # Decoding products is tested above; here each job's answer is already the spectra by source.
    def decoded(collection, source, *, instrument=None):
        if source not in collection:
            raise ValueError(f"no spectrum of {source!r}")
        return collection[source], RESPONSE

    monkeypatch.setattr(sp, "from_data_collection", decoded)
    # GX 339-4 is seen by chunks 0 and 2; GX 349+2 only by chunk 2 (chunk 0 returns it without exposure,
    # chunk 1 not at all); 4U 1630-47 by no chunk.
    target, neighbour, never = "GX 339-4", "GX 349+2", "4U 1630-47"
    pieces = [
        FakePiece(
            ["093700010010"],
            {
                target: make_spectrum(40, source=target),
                neighbour: unexposed(make_spectrum(41, source=neighbour)),
                never: unexposed(make_spectrum(42, source=never)),
            },
        ),
        FakePiece(["093700020010"], {target: unexposed(make_spectrum(43, source=target))}),
        FakePiece(
            ["093800010010"], {target: make_spectrum(44, source=target), neighbour: make_spectrum(45, source=neighbour)}
        ),
    ]
    report = {}
    with caplog.at_level("WARNING", logger="integral_workflows.spectrum"):
        combined = sp.spectra_from_pieces(pieces, [target, neighbour, never], instrument="isgri", report=report)
    assert set(combined) == {target, neighbour}
    assert combined[target][0].exposure == 2 * EXPOSURE and combined[target][0].meta["NSKIPPED"] == 1
    assert combined[neighbour][0].exposure == EXPOSURE and combined[neighbour][0].meta["NSKIPPED"] == 2
    assert report[neighbour]["status"] == "combined"
    assert report[neighbour]["chunks_used"] == ["chunk 2 (093800010010..)"]
    assert len(report[neighbour]["chunks_skipped"]) == 2
    assert report[never]["status"] == "not seen by any chunk" and report[never]["chunks_used"] == []
    assert len(report[never]["chunks_skipped"]) == 3
    assert any(never in record.getMessage() for record in caplog.records)


# -- fit band by epoch, p-value and poor-fit flag (issue 10) --------------------------------------------------
def test_default_fit_band_follows_isgri_epoch():
    # IJD of 2016-01-01T00:00 TT from astropy, not from the module's constant.
    from astropy.time import Time

    change = Time("2016-01-01T00:00:00", scale="tt").mjd - 51544.0
    assert sp.default_fit_band("isgri", 3740.0, 3747.0)[0] == 20.0  # 2010
    assert sp.default_fit_band("isgri", change + 100, change + 110)[0] == 25.0  # 2016
    assert sp.default_fit_band("ISGRI", change - 10, change + 10)[0] == 25.0  # straddles: the later bound
    assert sp.default_fit_band("isgri", None, None)[0] == 25.0
    assert sp.default_fit_band("jemx", 3740.0, 3747.0) == (0.0, float("inf"))


def with_epoch(spectrum: sp.Spectrum, tstart: float, tstop: float) -> sp.Spectrum:
    return dataclasses.replace(spectrum, meta={**spectrum.meta, "TSTART": tstart, "TSTOP": tstop})


def test_fit_sources_records_band_p_value_and_flags_a_poor_fit(tmp_path, caplog):
    good_early = with_epoch(make_spectrum(50), 3740.0, 3747.0)
    good_late = with_epoch(make_spectrum(51), 7000.0, 7007.0)
    # A cut-off spectrum that a power law cannot describe (its χ² p-value is tiny).
    broken = make_spectrum(52)
    cutoff = expected_rate(RESPONSE) * np.exp(-RESPONSE.e_min / 60.0) * 3.0
    broken = with_epoch(
        dataclasses.replace(
            broken, rate=cutoff + broken.stat_err * np.random.default_rng(53).standard_normal(broken.n_channels)
        ),
        7000.0,
        7007.0,
    )
    combined = {"early": (good_early, RESPONSE), "late": (good_late, RESPONSE), "broken": (broken, RESPONSE)}
    grouping = {"min_energy": 20.0, "max_energy": 600.0, "factor": -30}
    with caplog.at_level("WARNING", logger="integral_workflows.spectrum"):
        spectra, fits_by_source, summary = sp.fit_sources(
            combined, instrument="isgri", systematic_fraction=0.0015, band_keV=(20.0, 40.0), grouping=grouping
        )
    rows = {row["source"]: row for row in summary}
    assert rows["early"]["fit_band_min_keV"] == 20.0 and rows["late"]["fit_band_min_keV"] == 25.0
    assert rows["early"]["fitted_min_keV"] < 25.0 <= rows["late"]["fitted_min_keV"]
    assert fits_by_source["late"].energy_range[0] >= 25.0
    for name in ("early", "late"):
        assert not rows[name]["poor_fit"] and rows[name]["p_value"] > 1e-3
        assert abs(fits_by_source[name].gamma - GAMMA_TRUE) < 4 * fits_by_source[name].gamma_error
    assert rows["broken"]["poor_fit"] and rows["broken"]["p_value"] < 0.01
    assert any(
        "poor power-law fit" in record.getMessage() and "broken" in record.getMessage() for record in caplog.records
    )
    assert "2016-01-01" in summary.meta["fit_band_rule"]
    # The band, χ², dof, p-value and flag reach the PHA header.
    pha, _, _ = sp.write(*spectra["broken"], tmp_path / "broken.fits")
    header = fits.getheader(pha, 1)
    assert header["FIT_EMIN"] == 25.0 and header["POORFIT"] is True
    assert header["FITDOF"] == fits_by_source["broken"].dof
    assert header["FITPVAL"] == pytest.approx(fits_by_source["broken"].p_value)
    early_pha, _, _ = sp.write(*spectra["early"], tmp_path / "early.fits")
    assert fits.getheader(early_pha, 1)["POORFIT"] is False and fits.getheader(early_pha, 1)["FIT_EMIN"] == 20.0


def test_unicode_source_names_reach_fits_as_ascii(tmp_path):
    spectrum = make_spectrum(60, source="Boötes null")
    pha, arf, rmf = sp.write(spectrum, RESPONSE, tmp_path / "spectrum.fits", provenance={"OBJECT": "Boötes null"})
    header = fits.getheader(pha, 1)
    assert header["NAME"] == "Bootes null" and header["OBJECT"] == "Bootes null"
