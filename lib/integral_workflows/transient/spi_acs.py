"""The SPI-ACS part of the follow-up: the light curve around T0, its most significant excess, upper limits."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u

from .. import spiacs
from ..products import Product
from .event import Event, _long_cards_allowed, _stamp

log = logging.getLogger(__name__)

__all__ = ["SpiAcsFollowUp", "plot_spiacs", "spiacs_follow_up", "write_spiacs_products"]


#: Timescales (s) on which SPI-ACS excesses are searched (50 ms is the instrument's bin).
SEARCH_TIMESCALES_S = spiacs.DEFAULT_TIMESCALES_S
#: Timescales (s) of the upper limits: a short burst (50 ms, 1 s) and a long one (8 s), as INTEGRAL's GCN circulars.
LIMIT_TIMESCALES_S = (0.05, 1.0, 8.0)
#: The two typical spectra of the fluence limits.
SPECTRA = ("short-hard", "long-soft")
#: Directions (angle to the pointing axis, deg) over which the limits of an event without position are given.
THETA_GRID_DEG = tuple(float(angle) for angle in np.arange(0.0, 181.0, 5.0))


@dataclasses.dataclass
class SpiAcsFollowUp:
    """The SPI-ACS light curve around T0, its most significant excess and the upper limits.

    Attributes
    ----------
    light_curve : integral_workflows.spiacs.SpiAcsLightCurve or None
        None when SPI-ACS had no usable data.
    background : integral_workflows.spiacs.SpiAcsBackground or None
        The background fitted outside the search window.
    search : integral_workflows.spiacs.ExcessSearch or None
        The most significant excess in the search window, on every timescale.
    limits : astropy.table.Table or None
        3σ upper limits on the counts of a burst starting at T0, per timescale (:func:`spiacs.upper_limits`).
    fluence_limits : dict
        Spectrum → timescale (s) → (lowest, highest) 3σ fluence limit, erg/cm² in 75–2000 keV: one value at
        the event's direction; the range over :data:`THETA_GRID_DEG` for an event without position.
    theta_deg : float or None
        The direction of the limits (None: every direction).
    window : tuple of float
        Search window, s from T0.
    no_data : str
        Why there are no data, when there are none.
    """

    light_curve: Any
    background: Any
    search: Any
    limits: Any
    fluence_limits: dict
    theta_deg: float | None
    window: tuple[float, float]
    no_data: str = ""

    @property
    def has_data(self) -> bool:
        """Whether SPI-ACS gave a light curve."""
        return self.light_curve is not None

    def limits_table(self):
        """The fluence limits as a table: spectrum, timescale, lowest and highest limit (erg/cm²)."""
        from astropy.table import Table

        rows = [
            (spectrum, timescale, low, high)
            for spectrum, by_scale in self.fluence_limits.items()
            for timescale, (low, high) in by_scale.items()
        ]
        return Table(
            rows=rows or None,
            names=("spectrum", "timescale_s", "fluence_ul_min_erg_cm2", "fluence_ul_max_erg_cm2"),
            dtype=(str, float, float, float),
        )


def spiacs_follow_up(
    session, event: Event, parameters: Mapping[str, Any], *, theta_deg: float | None
) -> SpiAcsFollowUp:
    """SPI-ACS around T0: light curve, background, most significant excess, 3σ count and fluence limits.

    Parameters
    ----------
    session : integral_workflows.session.Session
    event : Event
    parameters : mapping
        ``before_s``, ``after_s``, ``time_bin_s``, ``data_level``, ``search_before_s``, ``search_after_s``.
    theta_deg : float or None
        Angle between the event and the pointing axis; None for an event without position (the fluence limits
        are then the range over :data:`THETA_GRID_DEG`).

    Returns
    -------
    SpiAcsFollowUp
        Without light curve (``no_data`` says why) when SPI-ACS had no usable data around T0.
    """
    window = (-float(parameters["search_before_s"]), float(parameters["search_after_s"]))
    try:
        lc = spiacs.fetch_spiacs_lightcurve(
            session,
            t0_utc=event.t0_utc,
            before_s=float(parameters["before_s"]),
            after_s=float(parameters["after_s"]),
            time_bin_s=float(parameters["time_bin_s"]),
            data_level=str(parameters["data_level"]),
        )
    except spiacs.SpiAcsNoData as error:
        log.warning("SPI-ACS: no usable data around %s: %s", event.t0_utc, error)
        return SpiAcsFollowUp(None, None, None, None, {}, theta_deg, window, no_data=str(error))
    span = window[1] - window[0]
    searched = tuple(t for t in SEARCH_TIMESCALES_S if lc.bin_s - 1e-9 <= t <= span) or (lc.bin_s,)
    limited = tuple(t for t in LIMIT_TIMESCALES_S if t >= lc.bin_s - 1e-9) or (lc.bin_s,)
    background = spiacs.fit_background(lc, exclude=window, timescales_s=searched)
    search = spiacs.search_excess(lc, background, timescales_s=searched, window=window)
    limits = spiacs.upper_limits(lc, background, timescales_s=limited, sigma=3.0)
    angles = [theta_deg] if theta_deg is not None else list(THETA_GRID_DEG)
    values: dict[str, dict[float, list[float]]] = {spectrum: {} for spectrum in SPECTRA}
    for angle in angles:
        for row in spiacs.fluence_upper_limits(limits, theta_deg=angle, spectra=SPECTRA):
            values[str(row["spectrum"])].setdefault(float(row["timescale_s"]), []).append(
                float(row["fluence_ul_erg_cm2"])
            )
    fluence_limits = {
        spectrum: {timescale: (min(found), max(found)) for timescale, found in by_scale.items()}
        for spectrum, by_scale in values.items()
    }
    return SpiAcsFollowUp(lc, background, search, limits, fluence_limits, theta_deg, window)


def plot_spiacs(result: SpiAcsFollowUp, event: Event, *, display_bin_s: float = 1.0):
    """The SPI-ACS light curve around T0 (shown in ~1 s bins), its background and the best excess.

    Parameters
    ----------
    result : SpiAcsFollowUp
    event : Event
    display_bin_s : float
        Bin of the picture (the analysis keeps the light curve's own bin).

    Returns
    -------
    matplotlib.figure.Figure or None
        None without data.
    """
    if not result.has_data:
        return None
    return spiacs.plot_light_curve(
        result.light_curve,
        result.background,
        result.search,
        display_bin_s=max(display_bin_s, result.light_curve.bin_s),
        title=f"{event.name} ({event.kind}): INTEGRAL SPI-ACS",
    )


def write_spiacs_products(
    result: SpiAcsFollowUp, event: Event, output_dir: str | Path, *, parameters: Mapping[str, Any], figure=None
) -> list[Product]:
    """Write the SPI-ACS light curve (FITS), its plot and the limit tables; describe them.

    Parameters
    ----------
    result : SpiAcsFollowUp
    event : Event
    output_dir : path-like
    parameters : mapping
        The notebook's parameters (provenance and the product's identity).
    figure : matplotlib.figure.Figure, optional
        The light curve's plot (:func:`plot_spiacs`), saved as ``spiacs_lc.png``.

    Returns
    -------
    list of Product
        The light curve as a gallery ``light_curve`` of instrument ``spi_acs`` (``spiacs_lc.fits``), the
        search (``spiacs_search.ecsv``), count limits (``spiacs_upper_limits.ecsv``) and fluence limits
        (``spiacs_fluence_limits.ecsv``); empty without data.
    """
    if not result.has_data:
        return []
    out = Path(output_dir)
    lc = result.light_curve
    stamp = _stamp(parameters, event)
    path = out / "spiacs_lc.fits"
    with _long_cards_allowed():
        spiacs.to_hdulist(lc, result.background, provenance=stamp).writeto(path, overwrite=True)
    plot = None
    if figure is not None:
        plot = out / "spiacs_lc.png"
        figure.savefig(plot, dpi=110, bbox_inches="tight")
    start, stop = lc.span_s
    products = [
        Product(
            path=path,
            kind="light_curve",
            instrument="spi_acs",
            source=event.name,
            band=(75.0, 10000.0),
            period=((lc.t0 + start * u.s).utc.isot[:19], (lc.t0 + stop * u.s).utc.isot[:19]),
            position=(event.ra, event.dec) if event.has_position else None,
            plot=plot,
            title=f"{event.name} ({event.kind}): SPI-ACS light curve around {event.t0_utc}",
            identity={
                "notebook": "transient_followup",
                "event_name": event.name,
                "t0_utc": event.t0_utc,
                "time_bin": lc.bin_s,
                "data_level": str(parameters["data_level"]),
            },
            details={"time_bin": lc.bin_s, "src_names": [event.name], "event_kind": event.kind},
        )
    ]
    for table, name in (
        (result.search.table, "spiacs_search.ecsv"),
        (result.limits, "spiacs_upper_limits.ecsv"),
        (result.limits_table(), "spiacs_fluence_limits.ecsv"),
    ):
        table.write(out / name, overwrite=True)
        products.append(Product(path=out / name, kind="table"))
    return products
