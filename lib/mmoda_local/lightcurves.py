"""Source light curves: one OGIP light curve per source, through the same model as images.

The model, binning and columns: docs/simulated_sky.md, "Light curves".
"""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy.io import fits

from . import CREATOR, ORIGIN
from .imaging import DEADC_CARD, SIMULATED_COMMENT, _rows_of
from .instrument import MJDREF, Instrument, ScwView, band_label, noise_rng

log = logging.getLogger(__name__)

#: A ScW's last bin shorter than this fraction of ``time_bin`` is merged into the previous one.
MERGE_FRACTION = 0.25
COLUMNS = ("TIME", "TOT_COUNTS", "BACKV", "BACKE", "RATE", "ERROR", "FRACEXP", "XAX_E")
#: The real JEM-X light-curve columns (lc.fits of oda_api's test data), in their order.
JEMX_COLUMNS = ("TIME", "RATE", "ERROR", "BRATE", "BERROR", "BARYTIME", "FRACEXP", "TIMEDEL")


def scw_bin_edges(tstart: float, tstop: float, time_bin_s: float) -> np.ndarray:
    """Bin edges (IJD) of one ScW for a bin width in seconds (see docs/simulated_sky.md, "Light curves")."""
    span_s = (tstop - tstart) * 86400.0
    if time_bin_s <= 0 or time_bin_s >= span_s:
        return np.array([tstart, tstop])
    count = int(math.floor(span_s / time_bin_s))
    edges = tstart + np.arange(count + 1) * time_bin_s / 86400.0
    remainder_s = span_s - count * time_bin_s
    if remainder_s >= MERGE_FRACTION * time_bin_s:
        edges = np.append(edges, tstop)
    else:
        edges[-1] = tstop
    return edges


def lightcurve_arrays(
    rows,
    sky,
    instrument: Instrument,
    e1_keV: float,
    e2_keV: float,
    name: str,
    ra: float,
    dec: float,
    *,
    time_bin_s: float = 1000.0,
    seed: int | None = None,
) -> dict:
    """Light-curve columns of a source over ScWs.

    Parameters
    ----------
    rows : astropy Table or sequence of rows
        ScW records.
    sky : mmoda_local.sky.Sky
    instrument : Instrument
    e1_keV, e2_keV : float
        Energy band.
    name : str
        Source name (seeds the noise; goes into the NAME keyword).
    ra, dec : float
        Position (deg) at which the rate is measured.
    time_bin_s : float, optional
        Bin width, seconds.
    seed : int, optional
        Global noise seed (default: the sky's).

    Returns
    -------
    dict
        The columns of :data:`COLUMNS` (numpy arrays) plus ``TRUE_RATE`` (the
        noiseless rate), ``SWID`` (per bin) and ``RESPONSE`` (field response).
    """
    seed = sky.seed if seed is None else seed
    band = band_label(e1_keV, e2_keV)
    chunks = {key: [] for key in COLUMNS + ("TRUE_RATE", "SWID", "RESPONSE")}
    for row in _rows_of(rows):
        view = ScwView(row, sky, instrument)
        response = float(view.response_at(ra, dec)[()])
        if response <= 0 or view.good_time < 1.0:
            continue
        edges = scw_bin_edges(view.tstart, view.tstop, float(time_bin_s))
        durations_s = np.diff(edges) * 86400.0
        good_fraction = min(view.good_time / max(view.telapse, 1e-9), 1.0)
        good_times = durations_s * good_fraction
        truth = view.psf_weights(ra, dec) @ view.band_rates_in(e1_keV, e2_keV, edges)
        numerator = view.variance_numerator(e1_keV, e2_keV)
        background = instrument.band_background(e1_keV, e2_keV, view.mid_ijd)
        with np.errstate(divide="ignore"):
            sigma = np.sqrt(numerator / (np.maximum(good_times, 1e-9) * response**2))
        rng = noise_rng(seed, view.swid, instrument.key, band, "lc", name)
        rate = truth + sigma * rng.standard_normal(len(truth))
        chunks["TIME"].append(0.5 * (edges[:-1] + edges[1:]))
        chunks["XAX_E"].append(0.5 * np.diff(edges))
        chunks["RATE"].append(rate)
        chunks["ERROR"].append(sigma)
        chunks["TRUE_RATE"].append(truth)
        chunks["FRACEXP"].append(np.full(len(truth), good_fraction))
        chunks["BACKV"].append(np.full(len(truth), background))
        chunks["BACKE"].append(np.sqrt(background / np.maximum(good_times, 1e-9)))
        chunks["TOT_COUNTS"].append(np.maximum(rate * response + background, 0.0) * good_times)
        chunks["SWID"].append(np.full(len(truth), view.swid))
        chunks["RESPONSE"].append(np.full(len(truth), response))
    out = {}
    for key, parts in chunks.items():
        if parts:
            out[key] = np.concatenate(parts)
        else:
            out[key] = np.array([], dtype=str if key == "SWID" else float)
    order = np.argsort(out["TIME"], kind="stable")
    return {key: value[order] for key, value in out.items()}


def _table_columns(instrument: Instrument, arrays: dict) -> list:
    """The light-curve columns of the real product of this instrument, from the simulation's arrays."""
    if instrument.key == "isgri":
        units = {
            "TIME": "d",
            "TOT_COUNTS": "count",
            "BACKV": "count/s",
            "BACKE": "count/s",
            "RATE": "count/s",
            "ERROR": "count/s",
            "FRACEXP": "",
            "XAX_E": "d",
        }
        return [
            fits.Column(key, "D" if key == "TIME" else "E", unit=units[key] or None, array=arrays[key])
            for key in COLUMNS
        ]
    values = {
        "TIME": arrays["TIME"],
        "RATE": arrays["RATE"],
        "ERROR": arrays["ERROR"],
        "BRATE": arrays["BACKV"],
        "BERROR": arrays["BACKE"],
        "BARYTIME": np.zeros(len(arrays["TIME"])),
        "FRACEXP": arrays["FRACEXP"],
        "TIMEDEL": 2.0 * arrays["XAX_E"],
    }
    formats = {"TIME": "D", "BARYTIME": "D", "TIMEDEL": "D"}
    units = {
        "TIME": "d",
        "RATE": "count/s",
        "ERROR": "count/s",
        "BRATE": "count/s",
        "BERROR": "count/s",
        "BARYTIME": "d",
        "TIMEDEL": "d",
    }
    return [fits.Column(key, formats.get(key, "E"), unit=units.get(key), array=values[key]) for key in JEMX_COLUMNS]


def lightcurve_hdulist(
    rows,
    sky,
    instrument: Instrument,
    e1_keV: float,
    e2_keV: float,
    name: str,
    ra: float,
    dec: float,
    *,
    time_bin_s: float = 1000.0,
    seed: int | None = None,
) -> fits.HDUList:
    """OGIP light curve of a source: PRIMARY + ``ISGR-SRC.-LCR`` (``JMX<n>-SRC.-LCR``).

    Parameters are those of :func:`lightcurve_arrays`.

    Returns
    -------
    astropy.io.fits.HDUList
        The real product's columns (:data:`COLUMNS` for ISGRI,
        :data:`JEMX_COLUMNS` for JEM-X; TIME in IJD) and header (see
        docs/simulated_sky.md, "Light curves"); TIMEDEL is ``time_bin`` in days, or the median ScW
        length when that is shorter. No rows when the position is outside
        every ScW's field.
    """
    arrays = lightcurve_arrays(rows, sky, instrument, e1_keV, e2_keV, name, ra, dec, time_bin_s=time_bin_s, seed=seed)
    table = fits.BinTableHDU.from_columns(_table_columns(instrument, arrays), name=instrument.lc_extname)
    header = table.header
    scws = _rows_of(rows)
    spans_s = [(float(r["TSTOP"]) - float(r["TSTART"])) * 86400.0 for r in scws]
    # The requested width, or the typical ScW length when bins are whole ScWs.
    timedel = min(float(time_bin_s), float(np.median(spans_s))) / 86400.0 if spans_s else float(time_bin_s) / 86400.0
    time_column, half_width = arrays["TIME"], arrays["XAX_E"]
    first = float(time_column[0] - half_width[0]) if len(time_column) else 0.0
    last = float(time_column[-1] + half_width[-1]) if len(time_column) else 0.0
    ontime_d = float(np.sum(arrays["FRACEXP"] * 2.0 * half_width))
    weights = instrument.channel_weights(e1_keV, e2_keV)
    channels = np.nonzero(weights > 0)[0]
    cards = {"TELESCOP": "INTEGRAL", "INSTRUME": instrument.instrume}
    if instrument.detnam:
        cards["DETNAM"] = instrument.detnam
    cards.update(
        {
            "NAME": str(name),
            "RA_OBJ": float(ra),
            "DEC_OBJ": float(dec),
            "EQUINOX": 2000.0,
            "RADECSYS": "FK5",
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "LIGHTCURVE",
            "HDUCLAS2": "NET",
            "HDUCLAS3": "RATE",
            "TIMVERS": "OGIP/93-003",
            "TIMEDEL": (timedel, "[d] bin width"),
            "TIMEPIXR": (0.5, "TIME is the bin centre"),
            "MJDREF": MJDREF,
            "TIMESYS": "TT",
            "TIMEUNIT": "d",
            "TIMEREF": "LOCAL",
            "TSTART": (first, "[d] IJD (TT) start of the first bin"),
            "TSTOP": (last, "[d] IJD (TT) end of the last bin"),
            "TFIRST": (first, "[d] IJD (TT) start of the first bin"),
            "TLAST": (last, "[d] IJD (TT) end of the last bin"),
            "TELAPSE": (last - first, "[d] TSTOP - TSTART"),
            "ONTIME": (ontime_d, "[d] sum of FRACEXP x bin width"),
            "DEADC": DEADC_CARD,
            "E_MIN": (float(e1_keV), "[keV]"),
            "E_MAX": (float(e2_keV), "[keV]"),
            "EUNIT": "keV",
            "CHANTYPE": "PI",
            "CHANMIN": int(channels[0]) if len(channels) else 0,
            "CHANMAX": int(channels[-1]) if len(channels) else 0,
            "ORIGIN": ORIGIN,
            "CREATOR": CREATOR,
        }
    )
    if scws:
        cards["REVOL"] = int(str(scws[0]["SWID"])[:4])
    header.update(cards)
    header["COMMENT"] = SIMULATED_COMMENT
    primary = fits.PrimaryHDU()
    primary.header["COMMENT"] = SIMULATED_COMMENT
    return fits.HDUList([primary, table])


__all__ = ["lightcurve_arrays", "lightcurve_hdulist", "scw_bin_edges", "COLUMNS", "JEMX_COLUMNS"]
