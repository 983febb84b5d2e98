"""SPI-ACS light curves through the local MMODA: the client's call, background, excess search and upper limits.

One local MMODA serves every test of the module, with bursts injected (``--inject-grb``, as
``ServerConfig.injected_grbs``) at times, durations and directions drawn with a fixed seed in the
simulation's data-taking intervals, away from one another and from the catalogue bursts.

The truth comes from the simulation, never from the client: each injected burst's expected counts are
those the server itself states (``SpiAcsModel.expected_burst_counts``, the number the server logs for
each ``--inject-grb``); its background rate and excess variance are the model's. The fluences are chosen
from that truth so that each burst has a stated true signal-to-noise ratio over its duration
(S/N = counts / √(F · background counts)).

* Recovery: 40 bursts of true S/N 7–15 (0.1–20 s, short or long spectrum), each searched for in
  T0 ± 30 s: detected when the post-trials significance is ≥ 3σ and the best window overlaps the burst.
* Null: 40 quiet times; at each, the significances of non-overlapping windows of every timescale in the
  interval excluded from the background fit (where a burst would be) must be N(0, 1).
* Upper limits: 120 faint bursts of true S/N 3–4.5, the limits for a burst starting at T0 on the shortest
  timescale that holds the whole burst. Their coverage is checked against the server's expected counts
  (the "documented per-burst information"), rather than against the excess of a bright twin burst,
  because the twin would sit at another time, hence another attitude and response, and its own
  noise would enter the truth. Limits n σ above the measured excess hold the truth at Φ(n) (exactly
  for true counts ≥ n σ, which the draws make so for n = 1): checked at n = 1, 2 and 3.

The tolerances are binomial or Gaussian with tail probabilities ≤ 1e-3, so a test cannot fail by chance
at a reasonable rate; the figures measured are logged and written in docs/science_notes.md.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from scipy import stats

from integral_workflows import spiacs
from integral_workflows.session import Session

log = logging.getLogger(__name__)

SEED = 20240613
BEFORE_S = AFTER_S = 300.0
EXCLUDE = (-50.0, 50.0)
SEARCH = (-30.0, 30.0)
THRESHOLD = 3.0
N_RECOVERY, N_UL, N_NULL = 40, 120, 40


def _isot(seconds: float) -> str:
    from mmoda_local.spiacs import _utc_isot

    return _utc_isot(seconds, precision=3)


def _draw_times(model, rng, n: int, taken: list[float]) -> list[float]:
    """Times (UTC day-count seconds) inside data-taking intervals, ≥ 2000 s from each other and any burst."""
    from mmoda_local.spiacs import BURST_CATALOGUE

    avoid = [b.t0_s for b in BURST_CATALOGUE] + taken
    times = []
    while len(times) < n:
        interval = model.revolution_data_interval(int(rng.integers(60, 2800)))
        if interval is None or interval[1] - interval[0] < 4 * 3600:
            continue
        t = float(rng.uniform(interval[0] + 1800.0, interval[1] - 1800.0))
        t = math.floor(t)  # whole seconds: ISOT round trips exactly
        if min((abs(t - other) for other in avoid + times), default=1e9) > 2000.0:
            times.append(t)
    return times


def _draw_bursts(model, rng, times, *, snr_range, duration_range) -> list[dict]:
    """Bursts at ``times`` with a true S/N drawn in ``snr_range`` over their duration, from the model's truth."""
    from mmoda_local.spiacs import Burst

    bursts = []
    for t in times:
        duration = float(np.exp(rng.uniform(*np.log(duration_range))))
        spectrum = "short" if duration < 2.0 else "long"
        while True:  # a direction the Earth does not hide
            ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
            per_fluence = model.expected_burst_counts(Burst("probe", _isot(t), 1.0, duration, spectrum, ra, dec))
            if per_fluence > 0:
                break
        background = float(np.mean(model.background_rate(np.array([t, t + duration])))) * duration
        noise = math.sqrt(model.excess_variance(t) * background)
        snr = float(rng.uniform(*snr_range))
        fluence = snr * noise / per_fluence
        bursts.append(
            {
                "t0": _isot(t),
                "t0_s": t,
                "fluence": fluence,
                "duration": duration,
                "spectrum": spectrum,
                "ra": ra,
                "dec": dec,
                "snr": snr,
            }
        )
    return bursts


@pytest.fixture(scope="module")
def sky(tmp_path_factory, archive_cache):
    """One local MMODA with the drawn bursts, the bursts with their true counts, and the quiet times."""
    from mmoda_local import spiacs as twin
    from mmoda_local.archive import ScwArchive
    from mmoda_local.config import ServerConfig
    from mmoda_local.server import ServerThread

    archive = ScwArchive.load(cache_dir=archive_cache)
    probe = twin.SpiAcsModel(archive, seed=0)
    rng = np.random.default_rng(SEED)
    recovery_times = _draw_times(probe, rng, N_RECOVERY, [])
    ul_times = _draw_times(probe, rng, N_UL, recovery_times)
    quiet_times = _draw_times(probe, rng, N_NULL, recovery_times + ul_times)
    recovery = _draw_bursts(probe, rng, recovery_times, snr_range=(7.0, 15.0), duration_range=(0.1, 20.0))
    faint = _draw_bursts(probe, rng, ul_times, snr_range=(3.0, 4.5), duration_range=(0.1, 5.0))
    injections = [{k: b[k] for k in ("t0", "fluence", "duration", "spectrum", "ra", "dec")} for b in recovery + faint]
    config = ServerConfig(
        data_dir=tmp_path_factory.mktemp("spiacs-server"),
        archive_cache_dir=archive_cache,
        seed=0,
        injected_grbs=injections,
    )
    server = ServerThread(config).start()
    # the truth: what the server's own model expects of each injected burst (it logs the same number)
    model = twin.model_for(archive, seed=0, injections=injections)
    for burst, injected in zip(recovery + faint, twin.injected_bursts(injections, seed=0), strict=True):
        burst["expected_counts"] = model.expected_burst_counts(injected)
        burst["excess_variance"] = model.excess_variance(burst["t0_s"])
    yield {"server": server, "recovery": recovery, "faint": faint, "quiet": quiet_times, "model": model}
    server.stop()


@pytest.fixture
def session(sky):
    return Session(url=sky["server"].url, cache_dir=False, progress=False)


def _fetch(session, t0: str) -> spiacs.SpiAcsLightCurve:
    return spiacs.fetch_spiacs_lightcurve(session, t0_utc=t0, before_s=BEFORE_S, after_s=AFTER_S, time_bin_s=0.05)


# -- the client's call --------------------------------------------------------------------------------------------
def test_client_gets_spi_acs_lc_through_oda_api(sky, session):
    t0 = _isot(sky["quiet"][0])
    lc = _fetch(session, t0)
    assert lc.bin_s == pytest.approx(0.05)
    assert len(lc) == pytest.approx((BEFORE_S + AFTER_S) / 0.05, abs=2)
    assert lc.meta["request"]["instrument"] == "spi_acs" and lc.meta["data_level"] == "ordinary"
    assert lc.simulated and lc.meta["header"]["INSTRUME"] == "SPI-ACS"
    assert lc.t0_isot.startswith(t0[:19])
    # the window asked for: [t0 − 300 s, t0 + 300 s] within a bin
    assert lc.span_s[0] == pytest.approx(-BEFORE_S, abs=0.06) and lc.span_s[1] == pytest.approx(AFTER_S, abs=0.06)
    # SPI-ACS counts: ~10^5 counts/s, 50 ms bins of thousands of counts
    assert 3e4 < np.median(lc.rate) < 3e5
    assert np.allclose(lc.exposure_s, 0.05)
    # a coarser bin is the plugin's rebinning of the same counts
    coarse = spiacs.fetch_spiacs_lightcurve(session, t0_utc=t0, before_s=BEFORE_S, after_s=AFTER_S, time_bin_s=1.0)
    assert coarse.bin_s == 1.0 and coarse.counts.sum() == pytest.approx(lc.counts.sum(), rel=2e-3)


def test_a_data_gap_raises_no_data_with_the_backends_message(sky, session):
    model = sky["model"]
    gap = 0.5 * (model.revolution_data_interval(1000)[1] + model.revolution_data_interval(1001)[0])
    for t0 in (_isot(gap), "2025-06-01T00:00:00"):
        with pytest.raises(spiacs.SpiAcsNoData) as caught:
            _fetch(session, t0)
        assert "no usable data found for this time interval" in caught.value.debug_message
        assert "NoData" in str(caught.value)


def test_realtime_data_need_their_role(sky, session):
    with pytest.raises(spiacs.SpiAcsError):
        spiacs.fetch_spiacs_lightcurve(
            session, t0_utc=_isot(sky["quiet"][1]), before_s=60.0, after_s=60.0, data_level="realtime"
        )


# -- science ------------------------------------------------------------------------------------------------------
def test_injected_bursts_are_recovered_at_their_time(sky, session):
    recovered, pulls, rows = 0, [], []
    for burst in sky["recovery"]:
        lc = _fetch(session, burst["t0"])
        background = spiacs.fit_background(lc, exclude=EXCLUDE)
        search = spiacs.search_excess(lc, background, window=SEARCH, threshold_sigma=THRESHOLD)
        best = search.best
        overlaps = best.start_s < burst["duration"] + lc.bin_s and best.stop_s > -lc.bin_s
        found = search.detected and overlaps
        recovered += found
        # the whole burst's counts against the truth, on the shortest timescale holding it
        timescale = min(t for t in (*spiacs.DEFAULT_TIMESCALES_S, 20.0, 40.0) if t >= burst["duration"] + 0.05)
        whole = spiacs.excess_in_window(lc, background, start_s=0.0, timescale_s=timescale)
        pulls.append((whole["excess"] - burst["expected_counts"]) / whole["sigma_counts"])
        rows.append((burst["snr"], burst["duration"], best.post_trial_significance, best.time_s, found))
    fraction = recovered / len(sky["recovery"])
    log.warning(
        "SPI-ACS recovery: %d/%d = %.3f (true S/N 7-15, post-trials >= %g sigma, at the burst's time); "
        "whole-burst count pulls mean %.2f std %.2f",
        recovered,
        len(sky["recovery"]),
        fraction,
        THRESHOLD,
        np.mean(pulls),
        np.std(pulls),
    )
    missed = [row for row in rows if not row[-1]]
    assert fraction >= 0.95, missed
    # the excess counts are the injected counts: pulls N(0, 1) (5σ tolerances)
    n = len(pulls)
    assert abs(np.mean(pulls)) < 5 / math.sqrt(n)
    assert abs(np.std(pulls, ddof=1) - 1) < 5 / math.sqrt(2 * (n - 1))


def test_quiet_times_give_gaussian_significances(sky, session):
    by_timescale = {}
    trial_means = {}
    false_alarms, ratios = 0, []
    for t in sky["quiet"]:
        lc = _fetch(session, _isot(t))
        background = spiacs.fit_background(lc, exclude=EXCLUDE)
        ratios.append(background.excess_variance / sky["model"].excess_variance(t))
        search = spiacs.search_excess(lc, background, window=SEARCH, threshold_sigma=THRESHOLD)
        false_alarms += search.detected
        for timescale in spiacs.DEFAULT_TIMESCALES_S:
            scan = spiacs.scan_timescale(lc, background, timescale_s=timescale, window=EXCLUDE)
            m = scan.meta["n_bins"]
            disjoint = np.asarray(scan["significance"])[::m]
            chosen = disjoint[np.linspace(0, len(disjoint) - 1, min(50, len(disjoint))).astype(int)]
            by_timescale.setdefault(timescale, []).extend(chosen)
            trial_means.setdefault(timescale, []).append(chosen.mean())
    summary = []
    for timescale, values in by_timescale.items():
        values = np.asarray(values)
        means = np.asarray(trial_means[timescale])
        ks = stats.kstest(values, "norm").pvalue
        summary.append((timescale, len(values), values.mean(), values.std(ddof=1), ks))
        # the mean, with the trial-to-trial correlation (shared background model) counted: 5 standard errors
        assert abs(values.mean()) < 5 * means.std(ddof=1) / math.sqrt(len(means)), (timescale, values.mean())
        assert abs(values.std(ddof=1) - 1) < 5 / math.sqrt(2 * (len(values) - 1)) + 0.02, (timescale, values.std())
        assert ks > 1e-4, (timescale, ks)
    pooled = np.concatenate([np.asarray(v) for v in by_timescale.values()])
    log.warning(
        "SPI-ACS null: %s; pooled n=%d mean %.3f std %.3f; false alarms %d/%d; F measured/true %.3f ± %.3f",
        "; ".join(f"{t:g} s: n={n} mean {m:+.3f} std {s:.3f} KS p {p:.2g}" for t, n, m, s, p in summary),
        len(pooled),
        pooled.mean(),
        pooled.std(),
        false_alarms,
        len(sky["quiet"]),
        np.mean(ratios),
        np.std(ratios),
    )
    # 3σ after trials at 40 quiet times: ≥ 3 false alarms has a chance of < 2e-5 if the trials are right
    assert false_alarms <= 2
    assert abs(np.mean(ratios) - 1) < 0.05


def test_upper_limits_contain_the_true_counts_at_the_stated_rate(sky, session):
    covered = {1.0: 0, 2.0: 0, 3.0: 0}
    pulls = []
    for burst in sky["faint"]:
        lc = _fetch(session, burst["t0"])
        background = spiacs.fit_background(lc, exclude=EXCLUDE)
        timescale = min(t for t in spiacs.DEFAULT_TIMESCALES_S if t >= burst["duration"] + 0.05)
        for n in covered:
            limit = spiacs.upper_limits(lc, background, timescales_s=(timescale,), sigma=n, at_s=0.0)[0]
            covered[n] += burst["expected_counts"] <= limit["ul_counts"]
        pulls.append((limit["excess"] - burst["expected_counts"]) / limit["sigma_counts"])
    total = len(sky["faint"])
    log.warning(
        "SPI-ACS upper limits (%d faint bursts, true S/N 3-4.5): coverage %s (nominal %s); pulls mean %.2f std %.2f",
        total,
        {n: round(k / total, 3) for n, k in covered.items()},
        {n: round(float(stats.norm.cdf(n)), 4) for n in covered},
        np.mean(pulls),
        np.std(pulls),
    )
    for n, k in covered.items():
        nominal = stats.norm.cdf(n)
        # never significantly below the stated rate
        assert stats.binom.cdf(k, total, nominal) > 1e-3, (n, k, total)
    # at 1σ the true counts are all ≥ σ: the coverage is exactly Φ(1), not merely above it
    assert stats.binom.sf(covered[1.0] - 1, total, stats.norm.cdf(1.0)) > 1e-3


# -- the response approximation (no server) -------------------------------------------------------------------------
def test_response_approximation_is_of_the_published_order():
    """Peak area 0.3–1 m² above ~80 keV; 1 count ≈ 1e-10 erg/cm² (75 keV–1 MeV) at 90° (Viganò & Mereghetti 2009)."""
    assert 3000 < spiacs.PEAK_AREA_CM2 < 10_000
    assert spiacs.effective_area_cm2(50.0) == 0.0 and spiacs.effective_area_cm2(1000.0) > 0.8 * spiacs.PEAK_AREA_CM2
    per_count = 1 / spiacs.counts_per_fluence("long-soft", theta_deg=90.0, band_keV=(75.0, 1000.0))
    assert per_count == pytest.approx(1e-10, rel=1e-3)
    # weaker along the pointing axis than sideways, and the isotropic mean in between
    assert spiacs.angular_response(0.0) < spiacs.angular_response(180.0) < spiacs.angular_response(90.0) == 1.0
    assert spiacs.angular_response(0.0) < spiacs.angular_response(None) < 1.0
    table = spiacs.fluence_upper_limits({1.0: 1000.0}, theta_deg=90.0)
    assert list(table["spectrum"]) == ["short-hard", "long-soft"]
    # GCN circulars' 3σ limits for a 1 s short burst at a good direction are ~2e-7 erg/cm² (75–2000 keV):
    # 1000 counts is about that 3σ on 1 s
    assert 5e-8 < table["fluence_ul_erg_cm2"][0] < 5e-7
