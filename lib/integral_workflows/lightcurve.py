"""Light curves: read MMODA light-curve products, stitch chunks, rebin, measure variability, write, plot.

MMODA returns one light curve per source and job (``isgri_lc`` / ``jemx_lc``
products, extension ``ISGR-SRC.-LCR`` or ``JMX{n}-SRC.-LCR``: ``TIME`` in IJD
days (TT), ``RATE``/``ERROR`` in ct/s, ``FRACEXP``, ``XAX_E`` = bin half-width
in days, plus ``TOT_COUNTS``/``BACKV``/``BACKE`` for ISGRI). A long-term light
curve is built in four steps::

    curves = [LightCurve.from_data_collection(data, "Crab") for data in chunk_results]
    curve = stitch(curves)                       # concatenate, sort, deduplicate, drop empty bins
    curve = add_systematics(curve, 0.0015)       # error ⊕ fraction·|rate|
    curve = rebin(curve, 86400.0)                # optional: inverse-variance weighted daily bins
    variability(curve)                           # χ² of a constant, F_var (Vaughan et al. 2003)

Times are kept as bin centres in IJD (MJD − 51544, TT) with the half-width of
each bin in days, whatever ``TIMEPIXR`` the input used; :meth:`LightCurve.write`
writes an OGIP light curve with ``TIMEPIXR = 0.5``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy import stats

from .catalog import same_source_name, source_name_key
from .jobs import product_hdus, product_instrument, product_meta_data
from .provenance import fits_ascii

log = logging.getLogger(__name__)

#: MJD of IJD 0 (2000-01-01T00:00:00 TT): INTEGRAL's time reference.
MJDREF_IJD = 51544.0
SECONDS_PER_DAY = 86400.0
LIGHT_CURVE_PRODUCTS = ("isgri_lc", "jemx_lc")

#: Header keywords carried from the products to the written files (provenance and the simulation mark).
KEPT_KEYWORDS = (
    "TELESCOP",
    "INSTRUME",
    "DETNAM",
    "E_MIN",
    "E_MAX",
    "TSTART",
    "TSTOP",
    "ORIGIN",
    "CREATOR",
    "SIMULATD",
    "RA_OBJ",
    "DEC_OBJ",
    "OBJECT",
    "SOURCEID",
)

#: Keywords a light curve writes from its own attributes (never copied from ``meta``).
_STRUCTURAL_KEYWORDS = {
    "XTENSION",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "PCOUNT",
    "GCOUNT",
    "TFIELDS",
    "EXTNAME",
    "TIMEDEL",
    "TIMEPIXR",
    "MJDREF",
    "TIMESYS",
    "TIMEUNIT",
    "TIMEZERO",
    "TIMEREF",
    "TREFPOS",
    "DATE-OBS",
    "DATE-END",
    "HDUCLASS",
    "HDUCLAS1",
    "HDUCLAS2",
    "HDUCLAS3",
    "NAME",
    "SIMPLE",
    "EXTEND",
}


@dataclasses.dataclass
class LightCurve:
    """A source light curve: rate per time bin.

    Attributes
    ----------
    source : str
        Source name (``NAME`` of the product).
    time : numpy.ndarray
        Bin centres, IJD (MJD − 51544), TT.
    half_width : numpy.ndarray
        Half-width of each bin, days (``XAX_E``).
    rate, error : numpy.ndarray
        Count rate and its 1σ error, ct/s.
    fracexp : numpy.ndarray
        Fractional exposure of each bin.
    tot_counts, backv, backe : numpy.ndarray or None
        Total counts, background rate and its error (ISGRI products).
    instrument : str
        ``ISGRI``, ``JMX1``, ``JMX2`` (or empty when unknown).
    band : tuple of float or None
        Energy band (keV), from ``E_MIN``/``E_MAX``.
    meta : dict
        FITS keywords worth keeping (origin, creator, simulation mark, times...).
    extname : str
        Extension name of the light-curve table (the input's, e.g. ``ISGR-SRC.-LCR``).
    """

    source: str
    time: np.ndarray
    half_width: np.ndarray
    rate: np.ndarray
    error: np.ndarray
    fracexp: np.ndarray
    tot_counts: np.ndarray | None = None
    backv: np.ndarray | None = None
    backe: np.ndarray | None = None
    instrument: str = ""
    band: tuple[float, float] | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    extname: str = ""

    def __post_init__(self):
        for name in ("time", "half_width", "rate", "error", "fracexp"):
            setattr(self, name, np.atleast_1d(np.asarray(getattr(self, name), dtype=float)))
        for name in ("tot_counts", "backv", "backe"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.atleast_1d(np.asarray(value, dtype=float)))
        if not self.extname:
            self.extname = _default_extname(self.instrument)

    def __len__(self) -> int:
        return len(self.time)

    @property
    def simulated(self) -> bool:
        """True when the products came from the local (simulated) MMODA."""
        return bool(self.meta.get("SIMULATD")) or "SIMULATED" in str(self.meta.get("ORIGIN", "")).upper()

    @property
    def mjd(self) -> np.ndarray:
        """Bin centres as MJD (TT)."""
        return self.time + MJDREF_IJD

    @property
    def exposure(self) -> np.ndarray:
        """Effective exposure of each bin, s (FRACEXP × bin width)."""
        return self.fracexp * 2.0 * self.half_width * SECONDS_PER_DAY

    def select(self, mask: np.ndarray) -> LightCurve:
        """A copy restricted to the bins ``mask`` selects (boolean or index array, or a slice).

        The arrays are copies, never views, so changing the result leaves this curve alone.
        """

        def part(values):
            return None if values is None else np.array(values[mask], copy=True)

        return dataclasses.replace(
            self,
            time=part(self.time),
            half_width=part(self.half_width),
            rate=part(self.rate),
            error=part(self.error),
            fracexp=part(self.fracexp),
            tot_counts=part(self.tot_counts),
            backv=part(self.backv),
            backe=part(self.backe),
            meta=dict(self.meta),
        )

    # -- input ---------------------------------------------------------------------------------------
    @classmethod
    def from_hdus(cls, hdus: Sequence, *, source: str | None = None) -> LightCurve:
        """Build from the HDUs of a light-curve product or file.

        Parameters
        ----------
        hdus : sequence of astropy HDUs
            The product's HDUs; the light curve is the first table with ``TIME``,
            ``RATE`` and ``ERROR`` columns (and ``NAME == source`` when given).
        source : str, optional
            Source name; overrides the header ``NAME`` and picks the table of
            that source when the file holds several.

        Returns
        -------
        LightCurve
        """
        tables = [
            hdu
            for hdu in hdus
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))
            and hdu.data is not None
            and {"TIME", "RATE", "ERROR"} <= {c.upper() for c in hdu.columns.names}
        ]
        if not tables:
            raise ValueError("no light-curve table (TIME, RATE, ERROR columns) in the product")
        hdu = tables[0]
        if source is not None and len(tables) > 1:
            named = [t for t in tables if same_source_name(str(t.header.get("NAME", "")), source)]
            hdu = named[0] if named else hdu
        header, data = hdu.header, hdu.data
        columns = {c.upper(): c for c in hdu.columns.names}
        units = {c.name.upper(): (c.unit or "").strip().lower() for c in hdu.columns}

        def column(name):
            return np.asarray(data[columns[name]], dtype=float) if name in columns else None

        time_unit = units.get("TIME") or str(header.get("TIMEUNIT", "d")).strip().lower()
        to_days = 1.0 / SECONDS_PER_DAY if time_unit.startswith("s") else 1.0
        time = column("TIME") * to_days
        # TIME marks the point TIMEPIXR of the bin (0 start, 0.5 centre, 1 end); we keep centres.
        width = _bin_width_days(hdu, columns, units, to_days, len(time))
        timepixr = float(header.get("TIMEPIXR", 0.5))
        mjdref = _mjdref(header)
        time = time + float(header.get("TIMEZERO", 0.0)) * to_days + (0.5 - timepixr) * width + (mjdref - MJDREF_IJD)
        fracexp = column("FRACEXP")
        name = source if source is not None else str(header.get("NAME", header.get("OBJECT", ""))).strip()
        meta = {key: header[key] for key in KEPT_KEYWORDS if key in header}
        band = None
        if "E_MIN" in header and "E_MAX" in header:
            band = (float(header["E_MIN"]), float(header["E_MAX"]))
        return cls(
            source=name,
            time=time,
            half_width=0.5 * width,
            rate=column("RATE"),
            error=column("ERROR"),
            fracexp=np.ones_like(time) if fracexp is None else fracexp,
            tot_counts=column("TOT_COUNTS"),
            backv=column("BACKV"),
            backe=column("BACKE"),
            instrument=product_instrument(header),
            band=band,
            meta=meta,
            extname=str(hdu.name or ""),
        )

    @classmethod
    def from_product(cls, product) -> LightCurve:
        """Build from an oda_api ``NumpyDataProduct`` (``isgri_lc`` / ``jemx_lc``).

        Parameters
        ----------
        product : oda_api.data_products.NumpyDataProduct
            One source's light curve; the source name comes from
            ``meta_data['src_name']`` (the dispatcher copies it from the header
            ``NAME``), falling back on the header.

        Returns
        -------
        LightCurve
        """
        meta = product_meta_data(product)
        hdus = product_hdus(product)
        return cls.from_hdus(hdus, source=str(meta.get("src_name") or "").strip() or None)

    @classmethod
    def from_data_collection(cls, collection, source: str) -> LightCurve:
        """Find the light curve of ``source`` in an oda_api ``DataCollection`` (one job's result).

        Products are selected by their name (``isgri_lc``/``jemx_lc``) and
        ``meta_data['src_name']``; never by position. Names match exactly, or
        else ignoring case, blanks and underscores.
        """
        candidates = [p for p in collection._p_list if str(getattr(p, "name", "") or "") in LIGHT_CURVE_PRODUCTS]
        names = [str(product_meta_data(p).get("src_name", "")) for p in candidates]
        for product, name in zip(candidates, names):
            if name == source:
                return cls.from_product(product)
        for product, name in zip(candidates, names):
            if same_source_name(name, source):
                return cls.from_product(product)
        raise ValueError(f"no light curve of {source!r} in this data collection; sources: {names}")

    @classmethod
    def read(cls, path: Path | str, *, source: str | None = None) -> LightCurve:
        """Read a light-curve FITS file written by :meth:`write` or by MMODA/OSA."""
        with fits.open(path) as hdul:
            return cls.from_hdus([hdu.copy() for hdu in hdul], source=source)

    # -- output --------------------------------------------------------------------------------------
    def to_hdulist(self, *, provenance: dict | None = None) -> fits.HDUList:
        """An OGIP light curve: PRIMARY plus one table named like the input's.

        Parameters
        ----------
        provenance : dict, optional
            Extra keywords (≤ 8 characters) written to both headers
            (workflow version, parameters, ScW counts...).

        Returns
        -------
        astropy.io.fits.HDUList
            Columns ``TIME`` (bin centres, s since MJDREF = 51544 TT, i.e.
            IJD × 86400), ``XAX_E`` (half-width, s), ``RATE``, ``ERROR``
            (ct/s), ``FRACEXP`` and, when known, ``TOT_COUNTS``, ``BACKV``,
            ``BACKE``; header ``TIMEUNIT = s``, ``TIMEZERO = 0``,
            ``MJDREF = 51544``, ``TIMESYS = TT``, ``TIMEREF = LOCAL``,
            ``TREFPOS = TOPOCENTER``, ``TIMEPIXR = 0.5``, ``TIMEDEL`` (median
            bin width, s; ``XAX_E`` gives every bin's), ``TSTART``/``TSTOP``
            (s), ``DATE-OBS``/``DATE-END`` (TT, as TIMESYS), ``HDUCLAS1 =
            LIGHTCURVE``. Seconds from a reference MJD are what OGIP readers
            (stingray, astropy's FITS time support, ``lcurve``) take without
            a unit guess; the MMODA products themselves are in IJD days, which
            :meth:`from_hdus` reads too.
        """
        columns = [
            fits.Column("TIME", "D", unit="s", array=self.time * SECONDS_PER_DAY),
            fits.Column("XAX_E", "D", unit="s", array=self.half_width * SECONDS_PER_DAY),
            fits.Column("RATE", "D", unit="count/s", array=self.rate),
            fits.Column("ERROR", "D", unit="count/s", array=self.error),
            fits.Column("FRACEXP", "D", array=self.fracexp),
        ]
        for name, unit in (("TOT_COUNTS", "count"), ("BACKV", "count/s"), ("BACKE", "count/s")):
            values = getattr(self, name.lower())
            if values is not None:
                columns.append(fits.Column(name, "D", unit=unit, array=values))
        table = fits.BinTableHDU.from_columns(columns, name=self.extname or _default_extname(self.instrument))
        extra = {
            key[:8]: value
            for key, value in {**self.meta, **(provenance or {})}.items()
            if key[:8].upper() not in _STRUCTURAL_KEYWORDS
        }
        header = table.header
        header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
        header["HDUCLAS1"] = ("LIGHTCURVE", "light curve dataset")
        header["HDUCLAS2"] = ("NET", "background-subtracted rates (OSA)")
        header["HDUCLAS3"] = ("RATE", "rates, not counts")
        header["NAME"] = (fits_ascii(self.source), "source name (ASCII-folded)")
        header["TIMESYS"] = ("TT", "time scale of TIME, TSTART, TSTOP, DATE-OBS")
        header["TIMEUNIT"] = ("s", "unit of TIME, XAX_E, TIMEDEL, TSTART, TSTOP")
        header["MJDREF"] = (MJDREF_IJD, "[d] MJD (TT) of TIME = 0 (IJD 0)")
        header["TIMEZERO"] = (0.0, "[s] TIME is absolute from MJDREF")
        header["TIMEREF"] = ("LOCAL", "spacecraft times, no barycentric correction")
        header["TREFPOS"] = ("TOPOCENTER", "at INTEGRAL (OGIP TIMEREF LOCAL)")
        header["TIMEPIXR"] = (0.5, "TIME is the bin centre")
        width = float(np.median(2.0 * self.half_width)) * SECONDS_PER_DAY if len(self) else 0.0
        header["TIMEDEL"] = (width, "[s] median bin width; see XAX_E")
        time_cards = {}
        if len(self):
            start, stop = float(np.min(self.time - self.half_width)), float(np.max(self.time + self.half_width))
            time_cards = {
                "TSTART": (start * SECONDS_PER_DAY, "[s] start, from MJDREF (TT)"),
                "TSTOP": (stop * SECONDS_PER_DAY, "[s] end, from MJDREF (TT)"),
                "DATE-OBS": (_tt_date(start), "start, TT (TIMESYS)"),
                "DATE-END": (_tt_date(stop), "end, TT (TIMESYS)"),
            }
        header.update(time_cards)
        if self.band is not None:
            header["E_MIN"], header["E_MAX"] = (float(self.band[0]), "keV"), (float(self.band[1]), "keV")
        if self.instrument:
            header["INSTRUME"] = "IBIS" if self.instrument == "ISGRI" else self.instrument
            if self.instrument == "ISGRI":
                header["DETNAM"] = "ISGRI"
        header.setdefault("TELESCOP", "INTEGRAL")
        primary = fits.PrimaryHDU()
        extra = {key: _ascii_card(value) for key, value in extra.items()}
        for key, value in extra.items():
            # the products' TSTART/TSTOP are IJD days: the primary says the table's (seconds), with its TIMEUNIT
            if key not in ("TSTART", "TSTOP"):
                primary.header[key] = value
            if key not in ("TSTART", "TSTOP", "E_MIN", "E_MAX", "INSTRUME", "DETNAM"):
                header[key] = value
        if time_cards:
            for key in ("TIMESYS", "TIMEUNIT", "MJDREF"):
                primary.header[key] = (header[key], header.comments[key])
            primary.header.update(time_cards)
        return fits.HDUList([primary, table])

    def write(self, path: Path | str, *, provenance: dict | None = None, overwrite: bool = False) -> Path:
        """Write the light curve as OGIP FITS (:meth:`to_hdulist`); returns the path."""
        path = Path(path)
        self.to_hdulist(provenance=provenance).writeto(path, overwrite=overwrite)
        return path


def _tt_date(ijd: float) -> str:
    """ISO date (TT, to the second) of an IJD."""
    from astropy.time import Time

    return Time(ijd + MJDREF_IJD, format="mjd", scale="tt").isot[:19]


def _ascii_card(value):
    """A keyword value (or ``(value, comment)``) with its text folded to ASCII, as FITS needs."""
    if isinstance(value, tuple):
        return tuple(fits_ascii(v) if isinstance(v, str) else v for v in value)
    return fits_ascii(value) if isinstance(value, str) else value


# -- helpers for the readers ---------------------------------------------------------------------------
def _default_extname(instrument: str) -> str:
    if instrument.startswith("JMX"):
        return f"{instrument}-SRC.-LCR"
    return "ISGR-SRC.-LCR"


def _mjdref(header) -> float:
    if "MJDREF" in header:
        return float(header["MJDREF"])
    if "MJDREFI" in header:
        return float(header["MJDREFI"]) + float(header.get("MJDREFF", 0.0))
    # OSA products without MJDREF are in IJD.
    return MJDREF_IJD


def _bin_width_days(hdu, columns: dict, units: dict, time_to_days: float, n_rows: int) -> np.ndarray:
    """Width of each bin in days: ``2·XAX_E``, else the TIMEDEL column, else the header TIMEDEL."""
    data, header = hdu.data, hdu.header
    if "XAX_E" in columns:
        return 2.0 * np.asarray(data[columns["XAX_E"]], dtype=float) * time_to_days
    if "TIMEDEL" in columns:
        to_days = 1.0 / SECONDS_PER_DAY if units.get("TIMEDEL", "").startswith("s") else time_to_days
        return np.asarray(data[columns["TIMEDEL"]], dtype=float) * to_days
    if "TIMEDEL" in header:
        return np.full(n_rows, float(header["TIMEDEL"]) * time_to_days)
    raise ValueError("light curve without bin widths (no XAX_E, no TIMEDEL column or keyword)")


# -- long-term operations ----------------------------------------------------------------------------------
def _usable(curve: LightCurve) -> np.ndarray:
    """Bins that carry a measurement: finite rate, positive finite error, non-zero exposure, positive width.

    Real OSA light curves (``lc_pick``) can repeat a bin with a negative
    TIMEDEL where two ScWs meet (row 103 of the real JEM-X ``lc.fits``): such
    a bin has no duration of its own.
    """
    return (
        np.isfinite(curve.rate)
        & np.isfinite(curve.error)
        & (curve.error > 0)
        & np.isfinite(curve.time)
        & np.isfinite(curve.fracexp)
        & (curve.fracexp > 0)
        & np.isfinite(curve.half_width)
        & (curve.half_width > 0)
    )


def stitch(curves: Sequence[LightCurve]) -> LightCurve:
    """Light curves of one source from many chunks, as one light curve.

    Bins are concatenated and sorted by time. Bins without a measurement
    (zero or NaN exposure, NaN rate, zero/NaN error) are dropped and counted.
    A bin reported by two chunks (same centre within min(1 s, 10 % of its
    half-width): a ScW analysed twice, e.g. in a retried chunk) is kept once:
    the copy with the larger fractional exposure, then the smaller error,
    then the earlier chunk. Bins that overlap without coinciding are kept and
    reported in the log.

    Parameters
    ----------
    curves : sequence of LightCurve
        Chunk light curves of the same source (same instrument and band).

    Returns
    -------
    LightCurve
        With ``meta['NBADBIN']`` (bins dropped for lack of a measurement),
        ``meta['NDUPBIN']`` (duplicates removed) and ``meta['NCHUNKS']``.
    """
    curves = [c for c in curves if c is not None]
    if not curves:
        raise ValueError("no light curves to stitch")
    sources = {c.source for c in curves if c.source}
    if len({source_name_key(s) for s in sources}) > 1:
        raise ValueError(f"light curves of different sources cannot be stitched: {sorted(sources)}")
    bands = {c.band for c in curves if c.band is not None}
    if len(bands) > 1:
        raise ValueError(f"light curves of different energy bands cannot be stitched: {sorted(bands)}")
    instruments = {c.instrument for c in curves if c.instrument}
    if len(instruments) > 1:
        raise ValueError(f"light curves of different instruments cannot be stitched: {sorted(instruments)}")

    def gather(name):
        values = [getattr(c, name) for c in curves]
        if any(v is None for v in values):
            return None
        return np.concatenate(values)

    chunk = np.concatenate([np.full(len(c), k) for k, c in enumerate(curves)])
    first = curves[0]
    merged = LightCurve(
        source=first.source,
        time=gather("time"),
        half_width=gather("half_width"),
        rate=gather("rate"),
        error=gather("error"),
        fracexp=gather("fracexp"),
        tot_counts=gather("tot_counts"),
        backv=gather("backv"),
        backe=gather("backe"),
        instrument=first.instrument,
        band=first.band,
        meta=dict(first.meta),
        extname=first.extname,
    )
    usable = _usable(merged)
    n_bad = int(np.count_nonzero(~usable))
    merged, chunk = merged.select(usable), chunk[usable]
    order = np.argsort(merged.time, kind="stable")
    merged, chunk = merged.select(order), chunk[order]
    # Clusters of copies of one bin: each bin joins the cluster of the last bin that opened one when it
    # lies within the tolerance of it.
    tolerance = np.minimum(1.0 / SECONDS_PER_DAY, 0.1 * merged.half_width)
    cluster = np.zeros(len(merged), dtype=np.int64)
    anchor = 0
    for i in range(1, len(merged)):
        if merged.time[i] - merged.time[anchor] > tolerance[anchor]:
            anchor = i
            cluster[i] = cluster[i - 1] + 1
        else:
            cluster[i] = cluster[i - 1]
    # Within a cluster the preferred copy sorts first: larger FRACEXP, smaller error, earlier chunk.
    preference = np.lexsort((chunk, merged.error, -merged.fracexp, cluster))
    first_of_cluster = np.r_[True, np.diff(cluster[preference]) != 0] if len(merged) else np.zeros(0, bool)
    n_duplicates = int(len(merged) - np.count_nonzero(first_of_cluster))
    merged = merged.select(preference[first_of_cluster])
    overlaps = np.count_nonzero(
        (merged.time[1:] - merged.half_width[1:]) < (merged.time[:-1] + merged.half_width[:-1]) - 1e-9
    )
    if overlaps:
        log.warning(
            "%s: %d bins overlap their predecessor without being the same bin; both kept", merged.source, overlaps
        )
    for key in ("TSTART", "TSTOP"):
        merged.meta.pop(key, None)
    merged.meta.update(NCHUNKS=len(curves), NBADBIN=n_bad, NDUPBIN=n_duplicates)
    if any(c.simulated for c in curves):
        merged.meta["SIMULATD"] = True
    log.info(
        "%s: stitched %d chunks into %d bins (%d empty/NaN bins dropped, %d duplicates removed)",
        merged.source,
        len(curves),
        len(merged),
        n_bad,
        n_duplicates,
    )
    return merged


def add_systematics(curve: LightCurve, fraction: float) -> LightCurve:
    """Add a systematic error ``fraction·|rate|`` in quadrature to every bin.

    Parameters
    ----------
    curve : LightCurve
    fraction : float
        Systematic fraction (0.0015 recommended for ISGRI, 0.05 for JEM-X).

    Returns
    -------
    LightCurve
        A copy; ``meta['SYSERR']`` records the fraction.
    """
    if fraction < 0:
        raise ValueError(f"systematic fraction must be ≥ 0, got {fraction}")
    result = curve.select(np.arange(len(curve)))
    result.error = np.hypot(curve.error, fraction * np.abs(curve.rate))
    result.meta["SYSERR"] = float(fraction)
    return result


def rebin(curve: LightCurve, time_bin_s: float) -> LightCurve:
    """Inverse-variance weighted rebinning into fixed time intervals.

    The intervals are ``time_bin_s`` long and start at the beginning of the
    first bin, so bins never stretch to bridge data gaps: an interval holds
    the input bins whose centres fall in it, and empty intervals are dropped.
    Each output bin spans its members (first start to last end), with

        rate = Σ w·r / Σ w,   error = 1/√Σ w,   w = 1/σ²,

    ``FRACEXP`` = exposure / span, ``TOT_COUNTS`` summed, ``BACKV``
    weighted by ``1/BACKE²``. A ``time_bin_s`` not longer than the shortest
    input bin leaves the curve unchanged.

    Parameters
    ----------
    curve : LightCurve
    time_bin_s : float
        Output bin length, seconds.

    Returns
    -------
    LightCurve
    """
    if time_bin_s <= 0:
        raise ValueError(f"time bin must be positive, got {time_bin_s} s")
    usable = _usable(curve)
    if not np.all(usable):
        log.info("%s: %d bins without a measurement left out of the rebinning", curve.source, np.count_nonzero(~usable))
        curve = curve.select(usable)
    if len(curve) == 0:
        return curve
    shortest_s = float(np.min(2.0 * curve.half_width)) * SECONDS_PER_DAY
    if time_bin_s <= shortest_s:
        log.info(
            "%s: time bin %.0f s is not longer than the input bins (shortest %.0f s): curve left unchanged",
            curve.source,
            time_bin_s,
            shortest_s,
        )
        return curve.select(np.arange(len(curve)))
    bin_days = time_bin_s / SECONDS_PER_DAY
    origin = float(np.min(curve.time - curve.half_width))
    index = np.floor((curve.time - origin) / bin_days).astype(np.int64)
    groups, inverse = np.unique(index, return_inverse=True)
    n = len(groups)

    def total(values):
        return np.bincount(inverse, weights=values, minlength=n)

    weight = 1.0 / curve.error**2
    weight_sum = total(weight)
    start = np.full(n, np.inf)
    stop = np.full(n, -np.inf)
    np.minimum.at(start, inverse, curve.time - curve.half_width)
    np.maximum.at(stop, inverse, curve.time + curve.half_width)
    span_s = (stop - start) * SECONDS_PER_DAY
    fracexp = total(curve.exposure) / span_s
    backv = backe = None
    if curve.backv is not None and curve.backe is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            background_weight = np.where(curve.backe > 0, 1.0 / curve.backe**2, 0.0)
            background_weight_sum = total(background_weight)
            backv = np.where(
                background_weight_sum > 0, total(background_weight * curve.backv) / background_weight_sum, np.nan
            )
            backe = np.where(background_weight_sum > 0, 1.0 / np.sqrt(background_weight_sum), np.nan)
    result = LightCurve(
        source=curve.source,
        time=0.5 * (start + stop),
        half_width=0.5 * (stop - start),
        rate=total(weight * curve.rate) / weight_sum,
        error=1.0 / np.sqrt(weight_sum),
        fracexp=fracexp,
        tot_counts=None if curve.tot_counts is None else total(curve.tot_counts),
        backv=backv,
        backe=backe,
        instrument=curve.instrument,
        band=curve.band,
        meta=dict(curve.meta),
        extname=curve.extname,
    )
    result.meta["REBIN_S"] = float(time_bin_s)
    log.info("%s: rebinned %d bins into %d bins of %.0f s", curve.source, len(curve), n, time_bin_s)
    return result


#: Default rule for the bins the variability statistics use (see :func:`variability_bins`): a bin is left out when
#: its error exceeds this many times the median error of the curve...
MAX_ERROR_FACTOR = 10.0
#: ...or when its effective exposure is below this fraction of the median exposure (edge-of-field, partial bins).
MIN_EXPOSURE_FRACTION = 0.1


def variability_rule(
    *, max_error_factor: float = MAX_ERROR_FACTOR, min_exposure_fraction: float = MIN_EXPOSURE_FRACTION
) -> str:
    """The bin-selection rule of :func:`variability_bins` in words (written to the products' metadata)."""
    return (
        f"bins with ERROR > {max_error_factor:g} x median(ERROR) or exposure (FRACEXP x width) "
        f"< {min_exposure_fraction:g} x median(exposure) are left out of chi2 and F_var"
    )


def variability_bins(
    curve: LightCurve,
    *,
    max_error_factor: float = MAX_ERROR_FACTOR,
    min_exposure_fraction: float = MIN_EXPOSURE_FRACTION,
) -> np.ndarray:
    """Bins fit for the variability statistics: measured, not dominated by noise, not nearly unexposed.

    With heteroscedastic errors the sample variance S² is dominated by the few
    bins with the largest errors (a source at the edge of the field of a few
    ScWs, with errors ~50 times the median), so the excess variance of
    :func:`variability` scatters far more than its usual error says. Such bins
    carry almost no information on the source; they are left out.

    Parameters
    ----------
    curve : LightCurve
    max_error_factor : float, optional
        Leave out bins whose error exceeds this multiple of the median error of the usable bins.
    min_exposure_fraction : float, optional
        Leave out bins whose effective exposure (``FRACEXP`` × width) is below this fraction of the
        median exposure of the usable bins.

    Returns
    -------
    numpy.ndarray
        Boolean mask over the bins of ``curve``.
    """
    keep = _usable(curve)
    if not np.any(keep):
        return keep
    median_error = float(np.median(curve.error[keep]))
    median_exposure = float(np.median(curve.exposure[keep]))
    with np.errstate(invalid="ignore"):
        keep &= curve.error <= max_error_factor * median_error
        keep &= curve.exposure >= min_exposure_fraction * median_exposure
    return keep


@dataclasses.dataclass
class Variability:
    """Variability of a light curve against a constant.

    Attributes
    ----------
    n_bins : int
        Bins used (after the rule of :func:`variability_bins`).
    weighted_mean, weighted_mean_error : float
        Inverse-variance weighted mean rate and its error (the constant model).
    chi2 : float
        χ² of the constant model.
    dof : int
        ``n_bins − 1``.
    p_value : float
        Probability of a χ² at least this large for a constant source.
    mean : float
        Arithmetic mean rate (the normalisation of F_var, Vaughan et al. 2003).
    excess_variance, excess_variance_error : float
        σ²_XS = S² − ⟨σ²_err⟩ (ct²/s², eq. 8 of Vaughan et al. 2003) and its error.
    normalised_excess_variance, normalised_excess_variance_error : float
        σ²_NXS = σ²_XS / mean² and its error (eq. 11 of Vaughan et al. 2003, its noise term generalised to
        unequal errors).
    fvar, fvar_error : float
        Fractional variability amplitude √σ²_NXS and its error (eq. B2);
        NaN when the excess variance is negative (no variability detected).
    excess_significance : float
        σ²_NXS over its error for a constant source (noise term only): how many σ the excess variance is
        above zero. This is the detection test of variability: near zero, F_var / err(F_var) is twice it.
    fvar_upper_limit : float
        3σ upper limit of F_var, √(max(σ²_NXS, 0) + 3 err(σ²_NXS)), what to quote when F_var is not detected.
    n_excluded : int
        Usable bins left out by the rule.
    rule : str
        The rule (:func:`variability_rule`).
    """

    n_bins: int
    weighted_mean: float
    weighted_mean_error: float
    chi2: float
    dof: int
    p_value: float
    mean: float
    excess_variance: float
    excess_variance_error: float
    normalised_excess_variance: float
    normalised_excess_variance_error: float
    fvar: float
    fvar_error: float
    excess_significance: float = float("nan")
    fvar_upper_limit: float = float("nan")
    n_excluded: int = 0
    rule: str = ""


def variability(
    curve: LightCurve,
    *,
    max_error_factor: float = MAX_ERROR_FACTOR,
    min_exposure_fraction: float = MIN_EXPOSURE_FRACTION,
) -> Variability:
    """χ² of a constant and the fractional variability amplitude.

    Follows Vaughan et al. 2003 (MNRAS 345, 1271): with N bins, arithmetic
    mean x̄, sample variance S² and mean squared error ⟨σ²_err⟩,

        σ²_XS = S² − ⟨σ²_err⟩,   F_var = √(σ²_XS / x̄²),

    on the bins :func:`variability_bins` keeps. Their eq. 11 assumes equal
    errors; here its noise term is the exact variance of S² − ⟨σ²_err⟩ for
    Gaussian noise of unequal errors σ_i,

        Var_noise(σ²_XS) = 2 [(1 − 2/N) Σσ_i⁴ + (Σσ_i²)²/N²] / (N − 1)²,

    which is 2⟨σ²_err⟩²/(N − 1) for equal errors (eq. 11's 2/N), and is much
    larger when a few bins have large errors. The intrinsic term is eq. 11's,
    4 ⟨σ²_err⟩ σ²_XS / N; ``err(F_var) = err(σ²_NXS) / (2 F_var)`` (eq. B2).
    These errors account for the measurement noise only, not for the
    intrinsic scatter of a red-noise process.

    Parameters
    ----------
    curve : LightCurve
        Bins without a measurement are ignored.
    max_error_factor, min_exposure_fraction : float, optional
        The rule of :func:`variability_bins`.

    Returns
    -------
    Variability
    """
    usable = _usable(curve)
    kept = variability_bins(curve, max_error_factor=max_error_factor, min_exposure_fraction=min_exposure_fraction)
    n_excluded = int(np.count_nonzero(usable & ~kept))
    rule = variability_rule(max_error_factor=max_error_factor, min_exposure_fraction=min_exposure_fraction)
    if n_excluded:
        log.info(
            "%s: %d of %d bins left out of the variability statistics (%s)",
            curve.source,
            n_excluded,
            int(np.count_nonzero(usable)),
            rule,
        )
    curve = curve.select(kept)
    n = len(curve)
    if n < 2:
        raise ValueError(f"{curve.source}: at least two bins are needed to measure variability, got {n}")
    rate, error = curve.rate, curve.error
    weight = 1.0 / error**2
    weighted_mean = float(np.sum(weight * rate) / np.sum(weight))
    chi2 = float(np.sum(((rate - weighted_mean) / error) ** 2))
    dof = n - 1
    mean = float(np.mean(rate))
    sample_variance = float(np.var(rate, ddof=1))
    variances = error**2
    mean_error_squared = float(np.mean(variances))
    excess = sample_variance - mean_error_squared
    if mean == 0:
        # F_var is relative to the mean: undefined for a source at zero rate.
        log.info("%s: mean rate is zero: F_var undefined", curve.source)
        mean_squared = float("nan")
    else:
        mean_squared = mean**2
    normalised = excess / mean_squared
    noise_variance = 2.0 * ((1.0 - 2.0 / n) * np.sum(variances**2) + np.sum(variances) ** 2 / n**2) / (n - 1) ** 2
    intrinsic_variance = 4.0 * mean_error_squared * max(excess, 0.0) / n
    excess_error = float(np.sqrt(noise_variance + intrinsic_variance))
    normalised_error = excess_error / mean_squared
    significance = float(excess / np.sqrt(noise_variance)) if noise_variance > 0 else float("nan")
    if normalised > 0:
        fvar = float(np.sqrt(normalised))
        fvar_error = float(normalised_error / (2.0 * fvar))
    else:
        fvar = fvar_error = float("nan")
        log.info(
            "%s: excess variance ≤ 0 (%.3g): no variability above the noise, F_var undefined", curve.source, excess
        )
    return Variability(
        n_bins=n,
        weighted_mean=weighted_mean,
        weighted_mean_error=float(1.0 / np.sqrt(np.sum(weight))),
        chi2=chi2,
        dof=dof,
        p_value=float(stats.chi2.sf(chi2, dof)),
        mean=mean,
        excess_variance=excess,
        excess_variance_error=excess_error,
        normalised_excess_variance=normalised,
        normalised_excess_variance_error=normalised_error,
        fvar=fvar,
        fvar_error=fvar_error,
        excess_significance=significance,
        fvar_upper_limit=float(np.sqrt(max(normalised, 0.0) + 3.0 * normalised_error)),
        n_excluded=n_excluded,
        rule=rule,
    )


# -- plotting --------------------------------------------------------------------------------------------------
def ijd_to_year(ijd) -> np.ndarray:
    """IJD (TT) to decimal calendar year.

    Parameters
    ----------
    ijd : array_like
        INTEGRAL Julian dates (MJD − 51544, TT).

    Returns
    -------
    numpy.ndarray
        Decimal years (``astropy.time.Time.decimalyear``).
    """
    from astropy.time import Time

    return np.asarray(Time(np.asarray(ijd, dtype=float) + MJDREF_IJD, format="mjd", scale="tt").decimalyear)


def display_curve(curve: LightCurve, width_px: float) -> tuple[LightCurve, float | None]:
    """The curve as a plot ``width_px`` pixels wide should show it: rebinned when its bins are under a pixel.

    For display only (the products keep the curve's own bins). When the median bin is narrower than one pixel
    of the time axis, the usable bins are rebinned (:func:`rebin`, inverse-variance weighted, never across
    gaps) into bins at least two pixels wide, rounded up to a readable duration
    (:func:`integral_workflows.plotting.display_bin_s`): the plot then has at most half as many points as the
    axis has pixels, instead of a smear of overlapping error bars.

    Parameters
    ----------
    curve : LightCurve
    width_px : float
        Length of the time axis, pixels.

    Returns
    -------
    (LightCurve, float or None)
        The usable bins (rebinned or not), and the display bin in seconds (None when not rebinned).
    """
    from .plotting import display_bin_s

    shown = curve.select(_usable(curve))
    if len(shown) < 2:
        return shown, None
    span_s = float(np.max(shown.time + shown.half_width) - np.min(shown.time - shown.half_width)) * SECONDS_PER_DAY
    bin_s = float(np.median(2.0 * shown.half_width)) * SECONDS_PER_DAY
    chosen = display_bin_s(span_s, bin_s, width_px)
    if chosen is None:
        return shown, None
    return rebin(shown, chosen), chosen


def plot(
    curve: LightCurve,
    *,
    ax=None,
    path: Path | str | None = None,
    flux_calibration: float | None = None,
    time_axis: str = "year",
    title: str = "",
    energy_flux_per_mcrab: float | None = None,
):
    """Rate against time with error bars and the weighted mean.

    A curve whose bins are narrower than a pixel of the time axis (3 ks bins over years) is drawn rebinned
    for display (:func:`display_curve`), and the legend says so; the mean and χ² in the legend are those of
    the curve's own bins. The figure, when made here, uses the constrained layout, with the legend below the
    axes (on a caller's axes it goes inside, where it hides least).

    Parameters
    ----------
    curve : LightCurve
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure otherwise.
    path : path-like, optional
        Save the figure there (PNG/PDF by extension).
    flux_calibration : float, optional
        Crab count rate (ct/s) in the curve's band and instrument: adds a
        right-hand axis in mCrab (1000 × rate / Crab rate).
    time_axis : {"year", "mjd"}
        Calendar years (decimal) or MJD on the time axis.
    title : str, optional
        Replaces the default title (source, instrument, band).
    energy_flux_per_mcrab : float, optional
        erg/cm²/s of 1 mCrab in the band (a Crab calibration's band flux / 1000):
        the mCrab axis then also says it (needs ``flux_calibration``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from .plotting import axis_width_px, duration_text, plain_number_formatter, sci_text, year_axis

    if time_axis not in ("year", "mjd"):
        raise ValueError(f"time_axis must be 'year' or 'mjd', got {time_axis!r}")
    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
    else:
        fig = ax.figure
    usable = curve.select(_usable(curve))
    drawn, display_bin = display_curve(curve, axis_width_px(ax))
    if time_axis == "year":
        x = ijd_to_year(drawn.time)
        # Half-widths of days in years: the local derivative is constant to 1e-5 over a bin.
        x_error = drawn.half_width / 365.25
        ax.set_xlabel("year (TT)")
    else:
        x, x_error = drawn.mjd, drawn.half_width
        ax.set_xlabel("MJD (TT)")
    if len(usable):
        widths = 2.0 * usable.half_width * SECONDS_PER_DAY
        about = "~" if np.max(widths) > 1.1 * np.min(widths) else ""  # ScW-long bins differ: their median
        data_label = f"{usable.source} ({len(usable)} bins of {about}{duration_text(float(np.median(widths)))})"
    else:
        data_label = f"{usable.source} (no bins)"
    if display_bin is not None:
        data_label += f", shown rebinned to {duration_text(display_bin)} ({len(drawn)} points; display only)"
    ax.errorbar(
        x,
        drawn.rate,
        xerr=x_error,
        yerr=drawn.error,
        fmt="o",
        markersize=2.5,
        linewidth=0.8,
        label=data_label,
    )
    if len(usable) >= 2:
        weight = 1.0 / usable.error**2
        mean = float(np.sum(weight * usable.rate) / np.sum(weight))
        chi2 = float(np.sum(((usable.rate - mean) / usable.error) ** 2))
        ax.axhline(
            mean,
            color="C3",
            linestyle="--",
            linewidth=1,
            zorder=3,
            label=f"weighted mean {mean:.4g} ± {1.0 / np.sqrt(np.sum(weight)):.2g} ct/s "
            f"(χ²/dof = {chi2:.1f}/{len(usable) - 1})",
        )
    ax.set_ylabel("rate (ct/s)")
    # Full years or MJDs on the ticks: an offset ("+2.004e3") or trailing zeros ("2022.00") are unreadable.
    if time_axis == "year":
        year_axis(ax.xaxis)
    else:
        ax.xaxis.set_major_formatter(plain_number_formatter())
    if flux_calibration:
        crab_rate = float(flux_calibration)
        secondary = ax.secondary_yaxis(
            "right", functions=(lambda r: 1000.0 * r / crab_rate, lambda m: m * crab_rate / 1000.0)
        )
        label = "flux (mCrab)"
        if energy_flux_per_mcrab:
            label = f"flux (mCrab; 1 mCrab = {sci_text(energy_flux_per_mcrab)} erg cm⁻² s⁻¹)"
        secondary.set_ylabel(label)
    band = f" {curve.band[0]:g}–{curve.band[1]:g} keV" if curve.band else ""
    label = title or f"{curve.source} {curve.instrument}{band}".strip()
    if curve.simulated:
        label += "  [SIMULATED DATA]"
    ax.set_title(label)
    if own_figure:
        # below the axes, where it hides no point
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8, frameon=False)
    else:
        ax.legend(loc="best", fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def light_curves_from_pieces(pieces, sources: Sequence[str]) -> dict[str, LightCurve]:
    """Stitch, per source, the light curves of many finished jobs.

    Each job's answer is decoded once. A source absent from a job (outside
    its ScWs' fields) simply contributes nothing from it.

    Parameters
    ----------
    pieces : iterable
        Finished jobs (:class:`integral_workflows.jobs.Piece`), each with ``data_collection()``.
    sources : sequence of str
        Source names as in the ``selected_catalog``.

    Returns
    -------
    dict
        Source name → stitched :class:`LightCurve` (sources with no bin at all are left out, and logged).
    """
    found: dict[str, list[LightCurve]] = {name: [] for name in sources}
    for piece in pieces:
        collection = piece.data_collection()
        for name in sources:
            try:
                curve = LightCurve.from_data_collection(collection, name)
            except ValueError:
                continue
            if len(curve.time):
                found[name].append(curve)
    stitched = {}
    for name, curves in found.items():
        if curves:
            stitched[name] = stitch(curves)
        else:
            log.warning("no light-curve bin of %s in any job", name)
    return stitched


def physical_flux(curve: LightCurve, calibration) -> Table:
    """A light curve in mCrab and erg/cm²/s with a Crab calibration of its band, bin by bin.

    Each bin takes the Crab rate of its calibration period (the detector's
    ageing cancels); the energy flux assumes a Crab-like spectrum.

    Parameters
    ----------
    curve : LightCurve
        Rates in ct/s.
    calibration : integral_workflows.calibration.CrabCalibration
        A calibration of the curve's instrument and band.

    Returns
    -------
    astropy.table.Table
        ``time`` (IJD), ``rate``, ``error`` (ct/s), ``crab_rate``, ``crab_period``,
        ``mcrab``, ``mcrab_error``, ``energy_flux``, ``energy_flux_error`` (erg/cm²/s;
        errors include the calibration's), ``calibrated`` (False where the
        nearest period stood in).
    """
    crab_rate, _, period, inside = calibration.crab_rate_at(curve.time)
    mcrab, mcrab_error = calibration.to_mcrab(curve.rate, curve.error, curve.time)
    table = Table(
        {
            "time": curve.time,
            "rate": curve.rate,
            "error": curve.error,
            "crab_rate": crab_rate,
            "crab_period": period,
            "mcrab": mcrab,
            "mcrab_error": mcrab_error,
            "energy_flux": calibration.mcrab_to_energy_flux(mcrab),
            "energy_flux_error": calibration.mcrab_to_energy_flux(mcrab_error),
            "calibrated": inside,
        }
    )
    table.meta.update(
        {
            "source": curve.source,
            "instrument": calibration.instrument,
            "e1_keV": calibration.e1_keV,
            "e2_keV": calibration.e2_keV,
            "calibration_method": calibration.method,
            "conversion": "mCrab = 1000 rate / rate_Crab(period); erg/cm2/s for a Crab-like spectrum",
        }
    )
    return table


def prepare(
    stitched: Mapping[str, LightCurve], *, systematic_fraction: float, time_bin_s: float
) -> tuple[dict[str, LightCurve], Table]:
    """Add the systematic error, rebin, and test each source's light curve for variability.

    Parameters
    ----------
    stitched : mapping
        Source name → its stitched light curve (:func:`light_curves_from_pieces`).
    systematic_fraction : float
        Added in quadrature, as a fraction of the rate.
    time_bin_s : float
        The bin (:func:`rebin`).

    Returns
    -------
    (dict, astropy.table.Table)
        The prepared curves by source, and one row per source: bins, weighted mean rate, χ² of a
        constant, its p-value and the fractional variability F_var.
    """
    curves, rows = {}, []
    for name, curve in stitched.items():
        curve = rebin(add_systematics(curve, systematic_fraction), time_bin_s)
        stats = variability(curve)
        # The rule travels with each written light curve too (FITS keywords).
        curve.meta.update(
            {
                "VARERRMX": (MAX_ERROR_FACTOR, "chi2, F_var: bins, ERROR > this x median: out"),
                "VAREXPMN": (MIN_EXPOSURE_FRACTION, "chi2, F_var: exposure < this x median: out"),
                "VARNEXCL": (stats.n_excluded, "bins left out of F_var and chi2"),
            }
        )
        curves[name] = curve
        rows.append(
            (
                name,
                len(curve.time),
                stats.n_bins,
                stats.n_excluded,
                stats.weighted_mean,
                stats.weighted_mean_error,
                stats.chi2,
                stats.dof,
                stats.p_value,
                stats.normalised_excess_variance,
                stats.normalised_excess_variance_error,
                stats.excess_significance,
                stats.fvar,
                stats.fvar_error,
                stats.fvar_upper_limit,
            )
        )
    summary = Table(
        rows=rows or None,
        names=(
            "source",
            "bins",
            "bins_used",
            "bins_excluded",
            "mean_rate",
            "mean_rate_error",
            "chi2",
            "dof",
            "p_constant",
            "nxs",
            "nxs_error",
            "nxs_significance",
            "fvar",
            "fvar_error",
            "fvar_upper_limit",
        ),
        dtype=(str, int, int, int, float, float, float, int, float, float, float, float, float, float, float),
    )
    summary.meta["variability_rule"] = variability_rule()
    summary.meta["variability_method"] = (
        "chi2 of the weighted mean; excess variance S^2 - <err^2> (Vaughan et al. "
        "2003 eq. 8), its error eq. 11 with the noise term for unequal errors; "
        "nxs_significance = nxs / noise error (the variability test); F_var NaN when nxs <= 0; "
        "fvar_upper_limit = sqrt(max(nxs, 0) + 3 nxs_error)"
    )
    return curves, summary


def write_products(
    curves: Mapping[str, LightCurve],
    output_dir: Path | str,
    *,
    params,
    provenance: dict,
    positions: Mapping[str, tuple[float, float]] | None = None,
    calibration=None,
) -> list:
    """Write each source's light curve (OGIP FITS and PNG) and describe them.

    With a Crab ``calibration``, each source also gets ``lightcurve_<source>_flux.ecsv`` (mCrab and
    erg/cm²/s per bin, :func:`physical_flux`) and its plot an mCrab axis.

    Parameters
    ----------
    curves : mapping
        Source name → light curve (:func:`prepare`).
    output_dir : path-like
        Where the files go (``lightcurve_<source>.fits`` and ``.png``).
    params : mapping or parameter model
        The run's parameters (instrument, band, period, ``lc_time_bin``...).
    provenance : dict
        FITS provenance cards.
    positions : mapping, optional
        Source name → (RA, Dec) in degrees.
    calibration : integral_workflows.calibration.CrabCalibration, optional
        Converts rates to mCrab and erg/cm²/s (same instrument and band).

    Returns
    -------
    list of integral_workflows.products.Product
        One ``light_curve`` per source (with its plot), and one ``table`` per flux file.
    """
    import matplotlib.pyplot as plt

    from .products import Product, instrument_key, long_term_identity
    from .provenance import file_stem, for_source

    out = Path(output_dir)
    instrument = instrument_key(params["instrument"], params.get("jemx_unit", 1))
    if calibration is not None:
        calibration.check_band(instrument, params["E1_keV"], params["E2_keV"])
    products = []
    for name, curve in curves.items():
        stem = f"lightcurve_{file_stem(name)}"
        cards = for_source(provenance, name, (positions or {}).get(name))
        fits_path = curve.write(out / f"{stem}.fits", provenance=cards, overwrite=True)
        common = dict(
            instrument=instrument,
            source=name,
            band=(params["E1_keV"], params["E2_keV"]),
            period=(params["T1"], params["T2"]),
        )
        extra = []
        plot_options = {}
        if calibration is not None:
            fluxes = physical_flux(curve, calibration)
            flux_path = out / f"{stem}_flux.ecsv"
            fluxes.write(flux_path, overwrite=True)
            plot_options = dict(
                flux_calibration=float(np.mean(fluxes["crab_rate"])),
                energy_flux_per_mcrab=calibration.band_energy_flux / 1000.0,
            )
            extra.append(Product(path=flux_path, kind="table", **common))
        figure = plot(curve, path=out / f"{stem}.png", **plot_options)
        plt.close(figure)
        products.append(
            Product(
                path=fits_path,
                kind="light_curve",
                position=(positions or {}).get(name),
                plot=out / f"{stem}.png",
                identity=long_term_identity(params, instrument=instrument, kind="light_curve", source=name),
                details={"time_bin": params.get("lc_time_bin")},
                **common,
            )
        )
        products += extra
    return products
