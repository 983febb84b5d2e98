"""Spectra: read MMODA spectral products, combine chunks, group, fit a power law, write OGIP files, plot.

MMODA returns, per source and job, three products told apart by
``meta_data['product']``: the spectrum (``isgri_spectrum`` /
``jemx_spectrum``: ``ISGR-EVTS-SPE`` or ``JMX{n}-PHA1-SPE`` with ``CHANNEL,
RATE, STAT_ERR, SYS_ERR, QUALITY, GROUPING`` and ``EXPOSURE``), the ARF
(``*_arf``: ``SPECRESP``) and the RMF (``*_rmf``: ``SPECRESP MATRIX`` and
``EBOUNDS``). A long-term spectrum is::

    pairs = [from_data_collection(data, "Crab") for data in chunk_results]
    spectrum, response = combine(pairs)                  # weighted mean rate, exposure-weighted response
    spectrum = add_systematics(spectrum, 0.0015)
    spectrum = group(spectrum, min_energy=20, max_energy=200, factor=-20)
    fit = fit_power_law(spectrum, response, energy_range=(20, 200))
    fit.band_flux(20, 80)                                # erg/cm²/s and its error
    write(spectrum, response, "crab_isgri.fits")        # + crab_isgri_arf.fits, crab_isgri_rmf.fits

The forward-folding model of a photon spectrum N(E) (ph/cm²/s/keV) is, per
channel ``c``::

    rate_c = Σ_j RMF[j, c] · ARF_j · ∫_{E_j}^{E_j+1} N(E) dE          (ct/s)

with the integral over each true-energy bin done analytically for the power
law. Grouped channels are summed (rates, and errors in quadrature), as XSPEC
does with the ``GROUPING`` column.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import optimize, stats

from .catalog import source_name_key
from .jobs import product_hdus, product_instrument, product_meta_data
from .provenance import fits_ascii

log = logging.getLogger(__name__)

#: keV → erg.
KEV_TO_ERG = 1.602176634e-9
#: OGIP QUALITY values: good, bad by the software, bad by the user (grppha's "bad").
QUALITY_GOOD, QUALITY_BAD_SOFTWARE, QUALITY_BAD_USER = 0, 1, 5
#: Default pivot energies (keV) by instrument: 100 keV for ISGRI (the Crab reference), 10 keV for JEM-X.
DEFAULT_PIVOTS_KEV = {"ISGRI": 100.0, "JMX1": 10.0, "JMX2": 10.0}

KEPT_KEYWORDS = (
    "TELESCOP",
    "INSTRUME",
    "DETNAM",
    "TSTART",
    "TSTOP",
    "ORIGIN",
    "CREATOR",
    "SIMULATD",
    "RA_OBJ",
    "DEC_OBJ",
    "OBJECT",
    "SOURCEID",
    "ONTIME",
    "LIVETIME",
    "TELAPSE",
)
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
    "SIMPLE",
    "EXTEND",
    "HDUCLASS",
    "HDUCLAS1",
    "HDUCLAS2",
    "HDUCLAS3",
    "HDUCLAS4",
    "HDUVERS",
    "EXPOSURE",
    "DETCHANS",
    "CHANTYPE",
    "POISSERR",
    "BACKFILE",
    "CORRFILE",
    "RESPFILE",
    "ANCRFILE",
    "BACKSCAL",
    "AREASCAL",
    "CORRSCAL",
    "NAME",
    "FILTER",
}


def _is_simulated(meta: dict) -> bool:
    return bool(meta.get("SIMULATD")) or "SIMULATED" in str(meta.get("ORIGIN", "")).upper()


def _column_names(hdu) -> dict:
    return {name.upper(): name for name in hdu.columns.names}


def _tables(hdus) -> list:
    return [hdu for hdu in hdus if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and hdu.data is not None]


def _read_hdus(path: Path | str) -> list:
    """All HDUs of a FITS file as in-memory copies.

    Every table column is read before copying: a variable-length column
    (RMF ``MATRIX``) is converted from the file's heap on first access, and a
    copy made before that has no heap to convert from once the file is closed.
    """
    with fits.open(path) as hdul:
        for hdu in _tables(hdul):
            for name in hdu.columns.names:
                hdu.data[name]
        return [hdu.copy() for hdu in hdul]


def _kept(headers) -> dict:
    meta = {}
    for header in headers:
        for key in KEPT_KEYWORDS:
            if key in header and key not in meta:
                meta[key] = header[key]
    return meta


def _write_keywords(header, keywords: dict) -> None:
    for key, value in keywords.items():
        if key[:8].upper() not in _STRUCTURAL_KEYWORDS:
            # FITS values are ASCII: Unicode names are folded (the original stays in the tables and step record).
            if isinstance(value, tuple):
                value = tuple(fits_ascii(v) if isinstance(v, str) else v for v in value)
            elif isinstance(value, str):
                value = fits_ascii(value)
            header[key[:8]] = value


# -- spectrum -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BinnedSpectrum:
    """The good channels of a spectrum summed over its groups (what fits and plots use).

    Attributes
    ----------
    e_lo, e_hi : numpy.ndarray
        Energy span of each group (keV): first channel's ``E_MIN`` to last channel's ``E_MAX``.
    rate : numpy.ndarray
        Summed count rate of the group's good channels (ct/s).
    stat_err : numpy.ndarray
        Statistical error, channel errors added in quadrature.
    sys_err : numpy.ndarray
        Systematic error (ct/s), Σ SYS_ERR·|rate| over the group (systematics are taken as correlated
        within a group, so a uniform fraction f gives f·|group rate|).
    membership : numpy.ndarray
        0/1 matrix [n_groups, n_channels]: ``membership @ channel_values`` sums channel values per group.
    """

    e_lo: np.ndarray
    e_hi: np.ndarray
    rate: np.ndarray
    stat_err: np.ndarray
    sys_err: np.ndarray
    membership: np.ndarray

    @property
    def error(self) -> np.ndarray:
        """Total error, statistical ⊕ systematic (ct/s)."""
        return np.hypot(self.stat_err, self.sys_err)

    @property
    def width(self) -> np.ndarray:
        """Energy width of each group (keV)."""
        return self.e_hi - self.e_lo

    @property
    def centre(self) -> np.ndarray:
        """Geometric centre of each group (keV)."""
        return np.sqrt(self.e_lo * self.e_hi)

    def fold(self, channel_values: np.ndarray) -> np.ndarray:
        """Sum per-channel values (e.g. a model's count rates) over the groups."""
        return self.membership @ np.asarray(channel_values, dtype=float)

    def __len__(self) -> int:
        return len(self.rate)


@dataclasses.dataclass
class Spectrum:
    """A count-rate spectrum (OGIP PHA type I).

    Attributes
    ----------
    source : str
        Source name.
    channel : numpy.ndarray
        Channel numbers (``CHANNEL``).
    rate, stat_err : numpy.ndarray
        Count rate and its statistical error (ct/s per channel).
    sys_err : numpy.ndarray
        Fractional systematic error per channel (OGIP ``SYS_ERR``).
    quality : numpy.ndarray
        OGIP ``QUALITY``: 0 good, non-zero bad.
    grouping : numpy.ndarray
        OGIP ``GROUPING``: 1 starts a group, -1 continues it.
    exposure : float
        Exposure (s).
    instrument : str
        ``ISGRI``, ``JMX1``, ``JMX2``.
    e_min, e_max : numpy.ndarray or None
        Channel energy bounds (keV) from the RMF's ``EBOUNDS``, when known.
    meta : dict
        FITS keywords worth keeping (origin, creator, simulation mark, times...).
    extname : str
        Extension name of the spectrum (the input's, e.g. ``ISGR-EVTS-SPE``).
    """

    source: str
    channel: np.ndarray
    rate: np.ndarray
    stat_err: np.ndarray
    sys_err: np.ndarray
    quality: np.ndarray
    grouping: np.ndarray
    exposure: float
    instrument: str = ""
    e_min: np.ndarray | None = None
    e_max: np.ndarray | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    extname: str = ""

    def __post_init__(self):
        self.channel = np.asarray(self.channel, dtype=np.int64)
        n = len(self.channel)
        for name in ("rate", "stat_err", "sys_err"):
            setattr(self, name, np.broadcast_to(np.asarray(getattr(self, name), dtype=float), (n,)).copy())
        for name in ("quality", "grouping"):
            setattr(self, name, np.broadcast_to(np.asarray(getattr(self, name), dtype=np.int16), (n,)).copy())
        for name in ("e_min", "e_max"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=float))
        self.exposure = float(self.exposure)
        if not self.extname:
            self.extname = {"ISGRI": "ISGR-EVTS-SPE"}.get(
                self.instrument, f"{self.instrument}-PHA1-SPE" if self.instrument.startswith("JMX") else "SPECTRUM"
            )

    @property
    def n_channels(self) -> int:
        """Number of channels of the spectrum."""
        return len(self.channel)

    @property
    def simulated(self) -> bool:
        """True when the products came from the local (simulated) MMODA."""
        return _is_simulated(self.meta)

    @property
    def good(self) -> np.ndarray:
        """Channels with ``QUALITY == 0``."""
        return self.quality == QUALITY_GOOD

    def binned(self, *, response: Response | None = None) -> BinnedSpectrum:
        """Sum the good channels over the groups of ``GROUPING``.

        Parameters
        ----------
        response : Response, optional
            Source of the channel energies when the spectrum has none.

        Returns
        -------
        BinnedSpectrum
            One entry per group holding at least one good channel.
        """
        e_min, e_max = _channel_energies(self, response)
        # GROUPING 0 ("no information") and a leading -1 start a group, like 1.
        starts = self.grouping != -1
        if self.n_channels:
            starts[0] = True
        group_of_channel = np.cumsum(starts) - 1
        good = self.good & np.isfinite(self.rate) & np.isfinite(self.stat_err)
        groups = np.unique(group_of_channel[good])
        membership = ((group_of_channel[None, :] == groups[:, None]) & good[None, :]).astype(float)
        rate = np.where(good, self.rate, 0.0)
        with np.errstate(invalid="ignore"):
            e_lo = np.array([e_min[row > 0].min() for row in membership]) if len(groups) else np.zeros(0)
            e_hi = np.array([e_max[row > 0].max() for row in membership]) if len(groups) else np.zeros(0)
        return BinnedSpectrum(
            e_lo=e_lo,
            e_hi=e_hi,
            rate=membership @ rate,
            stat_err=np.sqrt(membership @ np.where(good, self.stat_err, 0.0) ** 2),
            sys_err=membership @ np.abs(np.where(good, self.sys_err, 0.0) * rate),
            membership=membership,
        )

    # -- input ---------------------------------------------------------------------------------------------
    @classmethod
    def from_hdus(cls, hdus: Sequence, *, source: str | None = None, response: Response | None = None) -> Spectrum:
        """Build from the HDUs of a spectrum product or PHA file.

        Parameters
        ----------
        hdus : sequence of astropy HDUs
            The spectrum is the table with ``HDUCLAS1 = SPECTRUM`` or, failing
            that, the first one with ``CHANNEL`` and ``RATE``/``COUNTS``.
        source : str, optional
            Source name; the header ``NAME``/``OBJECT`` otherwise.
        response : Response, optional
            Gives the channel energies (``EBOUNDS``).

        Returns
        -------
        Spectrum
        """
        tables = _tables(hdus)
        candidates = [t for t in tables if str(t.header.get("HDUCLAS1", "")).strip().upper() == "SPECTRUM"]
        candidates += [
            t
            for t in tables
            if "CHANNEL" in _column_names(t) and {"RATE", "COUNTS"} & set(_column_names(t)) and t not in candidates
        ]
        if not candidates:
            raise ValueError("no spectrum table (HDUCLAS1 SPECTRUM or CHANNEL with RATE/COUNTS) in the product")
        hdu = candidates[0]
        header, data, columns = hdu.header, hdu.data, _column_names(hdu)
        exposure = next((float(h.header["EXPOSURE"]) for h in [hdu, *hdus] if "EXPOSURE" in h.header), None)
        if exposure is None:
            raise ValueError(f"spectrum {hdu.name} has no EXPOSURE keyword")
        if np.ndim(data[columns["CHANNEL"]]) > 1:
            raise ValueError("PHA type II (several spectra in one table) is not supported")

        def values(name, default):
            if name in columns:
                return np.asarray(data[columns[name]], dtype=float)
            # OGIP allows a keyword instead of a constant column.
            return np.full(len(data), float(header.get(name, default)))

        if "RATE" in columns:
            rate = values("RATE", 0.0)
            stat_err = values("STAT_ERR", np.nan)
        else:
            counts = values("COUNTS", 0.0)
            rate = counts / exposure
            poisson = np.sqrt(np.maximum(counts, 1.0)) / exposure
            stat_err = values("STAT_ERR", 0.0) / exposure if "STAT_ERR" in columns else poisson
        name = source if source is not None else str(header.get("NAME", header.get("OBJECT", ""))).strip()
        meta = _kept([hdu.header, *[h.header for h in hdus]])
        spectrum = cls(
            source=name,
            channel=np.asarray(data[columns["CHANNEL"]], dtype=np.int64),
            rate=rate,
            stat_err=stat_err,
            sys_err=values("SYS_ERR", 0.0),
            quality=values("QUALITY", 0),
            grouping=values("GROUPING", 1),
            exposure=exposure,
            instrument=product_instrument(header),
            meta=meta,
            extname=str(hdu.name or ""),
        )
        if response is not None:
            spectrum = _with_energies(spectrum, response)
        return spectrum

    @classmethod
    def from_product(cls, product, *, response: Response | None = None) -> Spectrum:
        """Build from an oda_api ``NumpyDataProduct``.

        Parameters
        ----------
        product : oda_api.data_products.NumpyDataProduct
            ``meta_data['product']`` = ``isgri_spectrum`` or ``jemx_spectrum``;
            the source name is ``meta_data['src_name']``.
        response : Response, optional
            Gives the channel energies.

        Returns
        -------
        Spectrum
        """
        meta = product_meta_data(product)
        hdus = product_hdus(product)
        return cls.from_hdus(hdus, source=str(meta.get("src_name") or "").strip() or None, response=response)

    @classmethod
    def read(cls, path: Path | str, *, response: Response | None = None) -> Spectrum:
        """Read a PHA file (channel energies from ``response`` when given)."""
        return cls.from_hdus(_read_hdus(path), response=response)

    # -- output --------------------------------------------------------------------------------------------
    def to_hdulist(
        self, *, ancrfile: str = "NONE", respfile: str = "NONE", provenance: dict | None = None
    ) -> fits.HDUList:
        """An OGIP PHA type I file (rates, statistical errors, fractional systematics).

        Parameters
        ----------
        ancrfile, respfile : str
            ``ANCRFILE``/``RESPFILE`` (file names of the ARF and RMF).
        provenance : dict, optional
            Extra keywords (≤ 8 characters) for both headers.

        Returns
        -------
        astropy.io.fits.HDUList
        """
        columns = [
            fits.Column("CHANNEL", "J", array=self.channel),
            fits.Column("RATE", "E", unit="count/s", array=self.rate),
            fits.Column("STAT_ERR", "E", unit="count/s", array=self.stat_err),
            fits.Column("SYS_ERR", "E", array=self.sys_err),
            fits.Column("QUALITY", "I", array=self.quality),
            fits.Column("GROUPING", "I", array=self.grouping),
        ]
        table = fits.BinTableHDU.from_columns(columns, name=self.extname)
        header = table.header
        header["TLMIN1"] = (int(self.channel.min()), "first channel")
        header["TLMAX1"] = (int(self.channel.max()), "last channel")
        extra = {**self.meta, **(provenance or {})}
        _write_keywords(header, extra)
        _instrument_keywords(header, self.instrument)
        header["FILTER"] = "NONE"
        header["NAME"] = (fits_ascii(self.source), "source name (ASCII-folded)")
        header.setdefault("OBJECT", fits_ascii(self.source))
        header["EXPOSURE"] = (self.exposure, "exposure (s)")
        header["AREASCAL"] = (1.0, "area scaling factor")
        header["BACKSCAL"] = (1.0, "background scaling factor")
        header["CORRSCAL"] = (1.0, "correction scaling factor (no correction file)")
        header["BACKFILE"] = ("NONE", "OSA rates are already background-subtracted")
        header["CORRFILE"] = ("NONE", "no correction file")
        header["RESPFILE"] = (respfile, "redistribution matrix file")
        header["ANCRFILE"] = (ancrfile, "ancillary response file")
        header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
        header["HDUCLAS1"] = ("SPECTRUM", "PHA dataset")
        header["HDUVERS"] = ("1.2.1", "version of the format")
        # OSA's coded-mask rates are already background-subtracted: NET, with no BACKFILE to subtract.
        header["HDUCLAS2"] = ("NET", "background-subtracted (coded-mask)")
        header["HDUCLAS3"] = ("RATE", "rates, not counts")
        header["HDUCLAS4"] = ("TYPE:I", "single spectrum")
        header["POISSERR"] = (False, "errors in STAT_ERR, not Poissonian")
        header["CHANTYPE"] = ("PI", "channel type")
        header["DETCHANS"] = (self.n_channels, "number of channels")
        primary = fits.PrimaryHDU()
        _write_keywords(primary.header, extra)
        return fits.HDUList([primary, table])

    def write(
        self,
        path: Path | str,
        *,
        ancrfile: str = "NONE",
        respfile: str = "NONE",
        provenance: dict | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the PHA file alone (see :func:`write` for the spectrum with its responses)."""
        path = Path(path)
        self.to_hdulist(ancrfile=ancrfile, respfile=respfile, provenance=provenance).writeto(path, overwrite=overwrite)
        return path


def _instrument_keywords(header, instrument: str) -> None:
    header["TELESCOP"] = "INTEGRAL"
    if instrument == "ISGRI":
        header["INSTRUME"], header["DETNAM"] = "IBIS", "ISGRI"
    elif instrument:
        header["INSTRUME"] = instrument


def _channel_energies(spectrum: Spectrum, response: Response | None) -> tuple[np.ndarray, np.ndarray]:
    if spectrum.e_min is not None and spectrum.e_max is not None:
        return spectrum.e_min, spectrum.e_max
    if response is not None:
        _check_channels(spectrum, response)
        return response.e_min, response.e_max
    raise ValueError(f"the spectrum of {spectrum.source} has no channel energies: give its response (EBOUNDS)")


def _check_channels(spectrum: Spectrum, response: Response) -> None:
    if spectrum.n_channels != response.n_channels:
        raise ValueError(
            f"spectrum of {spectrum.source} has {spectrum.n_channels} channels, its response {response.n_channels}"
        )


def _with_energies(spectrum: Spectrum, response: Response) -> Spectrum:
    _check_channels(spectrum, response)
    return dataclasses.replace(spectrum, e_min=response.e_min.copy(), e_max=response.e_max.copy())


# -- response -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Response:
    """Instrument response: ARF and RMF on one true-energy grid.

    Attributes
    ----------
    energ_lo, energ_hi : numpy.ndarray
        True-energy bins (keV).
    specresp : numpy.ndarray
        Effective area per true-energy bin (cm², the ARF); ones when the RMF
        already includes the area.
    matrix : numpy.ndarray
        Redistribution probabilities, dense [n_energy, n_channel].
    channel : numpy.ndarray
        Channel numbers (``EBOUNDS`` ``CHANNEL``).
    e_min, e_max : numpy.ndarray
        Channel energy bounds (keV).
    instrument : str
    meta : dict
        FITS keywords worth keeping.
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    matrix: np.ndarray
    channel: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    instrument: str = ""
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name in ("energ_lo", "energ_hi", "specresp", "e_min", "e_max"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=float))
        self.matrix = np.asarray(self.matrix, dtype=float)
        self.channel = np.asarray(self.channel, dtype=np.int64)
        if self.matrix.shape != (len(self.energ_lo), len(self.channel)):
            raise ValueError(
                f"RMF matrix shape {self.matrix.shape} does not match {len(self.energ_lo)} energies × "
                f"{len(self.channel)} channels"
            )
        if len(self.specresp) != len(self.energ_lo):
            raise ValueError(f"ARF has {len(self.specresp)} bins, RMF {len(self.energ_lo)} energies")

    @property
    def n_channels(self) -> int:
        """Number of detector channels of the response (columns of the matrix)."""
        return len(self.channel)

    @property
    def simulated(self) -> bool:
        """True when the response came from the local (simulated) MMODA."""
        return _is_simulated(self.meta)

    def fold(self, photon_flux: np.ndarray) -> np.ndarray:
        """Count rate per channel (ct/s) of the photon flux per true-energy bin (ph/cm²/s)."""
        return (np.asarray(photon_flux, dtype=float) * self.specresp) @ self.matrix

    # -- input ---------------------------------------------------------------------------------------------
    @classmethod
    def from_hdus(cls, arf_hdus: Sequence | None, rmf_hdus: Sequence) -> Response:
        """Build from the HDUs of the ARF (optional) and RMF products or files.

        The dense matrix is rebuilt from ``N_GRP``/``F_CHAN``/``N_CHAN``/``MATRIX``
        (variable-length or fixed arrays). Channel numbers in ``F_CHAN``
        start at ``TLMIN`` of the ``F_CHAN`` column, or else at the first
        ``EBOUNDS`` channel.
        """
        rmf_tables = _tables(rmf_hdus)
        matrix_hdu = next((t for t in rmf_tables if "MATRIX" in _column_names(t)), None)
        ebounds_hdu = next((t for t in rmf_tables if {"E_MIN", "E_MAX", "CHANNEL"} <= set(_column_names(t))), None)
        if matrix_hdu is None or ebounds_hdu is None:
            raise ValueError("RMF product lacks the matrix (MATRIX column) or EBOUNDS (CHANNEL, E_MIN, E_MAX)")
        ebounds_columns = _column_names(ebounds_hdu)
        channel = np.asarray(ebounds_hdu.data[ebounds_columns["CHANNEL"]], dtype=np.int64)
        e_min = np.asarray(ebounds_hdu.data[ebounds_columns["E_MIN"]], dtype=float)
        e_max = np.asarray(ebounds_hdu.data[ebounds_columns["E_MAX"]], dtype=float)
        energ_lo, energ_hi, matrix = _dense_matrix(matrix_hdu, channel)
        specresp = np.ones(len(energ_lo))
        headers = [matrix_hdu.header, ebounds_hdu.header]
        if arf_hdus is not None:
            arf_hdu = next(
                (t for t in _tables(arf_hdus) if {"SPECRESP", "ENERG_LO", "ENERG_HI"} <= set(_column_names(t))), None
            )
            if arf_hdu is None:
                raise ValueError("ARF product lacks a SPECRESP table (ENERG_LO, ENERG_HI, SPECRESP)")
            columns = _column_names(arf_hdu)
            arf_lo = np.asarray(arf_hdu.data[columns["ENERG_LO"]], dtype=float)
            arf_hi = np.asarray(arf_hdu.data[columns["ENERG_HI"]], dtype=float)
            if len(arf_lo) != len(energ_lo) or not (
                np.allclose(arf_lo, energ_lo, rtol=1e-5) and np.allclose(arf_hi, energ_hi, rtol=1e-5)
            ):
                raise ValueError(f"ARF and RMF true-energy grids differ ({len(arf_lo)} and {len(energ_lo)} bins)")
            specresp = np.asarray(arf_hdu.data[columns["SPECRESP"]], dtype=float)
            headers.insert(0, arf_hdu.header)
        return cls(
            energ_lo=energ_lo,
            energ_hi=energ_hi,
            specresp=specresp,
            matrix=matrix,
            channel=channel,
            e_min=e_min,
            e_max=e_max,
            instrument=product_instrument(matrix_hdu.header) or product_instrument(headers[0]),
            meta=_kept(headers),
        )

    @classmethod
    def from_products(cls, arf, rmf) -> Response:
        """Build from oda_api ``NumpyDataProduct`` objects.

        Parameters
        ----------
        arf : oda_api.data_products.NumpyDataProduct or None
            The ``*_arf`` product; None when the RMF includes the area.
        rmf : oda_api.data_products.NumpyDataProduct
            The ``*_rmf`` product (``SPECRESP MATRIX`` and ``EBOUNDS``).

        Returns
        -------
        Response
        """
        arf_hdus = None if arf is None else product_hdus(arf)
        return cls.from_hdus(arf_hdus, product_hdus(rmf))

    @classmethod
    def read(cls, arf_path: Path | str | None, rmf_path: Path | str) -> Response:
        """Read an ARF (optional) and an RMF file."""
        return cls.from_hdus(None if arf_path is None else _read_hdus(arf_path), _read_hdus(rmf_path))

    # -- output --------------------------------------------------------------------------------------------
    def arf_hdulist(self, *, provenance: dict | None = None) -> fits.HDUList:
        """OGIP ARF: ``SPECRESP`` table with ``ENERG_LO, ENERG_HI`` (keV) and ``SPECRESP`` (cm²)."""
        table = fits.BinTableHDU.from_columns(
            [
                fits.Column("ENERG_LO", "E", unit="keV", array=self.energ_lo),
                fits.Column("ENERG_HI", "E", unit="keV", array=self.energ_hi),
                fits.Column("SPECRESP", "E", unit="cm**2", array=self.specresp),
            ],
            name="SPECRESP",
        )
        extra = {**self.meta, **(provenance or {})}
        _write_keywords(table.header, extra)
        _instrument_keywords(table.header, self.instrument)
        table.header["FILTER"] = "NONE"
        table.header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
        table.header["HDUCLAS1"] = ("RESPONSE", "dataset relates to spectral response")
        table.header["HDUCLAS2"] = ("SPECRESP", "effective area")
        table.header["HDUVERS"] = ("1.1.0", "version of the format")
        primary = fits.PrimaryHDU()
        _write_keywords(primary.header, extra)
        return fits.HDUList([primary, table])

    def rmf_hdulist(self, *, provenance: dict | None = None) -> fits.HDUList:
        """OGIP RMF: ``MATRIX`` (one channel group per energy, variable-length rows) and ``EBOUNDS``.

        Each energy row stores the channels from its first to its last
        non-zero element (``N_GRP`` 1, or 0 for an empty row), so the dense
        matrix is restored exactly. ``F_CHAN`` counts from the first channel
        (``TLMIN4``).
        """
        first_channel = int(self.channel[0])
        n_energies = len(self.energ_lo)
        n_grp = np.zeros(n_energies, dtype=np.int16)
        f_chan = np.zeros(n_energies, dtype=np.int32)
        n_chan = np.zeros(n_energies, dtype=np.int32)
        rows = np.empty(n_energies, dtype=object)
        for i, row in enumerate(self.matrix):
            nonzero = np.flatnonzero(row)
            if nonzero.size:
                start, stop = nonzero[0], nonzero[-1] + 1
                n_grp[i], f_chan[i], n_chan[i] = 1, first_channel + start, stop - start
                rows[i] = row[start:stop].astype(np.float32)
            else:
                f_chan[i] = first_channel
                rows[i] = np.zeros(0, dtype=np.float32)
        matrix_hdu = fits.BinTableHDU.from_columns(
            [
                fits.Column("ENERG_LO", "E", unit="keV", array=self.energ_lo),
                fits.Column("ENERG_HI", "E", unit="keV", array=self.energ_hi),
                fits.Column("N_GRP", "I", array=n_grp),
                fits.Column("F_CHAN", "J", array=f_chan),
                fits.Column("N_CHAN", "J", array=n_chan),
                fits.Column("MATRIX", "PE()", array=rows),
            ],
            name="SPECRESP MATRIX",
        )
        ebounds_hdu = fits.BinTableHDU.from_columns(
            [
                fits.Column("CHANNEL", "J", array=self.channel),
                fits.Column("E_MIN", "E", unit="keV", array=self.e_min),
                fits.Column("E_MAX", "E", unit="keV", array=self.e_max),
            ],
            name="EBOUNDS",
        )
        extra = {**self.meta, **(provenance or {})}
        for hdu, hduclas2, hduvers in ((matrix_hdu, "RSP_MATRIX", "1.3.0"), (ebounds_hdu, "EBOUNDS", "1.2.0")):
            header = hdu.header
            _write_keywords(header, extra)
            _instrument_keywords(header, self.instrument)
            header["FILTER"] = "NONE"
            header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
            header["HDUCLAS1"] = ("RESPONSE", "dataset relates to spectral response")
            header["HDUCLAS2"] = (hduclas2, "")
            header["HDUVERS"] = (hduvers, "version of the format")
            header["CHANTYPE"] = ("PI", "channel type")
            header["DETCHANS"] = (self.n_channels, "number of channels")
        matrix_hdu.header["HDUCLAS3"] = ("REDIST", "redistribution only: the area is in the ARF")
        matrix_hdu.header["LO_THRES"] = (0.0, "no matrix element below this value was dropped")
        matrix_hdu.header["TLMIN4"] = (first_channel, "first channel of F_CHAN")
        matrix_hdu.header["TLMAX4"] = (int(self.channel[-1]), "last channel")
        ebounds_hdu.header["TLMIN1"] = (first_channel, "first channel")
        ebounds_hdu.header["TLMAX1"] = (int(self.channel[-1]), "last channel")
        primary = fits.PrimaryHDU()
        _write_keywords(primary.header, extra)
        return fits.HDUList([primary, matrix_hdu, ebounds_hdu])


def _dense_matrix(hdu, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True-energy grid and dense [n_energy, n_channel] matrix of an OGIP ``MATRIX`` table."""
    columns = _column_names(hdu)
    data = hdu.data
    energ_lo = np.asarray(data[columns["ENERG_LO"]], dtype=float)
    energ_hi = np.asarray(data[columns["ENERG_HI"]], dtype=float)
    f_chan_index = hdu.columns.names.index(columns["F_CHAN"]) + 1
    first_channel = int(hdu.header.get(f"TLMIN{f_chan_index}", channel[0] if len(channel) else 1))
    n_channels = len(channel)
    matrix = np.zeros((len(energ_lo), n_channels))
    n_grp = np.asarray(data[columns["N_GRP"]], dtype=np.int64)
    f_chan_column, n_chan_column, values_column = (data[columns[k]] for k in ("F_CHAN", "N_CHAN", "MATRIX"))
    for i in range(len(energ_lo)):
        values = np.atleast_1d(np.asarray(values_column[i], dtype=float))
        f_chan = np.atleast_1d(np.asarray(f_chan_column[i], dtype=np.int64))[: n_grp[i]]
        n_chan = np.atleast_1d(np.asarray(n_chan_column[i], dtype=np.int64))[: n_grp[i]]
        position = 0
        for first, count in zip(f_chan, n_chan):
            start = first - first_channel
            if start < 0 or start + count > n_channels or position + count > len(values):
                raise ValueError(f"RMF row {i}: channel group {first}+{count} outside the {n_channels} channels")
            matrix[i, start : start + count] = values[position : position + count]
            position += count
    return energ_lo, energ_hi, matrix


# -- products -------------------------------------------------------------------------------------------------
def from_products(spectrum, arf, rmf) -> tuple[Spectrum, Response]:
    """Spectrum and response from the three oda_api ``NumpyDataProduct`` objects of one source.

    Parameters
    ----------
    spectrum, arf, rmf : oda_api.data_products.NumpyDataProduct
        ``meta_data['product']`` = ``*_spectrum``, ``*_arf``, ``*_rmf``; ``arf`` may be None.

    Returns
    -------
    (Spectrum, Response)
    """
    response = Response.from_products(arf, rmf)
    result = Spectrum.from_product(spectrum, response=response)
    if not result.instrument:
        result.instrument = response.instrument
    return result, response


def from_data_collection(collection, source: str, *, instrument: str | None = None) -> tuple[Spectrum, Response]:
    """Spectrum and response of ``source`` in an oda_api ``DataCollection`` (one job's result).

    Products are selected by ``meta_data['src_name']`` and
    ``meta_data['product']`` (``isgri_spectrum``/``isgri_arf``/``isgri_rmf``
    or the ``jemx_`` ones), never by position. Names match exactly or else
    ignoring case, blanks and underscores.

    Parameters
    ----------
    collection : oda_api.api.DataCollection
    source : str
    instrument : {"isgri", "jemx"}, optional
        Needed only when the collection holds spectra of both.

    Returns
    -------
    (Spectrum, Response)
    """
    found: dict[str, dict] = {}
    for product in collection._p_list:
        meta = product_meta_data(product)
        kind = str(meta.get("product", ""))
        if "_" not in kind:
            continue
        prefix, _, role = kind.partition("_")
        if role not in ("spectrum", "arf", "rmf") or prefix not in ("isgri", "jemx"):
            continue
        name = str(meta.get("src_name", ""))
        exact = name == source
        if not (exact or source_name_key(name) == source_name_key(source)):
            continue
        slot = found.setdefault(prefix, {})
        if role in slot and not exact:
            continue
        if role in slot and slot[role][1]:
            log.warning("%s: several %s products in one collection; the first is used", source, kind)
            continue
        slot[role] = (product, exact)
    if instrument is not None:
        found = {k: v for k, v in found.items() if k == instrument.lower()}
    if not found:
        metas = [product_meta_data(p) for p in collection._p_list]
        available = sorted({(str(meta.get("src_name", "")), str(meta.get("product", ""))) for meta in metas})
        raise ValueError(f"no spectrum of {source!r} in this data collection; products: {available}")
    if len(found) > 1:
        raise ValueError(f"spectra of {source!r} from {sorted(found)}: choose one with instrument=")
    prefix, slot = next(iter(found.items()))
    missing = [role for role in ("spectrum", "rmf") if role not in slot]
    if missing:
        raise ValueError(f"{source!r}: the {prefix} {' and '.join(missing)} product(s) are missing")
    arf = slot.get("arf", (None, False))[0]
    if arf is None:
        log.warning("%s: no %s_arf product; the RMF is taken to include the effective area", source, prefix)
    return from_products(slot["spectrum"][0], arf, slot["rmf"][0])


def write(
    spectrum: Spectrum, response: Response, path: Path | str, *, provenance: dict | None = None, overwrite: bool = False
) -> tuple[Path, Path, Path]:
    """Write the spectrum, ARF and RMF as three OGIP files XSPEC-family readers load together.

    Parameters
    ----------
    spectrum : Spectrum
    response : Response
    path : path-like
        The PHA file; the ARF and RMF go next to it as ``<stem>_arf.fits`` and
        ``<stem>_rmf.fits``, named in ``ANCRFILE``/``RESPFILE`` (relative names,
        so the three files move together).
    provenance : dict, optional
        Extra keywords for every header.
    overwrite : bool, optional

    Returns
    -------
    (Path, Path, Path)
        The PHA, ARF and RMF paths.
    """
    _check_channels(spectrum, response)
    pha_path = Path(path)
    suffix = pha_path.suffix or ".fits"
    arf_path = pha_path.with_name(f"{pha_path.stem}_arf{suffix}")
    rmf_path = pha_path.with_name(f"{pha_path.stem}_rmf{suffix}")
    response.arf_hdulist(provenance=provenance).writeto(arf_path, overwrite=overwrite)
    response.rmf_hdulist(provenance=provenance).writeto(rmf_path, overwrite=overwrite)
    spectrum.write(pha_path, ancrfile=arf_path.name, respfile=rmf_path.name, provenance=provenance, overwrite=overwrite)
    log.info("%s: wrote %s, %s, %s", spectrum.source, pha_path, arf_path.name, rmf_path.name)
    return pha_path, arf_path, rmf_path


def read(path: Path | str) -> tuple[Spectrum, Response]:
    """Read a PHA file and the ARF/RMF its ``ANCRFILE``/``RESPFILE`` name (relative to the PHA's folder)."""
    pha_path = Path(path)
    hdus = _read_hdus(pha_path)
    spectrum_header = next(h.header for h in _tables(hdus) if "RESPFILE" in h.header)
    names = {}
    for key in ("ANCRFILE", "RESPFILE"):
        value = str(spectrum_header.get(key, "NONE")).strip()
        names[key] = None if value.upper() in ("", "NONE") else pha_path.parent / value
    if names["RESPFILE"] is None:
        raise ValueError(f"{pha_path} names no RMF (RESPFILE = NONE)")
    response = Response.read(names["ANCRFILE"], names["RESPFILE"])
    return Spectrum.from_hdus(hdus, response=response), response


# -- operations -----------------------------------------------------------------------------------------------
class NoExposureError(ValueError):
    """No chunk exposed the source: there is no spectrum to make."""


def _has_exposure(spectrum: Spectrum) -> bool:
    """True when the chunk saw the source: positive exposure and at least one usable channel."""
    usable = spectrum.good & np.isfinite(spectrum.rate) & np.isfinite(spectrum.stat_err) & (spectrum.stat_err > 0)
    return bool(np.isfinite(spectrum.exposure) and spectrum.exposure > 0 and np.any(usable))


def combine(spectra_with_responses: Sequence[tuple[Spectrum, Response]]) -> tuple[Spectrum, Response]:
    """Combine chunk spectra of one source into one spectrum and response.

    Per channel, the rate is the inverse-variance weighted mean of the chunks
    where the channel is good, ``rate = Σ w r / Σ w`` with ``w = 1/STAT_ERR²``,
    and ``STAT_ERR = 1/√Σw``; the exposure is summed. The response is the
    exposure-weighted mean of the chunk ARFs and of the chunk RMFs, the
    usual approximation for the response of a summed spectrum. Channels good
    in no chunk are marked bad (``QUALITY`` 1). ``SYS_ERR`` is the largest
    chunk fraction; ``GROUPING`` is kept when all chunks share it. Chunks
    without exposure of the source (it was outside all their ScWs' fields)
    are skipped; ``NCHUNKS`` and ``NSKIPPED`` count the chunks combined and skipped.

    Parameters
    ----------
    spectra_with_responses : sequence of (Spectrum, Response)

    Returns
    -------
    (Spectrum, Response)

    Raises
    ------
    NoExposureError
        When no chunk has exposure of the source.
    ValueError
        When channel or energy grids differ between chunks.
    """
    pairs = list(spectra_with_responses)
    if not pairs:
        raise ValueError("no spectra to combine")
    # A chunk none of whose ScWs saw the source (outside every field of view) comes back with no exposure: it
    # carries no information and cannot weight the responses, so it is skipped and counted (NSKIPPED).
    seen = [(s, r) for s, r in pairs if _has_exposure(s)]
    n_skipped = len(pairs) - len(seen)
    if not seen:
        raise NoExposureError(f"{pairs[0][0].source}: no exposure in any of the {len(pairs)} chunks")
    if n_skipped:
        log.info("%s: %d of %d chunks without exposure skipped", pairs[0][0].source, n_skipped, len(pairs))
    pairs = seen
    first_spectrum, first_response = pairs[0]
    for k, (spectrum, response) in enumerate(pairs):
        _check_channels(spectrum, response)
        problems = []
        if spectrum.n_channels != first_spectrum.n_channels or np.any(spectrum.channel != first_spectrum.channel):
            problems.append(f"{spectrum.n_channels} channels vs {first_spectrum.n_channels}")
        elif not (
            np.allclose(response.e_min, first_response.e_min, rtol=1e-5)
            and np.allclose(response.e_max, first_response.e_max, rtol=1e-5)
        ):
            problems.append("different channel energies (EBOUNDS)")
        if len(response.energ_lo) != len(first_response.energ_lo):
            problems.append(f"{len(response.energ_lo)} true-energy bins vs {len(first_response.energ_lo)}")
        elif not (
            np.allclose(response.energ_lo, first_response.energ_lo, rtol=1e-5)
            and np.allclose(response.energ_hi, first_response.energ_hi, rtol=1e-5)
        ):
            problems.append("different true-energy grids")
        if problems:
            raise ValueError(f"cannot combine chunk {k} of {spectrum.source} with chunk 0: {'; '.join(problems)}")
    rates = np.array([s.rate for s, _ in pairs])
    errors = np.array([s.stat_err for s, _ in pairs])
    usable = np.array([s.good for s, _ in pairs]) & np.isfinite(rates) & np.isfinite(errors) & (errors > 0)
    with np.errstate(divide="ignore"):
        weights = np.where(usable, 1.0 / np.where(usable, errors, 1.0) ** 2, 0.0)
    weight_sum = weights.sum(axis=0)
    covered = weight_sum > 0
    rate = np.where(
        covered, (weights * np.where(usable, rates, 0.0)).sum(axis=0) / np.where(covered, weight_sum, 1), 0.0
    )
    stat_err = np.where(covered, 1.0 / np.sqrt(np.where(covered, weight_sum, 1.0)), 0.0)
    quality = np.where(
        covered, QUALITY_GOOD, np.maximum(np.max([s.quality for s, _ in pairs], axis=0), QUALITY_BAD_SOFTWARE)
    )
    groupings = np.array([s.grouping for s, _ in pairs])
    grouping = groupings[0] if np.all(groupings == groupings[0]) else np.ones(first_spectrum.n_channels)
    exposures = np.array([s.exposure for s, _ in pairs])
    share = exposures / exposures.sum()
    specresp = np.einsum("k,ke->e", share, np.array([r.specresp for _, r in pairs]))
    matrix = np.einsum("k,kec->ec", share, np.array([r.matrix for _, r in pairs]))
    meta = dict(first_spectrum.meta)
    starts = [s.meta["TSTART"] for s, _ in pairs if "TSTART" in s.meta]
    stops = [s.meta["TSTOP"] for s, _ in pairs if "TSTOP" in s.meta]
    if starts:
        meta["TSTART"], meta["TSTOP"] = min(starts), max(stops)
    meta["NCHUNKS"] = len(pairs)
    meta["NSKIPPED"] = n_skipped
    if any(s.simulated or r.simulated for s, r in pairs):
        meta["SIMULATD"] = True
    spectrum = dataclasses.replace(
        first_spectrum,
        rate=rate,
        stat_err=stat_err,
        sys_err=np.max([s.sys_err for s, _ in pairs], axis=0),
        quality=quality,
        grouping=grouping,
        exposure=float(exposures.sum()),
        meta=meta,
        e_min=first_response.e_min.copy(),
        e_max=first_response.e_max.copy(),
    )
    response = dataclasses.replace(
        first_response,
        specresp=specresp,
        matrix=matrix,
        meta={**first_response.meta, **({"SIMULATD": True} if meta.get("SIMULATD") else {})},
    )
    log.info(
        "%s: combined %d spectra (%.0f s); %d channels covered",
        spectrum.source,
        len(pairs),
        spectrum.exposure,
        np.count_nonzero(covered),
    )
    return spectrum, response


def add_systematics(spectrum: Spectrum, fraction: float) -> Spectrum:
    """Add a fractional systematic error in quadrature to ``SYS_ERR``.

    Parameters
    ----------
    spectrum : Spectrum
    fraction : float
        Systematic fraction of the rate (0.0015 recommended for ISGRI, 0.05 for JEM-X).

    Returns
    -------
    Spectrum
        A copy whose ``SYS_ERR`` is √(SYS_ERR² + fraction²); the fit uses
        σ² = STAT_ERR² + (SYS_ERR·rate)².
    """
    if fraction < 0:
        raise ValueError(f"systematic fraction must be ≥ 0, got {fraction}")
    meta = {**spectrum.meta, "SYSERR": float(fraction)}
    return dataclasses.replace(spectrum, sys_err=np.hypot(spectrum.sys_err, fraction), meta=meta)


def group(
    spectrum: Spectrum, *, min_energy: float, max_energy: float, factor: int, response: Response | None = None
) -> Spectrum:
    """Group channels as the long-term spectrum service's ``isgri_grouping_*`` parameters say.

    Channels whose centre lies outside [``min_energy``, ``max_energy``] are
    marked bad (``QUALITY`` 5, "bad by the user" as grppha sets it). Inside,
    ``factor < 0`` makes |factor| groups between logarithmically spaced
    energies, ``factor > 0`` factor groups between linearly spaced energies,
    and ``factor = 0`` leaves the channels ungrouped. A channel belongs to the
    group its centre falls in; a group holding no channel centre (channels
    coarser than the requested groups) disappears, so there may be fewer
    groups than asked for.

    Parameters
    ----------
    spectrum : Spectrum
    min_energy, max_energy : float
        Energy range kept (keV).
    factor : int
        Number of groups, negative for logarithmic spacing.
    response : Response, optional
        Channel energies, when the spectrum has none.

    Returns
    -------
    Spectrum
        A copy with ``QUALITY`` and ``GROUPING`` (1 starts a group, -1
        continues it) filled; :meth:`Spectrum.binned`, :func:`fit_power_law`
        and :func:`plot` work on its groups, and :func:`write` stores them.
    """
    if not max_energy > min_energy:
        raise ValueError(f"grouping range is empty: {min_energy}–{max_energy} keV")
    factor = int(factor)
    if factor < 0 and min_energy <= 0:
        raise ValueError(f"logarithmic grouping needs min_energy > 0, got {min_energy}")
    e_min, e_max = _channel_energies(spectrum, response)
    centre = 0.5 * (e_min + e_max)
    inside = (centre >= min_energy) & (centre <= max_energy)
    quality = spectrum.quality.copy()
    quality[~inside & (quality == QUALITY_GOOD)] = QUALITY_BAD_USER
    grouping = np.ones(spectrum.n_channels, dtype=np.int16)
    indices = np.flatnonzero(inside)
    if factor != 0 and indices.size:
        n_groups = abs(factor)
        edges = (np.geomspace if factor < 0 else np.linspace)(min_energy, max_energy, n_groups + 1)
        label = np.clip(np.searchsorted(edges, centre[indices], side="right") - 1, 0, n_groups - 1)
        starts = np.r_[True, label[1:] != label[:-1]]
        grouping[indices] = np.where(starts, 1, -1)
        log.info(
            "%s: %d channels in %g–%g keV grouped into %d %s groups (%d asked)",
            spectrum.source,
            indices.size,
            min_energy,
            max_energy,
            np.count_nonzero(starts),
            "logarithmic" if factor < 0 else "linear",
            n_groups,
        )
    else:
        log.info(
            "%s: %d channels kept in %g–%g keV, no grouping", spectrum.source, indices.size, min_energy, max_energy
        )
    meta = {**spectrum.meta, "GRP_EMIN": float(min_energy), "GRP_EMAX": float(max_energy), "GRP_FACT": factor}
    return dataclasses.replace(
        spectrum, quality=quality, grouping=grouping, e_min=e_min.copy(), e_max=e_max.copy(), meta=meta
    )


# -- power law ----------------------------------------------------------------------------------------------------
def _integral_of_power(x_lo, x_hi, exponent):
    """∫ x^(exponent−1) dx from x_lo to x_hi, stable through exponent = 0 (the logarithm)."""
    x_lo, x_hi = np.asarray(x_lo, dtype=float), np.asarray(x_hi, dtype=float)
    log_ratio = np.log(x_hi / x_lo)
    if exponent == 0:
        return log_ratio
    # x_lo^a (e^{a ln(x_hi/x_lo)} − 1)/a: expm1 keeps precision for a → 0.
    return x_lo**exponent * np.expm1(exponent * log_ratio) / exponent


def power_law_bin_flux(energ_lo, energ_hi, gamma: float, norm: float, *, pivot_keV: float) -> np.ndarray:
    """Photon flux of N(E) = K (E/E0)^-Γ in each energy bin, ∫ N dE (ph/cm²/s), analytically.

    Parameters
    ----------
    energ_lo, energ_hi : array_like
        Bin edges (keV).
    gamma : float
        Photon index Γ.
    norm : float
        K, ph/cm²/s/keV at ``pivot_keV``.
    pivot_keV : float
        E0.
    """
    return (
        norm
        * pivot_keV
        * _integral_of_power(np.asarray(energ_lo) / pivot_keV, np.asarray(energ_hi) / pivot_keV, 1.0 - gamma)
    )


def power_law_energy_flux(e1: float, e2: float, gamma: float, norm: float, *, pivot_keV: float) -> float:
    """Energy flux ∫ E N(E) dE of the power law in [e1, e2] keV, in erg/cm²/s.

    F = K E0² ∫ x^(1−Γ) dx = K E0^Γ (e2^(2−Γ) − e1^(2−Γ)) / (2−Γ) × 1.602e-9
    (the science notes' formula; the logarithm at Γ = 2).
    """
    return float(norm * pivot_keV**2 * _integral_of_power(e1 / pivot_keV, e2 / pivot_keV, 2.0 - gamma) * KEV_TO_ERG)


def fold_power_law(response: Response, gamma: float, norm: float, *, pivot_keV: float) -> np.ndarray:
    """Count rate per channel (ct/s) of a power law through the response."""
    return response.fold(power_law_bin_flux(response.energ_lo, response.energ_hi, gamma, norm, pivot_keV=pivot_keV))


@dataclasses.dataclass
class PowerLawFit:
    """A forward-folded power-law fit N(E) = K (E/E0)^-Γ.

    Attributes
    ----------
    gamma, gamma_error : float
        Photon index and its 1σ error (covariance matrix).
    norm, norm_error : float
        K (ph/cm²/s/keV at the pivot) and its 1σ error.
    pivot_keV : float
        E0.
    covariance : numpy.ndarray
        2×2 covariance of (Γ, K), from the Jacobian at the best fit (not
        rescaled by the reduced χ²).
    chi2 : float
    dof : int
    p_value : float
        χ² survival probability.
    energy_range : tuple of float
        Range of the fitted group centres (keV).
    n_groups : int
        Groups fitted.
    model_rate : numpy.ndarray
        Folded model count rate per channel (ct/s), for plotting.
    gamma_interval : tuple of float or None
        Δχ² = 1 profile interval of Γ (K re-optimised), when asked for.
    success : bool
    message : str
    """

    gamma: float
    gamma_error: float
    norm: float
    norm_error: float
    pivot_keV: float
    covariance: np.ndarray
    chi2: float
    dof: int
    p_value: float
    energy_range: tuple[float, float]
    n_groups: int
    model_rate: np.ndarray
    gamma_interval: tuple[float, float] | None = None
    success: bool = True
    message: str = ""

    def photon_spectrum(self, energy_keV) -> np.ndarray:
        """The fitted N(E) (ph/cm²/s/keV) at the given energies (keV)."""
        return self.norm * (np.asarray(energy_keV, dtype=float) / self.pivot_keV) ** -self.gamma

    def _flux_with_error(self, function) -> tuple[float, float]:
        value = function(self.gamma, self.norm)
        # ∂F/∂K = F/K exactly (F is linear in K); ∂F/∂Γ by a central difference of the analytic integral.
        step = 1e-5 * max(1.0, abs(self.gamma))
        d_gamma = (function(self.gamma + step, self.norm) - function(self.gamma - step, self.norm)) / (2 * step)
        d_norm = value / self.norm if self.norm != 0 else function(self.gamma, 1.0)
        gradient = np.array([d_gamma, d_norm])
        return float(value), float(np.sqrt(max(gradient @ self.covariance @ gradient, 0.0)))

    def band_flux(self, e1: float, e2: float) -> tuple[float, float]:
        """Energy flux of the fitted power law in a band.

        Parameters
        ----------
        e1, e2 : float
            Band (keV).

        Returns
        -------
        (float, float)
            ∫ E N(E) dE in erg/cm²/s and its 1σ error, propagated from the
            (Γ, K) covariance with the analytic ∂F/∂K and a central-difference ∂F/∂Γ.
        """
        return self._flux_with_error(
            lambda gamma, norm: power_law_energy_flux(e1, e2, gamma, norm, pivot_keV=self.pivot_keV)
        )

    def photon_flux(self, e1: float, e2: float) -> tuple[float, float]:
        """Photon flux of the fitted power law in a band.

        Parameters
        ----------
        e1, e2 : float
            Band (keV).

        Returns
        -------
        (float, float)
            ∫ N(E) dE in ph/cm²/s and its 1σ error, propagated from the covariance.
        """
        return self._flux_with_error(
            lambda gamma, norm: float(power_law_bin_flux(e1, e2, gamma, norm, pivot_keV=self.pivot_keV))
        )

    def summary(self) -> str:
        """One line: Γ, K, χ²/dof and p-value."""
        return (
            f"Γ = {self.gamma:.3f} ± {self.gamma_error:.3f}, K({self.pivot_keV:g} keV) = {self.norm:.3e} ± "
            f"{self.norm_error:.1e} ph/cm²/s/keV, χ²/dof = {self.chi2:.1f}/{self.dof} (p = {self.p_value:.2g})"
        )


def fit_power_law(
    spectrum: Spectrum,
    response: Response,
    *,
    energy_range: tuple[float, float] | None = None,
    initial: tuple[float, float] = (2.0, 1e-2),
    pivot_keV: float | None = None,
    profile: bool = False,
) -> PowerLawFit:
    """Fit a forward-folded power law to the good, grouped channels (χ², ``scipy.optimize.least_squares``).

    Parameters
    ----------
    spectrum : Spectrum
        Grouping and quality are honoured; errors are STAT_ERR ⊕ SYS_ERR·rate.
    response : Response
    energy_range : (float, float), optional
        Keep the groups whose geometric centre lies in this range (keV); all by default.
    initial : (float, float), optional
        Starting Γ and K (at the pivot).
    pivot_keV : float, optional
        E0; by default 100 keV for ISGRI, 10 keV for JEM-X, otherwise the
        geometric mean of the fitted range.
    profile : bool, optional
        Also find the Δχ² = 1 interval of Γ with K re-optimised (``brentq``).

    Returns
    -------
    PowerLawFit
    """
    _check_channels(spectrum, response)
    binned = spectrum.binned(response=response)
    selected = np.isfinite(binned.centre) & (binned.error > 0)
    if energy_range is not None:
        selected &= (binned.centre >= energy_range[0]) & (binned.centre <= energy_range[1])
    n_groups = int(np.count_nonzero(selected))
    if n_groups < 3:
        raise ValueError(f"{spectrum.source}: {n_groups} usable groups, too few to fit a power law")
    data, sigma = binned.rate[selected], binned.error[selected]
    membership = binned.membership[selected]
    if pivot_keV is None:
        pivot_keV = DEFAULT_PIVOTS_KEV.get(spectrum.instrument or response.instrument)
        if pivot_keV is None:
            pivot_keV = float(np.sqrt(binned.e_lo[selected].min() * binned.e_hi[selected].max()))
    pivot_keV = float(pivot_keV)

    def unit_model(gamma):
        """Grouped model counts for K = 1 (the model is linear in K)."""
        return membership @ fold_power_law(response, gamma, 1.0, pivot_keV=pivot_keV)

    def residuals(parameters):
        gamma, norm = parameters
        return (norm * unit_model(gamma) - data) / sigma

    start = np.array([float(initial[0]), float(initial[1])])
    solution = optimize.least_squares(
        residuals, start, jac="3-point", x_scale="jac", method="trf", xtol=1e-12, ftol=1e-12, gtol=1e-12
    )
    gamma, norm = (float(v) for v in solution.x)
    jacobian = solution.jac
    try:
        covariance = np.linalg.inv(jacobian.T @ jacobian)
    except np.linalg.LinAlgError:
        covariance = np.full((2, 2), np.nan)
        log.warning("%s: singular Jacobian at the best fit: no parameter errors", spectrum.source)
    chi2 = float(np.sum(solution.fun**2))
    dof = n_groups - 2
    interval = None
    if profile and np.all(np.isfinite(covariance)):
        interval = _profile_gamma(unit_model, data, sigma, gamma, chi2, float(np.sqrt(covariance[0, 0])))
    centres = binned.centre[selected]
    result = PowerLawFit(
        gamma=gamma,
        gamma_error=float(np.sqrt(covariance[0, 0])),
        norm=norm,
        norm_error=float(np.sqrt(covariance[1, 1])),
        pivot_keV=pivot_keV,
        covariance=covariance,
        chi2=chi2,
        dof=dof,
        p_value=float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan"),
        energy_range=(float(centres.min()), float(centres.max())),
        n_groups=n_groups,
        model_rate=fold_power_law(response, gamma, norm, pivot_keV=pivot_keV),
        gamma_interval=interval,
        success=bool(solution.success),
        message=str(solution.message),
    )
    if not solution.success:
        log.warning("%s: power-law fit did not converge: %s", spectrum.source, solution.message)
    log.info("%s: %s", spectrum.source, result.summary())
    return result


def _profile_gamma(unit_model, data, sigma, gamma_best, chi2_best, gamma_error) -> tuple[float, float]:
    """Γ where the χ² minimised over K rises by 1 on either side of the best fit."""

    def excess(gamma):
        model = unit_model(gamma) / sigma
        scaled = data / sigma
        norm = float(model @ scaled / (model @ model))
        return float(np.sum((scaled - norm * model) ** 2)) - chi2_best - 1.0

    bounds = []
    for direction in (-1.0, 1.0):
        step = max(gamma_error, 1e-4)
        far = gamma_best + direction * step
        while excess(far) < 0 and abs(far - gamma_best) < 50 * step:
            far += direction * step
        bounds.append(optimize.brentq(excess, *sorted((gamma_best, far))))
    return bounds[0], bounds[1]


# -- plotting -------------------------------------------------------------------------------------------------
def unfolded_spectrum(spectrum: Spectrum, response: Response, fit: PowerLawFit) -> dict:
    """The "unfolded" spectrum E²F(E) of the groups, model-dependent as XSPEC's ``eeufspec``.

    A coded-mask count spectrum cannot be inverted through the response; the standard approximation, and
    XSPEC's, scales the fitted photon model by the data/model ratio of each group::

        F_g = N̄_g · C_g / M_g,   σ_F = N̄_g · σ_g / M_g,   N̄_g = ∫_g N(E) dE / ΔE_g

    with C_g, σ_g the group's count rate and error, M_g the folded model's count rate in the group and N̄_g
    the model's mean photon flux density (ph cm⁻² s⁻¹ keV⁻¹) over the group's nominal energy span (channel
    bounds, integrated analytically). The points are plotted as E_g² F_g at the group's geometric centre E_g.
    They are exact where the model is right and inherit its shape within each group otherwise (a broad
    redistribution mixes energies the ratio attributes to the group), so they show the fit, not a model-free
    measurement: compare models on the count spectrum and its residuals.

    Parameters
    ----------
    spectrum : Spectrum
    response : Response
    fit : PowerLawFit

    Returns
    -------
    dict
        ``energy``, ``e_lo``, ``e_hi`` (keV), ``e2f``, ``e2f_error`` (keV² ph cm⁻² s⁻¹ keV⁻¹, i.e. keV ph cm⁻² s⁻¹),
        ``in_fit`` (bool: the group's centre is in the fitted range), each one entry per group with a non-zero
        folded model.
    """
    binned = spectrum.binned(response=response)
    model = binned.fold(fit.model_rate)
    usable = np.isfinite(model) & (model != 0) & (binned.error > 0)
    e_lo, e_hi = binned.e_lo[usable], binned.e_hi[usable]
    energy = np.sqrt(e_lo * e_hi)
    density = power_law_bin_flux(e_lo, e_hi, fit.gamma, fit.norm, pivot_keV=fit.pivot_keV) / (e_hi - e_lo)
    ratio = binned.rate[usable] / model[usable]
    ratio_error = binned.error[usable] / np.abs(model[usable])
    return {
        "energy": energy,
        "e_lo": e_lo,
        "e_hi": e_hi,
        "e2f": energy**2 * density * ratio,
        "e2f_error": energy**2 * density * ratio_error,
        "in_fit": (energy >= fit.energy_range[0]) & (energy <= fit.energy_range[1]),
    }


#: The unfolded panel's unit (keV² × ph cm⁻² s⁻¹ keV⁻¹), and the factor to erg cm⁻² s⁻¹ on its right axis.
E2F_LABEL = "E² F(E) (keV² ph cm⁻² s⁻¹ keV⁻¹)"
E2F_ERG_LABEL = "E² F(E) (erg cm⁻² s⁻¹)"


def plot(
    spectrum: Spectrum,
    response: Response,
    fit: PowerLawFit | None = None,
    *,
    path: Path | str | None = None,
    title: str = "",
    unfolded: bool = True,
):
    """Count spectrum with the folded model, the unfolded E²F(E) spectrum, and residuals (data − model)/σ.

    Panels, sharing the energy axis (log, readable ticks at any span: :func:`integral_workflows.plotting.readable_log_axis`):

    1. the count spectrum (ct/s/keV) of the groups and the folded model, group by group;
    2. with a fit and ``unfolded``: the unfolded spectrum E²F(E) in keV² ph cm⁻² s⁻¹ keV⁻¹ (erg cm⁻² s⁻¹ on
       the right axis) with the model's E²N(E), from the model and the data/model ratio
       (:func:`unfolded_spectrum`, whose docstring states the approximation);
    3. the residuals (data − model)/σ, grey outside the fitted range.

    Title and fit summary head the figure (constrained layout: they cannot overlap the panels).

    Parameters
    ----------
    spectrum : Spectrum
        Plotted by groups (good channels only).
    response : Response
        Channel energies.
    fit : PowerLawFit, optional
        Folded model, unfolded spectrum and residuals.
    path : path-like, optional
        Save the figure there.
    title : str, optional
        Replaces the default title (source, instrument, fit summary).
    unfolded : bool
        Draw the unfolded E²F(E) panel (needs ``fit``).

    Returns
    -------
    matplotlib.figure.Figure
        Axes in order: count spectrum, unfolded spectrum (when drawn), residuals, then the unfolded panel's
        erg cm⁻² s⁻¹ axis (a twin).
    """
    import matplotlib.pyplot as plt

    from .plotting import readable_log_axis

    binned = spectrum.binned(response=response)
    with_unfolded = unfolded and fit is not None
    if with_unfolded:
        fig, (top, middle, bottom) = plt.subplots(
            3, 1, sharex=True, figsize=(8, 9), height_ratios=(3, 3, 1.3), layout="constrained"
        )
    else:
        fig, (top, bottom) = plt.subplots(
            2, 1, sharex=True, figsize=(8, 6.5), height_ratios=(3, 1), layout="constrained"
        )
        middle = None
    x_error = np.vstack([binned.centre - binned.e_lo, binned.e_hi - binned.centre])
    density = binned.rate / binned.width
    density_error = binned.error / binned.width
    top.errorbar(
        binned.centre,
        density,
        xerr=x_error,
        yerr=density_error,
        fmt="o",
        markersize=3,
        linewidth=0.8,
        label=f"{spectrum.source} ({spectrum.exposure / 1e3:.1f} ks)",
    )
    if fit is not None:
        model = binned.fold(fit.model_rate)
        # Groups need not be contiguous (bad channels are skipped), so the model is drawn group by group.
        top.hlines(
            model / binned.width,
            binned.e_lo,
            binned.e_hi,
            color="C3",
            linewidth=1.5,
            label=f"power law Γ = {fit.gamma:.2f}",
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            residual = (binned.rate - model) / binned.error
        in_fit = (binned.centre >= fit.energy_range[0]) & (binned.centre <= fit.energy_range[1])
        bottom.errorbar(
            binned.centre[in_fit],
            residual[in_fit],
            xerr=x_error[:, in_fit],
            yerr=1.0,
            fmt="o",
            markersize=3,
            linewidth=0.8,
        )
        if np.any(~in_fit):
            bottom.errorbar(
                binned.centre[~in_fit],
                residual[~in_fit],
                xerr=x_error[:, ~in_fit],
                yerr=1.0,
                fmt="o",
                markersize=3,
                linewidth=0.8,
                color="0.6",
                label="not fitted",
            )
        bottom.axhline(0.0, color="C3", linewidth=0.8)
    if middle is not None:
        _draw_unfolded(middle, spectrum, response, fit)
    bottom.set_ylabel("(data − model)/σ")
    bottom.set_xlabel("energy (keV)")
    top.set_ylabel("count rate (ct s⁻¹ keV⁻¹)")
    top.set_xscale("log")
    positive = density[density > 0]
    if positive.size:
        top.set_yscale("log")
        top.set_ylim(bottom=0.3 * positive.min())
        readable_log_axis(top.yaxis)
    readable_log_axis(bottom.xaxis)
    top.legend(loc="best", fontsize=8)
    label = title or f"{spectrum.source} {spectrum.instrument}".strip()
    if spectrum.simulated or response.simulated:
        label += "  [SIMULATED DATA]"
    if fit is not None and not title:
        label += f"\n{fit.summary()}"
    top.set_title(label, fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _draw_unfolded(ax, spectrum: Spectrum, response: Response, fit: PowerLawFit) -> None:
    """The unfolded E²F(E) panel: points from :func:`unfolded_spectrum`, the model's E²N(E) as a line."""
    from .plotting import readable_log_axis

    points = unfolded_spectrum(spectrum, response, fit)
    energy = points["energy"]
    x_error = np.vstack([energy - points["e_lo"], points["e_hi"] - energy])
    for chosen, style in ((points["in_fit"], {}), (~points["in_fit"], {"color": "0.6", "label": "not fitted"})):
        if chosen.any():
            ax.errorbar(
                energy[chosen],
                points["e2f"][chosen],
                xerr=x_error[:, chosen],
                yerr=points["e2f_error"][chosen],
                fmt="o",
                markersize=3,
                linewidth=0.8,
                **({"color": "C0", "label": "unfolded data (model × data/model)"} | style),
            )
    if len(energy):
        grid = np.geomspace(points["e_lo"].min(), points["e_hi"].max(), 200)
        ax.plot(grid, grid**2 * fit.photon_spectrum(grid), color="C3", linewidth=1.5, label="model E² N(E)")
    ax.set_ylabel(E2F_LABEL)
    values = np.concatenate([points["e2f"] - points["e2f_error"], points["e2f"] + points["e2f_error"]])
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size:
        ax.set_yscale("log")
        low, high = 0.7 * positive.min(), 1.4 * positive.max()
        ax.set_ylim(low, high)
        readable_log_axis(ax.yaxis)
        # the same axis in erg cm⁻² s⁻¹ (a twin with scaled limits: a secondary axis would reset its ticks)
        erg = ax.twinx()
        erg.set_yscale("log")
        erg.set_ylim(low * KEV_TO_ERG, high * KEV_TO_ERG)
        erg.set_ylabel(E2F_ERG_LABEL)
        readable_log_axis(erg.yaxis)
    ax.legend(loc="best", fontsize=8)


def spectra_from_pieces(
    pieces, sources: Sequence[str], *, instrument: str | None = None, report: dict | None = None
) -> dict[str, tuple[Spectrum, Response]]:
    """Combine, per source, the spectra of many finished jobs (:func:`combine`).

    Each job's answer is decoded once; a source absent from a job
    contributes nothing from it, and a chunk that returns the source
    without exposure (outside all its ScWs' fields) is skipped for it.
    A source no chunk saw is left out and reported, not an error.

    Parameters
    ----------
    pieces : iterable
        Finished jobs (:class:`integral_workflows.jobs.Piece`).
    sources : sequence of str
        Source names as in the ``selected_catalog``.
    instrument : {"isgri", "jemx"}, optional
        Needed only when a job holds spectra of both.
    report : dict, optional
        Filled, per source, with ``{"chunks_used": [...], "chunks_skipped": [...], "status": ...}``
        (chunks named by their first ScW; status ``combined`` or ``not seen by any chunk``), for the
        step record.

    Returns
    -------
    dict
        Source name → (Spectrum, Response) summed over the jobs that saw it.
    """
    found: dict[str, list] = {name: [] for name in sources}
    notes = {name: {"chunks_used": [], "chunks_skipped": []} for name in sources}
    for number, piece in enumerate(pieces):
        collection = piece.data_collection()
        scw_ids = tuple(getattr(piece, "scw_ids", ()) or ())
        label = f"chunk {number} ({scw_ids[0]}..)" if scw_ids else f"chunk {number}"
        for name in sources:
            try:
                pair = from_data_collection(collection, name, instrument=instrument)
            except (ValueError, KeyError):
                notes[name]["chunks_skipped"].append(label)
                continue
            if _has_exposure(pair[0]):
                found[name].append(pair)
                notes[name]["chunks_used"].append(label)
            else:
                notes[name]["chunks_skipped"].append(label)
    combined = {}
    for name, pairs in found.items():
        skipped = notes[name]["chunks_skipped"]
        if pairs:
            combined[name] = combine(pairs)
            notes[name]["status"] = "combined"
            if skipped:
                log.info("%s: not seen by %d chunk(s), skipped: %s", name, len(skipped), ", ".join(skipped))
                combined[name][0].meta["NSKIPPED"] = len(skipped)
        else:
            notes[name]["status"] = "not seen by any chunk"
            log.warning("%s: no chunk saw it (no exposure in any job): no spectrum", name)
    if report is not None:
        report.update(notes)
    return combined


def coverage_record(report: Mapping[str, Mapping]) -> dict:
    """The step-record summary of a :func:`spectra_from_pieces` report.

    Parameters
    ----------
    report : mapping
        Source → ``{"chunks_used", "chunks_skipped", "status"}``.

    Returns
    -------
    dict
        ``sources_not_seen`` (no chunk saw them: no spectrum) and ``chunks_skipped`` (source → the chunks
        that did not see it, for the sources that have a spectrum).
    """
    return {
        "sources_not_seen": sorted(name for name, note in report.items() if note.get("status") != "combined"),
        "chunks_skipped": {
            name: list(note["chunks_skipped"])
            for name, note in report.items()
            if note.get("status") == "combined" and note.get("chunks_skipped")
        },
    }


#: 2016-01-01T00:00 TT as IJD (MJD 57388 − 51544): ISGRI's low-energy threshold rose around then, so that
#: channels below ~25 keV are no longer reliable in later data.
ISGRI_THRESHOLD_CHANGE_IJD = 5844.0
#: Lower bound (keV) of ISGRI's default fit band before and from :data:`ISGRI_THRESHOLD_CHANGE_IJD`.
ISGRI_FIT_LOW_KEV = {"before": 20.0, "after": 25.0}
#: A fit whose χ² p-value is below this is flagged poor (POORFIT) and warned about.
POOR_FIT_P_VALUE = 0.01


def default_fit_band(instrument: str, tstart_ijd: float | None, tstop_ijd: float | None) -> tuple[float, float]:
    """The default fit band of an instrument for data of a given epoch.

    ISGRI fits start at 20 keV for data taken before 2016-01-01 and at 25 keV
    when any of the data are later (the low threshold rose over the mission;
    a spectrum that straddles the date takes the later, safer bound). JEM-X
    keeps all its channels.

    Parameters
    ----------
    instrument : str
        ``isgri`` / ``ISGRI`` or a JEM-X name.
    tstart_ijd, tstop_ijd : float or None
        The data's time span (IJD, TT); unknown: the later bound for ISGRI.

    Returns
    -------
    (float, float)
        Lower and upper energies (keV) of the groups fitted (upper ``inf``: no limit).
    """
    if str(instrument).upper() != "ISGRI":
        return (0.0, float("inf"))
    late = tstop_ijd is None or not np.isfinite(tstop_ijd) or tstop_ijd > ISGRI_THRESHOLD_CHANGE_IJD
    return (ISGRI_FIT_LOW_KEV["after" if late else "before"], float("inf"))


def _span_ijd(spectrum: Spectrum) -> tuple[float | None, float | None]:
    """TSTART/TSTOP of a spectrum's meta as IJD (OSA writes IJD days; MJD values are converted)."""
    values = []
    for key in ("TSTART", "TSTOP"):
        value = spectrum.meta.get(key)
        try:
            value = float(value[0] if isinstance(value, tuple) else value)
        except (TypeError, ValueError):
            values.append(None)
            continue
        values.append(value - 51544.0 if value > 40000.0 else value)
    return values[0], values[1]


def fit_sources(
    combined: Mapping[str, tuple[Spectrum, Response]],
    *,
    instrument: str,
    systematic_fraction: float,
    band_keV: tuple[float, float],
    grouping: Mapping[str, float] | None = None,
    fit_band_keV: tuple[float, float] | None = None,
):
    """Add the systematic error, group ISGRI channels, and fit a power law to each source's spectrum.

    Parameters
    ----------
    combined : mapping
        Source name → (summed spectrum, response) (:func:`spectra_from_pieces`).
    instrument : str
        ``isgri`` or ``jemx``; only ISGRI spectra are grouped.
    systematic_fraction : float
        Added in quadrature, as a fraction of the rate.
    band_keV : tuple of float
        The band of the quoted flux.
    grouping : mapping, optional
        ``min_energy``, ``max_energy`` and ``factor`` of :func:`group` (ISGRI).
    fit_band_keV : tuple of float, optional
        Groups fitted (by their centre); by default :func:`default_fit_band` for the epoch of each spectrum.

    Returns
    -------
    (dict, dict, astropy.table.Table)
        Source → (spectrum, response) as prepared, the spectrum's meta holding the fit band (``FIT_EMIN``,
        ``FIT_EMAX``), χ², dof, p-value and ``POORFIT`` (p < :data:`POOR_FIT_P_VALUE`); source →
        :class:`PowerLawFit` (sources whose fit failed are left out, logged); one row per fitted source
        (photon index, normalisation, χ², p-value, band, poor-fit flag, band flux).
    """
    from astropy.table import Table

    spectra, fits_by_source, rows = {}, {}, []
    for name, (source_spectrum, response) in combined.items():
        source_spectrum = add_systematics(source_spectrum, systematic_fraction)
        if instrument == "isgri" and grouping:
            source_spectrum = group(
                source_spectrum,
                min_energy=grouping["min_energy"],
                max_energy=grouping["max_energy"],
                factor=int(grouping["factor"]),
                response=response,
            )
        band = (
            tuple(fit_band_keV)
            if fit_band_keV is not None
            else default_fit_band(instrument, *_span_ijd(source_spectrum))
        )
        spectra[name] = (source_spectrum, response)
        try:
            fit = fit_power_law(source_spectrum, response, energy_range=band)
        except (ValueError, RuntimeError) as problem:
            log.warning("%s: no power-law fit (%s)", name, problem)
            continue
        poor = bool(np.isfinite(fit.p_value) and fit.p_value < POOR_FIT_P_VALUE)
        if poor:
            log.warning(
                "%s: poor power-law fit: chi2/dof = %.1f/%d, p = %.2g < %g in %g-%g keV",
                name,
                fit.chi2,
                fit.dof,
                fit.p_value,
                POOR_FIT_P_VALUE,
                band[0],
                band[1],
            )
        source_spectrum.meta.update(
            {
                "FIT_EMIN": (float(band[0]), "[keV] lower bound of the fitted groups"),
                "FIT_EMAX": (
                    float(band[1]) if np.isfinite(band[1]) else "INF",
                    "[keV] upper bound of the fitted groups",
                ),
                "FITCHI2": (float(fit.chi2), "power-law fit chi2"),
                "FITDOF": (int(fit.dof), "power-law fit degrees of freedom"),
                "FITPVAL": (float(fit.p_value) if np.isfinite(fit.p_value) else "NAN", "chi2 p-value of the fit"),
                "POORFIT": (poor, f"fit p-value < {POOR_FIT_P_VALUE:g}"),
            }
        )
        fits_by_source[name] = fit
        flux, flux_error = fit.band_flux(*band_keV)
        rows.append(
            (
                name,
                source_spectrum.exposure,
                fit.gamma,
                fit.gamma_error,
                fit.norm,
                fit.norm_error,
                fit.pivot_keV,
                fit.chi2,
                fit.dof,
                fit.p_value,
                float(band[0]),
                float(band[1]),
                fit.energy_range[0],
                fit.energy_range[1],
                poor,
                flux,
                flux_error,
            )
        )
    summary = Table(
        rows=rows or None,
        names=(
            "source",
            "exposure_s",
            "gamma",
            "gamma_error",
            "norm",
            "norm_error",
            "pivot_keV",
            "chi2",
            "dof",
            "p_value",
            "fit_band_min_keV",
            "fit_band_max_keV",
            "fitted_min_keV",
            "fitted_max_keV",
            "poor_fit",
            "flux_erg_cm2_s",
            "flux_error",
        ),
        dtype=(
            str,
            float,
            float,
            float,
            float,
            float,
            float,
            float,
            int,
            float,
            float,
            float,
            float,
            float,
            bool,
            float,
            float,
        ),
    )
    summary.meta["fit_band_rule"] = (
        f"ISGRI: groups from {ISGRI_FIT_LOW_KEV['before']:g} keV for data before 2016-01-01, from "
        f"{ISGRI_FIT_LOW_KEV['after']:g} keV when any data are later; JEM-X: all channels"
        if fit_band_keV is None
        else f"fixed: {fit_band_keV[0]:g}-{fit_band_keV[1]:g} keV"
    )
    summary.meta["poor_fit"] = f"chi2 p-value < {POOR_FIT_P_VALUE:g}"
    return spectra, fits_by_source, summary


def write_products(
    spectra: Mapping[str, tuple[Spectrum, Response]],
    fits_by_source: Mapping[str, PowerLawFit],
    output_dir: Path | str,
    *,
    params,
    provenance: dict,
    positions: Mapping[str, tuple[float, float]] | None = None,
) -> list:
    """Write each source's spectrum (PHA, ARF, RMF and a PNG) and describe them.

    Parameters
    ----------
    spectra : mapping
        Source name → (spectrum, response) (:func:`fit_sources`).
    fits_by_source : mapping
        Source name → its power-law fit, drawn on the plot when present.
    output_dir : path-like
        Where ``spectrum_<source>.fits`` (``_arf``, ``_rmf``) and ``.png`` go.
    params : mapping or parameter model
        The run's parameters (instrument, band of the quoted flux, period...).
    provenance : dict
        FITS provenance cards.
    positions : mapping, optional
        Source name → (RA, Dec) in degrees.

    Returns
    -------
    list of integral_workflows.products.Product
        One ``spectrum`` per source, its ARF and RMF as companions.
    """
    import matplotlib.pyplot as plt

    from .products import Product, instrument_key, long_term_identity
    from .provenance import file_stem, for_source

    out = Path(output_dir)
    instrument = instrument_key(params["instrument"], params.get("jemx_unit", 1))
    products = []
    for name, (source_spectrum, response) in spectra.items():
        stem = f"spectrum_{file_stem(name)}"
        cards = for_source(provenance, name, (positions or {}).get(name))
        pha, arf, rmf = write(source_spectrum, response, out / f"{stem}.fits", provenance=cards, overwrite=True)
        figure = plot(source_spectrum, response, fits_by_source.get(name), path=out / f"{stem}.png")
        plt.close(figure)
        products.append(
            Product(
                path=pha,
                kind="spectrum",
                instrument=instrument,
                source=name,
                band=(params["E1_keV"], params["E2_keV"]),
                period=(params["T1"], params["T2"]),
                position=(positions or {}).get(name),
                companions=(arf, rmf),
                plot=out / f"{stem}.png",
                identity=long_term_identity(params, instrument=instrument, kind="spectrum", source=name),
            )
        )
    return products
