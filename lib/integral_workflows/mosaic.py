"""Sky mosaics: read MMODA mosaic products, combine chunks, find sources, write FITS, regions and plots.

MMODA returns one mosaic per job (``mosaic_image_0_mosaic``: PRIMARY,
GROUPING and four image extensions typed by ``IMATYPE``: INTENSITY (or
RECONSTRUCTED for JEM-X), VARIANCE, SIGNIFICANCE, EXPOSURE). A long-term
mosaic is the inverse-variance weighted combination of the chunk mosaics on a
common grid (:func:`combine`)::

    I = Σ(I_k / V_k) / Σ(1 / V_k),  V = 1 / Σ(1 / V_k),  S = I / √V,  EXPOSURE = Σ EXPOSURE_k

Chunks are resampled onto the common grid with ``reproject``; by default with
nearest-neighbour sampling, which keeps each pixel's variance exact (an
interpolation would average neighbouring noise and make the variance map lie),
and which is exact when the chunks share their tangent point, as MMODA
mosaics of one source do.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

log = logging.getLogger(__name__)

INTENSITY_TYPES = ("INTENSITY", "RECONSTRUCTED")
#: Keywords a mosaic keeps from its product (times as the real ISGR-MOSA-IMA and gallery mosaics give them).
KEPT_KEYWORDS = (
    "TELESCOP",
    "INSTRUME",
    "DETNAM",
    "E_MIN",
    "E_MAX",
    "TSTART",
    "TSTOP",
    "TFIRST",
    "TLAST",
    "DATE-OBS",
    "DATE-END",
    "ONTIME",
    "MJDREF",
    "TIMESYS",
    "ORIGIN",
    "CREATOR",
    "SIMULATD",
    "BUNIT",
)
#: Pixels whose exposure is below this fraction of the mosaic's largest are not written (NaN): at the edge of the
#: coverage a pixel seen for milliseconds has a rate of 1e6 ct/s with a matching variance, which any reader of the
#: intensity map would take for a source. 1e-3 of the peak keeps every pixel whose noise is within ~30 times the
#: deepest one's.
MIN_EXPOSURE_FRACTION = 1e-3
#: Keywords the writer makes itself (per image, or the whole mosaic's times), never copied from ``meta``.
_WRITER_KEYWORDS = {
    "BUNIT",
    "EXTNAME",
    "EXTVER",
    "IMATYPE",
    "TIMESYS",
    "TIMEUNIT",
    "MJDREF",
    "TSTART",
    "TSTOP",
    "TFIRST",
    "TLAST",
    "TELAPSE",
    "DATE-OBS",
    "DATE-END",
    "MJD-OBS",
    "MJD-END",
    "ONTIME",
    "DATEREF",
}
#: How combining mosaics combines their keywords: earliest start, latest end, summed good time.
_COMBINED_KEYWORDS = (
    ("TSTART", min),
    ("TFIRST", min),
    ("DATE-OBS", min),
    ("TSTOP", max),
    ("TLAST", max),
    ("DATE-END", max),
    ("ONTIME", lambda a, b: a + b),
)


@dataclasses.dataclass
class SkyMosaic:
    """A mosaic: intensity, variance and exposure maps on one celestial grid.

    Attributes
    ----------
    intensity : numpy.ndarray
        Count rate (ct/s), NaN outside the coverage.
    variance : numpy.ndarray
        Variance of ``intensity``, NaN outside the coverage.
    exposure : numpy.ndarray
        Effective exposure (s).
    wcs : astropy.wcs.WCS
        Celestial WCS of the maps.
    meta : dict
        FITS keywords worth keeping (instrument, band, times, origin...).
    """

    intensity: np.ndarray
    variance: np.ndarray
    exposure: np.ndarray
    wcs: WCS
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def significance(self) -> np.ndarray:
        """Significance map, intensity / sqrt(variance) (NaN where the variance is zero or invalid)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.intensity / np.sqrt(self.variance)

    @property
    def shape(self) -> tuple:
        """Shape of the maps, (ny, nx)."""
        return self.intensity.shape

    @property
    def simulated(self) -> bool:
        """True when the products came from the local (simulated) MMODA."""
        return bool(self.meta.get("SIMULATD")) or "SIMULATED" in str(self.meta.get("ORIGIN", ""))

    @classmethod
    def from_hdus(cls, hdus: Sequence) -> SkyMosaic:
        """Build from image HDUs carrying ``IMATYPE`` (as in MMODA mosaic products).

        A file holding a single image without ``IMATYPE`` (a gallery
        significance mosaic, such as MMODA's published
        ``*_mosaic_clean_significance*.fits``) is read with
        :meth:`from_significance_image`.
        """
        maps, header = {}, None
        for hdu in hdus:
            imatype = str(hdu.header.get("IMATYPE", "")).strip().upper()
            if hdu.data is None or imatype == "":
                continue
            key = "INTENSITY" if imatype in INTENSITY_TYPES else imatype
            maps[key] = np.asarray(hdu.data, dtype=float)
            if key == "INTENSITY":
                header = hdu.header
        if not maps:
            images = [hdu for hdu in hdus if hdu.data is not None and np.ndim(hdu.data) == 2]
            if len(images) == 1:
                return cls.from_significance_image(images[0])
        missing = {"INTENSITY", "VARIANCE"} - set(maps)
        if missing:
            raise ValueError(f"mosaic product lacks the {sorted(missing)} image(s); found {sorted(maps)}")
        wcs = WCS(header).celestial
        exposure = maps.get("EXPOSURE", np.where(np.isfinite(maps["VARIANCE"]), 1.0, 0.0))
        meta = {k: header[k] for k in KEPT_KEYWORDS if k in header}
        variance = np.where(maps["VARIANCE"] > 0, maps["VARIANCE"], np.nan)
        return cls(maps["INTENSITY"], variance, exposure, wcs, meta)

    @classmethod
    def from_significance_image(cls, hdu) -> SkyMosaic:
        """A significance map as a mosaic in units of its own noise.

        The intensity is the significance and the variance 1 wherever the map
        is defined, so :attr:`significance` and :func:`find_sources` work
        unchanged; the exposure is unknown (1 where defined). ``meta['IMATYPE']``
        says ``SIGNIFICANCE``.

        Parameters
        ----------
        hdu : astropy.io.fits.ImageHDU or PrimaryHDU
            A 2-D image with a celestial WCS.

        Returns
        -------
        SkyMosaic
        """
        significance = np.asarray(hdu.data, dtype=float)
        wcs = WCS(hdu.header).celestial
        if not wcs.has_celestial:
            raise ValueError("the image has no celestial WCS")
        defined = np.isfinite(significance)
        meta = {k: hdu.header[k] for k in KEPT_KEYWORDS if k in hdu.header}
        meta["IMATYPE"] = "SIGNIFICANCE"
        return cls(significance, np.where(defined, 1.0, np.nan), defined.astype(float), wcs, meta)

    @classmethod
    def from_product(cls, product) -> SkyMosaic:
        """Build from an oda_api ``NumpyDataProduct`` (``data.mosaic_image_0_mosaic``)."""
        from .jobs import product_hdus

        hdus = product_hdus(product)
        return cls.from_hdus(hdus)

    @classmethod
    def from_data_collection(cls, collection) -> SkyMosaic:
        """Find the mosaic in an oda_api ``DataCollection``."""
        for product in collection._p_list:
            meta = getattr(product, "meta_data", {}) or {}
            if meta.get("product") == "mosaic" or getattr(product, "name", "") == "mosaic_image":
                return cls.from_product(product)
        raise ValueError("no mosaic image in this data collection")

    @classmethod
    def read(cls, path: Path | str) -> SkyMosaic:
        """Read a mosaic FITS file written by :meth:`write` or by MMODA."""
        with fits.open(path) as hdul:
            hdul.verify("silentfix")
            return cls.from_hdus([hdu.copy() for hdu in hdul])

    def to_hdulist(
        self,
        *,
        extname: str | None = None,
        provenance: dict | None = None,
        min_exposure_fraction: float = MIN_EXPOSURE_FRACTION,
    ) -> fits.HDUList:
        """Four image extensions (INTENSITY, VARIANCE, SIGNIFICANCE, EXPOSURE) with WCS, times and provenance.

        The images are named as OSA names them (``ISGR-MOSA-IMA``,
        ``JMX<n>-MOSA-IMA``; ``MOSA-IMA`` for an unknown instrument) and told
        apart by ``EXTVER`` 1 to 4, as the members of OSA's mosaic group are;
        each has its own ``BUNIT`` (none for the significance). Time keywords
        are the whole mosaic's (:meth:`time_cards`), never those of the first
        chunk the WCS came from. Pixels whose exposure is below
        ``min_exposure_fraction`` of the mosaic's largest are left undefined
        (NaN) in the intensity, variance and significance maps; the exposure
        map keeps them. The fraction is written as ``EXPCUT``.

        Parameters
        ----------
        extname : str, optional
            Name of the image extensions; from the instrument by default.
        provenance : dict, optional
            Provenance cards written to the primary header.
        min_exposure_fraction : float, optional
            Exposure cut of the written maps, a fraction of the largest exposure (0 keeps every pixel).

        Returns
        -------
        astropy.io.fits.HDUList
        """
        extname = extname or self.image_extname
        primary = fits.PrimaryHDU()
        # BUNIT belongs to each image (it differs between them), not to the primary or every extension.
        meta = {key: value for key, value in self.meta.items() if key[:8] not in _WRITER_KEYWORDS}
        for key, value in {**meta, **(provenance or {})}.items():
            primary.header[key[:8]] = value
        hdus = [primary]
        times = self.time_cards()
        for key, value in times.items():
            primary.header[key] = value
        exposure = np.nan_to_num(np.asarray(self.exposure, dtype=float))
        peak = float(np.max(exposure)) if exposure.size else 0.0
        kept = exposure >= min_exposure_fraction * peak if peak > 0 else np.ones(exposure.shape, dtype=bool)
        for version, (imatype, data, unit) in enumerate(
            (
                ("INTENSITY", self.intensity, "count/s"),
                ("VARIANCE", self.variance, "count2/s2"),
                ("SIGNIFICANCE", self.significance, None),
                ("EXPOSURE", self.exposure, "s"),
            ),
            start=1,
        ):
            plane = np.asarray(data, dtype=np.float32)
            if imatype != "EXPOSURE":
                plane = np.where(kept, plane, np.float32(np.nan))
            hdu = fits.ImageHDU(plane, header=_celestial_header(self.wcs), name=extname, ver=version)
            hdu.header["IMATYPE"] = imatype
            if unit is not None:
                hdu.header["BUNIT"] = (unit, "unit of the " + imatype.lower() + " map")
            for key, value in meta.items():
                if key[:8] not in hdu.header:
                    hdu.header[key[:8]] = value
            for key, value in times.items():
                hdu.header[key] = value
            hdu.header["EXPCUT"] = (min_exposure_fraction, "pixels below this fraction of max exposure: NaN")
            hdus.append(hdu)
        return fits.HDUList(hdus)

    @property
    def image_extname(self) -> str:
        """OSA's name of the mosaic images of this instrument (``ISGR-MOSA-IMA``, ``JMX1-MOSA-IMA``...)."""
        instrume = str(self.meta.get("INSTRUME", "")).strip().upper()
        if str(self.meta.get("DETNAM", "")).strip().upper() == "ISGRI" or instrume == "ISGRI":
            return "ISGR-MOSA-IMA"
        if instrume in ("JMX1", "JMX2"):
            return f"{instrume}-MOSA-IMA"
        return "MOSA-IMA"

    def time_cards(self) -> dict:
        """The whole mosaic's time keywords, as ``{keyword: (value, comment)}``.

        TSTART/TSTOP and TFIRST/TLAST (IJD, d, TT) span every combined chunk;
        DATE-OBS/DATE-END are the UTC dates the products give (OSA's
        convention) and MJD-OBS/MJD-END their UTC MJDs; TELAPSE = TSTOP − TSTART
        in days (TIMEUNIT, as the FITS time standard reads it); ONTIME is the
        summed good time in seconds (OSA's mosaic convention). Keywords whose
        value is unknown are left out.
        """
        from astropy.time import Time

        cards = {
            "TIMESYS": ("TT", "time scale of TSTART, TSTOP, TFIRST, TLAST"),
            "TIMEUNIT": ("d", "unit of TSTART, TSTOP, TFIRST, TLAST, TELAPSE"),
            "MJDREF": (float(self.meta.get("MJDREF", 51544.0)), "[d] MJD (TT) of IJD 0"),
            "DATEREF": ("2000-01-01T00:00:00", "TT date of MJDREF 51544"),
        }
        for key, comment in (
            ("TSTART", "[d] IJD (TT) of the mosaic's start"),
            ("TSTOP", "[d] IJD (TT) of the mosaic's end"),
            ("TFIRST", "[d] IJD (TT) of the first data"),
            ("TLAST", "[d] IJD (TT) of the last data"),
        ):
            if key in self.meta:
                cards[key] = (float(self.meta[key]), comment)
        if "TSTART" in cards and "TSTOP" in cards:
            cards["TELAPSE"] = (cards["TSTOP"][0] - cards["TSTART"][0], "[d] TSTOP - TSTART")
        for key, mjd_key, what in (("DATE-OBS", "MJD-OBS", "start"), ("DATE-END", "MJD-END", "end")):
            if key in self.meta:
                date = str(self.meta[key]).strip()
                cards[key] = (date, f"UTC of the mosaic's {what}")
                cards[mjd_key] = (float(Time(date, scale="utc").mjd), f"[d] MJD (UTC) of {key}")
        if "ONTIME" in self.meta:
            cards["ONTIME"] = (float(self.meta["ONTIME"]), "[s] summed good time of the ScWs")
        return cards

    def write(self, path: Path | str, *, provenance: dict | None = None, overwrite: bool = False) -> Path:
        """Write the mosaic as FITS; returns the path."""
        path = Path(path)
        self.to_hdulist(provenance=provenance).writeto(path, overwrite=overwrite)
        return path

    def value_at(self, coord: SkyCoord) -> tuple[float, float]:
        """Intensity and its 1σ error at a sky position (bilinear, sub-pixel; no truncation)."""
        x, y = self.wcs.world_to_pixel(coord)
        return _bilinear(self.intensity, x, y), float(np.sqrt(_bilinear(self.variance, x, y)))


def _bilinear(image: np.ndarray, x: float, y: float) -> float:
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    if not (0 <= x0 < image.shape[1] - 1 and 0 <= y0 < image.shape[0] - 1):
        return float("nan")
    fx, fy = x - x0, y - y0
    block = image[y0 : y0 + 2, x0 : x0 + 2]
    weights = np.array([[(1 - fx) * (1 - fy), fx * (1 - fy)], [(1 - fx) * fy, fx * fy]])
    return float(np.sum(block * weights))


def _celestial_header(wcs: WCS) -> fits.Header:
    """The celestial WCS cards only: the time cards a WCS read from a chunk carries are that chunk's."""
    header = wcs.to_header()
    for key in list(header.keys()):
        if key in _WRITER_KEYWORDS or key in ("DATEREF", "MJDREFI", "MJDREFF", "TIMEOFFS", "TREFPOS", "JDREF"):
            del header[key]
    return header


class MosaicAccumulator:
    """Inverse-variance combination of mosaics, one at a time, on a canvas that grows as needed.

    Memory is that of the combined sky, whatever the number of chunks. The
    canvas keeps the first mosaic's projection and pixel scale; later
    mosaics sharing its tangent point land on it by whole-pixel shifts
    (exactly), others are resampled with ``reproject``.

    Parameters
    ----------
    order : str, optional
        ``reproject_interp`` order for mosaics that need resampling;
        nearest-neighbour keeps each pixel's variance exact.
    """

    def __init__(self, *, order: str = "nearest-neighbor"):
        self.order = order
        self.wcs: WCS | None = None
        self.shape = (0, 0)
        self._weight = self._signal = self._exposure = None
        self.meta: dict = {}
        self.count = 0

    def add(self, mosaic: SkyMosaic) -> None:
        """Add one mosaic."""
        if self.wcs is None:
            self.wcs = mosaic.wcs.deepcopy()
            self.shape = mosaic.shape
            self._weight, self._signal, self._exposure = (np.zeros(self.shape) for _ in range(3))
            self.meta = dict(mosaic.meta)
        self._grow_to_cover(mosaic)
        weight = np.where(np.isfinite(mosaic.variance) & (mosaic.variance > 0), 1.0 / mosaic.variance, 0.0)
        signal = np.where(weight > 0, np.nan_to_num(mosaic.intensity) * weight, 0.0)
        exposure = np.nan_to_num(mosaic.exposure)
        offset = self._integer_offset(mosaic)
        if offset is not None:
            dy, dx = offset
            ny, nx = mosaic.shape
            window = (slice(dy, dy + ny), slice(dx, dx + nx))
            self._weight[window] += weight
            self._signal[window] += signal
            self._exposure[window] += exposure
        else:
            # Only the canvas window under the mosaic is resampled, the three maps in one call.
            y0, y1, x0, x1 = self._window_under(mosaic)
            if y1 > y0 and x1 > x0:
                window_wcs = self.wcs.deepcopy()
                window_wcs.wcs.crpix = window_wcs.wcs.crpix - np.array([x0, y0])
                # imported here: reproject loads dask.array (about 2 s), which mosaics on one grid never need
                from reproject import reproject_interp

                resampled, footprint = reproject_interp(
                    (np.stack([weight, signal, exposure]), mosaic.wcs),
                    window_wcs,
                    shape_out=(y1 - y0, x1 - x0),
                    order=self.order,
                )
                resampled = np.where(footprint > 0, np.nan_to_num(resampled), 0.0)
                window = (slice(y0, y1), slice(x0, x1))
                self._weight[window] += resampled[0]
                self._signal[window] += resampled[1]
                self._exposure[window] += resampled[2]
        if self.count:
            for key, combined in _COMBINED_KEYWORDS:
                if key in mosaic.meta:
                    self.meta[key] = (
                        combined(self.meta[key], mosaic.meta[key]) if key in self.meta else mosaic.meta[key]
                    )
        self.count += 1

    def result(self) -> SkyMosaic:
        """The combined mosaic so far."""
        if self.wcs is None:
            raise ValueError("nothing to combine")
        with np.errstate(invalid="ignore", divide="ignore"):
            intensity = np.where(self._weight > 0, self._signal / self._weight, np.nan)
            variance = np.where(self._weight > 0, 1.0 / self._weight, np.nan)
        return SkyMosaic(intensity, variance, self._exposure.copy(), self.wcs.deepcopy(), dict(self.meta))

    def _integer_offset(self, mosaic: SkyMosaic) -> tuple[int, int] | None:
        """Pixel offset of ``mosaic`` in the canvas when both share projection and tangent point."""
        a, b = self.wcs.wcs, mosaic.wcs.wcs
        same = (
            list(a.ctype) == list(b.ctype)
            and np.allclose(a.crval, b.crval, atol=1e-9)
            and np.allclose(self.wcs.pixel_scale_matrix, mosaic.wcs.pixel_scale_matrix, rtol=1e-9, atol=1e-12)
        )
        if not same:
            return None
        shift = a.crpix - b.crpix
        if not np.allclose(shift, np.round(shift), atol=1e-6):
            return None
        dx, dy = int(round(shift[0])), int(round(shift[1]))
        ny, nx = mosaic.shape
        if dx < 0 or dy < 0 or dy + ny > self.shape[0] or dx + nx > self.shape[1]:
            return None
        return dy, dx

    def _corners_on_canvas(self, mosaic: SkyMosaic) -> tuple[np.ndarray, np.ndarray]:
        """The canvas pixel coordinates of the mosaic's corners and edge midpoints (TAN edges bulge)."""
        ny, nx = mosaic.shape
        edge_x = np.linspace(-0.5, nx - 0.5, 5)
        edge_y = np.linspace(-0.5, ny - 0.5, 5)
        grid_x, grid_y = np.meshgrid(edge_x, edge_y)
        return self.wcs.world_to_pixel(mosaic.wcs.pixel_to_world(grid_x.ravel(), grid_y.ravel()))

    def _window_under(self, mosaic: SkyMosaic) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1): the canvas pixels the mosaic may cover, with a pixel of margin."""
        x, y = self._corners_on_canvas(mosaic)
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            return 0, self.shape[0], 0, self.shape[1]
        x0 = max(0, int(np.floor(np.min(x))) - 1)
        y0 = max(0, int(np.floor(np.min(y))) - 1)
        x1 = min(self.shape[1], int(np.ceil(np.max(x))) + 2)
        y1 = min(self.shape[0], int(np.ceil(np.max(y))) + 2)
        return y0, y1, x0, x1

    def _grow_to_cover(self, mosaic: SkyMosaic) -> None:
        x, y = self._corners_on_canvas(mosaic)
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            log.warning("a mosaic reaches beyond the canvas projection; its far side is dropped")
            return
        left = max(0, int(np.ceil(-np.min(x) - 0.5)))
        bottom = max(0, int(np.ceil(-np.min(y) - 0.5)))
        right = max(0, int(np.ceil(np.max(x) + 0.5)) - self.shape[1])
        top = max(0, int(np.ceil(np.max(y) + 0.5)) - self.shape[0])
        if not (left or bottom or right or top):
            return
        pad = ((bottom, top), (left, right))
        self._weight, self._signal, self._exposure = (
            np.pad(a, pad) for a in (self._weight, self._signal, self._exposure)
        )
        self.wcs.wcs.crpix = self.wcs.wcs.crpix + np.array([left, bottom])
        self.shape = self._weight.shape


def combine(mosaics: Iterable[SkyMosaic], *, order: str = "nearest-neighbor") -> SkyMosaic:
    """Inverse-variance weighted combination of mosaics (streamed: see :class:`MosaicAccumulator`).

    ::

        I = Σ(I_k / V_k) / Σ(1 / V_k),  V = 1 / Σ(1 / V_k),  EXPOSURE = Σ EXPOSURE_k

    Parameters
    ----------
    mosaics : iterable of SkyMosaic
        Chunk mosaics (same instrument and band); may be a generator.
    order : str, optional
        Resampling order for mosaics that do not share the first one's grid.
    """
    accumulator = MosaicAccumulator(order=order)
    for mosaic in mosaics:
        accumulator.add(mosaic)
    return accumulator.result()


def find_sources(
    mosaic: SkyMosaic,
    *,
    threshold: float,
    catalog: Table | None = None,
    match_radius_deg: float | None = None,
    include_new_sources: bool = True,
    box_size: int = 5,
    psf=None,
    psf_min_significance: float = 20.0,
    n_images: int | None = None,
) -> Table:
    """Find excesses above ``threshold`` σ, name them from a catalogue, measure their point-source rates.

    The mosaic's PSF is measured on its bright isolated sources
    (:func:`integral_workflows.photometry.measure_psf`): mosaicking widens
    it, and rates read with the ScW images' PSF would be a few per cent
    low. Without such a source the instrument's PSF is assumed, with a
    warning and ``meta['PSF_SRC'] = 'default'``. A rate's error includes
    how well its source's PSF is known (:func:`point_source_rate`); give
    ``n_images`` so that the place-to-place scatter of a mosaic's PSF is the
    regridding's expectation rather than the fitted widths' noisy scatter.

    Parameters
    ----------
    mosaic : SkyMosaic
        The mosaic to search.
    threshold : float
        Detection threshold in σ (significance map).
    catalog : astropy.table.Table, optional
        Known sources with ``name``, ``ra``, ``dec`` (deg).
    match_radius_deg : float, optional
        Association radius; 1.5 pixels by default.
    include_new_sources : bool, optional
        Keep excesses without a catalogue counterpart (named ``NEW_1``, ``NEW_2``...).
    box_size : int, optional
        Peak-finding box in pixels (photutils ``find_peaks``).
    psf : EffectivePsf or float, optional
        The mosaic's PSF (an :class:`~integral_workflows.photometry.EffectivePsf`
        or a FWHM in deg) instead of measuring it.
    psf_min_significance : float
        Sources fitted for the PSF are at least this significant.
    n_images : int, optional
        Images (ScWs) combined in the mosaic
        (:func:`integral_workflows.photometry.regridding_scatter_deg`).

    Returns
    -------
    astropy.table.Table
        ``name, ra, dec, significance, rate, rate_error, x, y, new_source``,
        sorted by decreasing significance; ``rate`` is the point-source rate
        at the refined position (:func:`point_source_rate`) and ``rate_error``
        includes the PSF's uncertainty. ``meta`` holds the PSF used
        (``PSF_FWHM``, ``PSF_ERR``, ``PSF_SCAT``, ``PSF_LOC``, ``PSF_NAT`` in
        deg, ``PSF_SRC`` 'measured'|'default'|'given', ``PSF_NSRC``,
        ``PSF_NIMG`` and the names of the sources measured, ``psf_sources``).
    """
    from photutils.detection import find_peaks
    from photutils.utils.exceptions import NoDetectionsWarning

    from . import photometry

    significance = mosaic.significance
    mask = ~np.isfinite(significance)
    with warnings.catch_warnings():
        # an empty field is an answer, not a problem
        warnings.simplefilter("ignore", NoDetectionsWarning)
        peaks = find_peaks(
            np.where(mask, 0.0, significance), threshold, box_size=box_size, mask=mask, centroid_func=None
        )
    columns = {
        "name": [],
        "ra": [],
        "dec": [],
        "significance": [],
        "rate": [],
        "rate_error": [],
        "x": [],
        "y": [],
        "new_source": [],
    }
    if peaks is not None and len(peaks):
        from astropy.wcs.utils import proj_plane_pixel_scales

        pixel_deg = float(np.mean(np.abs(proj_plane_pixel_scales(mosaic.wcs))))
        radius = match_radius_deg if match_radius_deg is not None else 1.5 * pixel_deg
        x, y = np.asarray(peaks["x_peak"], float), np.asarray(peaks["y_peak"], float)
        x, y = _refine(significance, x, y)
        world = mosaic.wcs.pixel_to_world(x, y)
        known_names = np.array([])
        known = None
        if catalog is not None and len(catalog):
            known = SkyCoord(np.asarray(catalog["ra"], float) * u.deg, np.asarray(catalog["dec"], float) * u.deg)
            index, separation, _ = world.match_to_catalog_sky(known)
            known_names = np.asarray(catalog["name"]).astype(str)
        new_counter = 0
        used = set()
        order = np.argsort(-np.asarray(peaks["peak_value"], float))
        detections = []
        for i in order:
            name, is_new = None, False
            if known_names.size and separation[i].deg <= radius and index[i] not in used:
                name = str(known_names[index[i]])
                used.add(index[i])
            else:
                new_counter += 1
                name, is_new = f"NEW_{new_counter}", True
            detections.append((i, name, is_new))
        if psf is None:
            psf = photometry.measure_psf(
                mosaic,
                world[[i for i, _, _ in detections]],
                significances=[float(peaks["peak_value"][i]) for i, _, _ in detections],
                names=[name for _, name, _ in detections],
                neighbours=_neighbours(mosaic, known, box_size=box_size),
                min_significance=psf_min_significance,
                n_images=n_images,
            )
        for i, name, is_new in detections:
            if is_new and not include_new_sources:
                continue
            rate, error = point_source_rate(mosaic, world[i], psf=psf)
            columns["name"].append(name)
            columns["ra"].append(world[i].ra.deg)
            columns["dec"].append(world[i].dec.deg)
            columns["significance"].append(float(peaks["peak_value"][i]))
            columns["rate"].append(rate)
            columns["rate_error"].append(error)
            columns["x"].append(x[i])
            columns["y"].append(y[i])
            columns["new_source"].append(is_new)
    table = Table(columns, dtype=[str, float, float, float, float, float, float, float, bool])
    table["ra"].unit = table["dec"].unit = u.deg
    table["rate"].unit = table["rate_error"].unit = u.ct / u.s
    table.meta["threshold"] = threshold
    effective = _effective_psf(mosaic, psf)
    table.meta.update(effective.meta())
    table.meta["psf_sources"] = list(effective.names)
    return table


_PSF_KEYWORDS = ("PSF_FWHM", "PSF_ERR", "PSF_SCAT", "PSF_LOC", "PSF_NAT", "PSF_SRC", "PSF_NSRC", "PSF_NIMG")


def _neighbours(mosaic: SkyMosaic, known: SkyCoord | None, *, box_size: int, level: float = 5.0) -> SkyCoord:
    """What spoils a PSF measurement's isolation: excesses above ``level`` σ and catalogue sources seen there."""
    from photutils.detection import find_peaks
    from photutils.utils.exceptions import NoDetectionsWarning

    significance = mosaic.significance
    mask = ~np.isfinite(significance)
    filled = np.where(mask, 0.0, significance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        peaks = find_peaks(filled, level, box_size=box_size, mask=mask, centroid_func=None)
    coords = []
    if peaks is not None and len(peaks):
        coords.append(mosaic.wcs.pixel_to_world(np.asarray(peaks["x_peak"], float), np.asarray(peaks["y_peak"], float)))
    if known is not None and len(known):
        x, y = mosaic.wcs.world_to_pixel(known)
        ny, nx = significance.shape
        inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
        ix, iy = np.rint(np.where(inside, x, 0)).astype(int), np.rint(np.where(inside, y, 0)).astype(int)
        seen = inside & (filled[iy, ix] >= level)
        if seen.any():
            coords.append(known[seen])
    if not coords:
        return SkyCoord([] * u.deg, [] * u.deg)
    ra = np.concatenate([c.icrs.ra.deg for c in coords])
    return SkyCoord(ra * u.deg, np.concatenate([c.icrs.dec.deg for c in coords]) * u.deg)


def _effective_psf(mosaic: SkyMosaic, psf):
    """An :class:`~integral_workflows.photometry.EffectivePsf` from None (the default), a FWHM or itself."""
    from . import photometry

    if isinstance(psf, photometry.EffectivePsf):
        return psf
    native = photometry.psf_fwhm_for(mosaic)
    if psf is None:
        return photometry.EffectivePsf(native, 0.0, 0.0, native, "default", 0, ())
    return photometry.EffectivePsf(float(psf), 0.0, 0.0, native, "given", 0, ())


def point_source_rate(mosaic: SkyMosaic, coord: SkyCoord, *, psf=None) -> tuple[float, float]:
    """Rate (ct/s) and 1σ error of a point source at a sky position of a mosaic.

    The intensity is interpolated (bicubic) at the exact position and divided
    by what the same interpolation makes of the mosaic's PSF there, with the
    flux of the ScW images' PSF (whose peak is the rate): a mosaic's PSF is
    wider, and a bilinear read of a 12′ PSF on 4.94′ pixels would be up to
    20 % low between pixel centres
    (:func:`integral_workflows.photometry.point_source_factor`). The error
    includes, in quadrature, the uncertainty of the source's PSF width
    (:meth:`~integral_workflows.photometry.EffectivePsf.width_at`): the
    measured mean's error and one place's scatter about it, or a bright
    source's own fitted width when that is the more precise. Near the edge
    of the coverage it falls back to :meth:`SkyMosaic.value_at`.

    Parameters
    ----------
    mosaic : SkyMosaic
    coord : astropy.coordinates.SkyCoord
    psf : EffectivePsf or float, optional
        The mosaic's PSF (:func:`integral_workflows.photometry.measure_psf`)
        or its FWHM (deg); the instrument's by default.

    Returns
    -------
    (float, float)
    """
    from . import photometry

    effective = _effective_psf(mosaic, psf)
    fwhm, fwhm_error = effective.width_at(coord)
    value = photometry.pixel_value(
        mosaic,
        coord,
        psf_fwhm_deg=fwhm,
        native_fwhm_deg=effective.native_fwhm_deg,
        psf_fwhm_error_deg=fwhm_error,
        noise_correlation_fwhm_deg=effective.native_fwhm_deg,
    )
    if np.isfinite(value.value) and np.isfinite(value.error):
        return value.value, value.error
    return mosaic.value_at(coord)


def _refine(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak position from a 3×3 parabolic fit around each peak."""
    fx, fy = x.copy(), y.copy()
    for k, (xi, yi) in enumerate(zip(x.astype(int), y.astype(int))):
        if 1 <= xi < image.shape[1] - 1 and 1 <= yi < image.shape[0] - 1:
            left, centre, right = image[yi, xi - 1], image[yi, xi], image[yi, xi + 1]
            down, up = image[yi - 1, xi], image[yi + 1, xi]
            denominator_x = left - 2 * centre + right
            denominator_y = down - 2 * centre + up
            if np.isfinite(denominator_x) and denominator_x < 0:
                fx[k] = xi + 0.5 * (left - right) / denominator_x
            if np.isfinite(denominator_y) and denominator_y < 0:
                fy[k] = yi + 0.5 * (down - up) / denominator_y
    return fx, fy


def write_region_file(sources: Table, path: Path | str, *, radius_deg: float = 0.2) -> Path:
    """Write a DS9 region file with a labelled circle per source (``regions`` package)."""
    from regions import CircleSkyRegion, Regions

    shapes = []
    for row in sources:
        region = CircleSkyRegion(SkyCoord(row["ra"] * u.deg, row["dec"] * u.deg), radius_deg * u.deg)
        region.meta["text"] = f"{row['name']} ({row['significance']:.1f}σ)"
        region.visual["color"] = "red" if row["new_source"] else "green"
        shapes.append(region)
    path = Path(path)
    Regions(shapes).write(str(path), format="ds9", overwrite=True)
    return path


#: Significance values the colour bar of a mosaic may tick (asinh stretch: more ticks where it is linear).
_COLORBAR_TICKS = (-10, -5, -3, 0, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
#: Labels are tried in this many passes: a key of numbered sources changes the layout, so they are placed again.
_LABEL_PASSES = 4


def plot(
    mosaic: SkyMosaic,
    *,
    sources: Table | None = None,
    title: str = "",
    path: Path | str | None = None,
    vmin: float = -3.0,
    vmax: float | None = None,
    ax=None,
    label_fontsize: float = 8.0,
):
    """Significance map with WCS axes and labelled sources; saved as PNG when ``path`` is given.

    The figure (when made here) uses matplotlib's constrained layout: the title sits above the map and its
    colour bar (labelled ``significance (σ)``) is beside it, never under the title. Sources are circled (green:
    catalogue, red: new) and labelled by :func:`integral_workflows.plotting.place_labels`, the most significant
    first: a name goes where it overlaps no other label, no circle and no edge of the map; in a crowded field
    the sources whose names find no room are numbered instead, and the numbers are explained in a key below the
    map (with how many sources had room for neither).

    Parameters
    ----------
    mosaic : SkyMosaic
    sources : astropy.table.Table, optional
        ``x``, ``y`` (pixels), ``name``, ``new_source`` and, to label the most significant first,
        ``significance`` (:func:`find_sources`).
    title : str, optional
        Replaces the default title (instrument and band).
    path : path-like, optional
        Save the figure there.
    vmin, vmax : float, optional
        Colour range (σ); the map's maximum by default.
    ax : astropy.visualization.wcsaxes.WCSAxes, optional
        Draw there (with ``projection=mosaic.wcs``); a new figure otherwise.
    label_fontsize : float
        Size of the source labels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    own_figure = ax is None
    if own_figure:
        fig = plt.figure(figsize=(8, 7), layout="constrained")
        ax = fig.add_subplot(projection=mosaic.wcs)
    else:
        fig = ax.figure
    from astropy.visualization import AsinhStretch, ImageNormalize

    from .plotting import thinned_formatter

    significance = mosaic.significance
    finite = significance[np.isfinite(significance)]
    top = vmax if vmax is not None else (float(np.max(finite)) if finite.size else 10.0)
    # asinh: the noise (a few σ) and a source of hundreds of σ both stay readable
    top = max(top, vmin + 5.0)
    norm = ImageNormalize(vmin=vmin, vmax=top, stretch=AsinhStretch(a=min(0.1, 3.0 / (top - vmin))))
    image = ax.imshow(significance, origin="lower", cmap="magma", norm=norm)
    colorbar = fig.colorbar(image, ax=ax, label="significance (σ)", shrink=0.8)
    ticks = [t for t in _COLORBAR_TICKS if vmin <= t <= top]
    colorbar.set_ticks(ticks)
    # the stretch crowds the high values: labels that would touch are left out (0, decades, 5, 2 kept first)
    colorbar.ax.yaxis.set_major_formatter(thinned_formatter(lambda v: f"{v:g}".replace("-", "\N{MINUS SIGN}")))
    ax.coords[0].set_axislabel("RA")
    ax.coords[1].set_axislabel("Dec")
    ax.coords.grid(color="white", alpha=0.25, linestyle=":")
    band = ""
    if "E_MIN" in mosaic.meta:
        band = f" {mosaic.meta['E_MIN']:g}–{mosaic.meta['E_MAX']:g} keV"
    label = title or f"{mosaic.meta.get('INSTRUME', '')}{band}"
    if mosaic.simulated:
        label += "  [SIMULATED DATA]"
    ax.set_title(label)
    if sources is not None and len(sources):
        _label_sources(ax, sources, fontsize=label_fontsize, own_figure=own_figure)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _label_sources(ax, sources: Table, *, fontsize: float, own_figure: bool) -> None:
    """Circle the sources and label them without overlaps (names, else numbers explained in a key)."""
    import matplotlib.patheffects as effects

    from .plotting import place_labels

    order = np.arange(len(sources))
    if "significance" in sources.colnames:
        order = np.argsort(-np.nan_to_num(np.asarray(sources["significance"], dtype=float), nan=-np.inf), kind="stable")
    rows = sources[order]
    new = np.asarray(rows["new_source"], dtype=bool)
    marker_size = 14.0
    for colour, chosen in (("lime", ~new), ("red", new)):
        if chosen.any():
            ax.plot(
                np.asarray(rows["x"])[chosen],
                np.asarray(rows["y"])[chosen],
                linestyle="none",
                marker="o",
                markersize=marker_size,
                markerfacecolor="none",
                markeredgecolor=colour,
            )
    names = [str(name) for name in rows["name"]]
    style = dict(color="white", path_effects=[effects.withStroke(linewidth=2.0, foreground="black")])
    fig = ax.figure
    placement = place_labels(
        ax, rows["x"], rows["y"], names, marker_radius_pt=marker_size / 2, fontsize=fontsize, **style
    )
    entries = [f"{number}  {names[k]}" for k, number in placement.numbered]
    if placement.unlabelled:
        entries.append(f"{len(placement.unlabelled)} more without room (source table)")
    if entries:
        _add_key(ax, entries, fontsize=fontsize, own_figure=own_figure)
        fig.draw_without_rendering()
        if np.max(np.abs(np.subtract(ax.bbox.bounds, placement.frame))) > 1.0:
            log.warning("the key of numbered sources moved the map: the source labels may overlap")
    log.debug(
        "%d sources: %d named, %d numbered, %d unlabelled",
        len(rows),
        len(placement.named),
        len(placement.numbered),
        len(placement.unlabelled),
    )


def _add_key(ax, entries: list[str], *, fontsize: float, own_figure: bool) -> None:
    """The key of the numbered sources, in a column added to the right of a figure made here.

    The layout the labels were placed for is frozen (layout engine ``none``) and the figure widened by the
    key's width, every axes keeping its size and place in inches, so the labels stay valid. On a caller's axes
    the key goes below the axes, outside the layout.
    """
    from matplotlib.lines import Line2D

    from .plotting import renderer_of

    fig = ax.figure
    handles = [Line2D([], [], linestyle="none")] * len(entries)
    width, height = fig.get_size_inches()
    rows = max(1, int(0.85 * height * 72.0 / (1.5 * fontsize)))
    options = dict(
        fontsize=fontsize,
        ncols=math.ceil(len(entries) / rows),
        handlelength=0,
        handletextpad=0,
        title="sources by number",
        title_fontsize=fontsize,
        frameon=False,
    )
    if own_figure:
        # freeze the layout the labels were placed for, then widen the figure by the key's width
        fig.set_layout_engine("none")
        key = fig.legend(handles, entries, loc="upper left", bbox_to_anchor=(1.0, 0.95), **options)
        key_width = key.get_window_extent(renderer_of(fig)).width / fig.dpi + 0.15
        factor = width / (width + key_width)
        for axes in fig.axes:
            for original in (True, False):
                box = axes.get_position(original=original)
                axes.set_position(
                    [box.x0 * factor, box.y0, box.width * factor, box.height],
                    which="original" if original else "active",
                )
        fig.set_figwidth(width + key_width)
        key.set_bbox_to_anchor((factor, 0.95), transform=fig.transFigure)
    else:
        key = ax.legend(handles, entries, loc="upper center", bbox_to_anchor=(0.5, -0.12), **options)
        key.set_in_layout(False)


def write_products(
    sky: SkyMosaic,
    sources: Table,
    output_dir: Path | str,
    *,
    params,
    target,
    provenance: dict,
    figure=None,
    stem: str = "mosaic",
) -> list:
    """Write a long-term mosaic's products and describe them.

    Writes ``<stem>.fits`` (the maps), ``<stem>.png`` (``figure``, or a new plot), ``sources.ecsv``
    and ``sources.reg`` (DS9) into ``output_dir``.

    Parameters
    ----------
    sky : SkyMosaic
        The combined mosaic.
    sources : astropy.table.Table
        Its detected sources (:func:`find_sources`).
    output_dir : path-like
        Where the files go.
    params : mapping or parameter model
        The run's parameters (instrument, band, period, ...).
    target : integral_workflows.targets.Target
        The field's target (name and position).
    provenance : dict
        FITS provenance cards.
    figure : matplotlib.figure.Figure, optional
        The plot to save; made here if not given.
    stem : str
        File name of the mosaic, without suffix.

    Returns
    -------
    list of integral_workflows.products.Product
        The image (with its plot, regions and sources table), the sources table and the region file.
    """
    import matplotlib.pyplot as plt

    from .products import Product, instrument_key, long_term_identity

    out = Path(output_dir)
    # the PSF the rates were measured with (find_sources), in the image's header too
    psf_cards = {key: sources.meta[key] for key in _PSF_KEYWORDS if key in sources.meta}
    fits_path = sky.write(out / f"{stem}.fits", provenance={**provenance, **psf_cards}, overwrite=True)
    png = out / f"{stem}.png"
    if figure is None:
        figure = plot(sky, sources=sources, title=target.name)
        figure.savefig(png, dpi=120, bbox_inches="tight")
        plt.close(figure)
    else:
        figure.savefig(png, dpi=120, bbox_inches="tight")
    table = out / "sources.ecsv"
    sources.write(table, overwrite=True)
    region = write_region_file(sources, out / "sources.reg")
    instrument = instrument_key(params["instrument"], params.get("jemx_unit", 1))
    named = [str(row["name"]) for row in sources if not row["new_source"]] if len(sources) else []
    common = dict(
        instrument=instrument,
        source=target.name,
        band=(params["E1_keV"], params["E2_keV"]),
        period=(params["T1"], params["T2"]),
    )
    image = Product(
        path=fits_path,
        kind="image",
        position=(target.ra, target.dec),
        plot=png,
        region=region,
        sources=table,
        identity=long_term_identity(params, instrument=instrument, kind="image"),
        details={"src_names": named},
        **common,
    )
    return [image, Product(path=table, kind="source_table", **common), Product(path=region, kind="region", **common)]
