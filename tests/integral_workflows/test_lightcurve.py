"""Light curves: products in, stitching, rebinning, variability statistics and FITS out.

Synthetic light curves have ScW-like bins (~2 ks, with gaps between
revolutions) and Gaussian noise of known σ.
"""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from astropy.io import fits
from oda_api.api import DataCollection
from oda_api.data_products import NumpyDataProduct, NumpyDataUnit
from scipy import stats

from integral_workflows import lightcurve as lc

SIMULATION_MARK = {"ORIGIN": "mmoda_local (SIMULATED DATA)", "CREATOR": "mmoda_local test", "SIMULATD": True}
DAY_S = 86400.0


def scw_times(
    n_bins: int,
    *,
    start_ijd: float = 8000.0,
    bin_s: float = 2000.0,
    per_revolution: int = 30,
    revolution_days: float = 3.0,
):
    """Bin centres and half-widths of contiguous ScWs, ``per_revolution`` per revolution, gaps in between."""
    index = np.arange(n_bins)
    revolution, position = divmod(index, per_revolution)
    half_width = np.full(n_bins, 0.5 * bin_s / DAY_S)
    time = start_ijd + revolution * revolution_days + (position + 0.5) * bin_s / DAY_S
    return time, half_width


def make_curve(
    seed: int,
    *,
    n_bins: int = 300,
    rate: float = 10.0,
    sigma: float | np.ndarray = 0.5,
    source: str = "Crab",
    start_ijd: float = 8000.0,
    signal=None,
) -> lc.LightCurve:
    rng = np.random.default_rng(seed)
    time, half_width = scw_times(n_bins, start_ijd=start_ijd)
    truth = np.full(n_bins, rate) if signal is None else signal(time)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (n_bins,))
    noisy = truth + sigma * rng.standard_normal(n_bins)
    return lc.LightCurve(
        source=source,
        time=time,
        half_width=half_width,
        rate=noisy,
        error=sigma.copy(),
        fracexp=np.full(n_bins, 0.9),
        tot_counts=np.full(n_bins, 5000.0),
        backv=np.full(n_bins, 100.0),
        backe=np.full(n_bins, 1.0),
        instrument="ISGRI",
        band=(28.0, 40.0),
        meta=dict(SIMULATION_MARK),
    )


def osa_like_hdus(curve: lc.LightCurve, *, timepixr: float = 0.5):
    """PRIMARY + ISGR-SRC.-LCR with OSA's column types; TIME at ``timepixr`` of each bin."""
    time = curve.time - curve.half_width + timepixr * 2 * curve.half_width
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("TIME", "D", unit="d", array=time),
            fits.Column("TOT_COUNTS", "E", array=curve.tot_counts),
            fits.Column("BACKV", "E", array=curve.backv),
            fits.Column("BACKE", "E", array=curve.backe),
            fits.Column("RATE", "E", array=curve.rate),
            fits.Column("ERROR", "E", array=curve.error),
            fits.Column("FRACEXP", "E", array=curve.fracexp),
            fits.Column("XAX_E", "E", array=curve.half_width),
        ],
        name="ISGR-SRC.-LCR",
    )
    table.header.update(
        {
            "NAME": curve.source,
            "TIMEDEL": float(2 * curve.half_width[0]),
            "TIMEPIXR": timepixr,
            "MJDREF": 51544.0,
            "TELESCOP": "INTEGRAL",
            "INSTRUME": "IBIS",
            "DETNAM": "ISGRI",
            "E_MIN": 28.0,
            "E_MAX": 40.0,
            **SIMULATION_MARK,
        }
    )
    primary = fits.PrimaryHDU()
    primary.header.update(SIMULATION_MARK)
    return [primary, table]


def wire_product(curve: lc.LightCurve, source: str, **kwargs):
    units = [NumpyDataUnit.from_fits_hdu(hdu) for hdu in osa_like_hdus(curve, **kwargs)]
    product = NumpyDataProduct(
        units,
        name="isgri_lc",
        meta_data={"src_name": source, "time_bin": 0.0231, "time": "TIME", "rate": "RATE", "rate_err": "ERROR"},
    )
    return NumpyDataProduct.decode(product.encode())


def assert_same_curve(a: lc.LightCurve, b: lc.LightCurve, *, rtol=1e-6):
    np.testing.assert_allclose(a.time, b.time, rtol=0, atol=1e-9)
    for name in ("half_width", "rate", "error", "fracexp", "tot_counts", "backv", "backe"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, err_msg=name)


# -- input ---------------------------------------------------------------------------------------------------
def test_from_data_collection_selects_the_source_by_meta_data():
    crab, other = make_curve(1), make_curve(2, source="4U 1700-377", rate=3.0)
    collection = DataCollection(
        [wire_product(other, "4U 1700-377"), wire_product(crab, "Crab")], instrument="isgri", product="isgri_lc"
    )
    curve = lc.LightCurve.from_data_collection(collection, "Crab")
    assert curve.source == "Crab" and curve.instrument == "ISGRI" and curve.band == (28.0, 40.0)
    assert curve.extname == "ISGR-SRC.-LCR"
    assert_same_curve(curve, crab)
    assert curve.simulated and curve.meta["CREATOR"] == SIMULATION_MARK["CREATOR"]
    assert lc.LightCurve.from_data_collection(collection, "4u1700-377").source == "4U 1700-377"
    with pytest.raises(ValueError, match="no light curve"):
        lc.LightCurve.from_data_collection(collection, "Vela X-1")


def test_time_pixel_reference_is_turned_into_bin_centres():
    crab = make_curve(3)
    for timepixr in (0.0, 0.5, 1.0):
        curve = lc.LightCurve.from_product(wire_product(crab, "Crab", timepixr=timepixr))
        np.testing.assert_allclose(curve.time, crab.time, rtol=0, atol=1e-9)


def test_timedel_column_in_seconds_when_no_xax_e():
    crab = make_curve(4)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("TIME", "D", array=crab.time),
            fits.Column("RATE", "E", array=crab.rate),
            fits.Column("ERROR", "E", array=crab.error),
            fits.Column("TIMEDEL", "D", unit="s", array=2 * crab.half_width * DAY_S),
        ],
        name="JMX2-SRC.-LCR",
    )
    table.header.update({"NAME": "Crab", "TIMEPIXR": 0.5, "INSTRUME": "JMX2"})
    curve = lc.LightCurve.from_hdus([fits.PrimaryHDU(), table])
    np.testing.assert_allclose(curve.half_width, crab.half_width)
    np.testing.assert_array_equal(curve.fracexp, 1.0)
    assert curve.instrument == "JMX2" and curve.extname == "JMX2-SRC.-LCR" and not curve.simulated


# -- stitching -----------------------------------------------------------------------------------------------
def test_stitch_sorts_deduplicates_and_drops_empty_bins():
    whole = make_curve(5, n_bins=90)
    chunks = [whole.select(slice(60, 90)), whole.select(slice(0, 32)), whole.select(slice(30, 60))]
    # Bins 30 and 31 come twice; the second copy (chunk 2) is the better exposed one.
    chunks[2].fracexp[:2] = 0.95
    chunks[2].rate[:2] += 100.0
    chunks[0].rate[3] = np.nan
    chunks[0].fracexp[4] = 0.0
    stitched = lc.stitch(chunks)
    assert np.all(np.diff(stitched.time) > 0)
    assert len(stitched) == 90 - 2
    assert stitched.meta["NBADBIN"] == 2 and stitched.meta["NDUPBIN"] == 2 and stitched.meta["NCHUNKS"] == 3
    kept = np.searchsorted(stitched.time, whole.time[30:32])
    np.testing.assert_allclose(stitched.fracexp[kept], 0.95)
    np.testing.assert_allclose(stitched.rate[kept], whole.rate[30:32] + 100.0)
    expected = np.delete(np.arange(90), [63, 64])
    np.testing.assert_allclose(stitched.time, whole.time[expected])
    assert stitched.simulated


def test_stitch_duplicates_equal_copies_keep_one():
    whole = make_curve(6, n_bins=40)
    stitched = lc.stitch([whole, whole.select(slice(10, 20))])
    assert len(stitched) == 40 and stitched.meta["NDUPBIN"] == 10
    assert_same_curve(stitched, whole)


def test_stitch_refuses_mixed_sources_and_bands():
    with pytest.raises(ValueError, match="different sources"):
        lc.stitch([make_curve(7), make_curve(8, source="Cyg X-1")])
    other_band = make_curve(9)
    other_band.band = (20.0, 40.0)
    with pytest.raises(ValueError, match="energy bands"):
        lc.stitch([make_curve(7), other_band])
    assert len(lc.stitch([make_curve(7), make_curve(8, source="crab", start_ijd=9000.0)])) == 600


# -- systematics and rebinning ----------------------------------------------------------------------------------
def test_systematics_are_added_in_quadrature():
    curve = make_curve(10)
    widened = lc.add_systematics(curve, 0.05)
    np.testing.assert_allclose(widened.error, np.sqrt(curve.error**2 + (0.05 * curve.rate) ** 2))
    np.testing.assert_array_equal(curve.error, make_curve(10).error)  # the input is untouched
    assert widened.meta["SYSERR"] == 0.05
    with pytest.raises(ValueError):
        lc.add_systematics(curve, -0.01)


def test_rebin_conserves_the_weighted_mean_and_its_error():
    rng = np.random.default_rng(11)
    curve = make_curve(11, n_bins=600, sigma=rng.uniform(0.2, 1.0, 600))
    daily = lc.rebin(curve, DAY_S)
    before, after = lc.variability(curve), lc.variability(daily)
    assert after.weighted_mean == pytest.approx(before.weighted_mean, rel=1e-12)
    assert after.weighted_mean_error == pytest.approx(before.weighted_mean_error, rel=1e-12)
    assert daily.tot_counts.sum() == pytest.approx(curve.tot_counts.sum())
    assert np.sum(daily.exposure) == pytest.approx(np.sum(curve.exposure))
    # Fixed one-day intervals from the first bin: no output bin straddles an interval boundary.
    origin = curve.time[0] - curve.half_width[0]
    first = np.floor((daily.time - daily.half_width - origin) + 1e-9)
    last = np.floor((daily.time + daily.half_width - origin) - 1e-9)
    np.testing.assert_array_equal(first, last)
    assert daily.meta["REBIN_S"] == DAY_S


def test_rebin_errors_scale_as_one_over_root_n():
    curve = make_curve(12, n_bins=300, sigma=0.5)  # 30 ScWs of 2 ks per revolution
    rebinned = lc.rebin(curve, 10_000.0)  # mostly 5 ScWs per bin
    members = np.rint(rebinned.half_width * 2 * DAY_S / 2000.0)
    assert np.all((members >= 1) & (members <= 5)) and np.mean(members == 5) > 0.7
    assert members.sum() == len(curve)
    np.testing.assert_allclose(rebinned.error, 0.5 / np.sqrt(members))
    assert np.average(rebinned.rate, weights=members) == pytest.approx(np.mean(curve.rate))


def test_rebin_shorter_than_the_bins_leaves_the_curve(caplog):
    curve = make_curve(13, n_bins=50)
    with caplog.at_level(logging.INFO, logger="integral_workflows.lightcurve"):
        same = lc.rebin(curve, 1000.0)
    assert "left unchanged" in caplog.text
    assert_same_curve(same, curve, rtol=0)


def test_rebin_does_not_bridge_gaps():
    curve = make_curve(14, n_bins=60)  # two revolutions 3 days apart, 30 ScWs (0.7 d) each
    rebinned = lc.rebin(curve, 2 * DAY_S)
    assert len(rebinned) == 2
    assert np.all(rebinned.half_width * 2 < 1.0)


# -- variability -----------------------------------------------------------------------------------------------
def test_constant_source_chi2_matches_dof_and_p_values_are_uniform():
    results = [lc.variability(make_curve(seed, n_bins=100)) for seed in range(1000, 1200)]
    p_values = np.array([r.p_value for r in results])
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    reduced = np.array([r.chi2 / r.dof for r in results])
    assert reduced.mean() == pytest.approx(1.0, abs=3 * np.sqrt(2 / 99) / np.sqrt(200))
    # No intrinsic variability: the excess variance is consistent with zero.
    excess = np.array([r.normalised_excess_variance / r.normalised_excess_variance_error for r in results])
    assert abs(excess.mean()) < 0.3
    assert results[0].weighted_mean == pytest.approx(10.0, abs=4 * results[0].weighted_mean_error)


def test_fractional_variability_of_a_sinusoid():
    amplitude, period = 0.2, 7.3  # 20 % sinusoid, period in days

    def signal(time):
        return 10.0 * (1.0 + amplitude * np.sin(2 * np.pi * time / period))

    rows = []
    for seed in range(20):
        curve = make_curve(seed, n_bins=1500, sigma=0.5, signal=signal)
        rows.append(lc.variability(curve))
    # The sampled sinusoid's own rms (what F_var estimates), from the noise-free signal.
    truth = np.std(signal(make_curve(0, n_bins=1500).time), ddof=1) / np.mean(signal(make_curve(0, n_bins=1500).time))
    assert truth == pytest.approx(amplitude / np.sqrt(2), rel=0.05)
    pulls = np.array([(r.fvar - truth) / r.fvar_error for r in rows])
    assert np.all(np.abs(pulls) < 4)
    assert abs(pulls.mean()) < 0.7 and 0.5 < pulls.std(ddof=1) < 1.6
    assert all(r.p_value < 1e-10 for r in rows)


# -- output -----------------------------------------------------------------------------------------------------
def test_fits_round_trip_and_ogip_keywords(tmp_path):
    crab = lc.LightCurve.from_product(wire_product(make_curve(15), "Crab"))
    curve = lc.rebin(lc.stitch([crab]), 20_000.0)
    path = curve.write(tmp_path / "crab_lc.fits", provenance={"WFVERS": "0.1.0"})
    with fits.open(path) as hdul:
        hdul.verify("exception")
        header = hdul[1].header
        assert hdul[1].name == "ISGR-SRC.-LCR"
        expected = {
            "TIMEPIXR": 0.5,
            "MJDREF": 51544.0,
            "TIMESYS": "TT",
            "TIMEUNIT": "s",
            "TIMEZERO": 0.0,
            "TIMEREF": "LOCAL",
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "LIGHTCURVE",
            "NAME": "Crab",
            "E_MIN": 28.0,
            "E_MAX": 40.0,
            "INSTRUME": "IBIS",
            "DETNAM": "ISGRI",
            "ORIGIN": SIMULATION_MARK["ORIGIN"],
            "CREATOR": SIMULATION_MARK["CREATOR"],
            "SIMULATD": True,
            "WFVERS": "0.1.0",
            "NCHUNKS": 1,
        }
        for key, value in expected.items():
            assert header[key] == value, key
        # seconds from MJDREF: what OGIP readers (stingray, astropy) take without guessing a unit
        assert header["TIMEDEL"] == pytest.approx(np.median(2 * curve.half_width) * 86400)
        assert header["TSTART"] == pytest.approx((curve.time[0] - curve.half_width[0]) * 86400)
        assert hdul[1].data["TIME"] == pytest.approx(curve.time * 86400, rel=1e-15)
        assert hdul[0].header["SIMULATD"] is True
    reread = lc.LightCurve.read(path)
    assert_same_curve(reread, curve, rtol=1e-15)
    assert (reread.source, reread.instrument, reread.band, reread.extname) == (
        "Crab",
        "ISGRI",
        (28.0, 40.0),
        "ISGR-SRC.-LCR",
    )
    assert reread.simulated


def test_plot_in_years_and_mjd_with_mcrab_axis(tmp_path):
    import matplotlib.pyplot as plt

    curve = make_curve(16)
    figure = lc.plot(curve, path=tmp_path / "lc.png", flux_calibration=20.0)
    ax = figure.axes[0]
    assert "[SIMULATED DATA]" in ax.get_title() and "Crab" in ax.get_title() and "28–40 keV" in ax.get_title()
    assert 2021 < ax.get_xlim()[0] < 2023  # IJD 8000 is 2021-11
    assert any("mCrab" in child.get_ylabel() for child in ax.child_axes)
    assert (tmp_path / "lc.png").stat().st_size > 1000
    plt.close(figure)
    figure, ax = plt.subplots()
    lc.plot(curve, ax=ax, time_axis="mjd")
    assert ax.get_xlim()[0] > 59000
    plt.close(figure)


# -- the real JEM-X light curve (tests/data/real_products/lc.fits, from oda_api's test data) ----------------------
REAL_PRODUCTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "real_products"


def test_real_jemx_light_curve_is_read_and_stitched():
    path = REAL_PRODUCTS / "lc.fits"
    header = fits.getheader(path, 1)
    curve = lc.LightCurve.read(path)
    assert (curve.source, len(curve), curve.instrument, curve.band) == ("GRB221009A", 198, "JMX1", (4.12, 29.66))
    assert curve.extname == "JMX1-SRC.-LCR" and not curve.simulated
    # TIMEDEL column (d) with TIMEPIXR 0.5: TIME is the centre, half-widths 500 s
    assert np.allclose(np.abs(curve.half_width) * 86400, 500.0, rtol=1e-6)
    assert curve.time[0] - curve.half_width[0] == pytest.approx(header["TFIRST"], abs=1e-9)
    # two chunks of the real curve stitch back into one; the repeated bin with a negative TIMEDEL (a ScW
    # boundary in lc_pick's output) is dropped as having no duration
    first, second = (curve.select(np.arange(len(curve)) < 100), curve.select(np.arange(len(curve)) >= 100))
    stitched = lc.stitch([second, first])
    assert len(stitched) == 197 and stitched.meta["NBADBIN"] == 1 and stitched.meta["NCHUNKS"] == 2
    assert np.all(np.diff(stitched.time) > 0)
    # ONTIME (days) = sum of FRACEXP x |TIMEDEL| over every row, the dropped one included
    data = fits.getdata(path, 1)
    dropped = np.abs(data["FRACEXP"] * data["TIMEDEL"])[data["TIMEDEL"] < 0].sum()
    assert stitched.exposure.sum() == pytest.approx((header["ONTIME"] - dropped) * 86400, rel=1e-5)
    assert header["TELAPSE"] == pytest.approx(header["TSTOP"] - header["TSTART"])


def test_real_jemx_light_curve_through_the_oda_api_product():
    product = NumpyDataProduct.from_fits_file(
        str(REAL_PRODUCTS / "lc.fits"),
        meta_data={
            "src_name": "GRB221009A",
            "time_bin": 0.01157407,
            "time": "TIME",
            "rate": "RATE",
            "rate_err": "ERROR",
        },
    )
    product.name = "jemx_lc"
    collection = DataCollection([product], instrument="jemx", product="jemx_lc")
    curve = lc.LightCurve.from_data_collection(collection, "GRB221009A")
    direct = lc.LightCurve.read(REAL_PRODUCTS / "lc.fits")
    assert np.array_equal(curve.rate, direct.rate) and np.array_equal(curve.time, direct.time)


# -- variability with unequal errors (issue 10) ------------------------------------------------------------------
def heteroscedastic_curve(seed: int, *, n_bins: int = 200, rate: float = 10.0, signal=None, n_edge: int = 6):
    """ScW bins with errors spread over ×1–×4, and ``n_edge`` edge-of-field bins: error ×50, exposure 2 %."""
    rng = np.random.default_rng(seed)
    time, half_width = scw_times(n_bins)
    sigma = 0.5 * rng.uniform(1.0, 4.0, n_bins)
    fracexp = np.full(n_bins, 0.9)
    edge = rng.choice(n_bins, n_edge, replace=False)
    sigma[edge] = 25.0
    fracexp[edge] = 0.02
    truth = np.full(n_bins, rate) if signal is None else signal(time)
    return lc.LightCurve(
        source="OAO 1657-415",
        time=time,
        half_width=half_width,
        rate=truth + sigma * rng.standard_normal(n_bins),
        error=sigma,
        fracexp=fracexp,
        instrument="ISGRI",
        band=(28.0, 40.0),
        meta=dict(SIMULATION_MARK),
    )


def test_constant_source_with_edge_of_field_bins_is_not_variable():
    results = [lc.variability(heteroscedastic_curve(seed)) for seed in range(300)]
    assert all(r.n_excluded == 6 and r.n_bins == 194 for r in results)
    significance = np.array([r.excess_significance for r in results])
    # Constant in the sky: the excess variance is zero within its (Monte Carlo checked) error.
    assert np.count_nonzero(significance > 3) <= 3
    assert abs(significance.mean()) < 0.2 and 0.8 < significance.std(ddof=1) < 1.2
    # F_var's significance is that of σ²_NXS (F_var / err(F_var) → 2× it near zero, not a detection test).
    assert (
        np.count_nonzero([r.normalised_excess_variance > 3 * r.normalised_excess_variance_error for r in results]) <= 3
    )
    # The 3σ upper limit of F_var covers the truth (0) by construction; it stays small for this noise.
    assert np.median([r.fvar_upper_limit for r in results]) < 0.1
    p_values = np.array([r.p_value for r in results])
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def test_error_of_the_excess_variance_holds_for_unequal_errors_without_the_rule():
    # Kept bins with errors spread ×1–×8: the noise term of the error must match the scatter of σ²_XS.
    rng = np.random.default_rng(7)
    sigma = 0.5 * rng.uniform(1.0, 8.0, 150)
    time, half_width = scw_times(150)
    pulls = []
    for seed in range(400):
        noisy = 10.0 + sigma * np.random.default_rng(seed).standard_normal(150)
        curve = lc.LightCurve(
            source="c", time=time, half_width=half_width, rate=noisy, error=sigma, fracexp=np.full(150, 0.9)
        )
        pulls.append(lc.variability(curve, max_error_factor=np.inf, min_exposure_fraction=0.0).excess_significance)
    assert 0.85 < np.std(pulls, ddof=1) < 1.15


def test_variable_source_with_edge_of_field_bins_keeps_its_fvar():
    amplitude, period = 0.3, 7.3

    def signal(time):
        return 10.0 * (1.0 + amplitude * np.sin(2 * np.pi * time / period))

    rows = [lc.variability(heteroscedastic_curve(seed, n_bins=600, signal=signal)) for seed in range(20)]
    time = heteroscedastic_curve(0, n_bins=600).time
    truth = np.std(signal(time), ddof=1) / np.mean(signal(time))  # the sampled sinusoid's rms, noise-free
    pulls = np.array([(r.fvar - truth) / r.fvar_error for r in rows])
    assert np.all(np.abs(pulls) < 4) and abs(pulls.mean()) < 0.8
    assert all(r.excess_significance > 5 for r in rows)


def test_variability_rule_leaves_out_noisy_and_underexposed_bins():
    curve = make_curve(3, n_bins=10, sigma=np.array([1.0] * 8 + [11.0, 1.0]))
    curve.fracexp[9] = 0.05
    kept = lc.variability_bins(curve)
    assert list(np.flatnonzero(~kept)) == [8, 9]
    assert "10 x median(ERROR)" in lc.variability_rule()


def test_prepare_writes_the_rule_in_the_table_and_the_light_curves(tmp_path):
    curves, summary = lc.prepare({"OAO 1657-415": heteroscedastic_curve(1)}, systematic_fraction=0.0, time_bin_s=1.0)
    assert "median(ERROR)" in summary.meta["variability_rule"]
    assert summary["bins_excluded"][0] == 6 and summary["bins_used"][0] == 194
    summary.write(tmp_path / "lightcurves.ecsv")
    assert "median(ERROR)" in (tmp_path / "lightcurves.ecsv").read_text()
    path = curves["OAO 1657-415"].write(tmp_path / "lc.fits")
    header = fits.getheader(path, 1)
    assert header["VARERRMX"] == lc.MAX_ERROR_FACTOR and header["VARNEXCL"] == 6


def test_unicode_source_name_is_folded_in_fits(tmp_path):
    curve = make_curve(4, n_bins=5, source="Boötes null")
    path = curve.write(tmp_path / "lc.fits", provenance={"OBJECT": ("Boötes null", "target")})
    assert fits.getheader(path, 1)["NAME"] == "Bootes null"
    assert fits.getheader(path, 0)["OBJECT"] == "Bootes null"
