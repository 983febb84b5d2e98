"""Files of a SPI-ACS analysis: the light curve as FITS, the tables of excesses and limits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from astropy.table import Table
from astropy.time import TimeDelta

from ..products import Product
from .background import SpiAcsBackground
from .data import SpiAcsLightCurve
from .search import ExcessSearch

__all__ = ["write_products"]


def to_hdulist(lc: SpiAcsLightCurve, background: SpiAcsBackground | None = None, *, provenance: Mapping | None = None):
    """The light curve as FITS: a RATE table (TIME from T0, COUNTS, EXPOSURE, RATE, ERROR, BACKGROUND)."""
    from astropy.io import fits

    from ..provenance import fits_ascii

    columns = [
        fits.Column("TIME", "D", unit="s", array=lc.time_s),
        fits.Column("COUNTS", "D", unit="count", array=lc.counts),
        fits.Column("EXPOSURE", "D", unit="s", array=lc.exposure_s),
        fits.Column("RATE", "D", unit="count/s", array=lc.rate),
        fits.Column("ERROR", "D", unit="count/s", array=lc.rate_error),
    ]
    if background is not None:
        columns.append(fits.Column("BACKGROUND", "D", unit="count/s", array=background.rate(lc.time_s)))
    table = fits.BinTableHDU.from_columns(columns, name="RATE")
    header = table.header
    header["TELESCOP"] = "INTEGRAL"
    header["INSTRUME"] = "SPI-ACS"
    header["TIMEUNIT"] = "s"
    header["TIMEDEL"] = (lc.bin_s, "bin width, s")
    header["TIMEPIXR"] = (0.5, "TIME is the bin centre")
    header["T0_UTC"] = (lc.t0_isot, "reference time, UTC; TIME is s from it")
    header["MJDREF"] = (float(lc.t0.utc.mjd), "T0 as MJD (UTC)")
    header["TIMESYS"] = "UTC"
    header["TSTART"], header["TSTOP"] = lc.span_s
    header["DATALEV"] = (str(lc.meta.get("data_level", "")), "SPI-ACS data level")
    header["TIMECONV"] = (str(lc.meta.get("time_convention", "")), "time axis of the MMODA product")
    if background is not None:
        header["BKGORDER"] = (background.order, "order of the polynomial background")
        header["BKGEXCL1"], header["BKGEXCL2"] = background.exclude
        header["EXCVAR"] = (background.excess_variance, "variance / Poisson variance off-source")
    source = lc.meta.get("header", {})
    for key in ("ORIGIN", "CREATOR", "SIMULATD", "EPHS"):
        if key in source:
            header[key] = fits_ascii(source[key]) if isinstance(source[key], str) else source[key]
    primary = fits.PrimaryHDU()
    for key, value in (provenance or {}).items():
        primary.header[key] = value
    if lc.simulated:
        primary.header["SIMULATD"] = (True, "simulated data (local MMODA)")
    return fits.HDUList([primary, table])


def write_products(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground,
    search: ExcessSearch,
    limits: Table,
    fluences: Table,
    out: Path | str,
    *,
    provenance: Mapping | None = None,
    figures: Mapping[str, Any] | None = None,
    stem: str = "spi_acs",
) -> list[Product]:
    """Write the light curve (FITS), the search and limit tables (ECSV) and figures (PNG); describe them.

    Parameters
    ----------
    lc, background, search, limits, fluences
        What the analysis made.
    out : path
        Output folder.
    provenance : mapping, optional
        FITS provenance cards.
    figures : mapping of str to Figure, optional
        ``{file stem suffix: figure}``, e.g. ``{"lc": figure}`` → ``spi_acs_lc.png``.
    stem : str
        File name stem.

    Returns
    -------
    list of Product
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name, figure in (figures or {}).items():
        path = out / f"{stem}_{name}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plots[name] = path
    fits_path = out / f"{stem}_lc.fits"
    to_hdulist(lc, background, provenance=provenance).writeto(fits_path, overwrite=True)
    start, stop = lc.span_s
    period = (
        (lc.t0 + TimeDelta(start, format="sec")).utc.isot[:19],
        (lc.t0 + TimeDelta(stop, format="sec")).utc.isot[:19],
    )
    details = {
        "t0_utc": lc.t0_isot,
        "time_bin": lc.bin_s,
        "excess_variance": background.excess_variance,
        "best_excess": search.best.as_dict(),
        "detected": search.detected,
        "simulated": lc.simulated,
    }
    products = [
        Product(
            path=fits_path,
            kind="light_curve",
            source="SPI-ACS total rate",
            band=(75.0, 10000.0),
            period=period,
            plot=plots.get("lc"),
            title=f"SPI-ACS light curve around {lc.t0_isot}",
            identity={"instrument": "spi_acs", "t0_utc": lc.t0_isot, "time_bin": lc.bin_s},
            details=details,
        )
    ]
    for table, name in ((search.table, "search"), (limits, "upper_limits"), (fluences, "fluence_upper_limits")):
        path = out / f"{stem}_{name}.ecsv"
        table.write(path, overwrite=True)
        products.append(Product(path=path, kind="table"))
    for name, path in plots.items():
        if name != "lc":
            products.append(Product(path=path, kind="plot"))
    return products
