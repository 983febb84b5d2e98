"""Figures of a SPI-ACS light curve, its background and excesses, and of the search's significances."""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table
from scipy import stats

from .background import SpiAcsBackground
from .data import SpiAcsLightCurve
from .search import ExcessSearch, scan_p_value

__all__ = ["plot_light_curve", "plot_significance"]


def plot_light_curve(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground | None = None,
    search: ExcessSearch | None = None,
    *,
    display_bin_s: float | None = None,
    title: str = "",
):
    """The light curve (rate), the background model, the excluded interval and the best excess.

    The light curve is summed into display bins (the picture only: the analysis keeps its own bins) of
    ``display_bin_s``, widened to a pixel of the time axis when they would be narrower
    (:func:`integral_workflows.plotting.display_bin_s`); the legend gives the bin drawn.

    Parameters
    ----------
    lc : SpiAcsLightCurve
    background : SpiAcsBackground, optional
    search : ExcessSearch, optional
    display_bin_s : float, optional
        Rebin for the picture only (e.g. 1 s for a 50 ms light curve); the data's bin by default.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from ..plotting import axis_width_px
    from ..plotting import display_bin_s as pixel_bin_s

    figure, axis = plt.subplots(figsize=(10, 4.5), layout="constrained")
    wanted = max(display_bin_s or lc.bin_s, lc.bin_s)
    if len(lc):
        span = lc.span_s[1] - lc.span_s[0]
        # a step line, not markers: one pixel per bin is enough
        wanted = max(wanted, pixel_bin_s(span, wanted, axis_width_px(axis), pixels_per_bin=1.0) or wanted)
    m = max(1, int(math.ceil(wanted / lc.bin_s - 1e-9)))
    n = len(lc) // m * m
    t = lc.time_s[:n].reshape(-1, m).mean(axis=1)
    counts = lc.counts[:n].reshape(-1, m).sum(axis=1)
    exposure = lc.exposure_s[:n].reshape(-1, m).sum(axis=1)
    shown = f"{m * lc.bin_s:g} s bins" if m == 1 else f"{m * lc.bin_s:g} s bins for display; data in {lc.bin_s:g} s"
    axis.step(t, counts / exposure, where="mid", color="k", lw=0.7, label=f"SPI-ACS ({shown})")
    if background is not None:
        axis.plot(lc.time_s, background.rate(lc.time_s), color="tab:red", lw=1.5, label="background model")
        axis.axvspan(*background.exclude, color="0.9", zorder=0, label="excluded from the background fit")
    if search is not None:
        best = search.best
        axis.axvspan(
            best.start_s, best.stop_s, color="tab:orange", alpha=0.4, label=f"best excess ({best.timescale_s:g} s)"
        )
    axis.axvline(0.0, color="tab:blue", ls="--", lw=0.8, label="T0")
    axis.set_xlabel(f"time − T0 (s), T0 = {lc.t0_isot} UTC")
    axis.set_ylabel("count rate (counts/s)")
    label = title or "INTEGRAL SPI-ACS"
    if lc.simulated:
        label += "  [SIMULATED DATA]"
    axis.set_title(label)
    axis.legend(loc="upper right", fontsize=8)
    return figure


def plot_significance(search: ExcessSearch, *, ul_table: Table | None = None):
    """Best significance per timescale (pre-trials) and the threshold's pre-trial equivalent.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from ..plotting import readable_log_axis

    table = search.table
    figure, axis = plt.subplots(figsize=(7, 4), layout="constrained")
    axis.plot(table["timescale_s"], table["significance"], "o-", label="best window in the search (pre-trials)")
    if ul_table is not None:
        axis.plot(ul_table["timescale_s"], ul_table["significance"], "s--", label="window starting at T0")
    axis.axhline(0.0, color="0.6", lw=0.8)
    # the pre-trial significance each timescale needs to reach the post-trials threshold
    needed = []
    target = stats.norm.sf(search.threshold_sigma)
    per_timescale = -math.expm1(math.log1p(-target) / len(table))
    span = search.window[1] - search.window[0]
    step = float(table["timescale_s"][0] / table["n_bins"][0])
    for timescale in table["timescale_s"]:
        grid = np.linspace(0.5, 10.0, 400)
        p = np.array([scan_p_value(b, span_s=span, timescale_s=timescale, step_s=step) for b in grid])
        needed.append(grid[np.argmax(p <= per_timescale)] if (p <= per_timescale).any() else np.nan)
    axis.plot(table["timescale_s"], needed, ":", color="tab:red", label=f"{search.threshold_sigma:g}σ after trials")
    axis.set_xscale("log")
    readable_log_axis(axis.xaxis)
    axis.set_xlabel("timescale (s)")
    axis.set_ylabel("significance (σ)")
    axis.set_title(f"SPI-ACS excesses in T0{search.window[0]:+g} to T0{search.window[1]:+g} s")
    axis.legend(fontsize=8)
    return figure
