"""Source spectra with their ARF and RMF, as OGIP files XSPEC-family readers load.

The model and the files: docs/simulated_sky.md, "Spectra".
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from astropy.io import fits

from . import CREATOR, ORIGIN
from .imaging import DEADC_CARD, SIMULATED_COMMENT, _rows_of, osa_date
from .instrument import MJDREF, Instrument, ScwView, noise_rng

log = logging.getLogger(__name__)

#: Channels whose effective area is below this fraction of the peak are flagged QUALITY = 1.
USABLE_AREA_FRACTION = 0.05
#: OSA numbers channels from 0 (the real ISGRI RMF's EBOUNDS and TLMIN4; the real spectrum's TLMIN1).
FIRST_CHANNEL = 0


def wire_names(instrument: Instrument) -> dict:
    """Data-unit names the real plugin gives the OSA response extensions (their headers keep EXTNAME)."""
    if instrument.key == "isgri":
        return {"ISGR-ARF.-RSP": "SPECRESP", "ISGR-RMF.-RSP": "SPECRESP MATRIX", "ISGR-EBDS-MOD": "EBOUNDS"}
    unit = instrument.instrume
    return {f"{unit}-AXIS-ARF": "SPECRESP", f"{unit}-RMF.-RSP": "SPECRESP MATRIX", f"{unit}-FBDS-MOD": "EBOUNDS"}


def _arf_extname(instrument: Instrument) -> str:
    return "ISGR-ARF.-RSP" if instrument.key == "isgri" else f"{instrument.instrume}-AXIS-ARF"


def spectrum_arrays(
    rows, sky, instrument: Instrument, name: str, ra: float, dec: float, *, seed: int | None = None
) -> dict:
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
        true-energy bin), ``exposure`` (summed good time, s), ``exp_src``
        (summed good time × field response at the position, s: the effective
        exposure of the source), ``telapse`` (summed elapsed time of the ScWs
        used, s), ``n_scw``, ``tstart``, ``tstop``, ``quality``.
    """
    return spectra_arrays(rows, sky, instrument, [(name, ra, dec)], seed=seed)[0]


def spectra_arrays(rows, sky, instrument: Instrument, sources, *, seed: int | None = None) -> list[dict]:
    """Combined spectra of several positions over ScWs: :func:`spectrum_arrays` of each, computed together.

    Each ScW's view of the sky, its channel variance and its ARF are computed
    once for all the positions, and the positions' spectra are folded in one
    matrix product; the noise of each (ScW, source) is drawn from its own
    generator, so the result of a source does not depend on the others.

    Parameters
    ----------
    rows : astropy Table or sequence of rows
        ScW records.
    sky : mmoda_local.sky.Sky
    instrument : Instrument
    sources : sequence of (str, float, float)
        ``(name, ra, dec)`` of each position (deg).
    seed : int, optional
        Global noise seed (default: the sky's).

    Returns
    -------
    list of dict
        One :func:`spectrum_arrays` dict per source, in order.
    """
    seed = sky.seed if seed is None else seed
    sources = [(str(name), float(ra), float(dec)) for name, ra, dec in sources]
    n_sources = len(sources)
    names = [name for name, _, _ in sources]
    ra_all = np.array([ra for _, ra, _ in sources], dtype=float)
    dec_all = np.array([dec for _, _, dec in sources], dtype=float)
    n_channels = instrument.n_channels
    weight_sum = np.zeros((n_sources, n_channels))
    weighted_rate = np.zeros((n_sources, n_channels))
    weighted_truth = np.zeros((n_sources, n_channels))
    arf_sum = np.zeros((n_sources, len(instrument.true_centres_keV)))
    arf_weight = np.zeros(n_sources)
    exposure = np.zeros(n_sources)
    exposure_at_source = np.zeros(n_sources)
    elapsed = np.zeros(n_sources)
    used = np.zeros(n_sources, dtype=int)
    tstart = np.full(n_sources, np.inf)
    tstop = np.full(n_sources, -np.inf)
    scw_rows = _rows_of(rows)
    for row in scw_rows:
        if not n_sources:
            break
        view = ScwView(row, sky, instrument)
        if view.good_time <= 0:
            continue
        # Position by position (scalars), as for one source: the same floating-point operations.
        planes = [view.plane(ra, dec) for ra, dec in zip(ra_all, dec_all)]
        responses = np.array([float(view.response_at(ra, dec)[()]) for ra, dec in zip(ra_all, dec_all)])
        seen = np.nonzero(responses > 0)[0]
        if not len(seen):
            continue
        # Per ScW, not per source: the noise-model numerator and the ARF.
        numerator = view.channel_variance_numerator()
        arf = instrument.arf(view.mid_ijd)
        xi = np.array([float(planes[s][0]) for s in seen])
        eta = np.array([float(planes[s][1]) for s in seen])
        distance2 = (view.xi[None, :] - xi[:, None]) ** 2 + (view.eta[None, :] - eta[:, None]) ** 2
        psf = np.exp(-0.5 * distance2 / instrument.psf_sigma_deg**2)
        truths = instrument.fold((psf * view.mean_variability) @ view.reference_flux, view.mid_ijd)
        for k, s in enumerate(seen):
            response = float(responses[s])
            truth = truths[k]
            variance = numerator / (view.good_time * response**2)
            rng = noise_rng(seed, view.swid, instrument.key, "spectrum", "spectrum", names[s])
            measured = truth + np.sqrt(variance) * rng.standard_normal(n_channels)
            inverse = 1.0 / variance
            weight_sum[s] += inverse
            weighted_rate[s] += measured * inverse
            weighted_truth[s] += truth * inverse
            effective_exposure = view.good_time * response**2
            arf_sum[s] += effective_exposure * arf
            arf_weight[s] += effective_exposure
            exposure[s] += view.good_time
            exposure_at_source[s] += view.good_time * response
            elapsed[s] += view.telapse
            used[s] += 1
            tstart[s], tstop[s] = min(tstart[s], view.tstart), max(tstop[s], view.tstop)
    out = []
    for s, (name, ra, dec) in enumerate(sources):
        if used[s] == 0:
            log.warning("%s (%.3f, %.3f) is outside the field of every ScW: empty spectrum", name, ra, dec)
            arf = instrument.arf(float(rows[0]["TSTART"]) if len(scw_rows) else 0.0)
            out.append(
                {
                    "rate": np.zeros(n_channels),
                    "stat_err": np.zeros(n_channels),
                    "true_rate": np.zeros(n_channels),
                    "arf": arf,
                    "exposure": 0.0,
                    "exp_src": 0.0,
                    "telapse": 0.0,
                    "n_scw": 0,
                    "tstart": 0.0,
                    "tstop": 0.0,
                    "quality": np.ones(n_channels, dtype=np.int16),
                }
            )
            continue
        arf = arf_sum[s] / arf_weight[s]
        out.append(
            {
                "rate": weighted_rate[s] / weight_sum[s],
                "stat_err": 1.0 / np.sqrt(weight_sum[s]),
                "true_rate": weighted_truth[s] / weight_sum[s],
                "arf": arf,
                "exposure": float(exposure[s]),
                "exp_src": float(exposure_at_source[s]),
                "telapse": float(elapsed[s]),
                "n_scw": int(used[s]),
                "tstart": float(tstart[s]),
                "tstop": float(tstop[s]),
                "quality": channel_quality(instrument, arf),
            }
        )
    return out


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


def _arf_table(instrument: Instrument, arf, extname: str, *, unit: str | None = "cm**2") -> fits.BinTableHDU:
    edges = instrument.true_edges_keV
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("ENERG_LO", "E", unit="keV", array=edges[:-1]),
            fits.Column("ENERG_HI", "E", unit="keV", array=edges[1:]),
            fits.Column("SPECRESP", "E", unit=unit, array=np.asarray(arf)),
        ],
        name=extname,
    )
    table.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "SPECRESP", "HDUVERS": "1.1.0"})
    _stamp(table.header, instrument)
    return table


def arf_hdulist(instrument: Instrument, arf) -> fits.HDUList:
    """OGIP ARF: PRIMARY + ``ISGR-ARF.-RSP`` (``JMX<n>-AXIS-ARF``) with ENERG_LO, ENERG_HI, SPECRESP.

    The real plugin sends the table as the data unit ``SPECRESP`` (see :func:`wire_names`).
    """
    return fits.HDUList([_primary(instrument), _arf_table(instrument, arf, _arf_extname(instrument))])


@functools.cache
def _packed_matrix(key: str, instrument: Instrument):
    """The RMF as OGIP rows: N_GRP, F_CHAN, N_CHAN and the non-zero span of each row (computed once)."""
    matrix = instrument.rmf.astype(np.float32)
    n_true = matrix.shape[0]
    first = np.full(n_true, FIRST_CHANNEL, dtype=np.int32)
    count = np.zeros(n_true, dtype=np.int32)
    groups = np.zeros(n_true, dtype=np.int16)
    rows = []
    for k in range(n_true):
        nonzero = np.nonzero(matrix[k] > 0)[0]
        if len(nonzero):
            lo, hi = nonzero[0], nonzero[-1] + 1
            first[k], count[k], groups[k] = lo + FIRST_CHANNEL, hi - lo, 1
            rows.append(matrix[k, lo:hi].copy())
        else:
            rows.append(np.zeros(0, dtype=np.float32))
    return groups, first, count, tuple(rows)


def _matrix_table(instrument: Instrument, extname: str) -> fits.BinTableHDU:
    """The redistribution matrix HDU of ``instrument``'s RMF.

    MATRIX is a variable-length array (``PE()``) for ISGRI, as in the real ISGRI RMF; fixed-length full rows for
    JEM-X, whose real RMF MATRIX is not variable-length (oda-integral-wrapper 1.5.19 converts the ISGRI one and
    notes that the conversion "gives an error with JEM-X").
    """
    groups, first, count, rows = _packed_matrix(instrument.key, instrument)
    n_channels = instrument.n_channels
    edges = instrument.true_edges_keV
    if instrument.key == "isgri":
        matrix = fits.Column("MATRIX", "PE()", array=list(rows))
    else:
        full = np.zeros((len(rows), n_channels), dtype=np.float32)
        for k, row in enumerate(rows):
            full[k, first[k] - FIRST_CHANNEL : first[k] - FIRST_CHANNEL + len(row)] = row
        groups = np.ones(len(rows), dtype=groups.dtype)
        first = np.full(len(rows), FIRST_CHANNEL, dtype=first.dtype)
        count = np.full(len(rows), n_channels, dtype=count.dtype)
        matrix = fits.Column("MATRIX", f"{n_channels}E", array=full)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("ENERG_LO", "E", unit="keV", array=edges[:-1]),
            fits.Column("ENERG_HI", "E", unit="keV", array=edges[1:]),
            fits.Column("N_GRP", "I", array=groups),
            fits.Column("F_CHAN", "J", array=first),
            fits.Column("N_CHAN", "J", array=count),
            matrix,
        ],
        name=extname,
    )
    header = table.header
    header.update(
        {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "RESPONSE",
            "HDUCLAS2": "RSP_MATRIX",
            "HDUCLAS3": "REDIST",
            "HDUVERS": "1.3.0",
            "CHANTYPE": "PI",
            "DETCHANS": n_channels,
            "LO_THRES": 1e-7,
            "NUMGRP": int(groups.sum()),
            "NUMELT": int(count.sum()),
            "EFFAREA": 1.0,
            "MJDREF": MJDREF,
            "TIMESYS": "TT",
            "TIMEUNIT": "d",
            "TIMEREF": "LOCAL",
        }
    )
    header["TLMIN4"] = FIRST_CHANNEL
    header["TLMAX4"] = n_channels - 1 + FIRST_CHANNEL
    _stamp(header, instrument)
    return table


def _ebounds_table(instrument: Instrument, extname: str) -> fits.BinTableHDU:
    n_channels = instrument.n_channels
    channel_edges = instrument.channel_edges_keV
    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "I", array=np.arange(n_channels) + FIRST_CHANNEL),
            fits.Column("E_MIN", "E", unit="keV", array=channel_edges[:-1]),
            fits.Column("E_MAX", "E", unit="keV", array=channel_edges[1:]),
        ],
        name=extname,
    )
    ebounds.header.update(
        {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "RESPONSE",
            "HDUCLAS2": "EBOUNDS",
            "HDUVERS": "1.1.0",
            "CHANTYPE": "PI",
            "DETCHANS": n_channels,
        }
    )
    ebounds.header["TLMIN1"] = FIRST_CHANNEL
    ebounds.header["TLMAX1"] = n_channels - 1 + FIRST_CHANNEL
    _stamp(ebounds.header, instrument)
    return ebounds


def rmf_hdulist(instrument: Instrument) -> fits.HDUList:
    """OGIP RMF in the OSA layout of the instrument (see docs/simulated_sky.md, "Spectra").

    ISGRI: PRIMARY, ``ISGR-EBDS-MOD``, ``ISGR-RMF.-RSP`` (the order of the real
    ISGRI RMF). JEM-X: PRIMARY, GROUPING, ``JMX<n>-RMF.-RSP``,
    ``JMX<n>-FBDS-MOD``, ``JMX<n>-AXIS-ARF`` (the on-axis effective area, the
    ARF's) and ``JMX<n>-IMAG-ARF`` (the imaging efficiency, 1: the simulated
    rates are already on the image scale), as the real JEM-X products list
    them (oda_api Show_and_Save_Products notebook).
    """
    if instrument.key == "isgri":
        return fits.HDUList(
            [
                _primary(instrument),
                _ebounds_table(instrument, "ISGR-EBDS-MOD"),
                _matrix_table(instrument, "ISGR-RMF.-RSP"),
            ]
        )
    unit = instrument.instrume
    members = [f"{unit}-RMF.-RSP", f"{unit}-FBDS-MOD", f"{unit}-AXIS-ARF", f"{unit}-IMAG-ARF"]
    grouping = fits.BinTableHDU.from_columns(
        [
            fits.Column("MEMBER_XTENSION", "8A", array=["BINTABLE"] * 4),
            fits.Column("MEMBER_NAME", "32A", array=members),
            fits.Column("MEMBER_VERSION", "1J", array=np.ones(4, dtype=np.int32)),
            fits.Column("MEMBER_POSITION", "1J", array=np.arange(3, 7, dtype=np.int32)),
            fits.Column("MEMBER_LOCATION", "256A", array=[""] * 4),
            fits.Column("MEMBER_URI_TYPE", "3A", array=[""] * 4),
        ],
        name="GROUPING",
    )
    grouping.header["BASETYPE"] = "DAL_GROUP"
    _stamp(grouping.header, instrument)
    imaging = _arf_table(instrument, np.ones(len(instrument.true_centres_keV)), members[3], unit=None)
    return fits.HDUList(
        [
            _primary(instrument),
            grouping,
            _matrix_table(instrument, members[0]),
            _ebounds_table(instrument, members[1]),
            _arf_table(instrument, instrument.arf(0.0), members[2]),
            imaging,
        ]
    )


def spectrum_hdulist(instrument: Instrument, arrays: dict, name: str, ra: float, dec: float) -> fits.HDUList:
    """OGIP type-I spectrum: PRIMARY + ``ISGR-EVTS-SPE`` (``JMX<n>-PHA1-SPE``), keywords as the real one's.

    The real ISGRI spectrum (oda_api TestAPI notebook) carries EXPOSURE,
    EXP_SRC, ONTIME, TELAPSE, DEADC, TSTART/TSTOP (IJD), HDUCLAS2 ``TOTAL``,
    ANCRFILE/RESPFILE ``NONE`` (set by the plugin) and channels from 0.
    Here ONTIME is the summed good time, EXPOSURE = ONTIME × DEADC, EXP_SRC
    the good time weighted by the field response at the source (s).
    """
    n_channels = instrument.n_channels
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "1I", array=np.arange(n_channels) + FIRST_CHANNEL),
            fits.Column("RATE", "1E", unit="count/s", array=arrays["rate"]),
            fits.Column("SYS_ERR", "1E", array=np.zeros(n_channels)),
            fits.Column("STAT_ERR", "1E", unit="count/s", array=arrays["stat_err"]),
            fits.Column("QUALITY", "1I", array=arrays["quality"]),
            fits.Column("GROUPING", "1I", array=np.ones(n_channels, dtype=np.int16)),
        ],
        name=instrument.spectrum_extname,
    )
    header = table.header
    ontime = float(arrays["exposure"])
    header.update(
        {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "SPECTRUM",
            "HDUCLAS2": "TOTAL",
            "HDUCLAS3": "RATE",
            "HDUVERS": "1.2.1",
            "CHANTYPE": "PI",
            "DETCHANS": n_channels,
            "EXPOSURE": (ontime * DEADC_CARD[0], "[s] ONTIME x DEADC"),
            "EXP_SRC": (float(arrays["exp_src"]), "[s] good time x field response at the source"),
            "ONTIME": (ontime, "[s] summed good time of the ScWs used"),
            "TELAPSE": (float(arrays["telapse"]), "[s] summed elapsed time of the ScWs used"),
            "DEADC": DEADC_CARD,
            "BACKSCAL": 1.0,
            "AREASCAL": 1.0,
            "CORRSCAL": 0.0,
            "BACKFILE": "NONE",
            "CORRFILE": "NONE",
            "RESPFILE": "NONE",
            "ANCRFILE": "NONE",
            "NAME": str(name),
            "RA_OBJ": float(ra),
            "DEC_OBJ": float(dec),
            "EQUINOX": 2000.0,
            "RADECSYS": "FK5",
            "TSTART": (float(arrays["tstart"]), "[d] IJD (TT)"),
            "TSTOP": (float(arrays["tstop"]), "[d] IJD (TT)"),
            "MJDREF": MJDREF,
            "TIMESYS": "TT",
            "TIMEUNIT": "d",
            "TIMEREF": "LOCAL",
        }
    )
    if arrays["n_scw"]:
        header["DATE-OBS"] = (osa_date(arrays["tstart"]), "UTC of TSTART")
        header["DATE-END"] = (osa_date(arrays["tstop"]), "UTC of TSTOP")
    header["TLMIN1"] = FIRST_CHANNEL
    header["TLMAX1"] = n_channels - 1 + FIRST_CHANNEL
    _stamp(header, instrument)
    return fits.HDUList([_primary(instrument), table])


def spectrum_products(
    rows, sky, instrument: Instrument, name: str, ra: float, dec: float, *, seed: int | None = None
) -> tuple[fits.HDUList, fits.HDUList, fits.HDUList]:
    """Spectrum, ARF and RMF of a source over ScWs.

    Parameters are those of :func:`spectrum_arrays`.

    Returns
    -------
    (spectrum, arf, rmf) : tuple of astropy.io.fits.HDUList
    """
    arrays = spectrum_arrays(rows, sky, instrument, name, ra, dec, seed=seed)
    return (
        spectrum_hdulist(instrument, arrays, name, ra, dec),
        arf_hdulist(instrument, arrays["arf"]),
        _cached_rmf(instrument),
    )


def spectra_products(
    rows, sky, instrument: Instrument, sources, *, seed: int | None = None
) -> list[tuple[fits.HDUList, fits.HDUList, fits.HDUList]]:
    """Spectrum, ARF and RMF of several sources over ScWs (:func:`spectrum_products` of each, computed together).

    Parameters are those of :func:`spectra_arrays`.

    Returns
    -------
    list of (spectrum, arf, rmf)
        One triple of astropy.io.fits.HDUList per source, in order. The RMF,
        the same for every source, is one HDUList shared by all the triples
        (building it took as long as the rest of a spectrum).
    """
    arrays = spectra_arrays(rows, sky, instrument, sources, seed=seed)
    rmf = _cached_rmf(instrument) if len(arrays) else None
    return [
        (
            spectrum_hdulist(instrument, source_arrays, name, ra, dec),
            arf_hdulist(instrument, source_arrays["arf"]),
            rmf,
        )
        for source_arrays, (name, ra, dec) in zip(arrays, sources)
    ]


def _cached_rmf(instrument: Instrument) -> fits.HDUList:
    """A fresh RMF HDUList (copies of cached HDUs would not pickle, and oda_api pickles table data)."""
    return rmf_hdulist(instrument)


__all__ = [
    "spectrum_arrays",
    "spectra_arrays",
    "spectrum_products",
    "spectra_products",
    "spectrum_hdulist",
    "arf_hdulist",
    "rmf_hdulist",
    "channel_quality",
    "wire_names",
    "FIRST_CHANNEL",
]
