"""Injection–recovery of light curves and spectra: point sources injected into the local MMODA at random places.

Nine sources (fixed seed: random positions, 100–300 mCrab, photon index 1.6–3.0) are injected into one server,
three in each of three fields (a high-latitude field, the Norma arm, 1–2° from the Crab); one of them is modulated
(``sine`` shape), the others are constant. Each field is observed in 16 random good ScWs of the server's archive
pointed within 4° of it; the light curves (ISGRI 20–40 keV, one bin per ScW) and the spectra are fetched and
analysed by the client (``Session.fetch``, ``lightcurve.light_curves_from_pieces``,
``spectrum.spectra_from_pieces`` and ``spectrum.fit_sources``). The truth is the server's own sky model: each
source's band rate in mmoda_local's sky over each ScW (its variability included), and the photon index of its
ISGRI spectrum there, never the client's assumptions.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from astropy.table import Table
from scipy import stats

from integral_workflows import catalog, queries, spectrum
from integral_workflows import lightcurve as lc
from integral_workflows.session import Session

from .test_injection_recovery import FIELDS, PATIENT, place_sources

log = logging.getLogger(__name__)

E1, E2 = 20.0, 40.0
SCWS_PER_FIELD = 16
SOURCES_PER_FIELD = 3
FIELD_NAMES = ("high-latitude", "norma", "crab")
#: The modulated source: period (days) and relative amplitude of its sine (the server's shape grammar).
SINE = "sine:3.7:0.6"
#: Bins longer than any ScW: one bin per ScW (MMODA bins whole ScWs then).
TIME_BIN_S = 20_000.0
PARAMETERS = {
    "osa_version": "OSA11.2",
    "E1_keV": E1,
    "E2_keV": E2,
    "src_name": "injected",
    "instrument": "isgri",
    "integral_data_rights": "public",
}
GROUPING = {"min_energy": 20.0, "max_energy": 600.0, "factor": -30}


def draw_sources(archive, sky, rng) -> tuple[list[dict], dict]:
    """Injected sources and ScWs of the three fields, drawn with ``rng``.

    As in test_injection_recovery: sources ≥ 0.5° from any sky source brighter than 5 mCrab and ≥ 0.6° from each
    other (no confusion), ScWs random good pointings within 4° of the field's centre.
    """
    injected, scws = [], {}
    for field in FIELD_NAMES:
        placed, scws[field] = place_sources(
            archive,
            sky,
            rng,
            field,
            FIELDS[field],
            count=SOURCES_PER_FIELD,
            flux_mcrab=(100.0, 300.0),
            n_scws=SCWS_PER_FIELD,
        )
        injected += placed
    injected[0]["shape"] = SINE
    return injected, scws


def true_scw_rates(archive, sky, scw_ids, name) -> dict:
    """ScW id (no version) → (TSTART, TSTOP, band rate of ``name`` over the ScW) in the server's sky."""
    from mmoda_local.instrument import ScwView, instrument_for

    isgri = instrument_for("isgri")
    truth = {}
    for index in archive.index_of(scw_ids):
        row = archive.table[index]
        view = ScwView(row, sky, isgri)
        names = [str(n) for n in view.names]
        if name in names:
            rate = view.band_rates_in(E1, E2, [view.tstart, view.tstop])[names.index(name), 0]
            truth[view.swid] = (view.tstart, view.tstop, float(rate))
    return truth


@pytest.fixture(scope="module")
def recovered(tmp_path_factory, archive_cache):
    """(injected sources, light-curve rows, spectral-fit rows): one server, three fields fetched by the client."""
    from mmoda_local.archive import ScwArchive
    from mmoda_local.config import ServerConfig
    from mmoda_local.server import ServerThread
    from mmoda_local.sky import Sky

    rng = np.random.default_rng(2027)
    archive = ScwArchive.load(cache_dir=archive_cache)
    injected, scws = draw_sources(archive, Sky.default(), rng)
    folder = tmp_path_factory.mktemp("injection-lc-spectra")
    server = ServerThread(
        ServerConfig(
            data_dir=folder / "server",
            archive_cache_dir=archive_cache,
            debug_instruments=True,
            injected_sources=injected,
        )
    ).start()
    try:
        sky = server.backend.analysis.sky  # the server's own sky, with the injected sources
        session = Session(url=server.url, cache_dir=folder / "chunks", retry=PATIENT, progress=False)
        curves, fits_rows = [], []
        for field in FIELD_NAMES:
            ra, dec, *_ = FIELDS[field]
            mine = [s for s in injected if s["name"].startswith(f"SIM {field} ")]
            names = [s["name"] for s in mine]
            selected = catalog.to_api_catalog(
                Table(
                    {
                        "name": names,
                        "ra": [s["ra"] for s in mine],
                        "dec": [s["dec"] for s in mine],
                        "significance": [50.0] * len(mine),
                    }
                )
            )
            request = queries.light_curve_request(
                PARAMETERS, ra=ra, dec=dec, selected_catalog=selected, time_bin_s=TIME_BIN_S
            )
            record = session.fetch(request, scws[field], s_max=8)
            for name, curve in lc.light_curves_from_pieces(record.pieces, names).items():
                truth = true_scw_rates(archive, sky, scws[field], name)
                edges = sorted(truth.values())
                # each bin is one ScW: its truth is the ScW whose span holds the bin's centre
                true_rate = np.array(
                    [next(r for start, stop, r in edges if start <= t <= stop) for t in curve.time], dtype=float
                )
                entry = next(s for s in mine if s["name"] == name)
                curves.append({"name": name, "shape": entry.get("shape"), "curve": curve, "truth": true_rate})
            request = queries.spectrum_request(PARAMETERS, ra=ra, dec=dec, selected_catalog=selected)
            record = session.fetch(request, scws[field], s_max=8)
            combined = spectrum.spectra_from_pieces(record.pieces, names, instrument="isgri")
            _, fits_by_source, _ = spectrum.fit_sources(
                combined, instrument="isgri", systematic_fraction=0.0, band_keV=(E1, E2), grouping=GROUPING
            )
            for name, fit in fits_by_source.items():
                index = sky.find(name)
                fits_rows.append(
                    {
                        "name": name,
                        "gamma": float(fit.gamma),
                        "gamma_error": float(fit.gamma_error),
                        # the truth: the photon index of the source's ISGRI spectrum in the server's sky
                        "truth": sky.spectral_parameters(index)["index_isgri"],
                    }
                )
        return injected, curves, fits_rows
    finally:
        server.stop()


def test_constant_light_curves_recover_the_injected_rates(recovered):
    injected, curves, _ = recovered
    constant = [c for c in curves if not c["shape"]]
    assert len(constant) == len(injected) - 1, "every constant injected source has a light curve"
    ratios, ratio_errors, pulls = [], [], []
    for c in constant:
        curve, truth = c["curve"], c["truth"]
        assert curve.simulated and len(curve.rate) >= SCWS_PER_FIELD // 2
        weight = 1.0 / curve.error**2
        mean = np.sum(weight * curve.rate) / np.sum(weight)
        ratios.append(mean / (np.sum(weight * truth) / np.sum(weight)))
        ratio_errors.append(math.sqrt(1.0 / np.sum(weight)) / (np.sum(weight * truth) / np.sum(weight)))
        pulls.append((curve.rate - truth) / curve.error)
    ratios, ratio_errors = np.array(ratios), np.array(ratio_errors)
    pooled = float(np.sum(ratios / ratio_errors**2) / np.sum(1.0 / ratio_errors**2))
    pooled_error = float(math.sqrt(1.0 / np.sum(1.0 / ratio_errors**2)))
    pulls = np.concatenate(pulls)
    pull_std = float(pulls.std(ddof=1))
    log.info(
        "light curves: N = %d sources, %d bins; pooled rate/truth %.4f ± %.4f; pull mean %.3f, std %.3f",
        len(constant),
        len(pulls),
        pooled,
        pooled_error,
        float(pulls.mean()),
        pull_std,
    )
    assert abs(pooled - 1.0) < max(0.02, 3.0 * pooled_error), f"pooled rate/truth {pooled:.4f} ± {pooled_error:.4f}"
    # every source on its own agrees with its truth within its error
    assert np.all(np.abs(ratios - 1.0) < 4.0 * ratio_errors), ratios
    assert 0.9 < pull_std < 1.2, f"pull std {pull_std:.3f}"
    assert abs(float(pulls.mean())) < 4.0 / math.sqrt(len(pulls))


def test_modulated_light_curve_follows_its_truth(recovered):
    _, curves, _ = recovered
    (modulated,) = [c for c in curves if c["shape"] == SINE]
    curve, truth = modulated["curve"], modulated["truth"]
    chi2 = float(np.sum(((curve.rate - truth) / curve.error) ** 2))
    dof = len(curve.rate)
    p_truth = float(stats.chi2.sf(chi2, dof))
    # and the modulation is seen: a constant does not describe it
    weight = 1.0 / curve.error**2
    flat = np.sum(weight * curve.rate) / np.sum(weight)
    p_constant = float(stats.chi2.sf(np.sum(weight * (curve.rate - flat) ** 2), dof - 1))
    log.info(
        "modulated: %d bins, chi2/dof vs truth %.2f (p %.3g); vs constant p %.3g",
        dof,
        chi2 / dof,
        p_truth,
        p_constant,
    )
    assert np.ptp(truth) > 0.3 * np.mean(truth), "the random ScWs sample the sine (truth varies)"
    assert p_truth > 1e-3, f"chi2/dof {chi2 / dof:.2f}"
    assert p_constant < 1e-6


def test_spectral_indices_recover_the_injected_ones(recovered):
    injected, _, rows = recovered
    assert len(rows) == len(injected), "every injected source is fitted"
    pulls = np.array([(r["gamma"] - r["truth"]) / r["gamma_error"] for r in rows])
    injected_index = {s["name"]: s["index"] for s in injected}
    # the server's sky holds the indices injected
    assert all(abs(r["truth"] - injected_index[r["name"]]) < 1e-6 for r in rows)
    log.info(
        "spectra: N = %d, pull mean %.3f, std %.3f, max |pull| %.2f, median sigma_Gamma %.3f",
        len(pulls),
        float(pulls.mean()),
        float(pulls.std(ddof=1)),
        float(np.abs(pulls).max()),
        float(np.median([r["gamma_error"] for r in rows])),
    )
    assert abs(float(pulls.mean())) < 0.5
    assert 0.7 < float(pulls.std(ddof=1)) < 1.5
    assert np.all(np.abs(pulls) < 3.5)
