"""Upper limits on SPI-ACS counts above the background, and the fluences they stand for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from astropy.table import Table

from .background import SpiAcsBackground
from .data import DEFAULT_TIMESCALES_S, SpiAcsLightCurve
from .response import FLUENCE_BAND_KEV, angular_response, counts_per_fluence
from .search import WINDOW_COLUMNS, _timescale_bins, excess_in_window

__all__ = ["fluence_upper_limits", "upper_limits"]


def upper_limits(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground,
    *,
    timescales_s: Sequence[float] = DEFAULT_TIMESCALES_S,
    sigma: float = 3.0,
    at_s: float = 0.0,
) -> Table:
    """Upper limits on the counts of a burst starting at ``at_s`` (s from t0), one per timescale.

    For each timescale, the window of its bins from the one containing ``at_s``: the upper limit is
    max(excess, 0) + n σ (n = ``sigma``, σ with the excess variance and the background model's error).
    It holds the true counts of a burst lying inside the window with probability ≥ Φ(n) (exactly Φ(n) for
    true counts ≥ nσ; more for fainter ones, the negative excesses being raised to 0). ``sensitivity_counts``
    (n σ) is what the SPI-ACS GCN circulars quote for a burst at an unknown time in the window: the
    counts an excess needs to reach n σ.

    Parameters
    ----------
    lc : SpiAcsLightCurve
    background : SpiAcsBackground
    timescales_s : sequence of float
        Window lengths, s.
    sigma : float
        n of the n-σ limits.
    at_s : float
        Start of the burst, s from t0.

    Returns
    -------
    astropy.table.Table
        ``timescale_s``, ``start_s``, ``stop_s``, ``counts``, ``background``, ``excess``, ``sigma_counts``,
        ``significance``, ``excess_variance``, ``ul_counts``, ``sensitivity_counts``; meta ``sigma``, ``at_s``.
    """
    rows = []
    for m in _timescale_bins(lc, timescales_s):
        found = excess_in_window(lc, background, start_s=at_s, timescale_s=m * lc.bin_s)
        ul = max(found["excess"], 0.0) + sigma * found["sigma_counts"]
        rows.append(
            (
                found["timescale_s"],
                *(found[name] for name in WINDOW_COLUMNS),
                found["excess_variance"],
                ul,
                sigma * found["sigma_counts"],
            )
        )
    names = ("timescale_s", *WINDOW_COLUMNS, "excess_variance", "ul_counts", "sensitivity_counts")
    return Table(rows=rows, names=names, meta={"sigma": float(sigma), "at_s": float(at_s)})


def fluence_upper_limits(
    count_ul,
    *,
    theta_deg=None,
    spectra: Sequence[str] = ("short-hard", "long-soft"),
    band_keV: tuple[float, float] = FLUENCE_BAND_KEV,
    column: str = "ul_counts",
) -> Table:
    """Convert count upper limits into fluence upper limits for typical spectra at the event's direction.

    Parameters
    ----------
    count_ul : astropy.table.Table or mapping or float
        The table of :func:`upper_limits` (its ``column`` per ``timescale_s``), a mapping timescale → counts,
        or one number.
    theta_deg : float, optional
        Angle between the event and INTEGRAL's pointing (X) axis, deg; None: averaged over directions.
    spectra : sequence of str
        Keys of :data:`SPECTRA`.
    band_keV : (float, float)
        Band of the fluence, keV (75–2000 keV by default, as SPI-ACS GCN circulars).
    column : str
        Column of the table to convert (``ul_counts`` or ``sensitivity_counts``).

    Returns
    -------
    astropy.table.Table
        ``timescale_s``, ``spectrum``, ``counts``, ``counts_per_erg_cm2``, ``fluence_ul_erg_cm2``; meta
        ``theta_deg``, ``band_keV``, ``response`` (relative, 1 at 90°).
    """
    if isinstance(count_ul, Table):
        pairs = list(zip(count_ul["timescale_s"], count_ul[column], strict=True))
    elif isinstance(count_ul, Mapping):
        pairs = list(count_ul.items())
    else:
        pairs = [(float("nan"), float(count_ul))]
    rows = []
    for spectrum in spectra:
        factor = counts_per_fluence(spectrum, theta_deg=theta_deg, band_keV=band_keV)
        for timescale, counts in pairs:
            rows.append((float(timescale), spectrum, float(counts), factor, float(counts) / factor))
    return Table(
        rows=rows,
        names=("timescale_s", "spectrum", "counts", "counts_per_erg_cm2", "fluence_ul_erg_cm2"),
        dtype=(float, str, float, float, float),
        meta={
            "theta_deg": None if theta_deg is None else float(theta_deg),
            "band_keV": [float(band_keV[0]), float(band_keV[1])],
            "response": float(angular_response(theta_deg)),
        },
    )
