"""Source spectra with their ARF and RMF, as OGIP files XSPEC-family readers load.

For one ScW the expected count rate per channel at a position is
RMF·(ARF·N) summed over the sources in the field with their PSF weight at
that position (for an isolated source: exactly RMF·(ARF·N) of that source),
on-axis equivalent like images and light curves. Each channel gets Gaussian
noise with the variance of the noise model of :mod:`.instrument`,
(β_ch + ξ Σ_s c_s,ch R_s)/(T R²). Several ScWs are combined per channel with
inverse-variance weights; the ARF shipped with them is the average of the
ScWs' ARFs (which age with time) weighted by their effective exposure T·R²,
and the RMF is the instrument's (it does not change with time). A
forward-folded fit with these files therefore returns the simulated spectrum.

Files: spectrum PRIMARY + ``ISGR-EVTS-SPE`` (``JMX<n>-PHA1-SPE``) with CHANNEL,
RATE, STAT_ERR, SYS_ERR (0), QUALITY (1 where the channel's effective area is
below 5 % of the peak: below ~15 keV and above ~450 keV for ISGRI), GROUPING
(1: no grouping); ARF PRIMARY + SPECRESP; RMF PRIMARY + SPECRESP MATRIX (one
channel group per energy row; MATRIX fixed-width, zero padded after N_CHAN) + EBOUNDS. Channels are
numbered from 1.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from astropy.io import fits

from . import CREATOR, ORIGIN
from .imaging import SIMULATED_COMMENT, _rows_of
from .instrument import MJDREF, Instrument, ScwView, noise_rng

log = logging.getLogger(__name__)

#: Channels whose effective area is below this fraction of the peak are flagged QUALITY = 1.
USABLE_AREA_FRACTION = 0.05
FIRST_CHANNEL = 1


def spectrum_arrays(rows, sky, instrument: Instrument, name: str, ra: float, dec: float, *,
                    seed: int | None = None) -> dict:
    """Combined spectrum of a position over ScWs.

    Parameters
    ----------
    rows : astropy Table or sequence of rows
        ScW records.
    sky : mmoda_local.sky.Sky
    instrument : Instrument
    name : str
        Source name (seeds the noise).
    ra, dec : float
        Position, deg.
    seed : int, optional
        Global noise seed (default: the sky's).

    Returns
    -------
    dict
        ``rate``, ``stat_err``, ``true_rate`` (per channel, ct/s), ``arf`` (per
        true-energy bin), ``exposure`` (summed good time, s), ``n_scw``,
        ``tstart``, ``tstop``, ``quality``.
    """
    seed = sky.seed if seed is None else seed
    n_channels = instrument.n_channels
    weight_sum = np.zeros(n_channels)
    weighted_rate = np.zeros(n_channels)
    weighted_truth = np.zeros(n_channels)
    arf_sum = np.zeros(len(instrument.true_centres_keV))
    arf_weight = 0.0
    exposure = 0.0
    used = 0
    tstart, tstop = np.inf, -np.inf
    for row in _rows_of(rows):
        view = ScwView(row, sky, instrument)
        response = float(view.response_at(ra, dec)[()])
        if response <= 0 or view.good_time <= 0:
            continue
        truth = view.folded_sum(view.psf_weights(ra, dec))
        variance = view.channel_variance_numerator() / (view.good_time * response ** 2)
        rng = noise_rng(seed, view.swid, instrument.key, "spectrum", "spectrum", name)
        measured = truth + np.sqrt(variance) * rng.standard_normal(n_channels)
        inverse = 1.0 / variance
        weight_sum += inverse
        weighted_rate += measured * inverse
        weighted_truth += truth * inverse
        effective_exposure = view.good_time * response ** 2
        arf_sum += effective_exposure * instrument.arf(view.mid_ijd)
        arf_weight += effective_exposure
        exposure += view.good_time
        used += 1
        tstart, tstop = min(tstart, view.tstart), max(tstop, view.tstop)
    if used == 0:
        log.warning("%s (%.3f, %.3f) is outside the field of every ScW: empty spectrum", name, ra, dec)
        arf = instrument.arf(float(rows[0]["TSTART"]) if len(_rows_of(rows)) else 0.0)
        return {"rate": np.zeros(n_channels), "stat_err": np.zeros(n_channels), "true_rate": np.zeros(n_channels),
                "arf": arf, "exposure": 0.0, "n_scw": 0, "tstart": 0.0, "tstop": 0.0,
                "quality": np.ones(n_channels, dtype=np.int16)}
    arf = arf_sum / arf_weight
    return {"rate": weighted_rate / weight_sum, "stat_err": 1.0 / np.sqrt(weight_sum),
            "true_rate": weighted_truth / weight_sum, "arf": arf, "exposure": exposure, "n_scw": used,
            "tstart": tstart, "tstop": tstop, "quality": channel_quality(instrument, arf)}


def channel_quality(instrument: Instrument, arf) -> np.ndarray:
    """QUALITY per channel: 1 where the channel's effective area is under 5 % of the peak, else 0."""
    widths_true = np.diff(instrument.true_edges_keV)
    per_channel = (np.asarray(arf) * widths_true) @ instrument.rmf / np.diff(instrument.channel_edges_keV)
    return np.where(per_channel < USABLE_AREA_FRACTION * per_channel.max(), 1, 0).astype(np.int16)


def _instrument_cards(instrument: Instrument) -> dict:
    cards = {"TELESCOP": "INTEGRAL", "INSTRUME": instrument.instrume}
    if instrument.detnam:
        cards["DETNAM"] = instrument.detnam
    cards["FILTER"] = "NONE"
    return cards


def _primary(instrument: Instrument) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    for key, value in _instrument_cards(instrument).items():
        primary.header[key] = value
    primary.header["ORIGIN"] = ORIGIN
    primary.header["CREATOR"] = CREATOR
    primary.header["COMMENT"] = SIMULATED_COMMENT
    return primary


def _stamp(header, instrument: Instrument):
    for key, value in _instrument_cards(instrument).items():
        header[key] = value
    header["ORIGIN"] = ORIGIN
    header["CREATOR"] = CREATOR
    header["COMMENT"] = SIMULATED_COMMENT


def arf_hdulist(instrument: Instrument, arf) -> fits.HDUList:
    """OGIP ARF: PRIMARY + SPECRESP (ENERG_LO, ENERG_HI, SPECRESP)."""
    edges = instrument.true_edges_keV
    table = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", unit="keV", array=edges[:-1]),
        fits.Column("ENERG_HI", "E", unit="keV", array=edges[1:]),
        fits.Column("SPECRESP", "E", unit="cm**2", array=np.asarray(arf)),
    ], name="SPECRESP")
    header = table.header
    header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "SPECRESP", "HDUVERS": "1.1.0"})
    _stamp(header, instrument)
    return fits.HDUList([_primary(instrument), table])


@functools.lru_cache(maxsize=None)
def _packed_matrix(key: str, instrument: Instrument):
    """The RMF as OGIP rows: N_GRP, F_CHAN, N_CHAN and a zero-padded MATRIX (computed once per instrument)."""
    matrix = instrument.rmf.astype(np.float32)
    n_true = matrix.shape[0]
    first = np.full(n_true, FIRST_CHANNEL, dtype=np.int32)
    count = np.zeros(n_true, dtype=np.int32)
    groups = np.zeros(n_true, dtype=np.int16)
    spans = []
    for k in range(n_true):
        nonzero = np.nonzero(matrix[k] > 0)[0]
        if len(nonzero):
            first[k], count[k], groups[k] = nonzero[0] + FIRST_CHANNEL, nonzero[-1] - nonzero[0] + 1, 1
            spans.append((nonzero[0], nonzero[-1] + 1))
        else:
            spans.append((0, 0))
    # A fixed-width MATRIX (zero padded beyond N_CHAN) rather than a variable-length array: OGIP allows
    # both, and oda_api pickles table data, which variable-length columns do not survive.
    width = max(int(count.max()), 1)
    packed = np.zeros((n_true, width), dtype=np.float32)
    for k, (lo, hi) in enumerate(spans):
        packed[k, :hi - lo] = matrix[k, lo:hi]
    return groups, first, count, packed


def rmf_hdulist(instrument: Instrument) -> fits.HDUList:
    """OGIP RMF: PRIMARY + SPECRESP MATRIX (one group per row) + EBOUNDS."""
    groups, first, count, packed = _packed_matrix(instrument.key, instrument)
    n_channels = instrument.n_channels
    edges = instrument.true_edges_keV
    table = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", unit="keV", array=edges[:-1]),
        fits.Column("ENERG_HI", "E", unit="keV", array=edges[1:]),
        fits.Column("N_GRP", "I", array=groups),
        fits.Column("F_CHAN", "J", array=first),
        fits.Column("N_CHAN", "J", array=count),
        fits.Column("MATRIX", f"{packed.shape[1]}E", array=packed),
    ], name="SPECRESP MATRIX")
    header = table.header
    header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "RSP_MATRIX", "HDUCLAS3": "REDIST",
                   "HDUVERS": "1.3.0", "CHANTYPE": "PI", "DETCHANS": n_channels, "LO_THRES": 1e-7})
    header["TLMIN4"] = FIRST_CHANNEL
    header["TLMAX4"] = n_channels - 1 + FIRST_CHANNEL
    _stamp(header, instrument)
    channel_edges = instrument.channel_edges_keV
    ebounds = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=np.arange(n_channels) + FIRST_CHANNEL),
        fits.Column("E_MIN", "E", unit="keV", array=channel_edges[:-1]),
        fits.Column("E_MAX", "E", unit="keV", array=channel_edges[1:]),
    ], name="EBOUNDS")
    ebounds.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "EBOUNDS",
                           "HDUVERS": "1.2.0", "CHANTYPE": "PI", "DETCHANS": n_channels})
    ebounds.header["TLMIN1"] = FIRST_CHANNEL
    ebounds.header["TLMAX1"] = n_channels - 1 + FIRST_CHANNEL
    _stamp(ebounds.header, instrument)
    return fits.HDUList([_primary(instrument), table, ebounds])


def spectrum_hdulist(instrument: Instrument, arrays: dict, name: str, ra: float, dec: float) -> fits.HDUList:
    """OGIP type-I spectrum: PRIMARY + ``ISGR-EVTS-SPE`` (``JMX<n>-PHA1-SPE``)."""
    n_channels = instrument.n_channels
    table = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "I", array=np.arange(n_channels) + FIRST_CHANNEL),
        fits.Column("RATE", "E", unit="count/s", array=arrays["rate"]),
        fits.Column("SYS_ERR", "E", array=np.zeros(n_channels)),
        fits.Column("STAT_ERR", "E", unit="count/s", array=arrays["stat_err"]),
        fits.Column("QUALITY", "I", array=arrays["quality"]),
        fits.Column("GROUPING", "I", array=np.ones(n_channels, dtype=np.int16)),
    ], name=instrument.spectrum_extname)
    header = table.header
    header.update({
        "HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "HDUCLAS2": "NET", "HDUCLAS3": "RATE", "HDUCLAS4": "TYPE:I",
        "HDUVERS": "1.2.1", "POISSERR": False, "CHANTYPE": "PI", "DETCHANS": n_channels,
        "EXPOSURE": (float(arrays["exposure"]), "[s] summed good time of the ScWs used"),
        "BACKSCAL": 1.0, "AREASCAL": 1.0, "CORRSCAL": 0.0, "BACKFILE": "NONE", "CORRFILE": "NONE",
        "RESPFILE": "NONE", "ANCRFILE": "NONE", "NAME": str(name), "RA_OBJ": float(ra), "DEC_OBJ": float(dec),
        "NSCW": int(arrays["n_scw"]), "TSTART": float(arrays["tstart"]), "TSTOP": float(arrays["tstop"]),
        "MJDREF": MJDREF, "TIMESYS": "TT", "TIMEUNIT": "d"})
    header["TLMIN1"] = FIRST_CHANNEL
    header["TLMAX1"] = n_channels - 1 + FIRST_CHANNEL
    _stamp(header, instrument)
    return fits.HDUList([_primary(instrument), table])


def spectrum_products(rows, sky, instrument: Instrument, name: str, ra: float, dec: float, *,
                      seed: int | None = None) -> tuple[fits.HDUList, fits.HDUList, fits.HDUList]:
    """Spectrum, ARF and RMF of a source over ScWs.

    Parameters are those of :func:`spectrum_arrays`.

    Returns
    -------
    (spectrum, arf, rmf) : tuple of astropy.io.fits.HDUList
    """
    arrays = spectrum_arrays(rows, sky, instrument, name, ra, dec, seed=seed)
    return (spectrum_hdulist(instrument, arrays, name, ra, dec), arf_hdulist(instrument, arrays["arf"]),
            _cached_rmf(instrument))


def _cached_rmf(instrument: Instrument) -> fits.HDUList:
    """A fresh RMF HDUList (copies of cached HDUs would not pickle, and oda_api pickles table data)."""
    return rmf_hdulist(instrument)


__all__ = ["spectrum_arrays", "spectrum_products", "spectrum_hdulist", "arf_hdulist", "rmf_hdulist",
           "channel_quality"]
