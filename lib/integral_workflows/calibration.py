"""Crab calibration: from count rates (ct/s) to mCrab and erg/cm²/s, per half-year or year.

The Crab is INTEGRAL's standard candle: its hard X-ray flux is stable to a
few per cent over the mission (Jourdain & Roques 2020: ±5 % in 20–400 keV),
while ISGRI's response is not (gain loss, threshold rise; the Crab's rate
in 15–30 keV falls by ~20 % after 2016, science notes §3). A source's rate
divided by the Crab's rate *at the same epoch, in the same band* is
therefore a flux in Crab units that the ageing cancels from::

    flux [mCrab]     = 1000 × rate / rate_Crab(epoch, band)
    flux [erg/cm²/s] = rate / rate_Crab(epoch, band) × F_Crab(band)

where ``F_Crab(band)`` integrates a documented Crab spectrum over the band
(:data:`CRAB_SPECTRUM`; science notes §4). The conversion is exact for a
source with the Crab's spectral shape and approximate for others (the
band-averaged response weights the spectrum differently).

The Crab rates come from ScWs with the Crab in the field, measured in
single-ScW images (PSF fit, or the sub-pixel intensity) and/or from
``isgri_lc`` light curves, and averaged with inverse-variance weights per
half-year (``"half-year"``) or calendar year (``"year"``):
:func:`period_means`. :class:`CrabCalibration` holds the result, writes and
reads it (ECSV, the file the light-curve and moving-target notebooks read)
and converts rates. A time outside every calibrated period takes the
nearest period's rate and is flagged, never dropped silently.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table, vstack
from astropy.time import Time

log = logging.getLogger(__name__)

__all__ = [
    "CrabSpectrum",
    "CRAB_SPECTRUM",
    "CRAB_POSITION",
    "PERIODS",
    "period_labels",
    "period_bounds",
    "sample_per_period",
    "period_means",
    "CrabCalibration",
    "compare_methods",
    "plot_calibration",
]

IJD_MJD_OFFSET = 51544.0
KEV_TO_ERG = 1.602176634e-9
#: The Crab's position (ISDC reference catalogue, J2000, deg).
CRAB_POSITION = (83.63321, 22.014471)
#: Calibration periods.
PERIODS = ("year", "half-year")


@dataclasses.dataclass(frozen=True)
class CrabSpectrum:
    """A power-law Crab spectrum N(E) = K (E/E0)^-Γ (ph cm⁻² s⁻¹ keV⁻¹).

    Attributes
    ----------
    index : float
        Photon index Γ.
    norm : float
        K at ``pivot_keV``, ph cm⁻² s⁻¹ keV⁻¹.
    pivot_keV : float
        E0.
    reference : str
        Where the numbers come from.
    """

    index: float
    norm: float
    pivot_keV: float
    reference: str

    def photon_flux(self, e1_keV: float, e2_keV: float) -> float:
        """∫ N dE over [e1, e2] keV, ph cm⁻² s⁻¹."""
        return float(
            self.norm
            * self.pivot_keV
            * _power_integral(e1_keV / self.pivot_keV, e2_keV / self.pivot_keV, 1.0 - self.index)
        )

    def energy_flux(self, e1_keV: float, e2_keV: float) -> float:
        """∫ E N dE over [e1, e2] keV, erg cm⁻² s⁻¹ (science notes §4's formula)."""
        return float(
            self.norm
            * self.pivot_keV**2
            * _power_integral(e1_keV / self.pivot_keV, e2_keV / self.pivot_keV, 2.0 - self.index)
            * KEV_TO_ERG
        )


def _power_integral(x1: float, x2: float, exponent: float) -> float:
    """∫ x^(exponent−1) dx from x1 to x2 (the logarithm at exponent 0)."""
    if abs(exponent) < 1e-12:
        return math.log(x2 / x1)
    return (x2**exponent - x1**exponent) / exponent


#: The Crab of the INTEGRAL cross-calibration (Γ = 2.13, 6.2e-4 ph cm⁻² s⁻¹ keV⁻¹ at 100 keV; science notes §4,
#: the ISGRI model of the EPFL student project, from arXiv:0810.0646): 8.43e-9 erg/cm²/s in 15–30 keV, 1.55e-8 in
#: 20–80 keV. The local MMODA's Crab is this same spectrum. SPI's Crab is stable within ±5 % (2003–2019) and
#: cross-calibration between instruments agrees within ~7 %: quote that systematic on absolute fluxes.
CRAB_SPECTRUM = CrabSpectrum(
    index=2.13,
    norm=6.2e-4,
    pivot_keV=100.0,
    reference="power law, photon index 2.13, 6.2e-4 ph/cm2/s/keV at 100 keV (INTEGRAL "
    "cross-calibration, arXiv:0810.0646; science notes section 4)",
)


# -- periods -----------------------------------------------------------------------------------------------------


def _utc_calendar(ijd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dubious year.*")
        ymdhms = Time(np.asarray(ijd, dtype=float) + IJD_MJD_OFFSET, format="mjd", scale="tt").utc.ymdhms
    return np.asarray(ymdhms["year"], dtype=int), np.asarray(ymdhms["month"], dtype=int)


def period_labels(ijd, period: str) -> np.ndarray:
    """Label of the calibration period of each time: ``'2005'`` (year), ``'2005H1'`` (half-year), ``'2005-03'`` (month).

    Parameters
    ----------
    ijd : array_like
        Times, IJD (TT).
    period : {'year', 'half-year', 'month'}
    """
    ijd = np.atleast_1d(np.asarray(ijd, dtype=float))
    if len(ijd) == 0:
        return np.zeros(0, dtype="U8")
    year, month = _utc_calendar(ijd)
    if period == "year":
        return np.char.mod("%04d", year)
    if period == "half-year":
        return np.char.add(np.char.mod("%04d", year), np.where(month <= 6, "H1", "H2"))
    if period == "month":
        return np.char.add(np.char.add(np.char.mod("%04d", year), "-"), np.char.mod("%02d", month))
    raise ValueError(f"period = {period!r}: 'year', 'half-year' or 'month'")


def period_bounds(label: str) -> tuple[float, float]:
    """Start and end (IJD, TT) of a period label (UTC calendar boundaries)."""
    label = str(label)
    if "H" in label:
        year, half = int(label[:4]), int(label[-1])
        start, stop = (f"{year}-01-01", f"{year}-07-01") if half == 1 else (f"{year}-07-01", f"{year + 1}-01-01")
    elif "-" in label:
        year, month = int(label[:4]), int(label[5:7])
        start = f"{year}-{month:02d}-01"
        stop = f"{year + (month == 12)}-{month % 12 + 1:02d}-01"
    else:
        year = int(label)
        start, stop = f"{year}-01-01", f"{year + 1}-01-01"
    times = Time([start, stop], scale="utc").tt.mjd - IJD_MJD_OFFSET
    return float(times[0]), float(times[1])


def sample_per_period(
    table: Table, n_per_period: int, *, period: str = "half-year", seed: int = 0, time_column: str = "mjd_mid"
) -> Table:
    """Draw at most ``n_per_period`` rows per calibration period, at random (seeded), spread in time.

    Parameters
    ----------
    table : astropy.table.Table
        ScWs (with ``mjd_mid``, MJD TT, as :mod:`integral_workflows.scw` makes them).
    n_per_period : int
        ScWs per period (all of a period that has fewer).
    period : {'year', 'half-year'}
    seed : int
        Seed of the draw.
    time_column : str
        Column of times (MJD).

    Returns
    -------
    astropy.table.Table
        The drawn rows, in time order.
    """
    if len(table) == 0:
        return table
    labels = period_labels(np.asarray(table[time_column], dtype=float) - IJD_MJD_OFFSET, period)
    generator = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) > n_per_period:
            # Draw within equal time slices of the period's ScWs so that visits (the Crab has two a year) all count.
            slices = np.array_split(rows, n_per_period)
            rows = np.array([generator.choice(part) for part in slices if len(part)])
        chosen.extend(rows.tolist())
    return table[np.sort(np.asarray(chosen, dtype=int))]


def period_means(ijd, rates, errors, *, period: str) -> Table:
    """Inverse-variance means of rates per period.

    Parameters
    ----------
    ijd, rates, errors : array_like
        Times (IJD), rates and 1σ errors; non-finite entries are ignored.
    period : {'year', 'half-year', 'month'}

    Returns
    -------
    astropy.table.Table
        ``period``, ``ijd_start``, ``ijd_stop``, ``ijd_mean`` (weighted),
        ``n``, ``rate``, ``rate_error`` (statistical, inflated by
        √(χ²/dof) when the scatter exceeds the errors), ``chi2``, ``dof``.
    """
    ijd, rates, errors = (np.asarray(v, dtype=float) for v in (ijd, rates, errors))
    good = np.isfinite(ijd) & np.isfinite(rates) & np.isfinite(errors) & (errors > 0)
    ijd, rates, errors = ijd[good], rates[good], errors[good]
    labels = period_labels(ijd, period)
    rows = []
    for label in np.unique(labels):
        chosen = labels == label
        weight = 1.0 / errors[chosen] ** 2
        mean = float(np.sum(weight * rates[chosen]) / np.sum(weight))
        error = float(1.0 / math.sqrt(np.sum(weight)))
        chi2 = float(np.sum(weight * (rates[chosen] - mean) ** 2))
        dof = int(chosen.sum() - 1)
        if dof > 0 and chi2 > dof:
            error *= math.sqrt(chi2 / dof)
        start, stop = period_bounds(label)
        rows.append(
            (
                str(label),
                start,
                stop,
                float(np.sum(weight * ijd[chosen]) / np.sum(weight)),
                int(chosen.sum()),
                mean,
                error,
                chi2,
                dof,
            )
        )
    table = Table(
        rows=rows,
        names=("period", "ijd_start", "ijd_stop", "ijd_mean", "n", "rate", "rate_error", "chi2", "dof"),
        dtype=("U8", float, float, float, int, float, float, float, int),
    )
    for name in ("ijd_start", "ijd_stop", "ijd_mean"):
        table[name].unit = u.d
    return table


# -- the calibration -------------------------------------------------------------------------------------------


class CrabCalibration:
    """Crab count rates per period and the conversions they give.

    Parameters
    ----------
    table : astropy.table.Table
        From :func:`period_means`: ``period``, ``ijd_start``, ``ijd_stop``,
        ``rate``, ``rate_error`` (ct/s), ``n`` (at least).
    instrument : str
        ``isgri``, ``jemx1`` or ``jemx2``.
    e1_keV, e2_keV : float
        The band.
    method : str
        How the Crab rates were measured (``psf_fit``, ``pixel``, ``isgri_lc``...).
    spectrum : CrabSpectrum
        The Crab spectrum integrated over the band.
    """

    def __init__(
        self,
        table: Table,
        *,
        instrument: str,
        e1_keV: float,
        e2_keV: float,
        method: str,
        spectrum: CrabSpectrum = CRAB_SPECTRUM,
        period: str = "year",
    ):
        required = {"period", "ijd_start", "ijd_stop", "rate", "rate_error"}
        missing = required - set(table.colnames)
        if missing:
            raise ValueError(f"a calibration table needs the columns {sorted(missing)}")
        if len(table) == 0:
            raise ValueError("a calibration needs at least one period with Crab measurements")
        self.table = table.copy()
        self.table.sort("ijd_start")
        self.instrument = str(instrument)
        self.e1_keV, self.e2_keV = float(e1_keV), float(e2_keV)
        self.method = str(method)
        self.spectrum = spectrum
        self.period = period

    def __repr__(self) -> str:
        return (
            f"CrabCalibration({self.instrument} {self.e1_keV:g}-{self.e2_keV:g} keV, {len(self.table)} "
            f"{self.period} periods, {self.method})"
        )

    @property
    def band_photon_flux(self) -> float:
        """The Crab spectrum's photon flux in the band, ph cm⁻² s⁻¹."""
        return self.spectrum.photon_flux(self.e1_keV, self.e2_keV)

    @property
    def band_energy_flux(self) -> float:
        """The Crab spectrum's energy flux in the band, erg cm⁻² s⁻¹."""
        return self.spectrum.energy_flux(self.e1_keV, self.e2_keV)

    def crab_rate_at(self, ijd) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The Crab's rate (and error) of the period of each time.

        Parameters
        ----------
        ijd : array_like
            Times, IJD.

        Returns
        -------
        rate, error : numpy.ndarray
            ct/s.
        period : numpy.ndarray of str
            The period used.
        inside : numpy.ndarray of bool
            False where no calibrated period covers the time and the nearest
            one was used (logged once).
        """
        t = np.atleast_1d(np.asarray(ijd, dtype=float))
        start = np.asarray(self.table["ijd_start"], dtype=float)
        stop = np.asarray(self.table["ijd_stop"], dtype=float)
        covering = (t[:, None] >= start[None, :]) & (t[:, None] < stop[None, :])
        inside = covering.any(axis=1)
        middle = 0.5 * (start + stop)
        distance = np.minimum(np.abs(t[:, None] - start[None, :]), np.abs(t[:, None] - stop[None, :]))
        index = np.where(
            inside,
            np.argmax(covering, axis=1),
            np.argmin(distance + 1e-9 * np.abs(t[:, None] - middle[None, :]), axis=1),
        )
        if not inside.all():
            log.warning(
                "%d time(s) outside every calibrated period (%s): the nearest period's Crab rate is used",
                int((~inside).sum()),
                ", ".join(self.table["period"]),
            )
        return (
            np.asarray(self.table["rate"], dtype=float)[index],
            np.asarray(self.table["rate_error"], dtype=float)[index],
            np.asarray(self.table["period"]).astype(str)[index],
            inside,
        )

    def to_mcrab(self, rate, error, ijd, *, include_calibration_error: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Rates (ct/s) at times ``ijd`` in mCrab, with errors.

        Parameters
        ----------
        rate, error : array_like
            Count rates and 1σ errors in the calibration's band and instrument.
        ijd : array_like
            Times (IJD) of the rates (broadcast).
        include_calibration_error : bool
            Add the Crab rate's relative error in quadrature.
        """
        crab, crab_error, _, _ = self.crab_rate_at(
            np.broadcast_to(np.asarray(ijd, dtype=float), np.shape(np.atleast_1d(rate))).ravel()
        )
        rate, error = np.atleast_1d(np.asarray(rate, dtype=float)), np.atleast_1d(np.asarray(error, dtype=float))
        crab, crab_error = crab.reshape(rate.shape), crab_error.reshape(rate.shape)
        value = 1000.0 * rate / crab
        if include_calibration_error:
            mcrab_error = 1000.0 * np.sqrt((error / crab) ** 2 + (rate * crab_error / crab**2) ** 2)
        else:
            mcrab_error = 1000.0 * error / crab
        return value, mcrab_error

    def mcrab_to_energy_flux(self, mcrab) -> np.ndarray:
        """mCrab → erg cm⁻² s⁻¹ in the band (the Crab spectrum's band flux per 1000 mCrab)."""
        return np.asarray(mcrab, dtype=float) * self.band_energy_flux / 1000.0

    def to_energy_flux(
        self, rate, error, ijd, *, include_calibration_error: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rates (ct/s) at times ``ijd`` in erg cm⁻² s⁻¹ (Crab-like spectrum assumed), with errors."""
        value, value_error = self.to_mcrab(rate, error, ijd, include_calibration_error=include_calibration_error)
        return self.mcrab_to_energy_flux(value), self.mcrab_to_energy_flux(value_error)

    def factors(self) -> Table:
        """Per period: Crab rate and the conversion factors from 1 ct/s to mCrab, ph/cm²/s and erg/cm²/s."""
        table = self.table.copy()
        rate = np.asarray(table["rate"], dtype=float)
        table["mcrab_per_count_rate"] = 1000.0 / rate
        table["photon_flux_per_count_rate"] = self.band_photon_flux / rate
        table["energy_flux_per_count_rate"] = self.band_energy_flux / rate
        table["energy_flux_per_count_rate_error"] = self.band_energy_flux * np.asarray(table["rate_error"]) / rate**2
        table["photon_flux_per_count_rate"].unit = u.ph / u.cm**2 / u.ct
        table["energy_flux_per_count_rate"].unit = u.erg / u.cm**2 / u.ct
        table["energy_flux_per_count_rate_error"].unit = u.erg / u.cm**2 / u.ct
        return table

    # -- files -------------------------------------------------------------------------------------------------
    def to_table(self) -> Table:
        """The calibration file's content: :meth:`factors` with the band, method and spectrum in ``meta``."""
        table = self.factors()
        table.meta.update(
            {
                "description": "Crab calibration of INTEGRAL count rates (integral_workflows.calibration)",
                "instrument": self.instrument,
                "e1_keV": self.e1_keV,
                "e2_keV": self.e2_keV,
                "method": self.method,
                "period": self.period,
                "crab_spectrum": dataclasses.asdict(self.spectrum),
                "band_photon_flux": self.band_photon_flux,
                "band_energy_flux": self.band_energy_flux,
                "conversion": "mCrab = 1000 rate / rate_Crab(period); erg/cm2/s = rate / rate_Crab(period) x "
                "band_energy_flux (exact for a Crab-like spectrum)",
                "systematics": "Crab flux stable within +-5 % (SPI 2003-2019); cross-calibration within ~7 %",
            }
        )
        return table

    def write(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the calibration as ECSV (the file the light-curve and moving-target notebooks read)."""
        path = Path(path)
        self.to_table().write(path, format="ascii.ecsv", overwrite=overwrite)
        log.info("Crab calibration (%d periods) written to %s", len(self.table), path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> CrabCalibration:
        """Read a file written by :meth:`write`."""
        table = Table.read(Path(path), format="ascii.ecsv")
        meta = table.meta
        spectrum = CrabSpectrum(**meta["crab_spectrum"]) if "crab_spectrum" in meta else CRAB_SPECTRUM
        return cls(
            table,
            instrument=meta["instrument"],
            e1_keV=meta["e1_keV"],
            e2_keV=meta["e2_keV"],
            method=meta.get("method", ""),
            spectrum=spectrum,
            period=meta.get("period", "year"),
        )

    def check_band(self, instrument: str, e1_keV: float, e2_keV: float) -> None:
        """Raise ValueError if the calibration is not for this instrument and band (a silent mix-up otherwise)."""
        if (
            str(instrument) != self.instrument
            or not math.isclose(float(e1_keV), self.e1_keV)
            or not math.isclose(float(e2_keV), self.e2_keV)
        ):
            raise ValueError(
                f"the Crab calibration is for {self.instrument} {self.e1_keV:g}-{self.e2_keV:g} keV, "
                f"not {instrument} {float(e1_keV):g}-{float(e2_keV):g} keV"
            )


def compare_methods(
    first: Table, second: Table, *, key: str = "scw_id", rate: str = "rate", error: str = "rate_error"
) -> dict:
    """Compare two sets of Crab rates measured on the same ScWs (e.g. images and ``isgri_lc``).

    Parameters
    ----------
    first, second : astropy.table.Table
        With ``key``, ``rate`` and ``error`` columns.

    Returns
    -------
    dict
        ``n`` matched, the weighted mean ratio first/second and its error,
        the mean and standard deviation of the pulls (difference over the
        combined error; the two measure the same photons, so the pulls'
        spread is below 1 when they agree).
    """
    index = {str(k): i for i, k in enumerate(second[key])}
    pairs = [(i, index[str(k)]) for i, k in enumerate(first[key]) if str(k) in index]
    if not pairs:
        return {"n": 0}
    a = np.array([[float(first[rate][i]), float(first[error][i])] for i, _ in pairs])
    b = np.array([[float(second[rate][j]), float(second[error][j])] for _, j in pairs])
    good = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1) & (b[:, 0] != 0)
    a, b = a[good], b[good]
    ratio = a[:, 0] / b[:, 0]
    ratio_error = np.abs(ratio) * np.hypot(a[:, 1] / a[:, 0], b[:, 1] / b[:, 0])
    weight = 1.0 / ratio_error**2
    pulls = (a[:, 0] - b[:, 0]) / np.hypot(a[:, 1], b[:, 1])
    return {
        "n": int(len(a)),
        "mean_ratio": float(np.sum(weight * ratio) / np.sum(weight)),
        "mean_ratio_error": float(1.0 / np.sqrt(np.sum(weight))),
        "pull_mean": float(np.mean(pulls)),
        "pull_std": float(np.std(pulls)),
    }


def plot_calibration(
    per_scw: Mapping[str, Table],
    calibrations: Sequence[CrabCalibration],
    *,
    title: str = "",
    path: str | Path | None = None,
    simulated: bool = False,
):
    """The Crab's rate over time: per-ScW points of each method and the period means.

    Parameters
    ----------
    per_scw : mapping of str to Table
        Method name → table with ``ijd``, ``rate``, ``rate_error``.
    calibrations : sequence of CrabCalibration
        Period means drawn as horizontal bars (one colour per calibration).
    title : str
    path : str or Path, optional
        Save as PNG.
    simulated : bool
        Mark the plot ``[SIMULATED DATA]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from .plotting import year_axis

    figure = Figure(figsize=(10, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))

    def years(ijd):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*dubious year.*")
            return Time(np.asarray(ijd, dtype=float) + IJD_MJD_OFFSET, format="mjd", scale="tt").decimalyear

    for k, (name, table) in enumerate(per_scw.items()):
        if len(table):
            top.errorbar(
                years(table["ijd"]),
                table["rate"],
                yerr=table["rate_error"],
                fmt="o",
                ms=2.5,
                lw=0.6,
                color=f"C{k}",
                alpha=0.6,
                label=f"{name} ({len(table)} ScWs)",
            )
    for k, calibration in enumerate(calibrations):
        table = calibration.table
        start, stop = years(table["ijd_start"]), years(table["ijd_stop"])
        for j in range(len(table)):
            top.hlines(
                table["rate"][j],
                start[j],
                stop[j],
                color=f"C{k + 3}",
                lw=2.2,
                label=f"{calibration.method}, {calibration.period} means" if j == 0 else None,
            )
        factor = calibration.factors()["energy_flux_per_count_rate"]
        bottom.errorbar(
            0.5 * (start + stop),
            factor * 1e11,
            xerr=0.5 * (stop - start),
            yerr=np.asarray(calibration.factors()["energy_flux_per_count_rate_error"]) * 1e11,
            fmt="s",
            ms=3,
            color=f"C{k + 3}",
            label=f"{calibration.method}, {calibration.period}",
        )
    top.set_ylabel("Crab rate (ct/s)")
    top.legend(fontsize=8, loc="best")
    bottom.set_ylabel("10⁻¹¹ erg cm⁻² s⁻¹ per ct/s")
    bottom.set_xlabel("year")
    year_axis(bottom.xaxis)
    bottom.legend(fontsize=8, loc="best")
    label = title + ("  [SIMULATED DATA]" if simulated else "")
    figure.suptitle(label)
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


# -- the calibration workflow (notebooks/crab_calibration.ipynb) ---------------------------------------------------

#: Largest Crab off-axis angle of the calibration ScWs: ISGRI's fully coded field, JEM-X's inner field.
CRAB_RADIUS_DEG = {"isgri": 4.5, "jemx": 3.0}
#: The end of INTEGRAL's science operations: the calibration span stops there.
_MISSION_END = "2025-03-01T00:00:00"


def calendar_span(t1: str, t2: str) -> tuple[str, str]:
    """The calendar years covering ``t1``–``t2`` (UTC ISOT); a ``t2`` at New Year ends the year before.

    Parameters
    ----------
    t1, t2 : str
        The period asked for.

    Returns
    -------
    tuple of str
        From 1 January of ``t1``'s year to 1 January after ``t2``'s year (at most the mission's end).
    """
    first_year = int(t1[:4])
    last_year = int(t2[:4]) - (1 if t2[5:].startswith("01-01T00:00:00") else 0)
    last_year = max(first_year, last_year)
    return f"{first_year}-01-01T00:00:00", min(f"{last_year + 1}-01-01T00:00:00", _MISSION_END)


def crab_parameters(params: Mapping) -> dict:
    """The run's parameters as the Crab's ScW selection and jobs need them: the Crab, its field, whole years.

    Parameters
    ----------
    params : mapping or parameter model
        The crab_calibration run's parameters.

    Returns
    -------
    dict
        ``src_name``, ``RA``, ``DEC`` (the Crab), ``radius`` (:data:`CRAB_RADIUS_DEG`), ``T1``/``T2``
        (:func:`calendar_span`) and the run's other values.
    """
    values = params.model_dump(mode="json") if hasattr(params, "model_dump") else dict(params)
    t1, t2 = calendar_span(values["T1"], values["T2"])
    values.update(
        src_name="Crab",
        RA=CRAB_POSITION[0],
        DEC=CRAB_POSITION[1],
        radius=CRAB_RADIUS_DEG[values["instrument"]],
        T1=t1,
        T2=t2,
    )
    return values


def image_rates(images: Iterable[tuple[str, float, Any]], *, psf_fwhm_deg: float) -> Table:
    """The Crab's count rate in single-ScW images, three ways, and a check of each image's variance map.

    Parameters
    ----------
    images : iterable of (str, float, SkyMosaic)
        ScW id, mid-time (IJD) and its image (``moving.images_from_pieces``).
    psf_fwhm_deg : float
        The instrument's PSF.

    Returns
    -------
    astropy.table.Table
        One row per ScW, by time: PSF fit at the Crab (fixed position), PSF fit with free position and
        offset, sub-pixel value, the offset of the free fit, and the ratio of the annulus scatter to the
        variance map's σ (≈ 1 when the map is right).
    """
    from . import photometry

    rows = []
    for scw_id, ijd, image in images:
        fixed = photometry.fit_psf(image, CRAB_POSITION, fwhm_deg=psf_fwhm_deg)
        free = photometry.fit_psf(image, CRAB_POSITION, fwhm_deg=psf_fwhm_deg, fit_position=True, fit_offset=True)
        value = photometry.pixel_value(image, CRAB_POSITION, psf_fwhm_deg=psf_fwhm_deg)
        check = photometry.annulus_check(image, CRAB_POSITION)
        offset_arcmin = photometry.pixel_scale_deg(image.wcs) * 60 * np.hypot(free.x - fixed.x, free.y - fixed.y)
        rows.append(
            (
                scw_id,
                ijd,
                fixed.amplitude,
                fixed.amplitude_error,
                free.amplitude,
                free.amplitude_error,
                free.position_error_deg * 60,
                offset_arcmin,
                value.value,
                value.error,
                check.ratio,
                check.significance_std,
            )
        )
    table = Table(
        rows=rows or None,
        names=(
            "scw_id",
            "ijd",
            "psf_fit",
            "psf_fit_error",
            "psf_free",
            "psf_free_error",
            "position_error_arcmin",
            "position_offset_arcmin",
            "pixel",
            "pixel_error",
            "annulus_scatter_ratio",
            "annulus_significance_std",
        ),
        dtype=(str,) + (float,) * 11,
    )
    table.sort("ijd")
    return table


def light_curve_rates(curve, scws: Table) -> Table:
    """The Crab's rate in each ScW from a light curve: the weighted mean of the bins within the ScW.

    Parameters
    ----------
    curve : integral_workflows.lightcurve.LightCurve or None
        The Crab's light curve (None: no rate).
    scws : astropy.table.Table
        The ScWs (``scw_id``, ``tstart``, ``tstop`` in IJD, ``mjd_mid``).

    Returns
    -------
    astropy.table.Table
        ``scw_id``, ``ijd``, ``rate``, ``rate_error`` for the ScWs with a finite bin.
    """
    from . import scw

    rows = []
    if curve is not None:
        for row in scws:
            inside = (
                (curve.time >= float(row["tstart"])) & (curve.time <= float(row["tstop"])) & np.isfinite(curve.rate)
            )
            if inside.any():
                weight = 1.0 / curve.error[inside] ** 2
                rows.append(
                    (
                        str(row["scw_id"]),
                        float(row["mjd_mid"]) - scw.IJD_MJD_OFFSET,
                        float(np.sum(weight * curve.rate[inside]) / np.sum(weight)),
                        float(1.0 / np.sqrt(np.sum(weight))),
                    )
                )
    return Table(rows=rows or None, names=("scw_id", "ijd", "rate", "rate_error"), dtype=(str, float, float, float))


def rates_by_method(images: Table, light_curve: Table) -> dict[str, Table]:
    """Each method's per-ScW Crab rates (``psf_fit``, ``pixel``, ``light_curve``): ``scw_id, ijd, rate, rate_error``."""
    return {
        "psf_fit": Table(
            {
                "scw_id": images["scw_id"],
                "ijd": images["ijd"],
                "rate": images["psf_fit"],
                "rate_error": images["psf_fit_error"],
            }
        ),
        "pixel": Table(
            {
                "scw_id": images["scw_id"],
                "ijd": images["ijd"],
                "rate": images["pixel"],
                "rate_error": images["pixel_error"],
            }
        ),
        "light_curve": light_curve,
    }


def comparison_table(methods: Mapping[str, Table]) -> Table:
    """The methods compared by pairs on their common ScWs: mean ratio and its error, pull mean and spread."""
    rows = []
    for first, second in (("psf_fit", "light_curve"), ("pixel", "light_curve"), ("pixel", "psf_fit")):
        result = compare_methods(methods[first], methods[second])
        if result["n"]:
            rows.append(
                (
                    f"{first} / {second}",
                    result["n"],
                    result["mean_ratio"],
                    result["mean_ratio_error"],
                    result["pull_mean"],
                    result["pull_std"],
                )
            )
    return Table(
        rows=rows or None,
        names=("methods", "ScWs", "mean ratio", "error", "pull mean", "pull std"),
        dtype=(str, int, float, float, float, float),
    )


def calibrations_by_method(
    methods: Mapping[str, Table], *, instrument: str, e1_keV: float, e2_keV: float
) -> tuple[dict, Table]:
    """Half-year and year calibrations of every method with rates, and their factors in one table.

    Returns
    -------
    (dict, astropy.table.Table)
        ``(method, period)`` → :class:`CrabCalibration`; every period's factors with ``method`` and ``period_kind``.
    """
    calibrations, tables = {}, []
    for method, table in methods.items():
        if not len(table):
            continue
        for period in ("half-year", "year"):
            means = period_means(table["ijd"], table["rate"], table["rate_error"], period=period)
            calibration = CrabCalibration(
                means, instrument=instrument, e1_keV=e1_keV, e2_keV=e2_keV, method=method, period=period
            )
            calibrations[(method, period)] = calibration
            factors = calibration.factors()
            factors["method"], factors["period_kind"] = method, period
            tables.append(factors)
    return calibrations, (vstack(tables) if tables else Table())


def rates_table(images: Table, light_curve: Table, *, instrument: str, e1_keV: float, e2_keV: float) -> Table:
    """Every ScW's Crab rates from images and, where matched, from the light curve (``crab_rates.ecsv``)."""
    rates = images.copy()
    lookup = {str(s): (r, e) for s, r, e in zip(light_curve["scw_id"], light_curve["rate"], light_curve["rate_error"])}
    rates["light_curve"] = [lookup.get(str(scw_id), (np.nan, np.nan))[0] for scw_id in rates["scw_id"]]
    rates["light_curve_error"] = [lookup.get(str(scw_id), (np.nan, np.nan))[1] for scw_id in rates["scw_id"]]
    rates.meta.update({"instrument": instrument, "e1_keV": e1_keV, "e2_keV": e2_keV, "unit": "ct/s"})
    return rates
