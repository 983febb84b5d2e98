"""Moving targets: ScW selection along a body's track and images stacked in the body's frame.

Selection (:func:`select_body_scws`)
-----------------------------------
A planet moves up to ~0.25°/day (Jupiter; Mars and Venus faster), so
whether a ScW saw it depends on the body's position *at that ScW's time*,
not at a monthly or yearly position. The selection

1. computes the track on a daily grid (:mod:`integral_workflows.ephemeris`)
   and covers it with a few cones, each holding a stretch of the track
   within ``cone_radius_deg`` of its centre (Jupiter: ~2 cones per year);
2. asks the ScW-list service once per cone, for the stretch's time window
   and a radius that contains every pointing within ``radius`` of any point
   of the stretch;
3. computes the body's position at every candidate ScW's mid-time
   (vectorised: the full mission takes a fraction of a second) and keeps
   the ScWs whose pointing lies within ``radius`` of it; ``offaxis_deg``
   is then the body's off-axis angle;
4. applies the cuts of fixed sources (:func:`integral_workflows.scw.apply_cuts`),
   with the same report.

The selection uses geocentric positions: INTEGRAL's parallax (≤ 1′ for
Jupiter) does not matter against a radius of degrees; the stacks use the
INTEGRAL-centric positions.

Images (:func:`fetch_scw_images`)
---------------------------------
One MMODA image job per ScW (``session.fetch(request, [scw], s_max=1)``,
concurrent, cached, every ScW accounted for), each asked at the ScW's own
pointing so that the image keeps its own projection.

Stacking (:class:`BodyFrameStack`, :func:`stack_in_body_frame`)
---------------------------------------------------------------
Each ScW image is reprojected (``reproject.reproject_interp``, bicubic) onto
a north-up TAN grid of the image's pixel size centred on the body's position
at that ScW's time, so the body sits on the central pixel of every
reprojected image, and the images are accumulated with inverse-variance
weights in a stream: memory holds the sums of one small grid, whatever the
number of ScWs::

    I = Σ(I_k/V_k) / Σ(1/V_k),   V = 1/Σ(1/V_k),   S = I/√V

Two details make the stack honest:

* **variance of interpolated pixels**: an interpolated value is a weighted
  sum of neighbouring pixels whose noise is correlated over a PSF; its
  variance is the local variance times a factor of the sub-pixel position
  (:func:`integral_workflows.photometry.interpolation_variance_factor`),
  applied to each reprojected variance map, so significance maps stay
  N(0, 1);
* **the effective PSF**: ISGRI's PSF is only ~1 pixel σ wide, so resampling
  lowers and widens a point source's peak (by up to 3 % bicubic, 21 %
  bilinear). A unit point source at the body's exact position is pushed
  through the same reprojection for every ScW and accumulated with the same
  weights: the stack's *template*, the exact PSF of a constant source at
  the body, fitted for the flux (:func:`integral_workflows.photometry.fit_psf`
  with ``template=``), so the stacked flux is unbiased.

Fixed sources (:func:`find_fixed_sources`, :func:`mask_fixed_sources`)
---------------------------------------------------------------------
A source of the fixed sky near the track lands elsewhere in the body's
frame in every ScW and stacks into a streak (Jupiter in 2019, near the
Galactic bulge: significance spread 1.43 over 500 ScWs instead of 1). The
images are combined in the sky frame along stretches of the track, the
catalogue sources detected there are masked in every image before it is
stacked, and a ScW whose body lies inside a mask is left out with the reason.

Images can be scaled per ScW before stacking (e.g. to mCrab with the Crab
rate of their epoch, which cancels the detector's ageing).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel

from . import ephemeris, photometry, scw
from .mosaic import SkyMosaic

log = logging.getLogger(__name__)

__all__ = [
    "TrackCone",
    "track_cones",
    "select_body_scws",
    "brute_force_selection",
    "BodyFrameStack",
    "find_fixed_sources",
    "mask_fixed_sources",
    "mask_radius_deg",
    "StackMeasurement",
    "measure_stack",
    "significance_values",
    "PeriodStacks",
    "plot_significance_histogram",
    "plot_stack",
]

#: Bodies the selection accepts (the Moon's parallax from INTEGRAL reaches tens of degrees: not a geocentric case).
SELECTABLE_BODIES = ("sun", "mercury", "venus", "mars", "jupiter", "saturn", "uranus", "neptune")


# -- selection ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrackCone:
    """One ScW-list query covering a stretch of a body's track.

    Attributes
    ----------
    t1, t2 : float
        Time window, IJD (TT).
    ra, dec : float
        Cone centre (deg): the body's position at the stretch's start.
    reach_deg : float
        Largest distance of the body from the centre during the stretch.
    """

    t1: float
    t2: float
    ra: float
    dec: float
    reach_deg: float

    def query_radius(self, radius: float) -> float:
        """The cone radius holding every pointing within ``radius`` of the body during the stretch."""
        return min(self.reach_deg + float(radius) + 0.05, 180.0)


def track_cones(
    body: str,
    t1_ijd: float,
    t2_ijd: float,
    *,
    cone_radius_deg: float = 15.0,
    step_days: float = 0.5,
    ephemeris_name: str = "auto",
) -> list[TrackCone]:
    """Cover a body's track over [t1, t2] with cones of at most ``cone_radius_deg``.

    Parameters
    ----------
    body : str
        A body name.
    t1_ijd, t2_ijd : float
        Period, IJD.
    cone_radius_deg : float
        Largest distance of the track from a cone's centre.
    step_days : float
        Sampling of the track; the motion between samples is added to each
        cone's reach, so no position is missed.
    ephemeris_name : str
        See :func:`integral_workflows.ephemeris.resolve_ephemeris`.

    Returns
    -------
    list of TrackCone
    """
    n = max(2, int(math.ceil((t2_ijd - t1_ijd) / step_days)) + 1)
    times = np.linspace(t1_ijd, t2_ijd, n)
    ra, dec, _ = ephemeris.geocentric_positions(body, times, ephemeris=ephemeris_name)
    step_motion = float(np.max(ephemeris.separation_deg(ra[:-1], dec[:-1], ra[1:], dec[1:]))) if n > 1 else 0.0
    cones, start = [], 0
    while start < n - 1:
        distance = ephemeris.separation_deg(ra[start], dec[start], ra[start:], dec[start:])
        beyond = np.flatnonzero(distance > cone_radius_deg)
        stop = start + (int(beyond[0]) - 1 if len(beyond) else n - 1 - start)
        stop = max(stop, start + 1)
        reach = float(np.max(distance[: stop - start + 1])) + step_motion
        cones.append(TrackCone(float(times[start]), float(times[stop]), float(ra[start]), float(dec[start]), reach))
        start = stop
    return cones


def select_body_scws(
    parameters: Mapping[str, Any],
    *,
    body: str | None = None,
    url: str | None = None,
    session=None,
    cone_radius_deg: float = 15.0,
    timeout_s: float = scw.DEFAULT_TIMEOUT_S,
    extents_cache: dict[str, int] | None = None,
    use_default_bad_revolutions: bool = True,
) -> tuple[Table, scw.CutReport]:
    """The ScWs whose pointing was within ``radius`` of a moving body at their mid-time, after the usual cuts.

    Parameters
    ----------
    parameters : mapping
        Workflow parameters (``T1``, ``T2``, ``radius``, ``instrument``,
        ``jemx_unit``, ``data_version``, ``scw_source``, the cut settings,
        ``ephemeris``); missing names take their defaults.
    body : str, optional
        The body; ``src_name`` by default.
    url : str, optional
        Dispatcher URL (for ``scw_source='mmoda'``, the ScW-list service).
    session : integral_workflows.session.Session, optional
        The network seam (instead of ``url``).
    cone_radius_deg : float
        Stretch of track per ScW-list query (see :func:`track_cones`).
    timeout_s : float
        Timeout of each HTTP request.
    extents_cache : dict, optional
        Shared revolution-extent cache (:func:`integral_workflows.scw.revolution_extents`).
    use_default_bad_revolutions : bool
        Drop :data:`integral_workflows.scw.DEFAULT_BAD_REVOLUTIONS` too.

    Returns
    -------
    (astropy.table.Table, integral_workflows.scw.CutReport)
        The selected ScWs with the columns of fixed-source selections
        (``offaxis_deg`` = the body's off-axis angle) plus ``body_ra``,
        ``body_dec`` (geocentric, deg) and ``body_distance_au``;
        ``meta['query']`` describes the cones and timings.
    """
    from .parameters.models import default_value

    def value(name):
        return parameters[name] if name in parameters else default_value(name)

    body = ephemeris.canonical_body(body or value("src_name"))
    if body not in SELECTABLE_BODIES:
        raise ValueError(
            f"{body} cannot be selected with geocentric positions (its parallax from INTEGRAL is "
            f"too large); selectable bodies: {SELECTABLE_BODIES}"
        )
    instrument = str(value("instrument")).lower()
    radius = value("radius")
    if radius is None:
        radius = default_value("radius", instrument=instrument)
    radius = float(radius)
    ephemeris_name = str(value("ephemeris"))
    if ephemeris_name == "horizons":
        ephemeris_name = "auto"  # the track for the cones needs no precision: the offline ephemeris is enough
    if str(value("scw_source")).lower() == "mmoda":
        session = scw._mmoda_session(session, url)  # one seam for every cone's query
    started = time.perf_counter()
    t1 = scw._ijd(scw._as_time(value("T1"), "T1"))
    t2 = scw._ijd(scw._as_time(value("T2"), "T2"))
    cones = track_cones(body, t1, t2, cone_radius_deg=cone_radius_deg, ephemeris_name=ephemeris_name)
    tables = []
    for cone in cones:
        try:
            part = scw.query_scws(
                ra=cone.ra,
                dec=cone.dec,
                radius=cone.query_radius(radius),
                t1=cone.t1,
                t2=cone.t2,
                data_version=value("data_version"),
                session=session,
                source=value("scw_source"),
                timeout_s=timeout_s,
            )
        except ValueError as error:
            # scw.query_scws cannot build a table from an empty answer with SW_VER ("zero-size array"): no ScW.
            if "zero-size" not in str(error):
                raise
            continue
        if len(part):
            part.meta = {}
            tables.append(part)
    queried = time.perf_counter()
    if not tables:
        raise ValueError(
            f"no ScW has its pointing within {radius:g} deg of {body.capitalize()} between "
            f"{value('T1')} and {value('T2')}"
        )
    candidates = vstack(tables, metadata_conflicts="silent")
    if len(candidates):
        _, first = np.unique(np.asarray(candidates["scw_id"]), return_index=True)
        candidates = candidates[np.sort(first)]
        candidates = candidates[np.argsort(np.asarray(candidates["tstart"]), kind="stable")]
    body_ra, body_dec, distance = (
        ephemeris.geocentric_positions(
            body, np.asarray(candidates["mjd_mid"], float) - scw.IJD_MJD_OFFSET, ephemeris=ephemeris_name
        )
        if len(candidates)
        else (np.zeros(0), np.zeros(0), np.zeros(0))
    )
    offaxis = (
        ephemeris.separation_deg(
            np.asarray(candidates["ra_x"], float), np.asarray(candidates["dec_x"], float), body_ra, body_dec
        )
        if len(candidates)
        else np.zeros(0)
    )
    candidates["offaxis_deg"] = offaxis
    candidates["body_ra"], candidates["body_dec"] = body_ra, body_dec
    candidates["body_distance_au"] = distance / u.au.to(u.km)
    within = candidates[
        (offaxis < radius) & (np.asarray(candidates["tstart"]) < t2) & (np.asarray(candidates["tstop"]) > t1)
    ]
    positioned = time.perf_counter()
    for name, unit, text in (
        ("offaxis_deg", u.deg, f"angle between {body.capitalize()} (at the ScW's mid-time) and the pointing, deg"),
        ("body_ra", u.deg, "geocentric astrometric right ascension of the body at mid-time"),
        ("body_dec", u.deg, "geocentric astrometric declination of the body at mid-time"),
        ("body_distance_au", u.au, "geocentric distance of the body"),
    ):
        within[name].unit = unit
        within[name].description = text
    data_version = value("data_version")
    source = value("scw_source")
    exclude_belts = bool(value("exclude_radiation_belts"))
    extents = (
        scw.revolution_extents(
            within, session=session, data_version=data_version, source=source, timeout_s=timeout_s, cache=extents_cache
        )
        if exclude_belts and len(within)
        else None
    )
    bad = set(scw._normalise_revolutions(value("bad_revolutions")))
    if use_default_bad_revolutions:
        bad |= set(scw.DEFAULT_BAD_REVOLUTIONS)
    kept, report = scw.apply_cuts(
        within,
        instrument=instrument,
        jemx_unit=int(value("jemx_unit")),
        pointings_only=bool(value("pointings_only")),
        min_good_time_s=value("min_good_time_s"),
        exclude_radiation_belts=exclude_belts,
        revolution_extents=extents,
        bad_revolutions=sorted(bad),
    )
    finished = time.perf_counter()
    report.notes.append(
        f"moving target {body.capitalize()}: its track was covered by {len(cones)} ScW-list "
        f"queries (cones of <= {cone_radius_deg:g} deg of track); {len(candidates)} candidate ScWs, "
        f"{len(within)} with the pointing within {radius:g} deg of the body at their mid-time"
    )
    kept.meta["query"] = {
        "source": source,
        "url": session.url if session is not None else None,
        "body": body.capitalize(),
        "ra": None,
        "dec": None,
        "radius": radius,
        "t1": scw._as_time(value("T1"), "T1").utc.isot,
        "t2": scw._as_time(value("T2"), "T2").utc.isot,
        "t1_ijd": t1,
        "t2_ijd": t2,
        "data_version": data_version,
        "ephemeris": ephemeris_name,
        "cones": [dataclasses.asdict(cone) for cone in cones],
        "n_candidates": int(len(candidates)),
        "n_within_radius": int(len(within)),
        "n_scw": int(len(kept)),
        "elapsed_s": {
            "queries": round(queried - started, 3),
            "positions": round(positioned - queried, 3),
            "cuts": round(finished - positioned, 3),
            "total": round(finished - started, 3),
        },
    }
    kept.meta["cut_report"] = report.as_dict()
    log.info(
        "%s: %d cones, %d candidates, %d within %.1f deg, %d kept in %.2f s",
        body,
        len(cones),
        len(candidates),
        len(within),
        radius,
        len(kept),
        finished - started,
    )
    return kept, report


def brute_force_selection(table: Table, body: str, radius: float, *, ephemeris_name: str = "auto") -> np.ndarray:
    """Which rows of a full ScW list (every pointing) have the body within ``radius`` at mid-time.

    The reference :func:`select_body_scws` is checked against: no cones,
    every pointing of the service's full list.

    Parameters
    ----------
    table : astropy.table.Table
        ScWs from :func:`integral_workflows.scw.query_scws` with ``radius=180``.
    body : str
    radius : float
    ephemeris_name : str

    Returns
    -------
    numpy.ndarray of bool
    """
    ra, dec, _ = ephemeris.geocentric_positions(
        body, np.asarray(table["mjd_mid"], float) - scw.IJD_MJD_OFFSET, ephemeris=ephemeris_name
    )
    return (
        ephemeris.separation_deg(np.asarray(table["ra_x"], float), np.asarray(table["dec_x"], float), ra, dec) < radius
    )


# -- stacking ----------------------------------------------------------------------------------------------------


def frame_wcs(ra: float, dec: float, *, pixel_deg: float, half_size_pix: int) -> WCS:
    """A north-up TAN WCS of (2h+1)² pixels whose central pixel is at (ra, dec)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [float(ra), float(dec)]
    wcs.wcs.crpix = [half_size_pix + 1.0, half_size_pix + 1.0]
    wcs.wcs.cdelt = [-float(pixel_deg), float(pixel_deg)]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (2 * half_size_pix + 1, 2 * half_size_pix + 1)
    return wcs


class BodyFrameStack:
    """Inverse-variance stack of ScW images in a body's frame, accumulated one image at a time.

    Parameters
    ----------
    pixel_deg : float
        Pixel side of the stack (the images' own, normally).
    half_size_deg : float
        The stack reaches this far from the body along each axis.
    psf_fwhm_deg : float
        The instrument's PSF (12′ ISGRI, 3′ JEM-X): shape of the template's
        point source and of the noise correlation.
    order : str
        ``reproject_interp`` order for the intensity (``'bicubic'``).
    noise_correlation_fwhm_deg : float, optional
        FWHM of the images' noise correlation (the PSF's by default; 0 for
        uncorrelated pixels).
    label : str
        Name of the stack (``all``, ``2019``, ``2019-03``...).
    """

    def __init__(
        self,
        *,
        pixel_deg: float,
        half_size_deg: float,
        psf_fwhm_deg: float,
        order: str = "bicubic",
        noise_correlation_fwhm_deg: float | None = None,
        label: str = "all",
    ):
        self.pixel_deg = float(pixel_deg)
        self.half_size_pix = max(3, int(round(half_size_deg / self.pixel_deg)))
        self.shape = (2 * self.half_size_pix + 1,) * 2
        self.psf_fwhm_deg = float(psf_fwhm_deg)
        self.order = order
        correlation = psf_fwhm_deg if noise_correlation_fwhm_deg is None else noise_correlation_fwhm_deg
        self.noise_correlation_fwhm_deg = float(correlation)
        self.label = label
        self._weight = np.zeros(self.shape)
        self._signal = np.zeros(self.shape)
        self._template = np.zeros(self.shape)
        self._exposure = np.zeros(self.shape)
        self.count = 0
        self.skipped: list[str] = []
        self.tstart = math.inf
        self.tstop = -math.inf
        self.reference: tuple[float, float] | None = None
        self.meta: dict = {}

    def frame(self, ra: float, dec: float) -> WCS:
        """The stack's grid for a body at (ra, dec)."""
        return frame_wcs(ra, dec, pixel_deg=self.pixel_deg, half_size_pix=self.half_size_pix)

    def reproject(self, mosaic: SkyMosaic, body_ra: float, body_dec: float) -> dict | None:
        """One image reprojected into the body's frame: intensity, variance, template, exposure, valid mask.

        Returns None when the body is not inside the image.
        """
        from astropy.nddata import Cutout2D
        from reproject import reproject_interp

        body = SkyCoord(body_ra * u.deg, body_dec * u.deg)
        x, y = (float(v) for v in mosaic.wcs.world_to_pixel(body))
        ny, nx = mosaic.shape
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < nx and 0 <= y < ny):
            return None
        # A cut-out around the body: the spline prefilter then costs the stack's size, not the whole field's.
        image_pixel = photometry.pixel_scale_deg(mosaic.wcs)
        size = 2 * int(math.ceil(self.half_size_pix * self.pixel_deg / image_pixel * 1.5)) + 12
        cut = Cutout2D(mosaic.intensity, (x, y), (size, size), wcs=mosaic.wcs, mode="partial", fill_value=np.nan)
        slices = cut.slices_original, cut.slices_cutout
        variance = np.full(cut.shape, np.nan)
        variance[slices[1]] = mosaic.variance[slices[0]]
        exposure = np.zeros(cut.shape)
        exposure[slices[1]] = np.nan_to_num(mosaic.exposure[slices[0]])
        valid_input = np.isfinite(cut.data) & np.isfinite(variance) & (variance > 0)
        filled = np.where(valid_input, cut.data, 0.0)
        target = self.frame(body_ra, body_dec)
        bx, by = (float(v) for v in cut.wcs.world_to_pixel(body))
        sigma_pix = self.psf_fwhm_deg * photometry.SIGMA_PER_FWHM / image_pixel
        point_source = photometry.gaussian_psf_image(cut.shape, bx, by, sigma_pix)
        # Two calls, each resampling a cube (reproject broadcasts over the leading axis): the intensity and the
        # template point source with the chosen order; variance, validity and exposure, smooth, bilinearly (the
        # variance is then corrected for the interpolation, module docstring).
        sharp, footprint = reproject_interp(
            (np.stack([filled, point_source]), cut.wcs), target, shape_out=self.shape, order=self.order
        )
        smooth, _ = reproject_interp(
            (np.stack([np.where(valid_input, variance, 0.0), valid_input.astype(float), exposure]), cut.wcs),
            target,
            shape_out=self.shape,
            order="bilinear",
        )
        intensity, template = sharp
        variance_out, validity, exposure_out = smooth
        footprint = footprint[0]
        rows, columns = np.indices(self.shape)
        in_x, in_y = pixel_to_pixel(target, cut.wcs, columns.ravel().astype(float), rows.ravel().astype(float))
        correlation_sigma = self.noise_correlation_fwhm_deg * photometry.SIGMA_PER_FWHM / image_pixel
        factor = (
            photometry.interpolation_variance_factor(in_x, order=self.order, correlation_sigma_pix=correlation_sigma)
            * photometry.interpolation_variance_factor(in_y, order=self.order, correlation_sigma_pix=correlation_sigma)
        ).reshape(self.shape)
        valid = (footprint > 0) & (validity > 0.999) & np.isfinite(intensity) & (variance_out > 0)
        return {
            "intensity": intensity,
            "variance": variance_out * factor,
            "template": np.nan_to_num(template),
            "exposure": np.nan_to_num(exposure_out),
            "valid": valid,
        }

    def add(
        self,
        mosaic: SkyMosaic,
        body_ra: float,
        body_dec: float,
        *,
        scale: float = 1.0,
        reprojected: dict | None = None,
        scw_id: str = "",
    ) -> bool:
        """Add one ScW image (or its :meth:`reproject` result), scaled by ``scale`` (e.g. mCrab per ct/s).

        Returns
        -------
        bool
            False when the body was outside the image (recorded in ``skipped``).
        """
        parts = reprojected if reprojected is not None else self.reproject(mosaic, body_ra, body_dec)
        if parts is None or not parts["valid"][self.half_size_pix, self.half_size_pix]:
            self.skipped.append(scw_id)
            return False
        valid = parts["valid"]
        variance = parts["variance"] * scale**2
        weight = np.where(valid, 1.0 / np.where(valid, variance, 1.0), 0.0)
        self._weight += weight
        self._signal += weight * np.where(valid, parts["intensity"] * scale, 0.0)
        self._template += weight * parts["template"]
        self._exposure += np.where(valid, parts["exposure"], 0.0)
        self.count += 1
        if self.reference is None:
            self.reference = (float(body_ra), float(body_dec))
            self.meta = {k: v for k, v in mosaic.meta.items() if k not in ("TSTART", "TSTOP")}
        for key, pick in (("TSTART", min), ("TSTOP", max)):
            if key in mosaic.meta:
                self.meta[key] = pick(self.meta.get(key, mosaic.meta[key]), mosaic.meta[key])
        return True

    def merge(self, other: BodyFrameStack) -> None:
        """Add another stack of the same geometry (e.g. months into a year)."""
        if other.shape != self.shape:
            raise ValueError("stacks of different sizes")
        self._weight += other._weight
        self._signal += other._signal
        self._template += other._template
        self._exposure += other._exposure
        self.count += other.count
        self.skipped += other.skipped
        if self.reference is None:
            self.reference, self.meta = other.reference, dict(other.meta)

    def result(self) -> SkyMosaic:
        """The stack as a :class:`SkyMosaic` (WCS: the frame at the first body position; pixels = body offsets)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            intensity = np.where(self._weight > 0, self._signal / self._weight, np.nan)
            variance = np.where(self._weight > 0, 1.0 / self._weight, np.nan)
        reference = self.reference or (0.0, 0.0)
        meta = dict(self.meta)
        meta.update({"BODYFRAM": True, "NSCW": self.count, "STACK": self.label})
        return SkyMosaic(intensity, variance, self._exposure.copy(), self.frame(*reference), meta)

    def template(self) -> np.ndarray:
        """The stack's effective PSF: a unit constant source at the body as the stack sees it."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._weight > 0, self._template / self._weight, 0.0)

    def nbytes(self) -> int:
        """Memory held by the accumulated maps."""
        return sum(a.nbytes for a in (self._weight, self._signal, self._template, self._exposure))

    def write(self, path, *, provenance: dict | None = None, overwrite: bool = True):
        """Write the stack (four images) plus its template as FITS."""
        hdus = self.result().to_hdulist(provenance=provenance)
        template = fits.ImageHDU(
            np.asarray(self.template(), dtype=np.float32), header=hdus[1].header.copy(), name="TEMPLATE"
        )
        template.header["IMATYPE"] = "PSF_TEMPLATE"
        template.header["BUNIT"] = ""
        hdus.append(template)
        for hdu in hdus[1:]:
            hdu.header["BODYFRAM"] = (True, "pixels are offsets from the moving body")
            hdu.header["COMMENT"] = (
                "Body-frame stack: the central pixel is the body in every ScW; the sky "
                "coordinates hold at the first ScW only."
            )
        hdus.writeto(path, overwrite=overwrite)
        return path


# -- fixed sources along the track -------------------------------------------------------------------------------

#: Columns of the fixed-source table (:func:`find_fixed_sources`).
FIXED_SOURCE_COLUMNS = ("name", "ra", "dec", "significance", "rate", "mask_radius_deg", "segment")


def mask_radius_deg(
    significance, psf_fwhm_deg: float, *, min_radius_fwhm: float = 1.0, residual_sigma: float = 0.5
) -> np.ndarray:
    """Radius beyond which a source's PSF is below ``residual_sigma`` of the map it was detected in.

    A Gaussian PSF of peak significance S falls to ``residual_sigma`` at
    σ_PSF·√(2 ln(S / residual_sigma)); never less than ``min_radius_fwhm`` FWHM.

    Parameters
    ----------
    significance : array-like
        Peak significance of each source in its sky mosaic.
    psf_fwhm_deg : float
    min_radius_fwhm : float
    residual_sigma : float

    Returns
    -------
    numpy.ndarray
        Radii (deg).
    """
    significance = np.atleast_1d(np.asarray(significance, dtype=float))
    sigma_deg = psf_fwhm_deg * photometry.SIGMA_PER_FWHM
    with np.errstate(invalid="ignore", divide="ignore"):
        reach = sigma_deg * np.sqrt(2.0 * np.log(np.maximum(significance / residual_sigma, 1.0)))
    return np.maximum(np.nan_to_num(reach), min_radius_fwhm * psf_fwhm_deg)


def find_fixed_sources(
    images: Iterable[tuple[str, float, SkyMosaic]],
    track: Table,
    *,
    catalog: Table,
    psf_fwhm_deg: float,
    half_size_deg: float,
    threshold: float = 5.0,
    segment_deg: float = 10.0,
    min_radius_fwhm: float = 1.0,
) -> Table:
    """The catalogue sources of the fixed sky that a body-frame stack would smear along the body's track.

    A fixed source near the track lands at a different place of the body's
    frame in every ScW: the stack then holds a streak, and the significance
    map is wider than N(0, 1) (in the Galactic Centre region, markedly). The
    ScW images are combined *in the sky frame*, in segments of the track no
    longer than ``segment_deg`` (one tangent plane each), over the region a
    stack reaches, and the excesses above ``threshold`` σ that match a
    catalogue source are returned with a mask radius
    (:func:`mask_radius_deg`). Only catalogue sources are kept: an
    uncatalogued excess on the track may be the body itself, seen near a
    stationary point of its apparent motion.

    Parameters
    ----------
    images : iterable of (scw_id, ijd, SkyMosaic)
        The ScW images, in time order (a generator: one image at a time).
    track : astropy.table.Table
        ``scw_id``, ``ra``, ``dec`` of the body per ScW.
    catalog : astropy.table.Table
        Known sources (``name``, ``ra``, ``dec``), e.g.
        ``catalog.reference_catalog(0, 0, 180)``.
    psf_fwhm_deg : float
    half_size_deg : float
        Half-size of the body-frame stacks: the sky mosaics reach
        √2 × this plus three PSF FWHM from the track.
    threshold : float
        Detection threshold (σ) in the sky mosaics.
    segment_deg : float
        Longest stretch of the track sharing one sky mosaic.
    min_radius_fwhm : float
        Smallest mask radius, in PSF FWHM.

    Returns
    -------
    astropy.table.Table
        ``name, ra, dec, significance, rate, mask_radius_deg, segment``: one
        row per source (its most significant detection).
    """
    from astropy.nddata import Cutout2D

    from .mosaic import MosaicAccumulator, find_sources

    positions = {str(s): (float(r), float(d)) for s, r, d in zip(track["scw_id"], track["ra"], track["dec"])}
    reach_deg = math.sqrt(2.0) * half_size_deg + 3.0 * psf_fwhm_deg
    found: list[Table] = []
    state = {"accumulator": None, "centre": None, "segment": 0}

    def close_segment() -> None:
        accumulator = state["accumulator"]
        if accumulator is None or accumulator.count == 0:
            return
        sources = find_sources(
            accumulator.result(),
            threshold=threshold,
            catalog=catalog,
            include_new_sources=False,
            n_images=accumulator.count,
        )
        if len(sources):
            sources["segment"] = state["segment"]
            found.append(sources)

    for scw_id, _ijd, image in images:
        ra, dec = positions[str(scw_id)]
        centre = state["centre"]
        if centre is None or ephemeris.separation_deg(centre[0], centre[1], ra, dec) > 0.5 * segment_deg:
            close_segment()
            state.update(accumulator=MosaicAccumulator(), centre=(ra, dec), segment=state["segment"] + 1)
        x, y = (float(v) for v in image.wcs.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg)))
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        size = 2 * int(math.ceil(reach_deg / photometry.pixel_scale_deg(image.wcs))) + 1
        try:
            cut = Cutout2D(image.intensity, (x, y), (size, size), wcs=image.wcs, mode="partial", fill_value=np.nan)
        except ValueError:  # the region does not overlap the image
            continue
        variance = np.full(cut.shape, np.nan)
        variance[cut.slices_cutout] = image.variance[cut.slices_original]
        exposure = np.zeros(cut.shape)
        exposure[cut.slices_cutout] = np.nan_to_num(image.exposure[cut.slices_original])
        state["accumulator"].add(SkyMosaic(cut.data, variance, exposure, cut.wcs, dict(image.meta)))
    close_segment()
    if not found:
        empty = Table(names=FIXED_SOURCE_COLUMNS, dtype=(str, float, float, float, float, float, int))
        empty.meta.update({"threshold": threshold, "segments": state["segment"], "segment_deg": segment_deg})
        return empty
    every = vstack(found, metadata_conflicts="silent")
    every = every[np.argsort(-np.asarray(every["significance"], dtype=float))]
    _, first = np.unique(np.asarray(every["name"]), return_index=True)
    table = every[np.sort(first)]
    table["mask_radius_deg"] = mask_radius_deg(table["significance"], psf_fwhm_deg, min_radius_fwhm=min_radius_fwhm)
    table = table[list(FIXED_SOURCE_COLUMNS)]
    table.meta.update({"threshold": threshold, "segments": state["segment"], "segment_deg": segment_deg})
    log.info(
        "%d fixed sources above %.1f sigma along the track (%d sky segments)", len(table), threshold, state["segment"]
    )
    return table


def mask_fixed_sources(
    parts: dict, frame: WCS, body_ra: float, body_dec: float, fixed_sources: Table
) -> tuple[int, str]:
    """Mark the pixels of a reprojected image within each fixed source's mask radius as invalid.

    Parameters
    ----------
    parts : dict
        A :meth:`BodyFrameStack.reproject` result (its ``valid`` map is changed in place).
    frame : astropy.wcs.WCS
        The body frame the image was reprojected on.
    body_ra, body_dec : float
    fixed_sources : astropy.table.Table
        ``name, ra, dec, mask_radius_deg`` (:func:`find_fixed_sources`).

    Returns
    -------
    (int, str)
        How many sources were masked in this image, and the sources whose
        mask covers the body (``''`` when none): the body's flux cannot be
        told from theirs in that ScW.
    """
    if fixed_sources is None or len(fixed_sources) == 0:
        return 0, ""
    ra = np.asarray(fixed_sources["ra"], dtype=float)
    dec = np.asarray(fixed_sources["dec"], dtype=float)
    radius = np.asarray(fixed_sources["mask_radius_deg"], dtype=float)
    separation = ephemeris.separation_deg(body_ra, body_dec, ra, dec)
    ny, nx = parts["valid"].shape
    pixel = photometry.pixel_scale_deg(frame)
    near = separation <= math.hypot(nx, ny) * 0.5 * pixel + radius
    confused = [f"{fixed_sources['name'][i]} ({separation[i]:.2f} deg)" for i in np.flatnonzero(separation < radius)]
    if not near.any():
        return 0, "; ".join(confused)
    x, y = frame.world_to_pixel(SkyCoord(ra[near] * u.deg, dec[near] * u.deg))
    rows, columns = np.indices((ny, nx))
    for xi, yi, ri in zip(np.atleast_1d(x), np.atleast_1d(y), radius[near] / pixel):
        parts["valid"] &= (columns - xi) ** 2 + (rows - yi) ** 2 > ri**2
    return int(near.sum()), "; ".join(confused)


@dataclasses.dataclass
class StackMeasurement:
    """The flux of a stack at a position (body or control).

    Attributes
    ----------
    label : str
        Stack name.
    where : str
        ``body`` or ``control``.
    n_scw : int
    pixel, pixel_error : float
        Intensity at the position over the template's peak (point-source rate).
    fit, fit_error : float
        Template fit, position fixed, no offset.
    fit_offset, fit_offset_error : float
        Template fit with a constant offset.
    free_fit, free_fit_error : float
        Gaussian (template-equivalent width) with position and offset free.
    free_dx_deg, free_dy_deg : float
        Fitted position relative to the expected one.
    significance : float
        ``fit / fit_error``.
    detected : bool
        ``significance >= detection_sigma``.
    upper_limit_2sigma, upper_limit_3sigma : float
        max(fit, 0) + k·error (NaN when detected).
    exposure_s : float
        Exposure at the position.
    """

    label: str
    where: str
    n_scw: int
    pixel: float
    pixel_error: float
    fit: float
    fit_error: float
    fit_offset: float
    fit_offset_error: float
    free_fit: float
    free_fit_error: float
    free_dx_deg: float
    free_dy_deg: float
    significance: float
    detected: bool
    upper_limit_2sigma: float
    upper_limit_3sigma: float
    exposure_s: float

    def as_dict(self) -> dict:
        """JSON-safe dict."""
        return {
            key: (
                bool(value)
                if isinstance(value, (bool, np.bool_))
                else float(value)
                if isinstance(value, (float, np.floating))
                else value
            )
            for key, value in dataclasses.asdict(self).items()
        }


def _shifted(template: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(template)
    ny, nx = template.shape
    out[max(dy, 0) : ny + min(dy, 0), max(dx, 0) : nx + min(dx, 0)] = template[
        max(-dy, 0) : ny - max(dy, 0), max(-dx, 0) : nx - max(dx, 0)
    ]
    return out


def measure_stack(
    stack: BodyFrameStack, *, offset_pix: tuple[int, int] = (0, 0), where: str = "body", detection_sigma: float = 3.0
) -> StackMeasurement:
    """Measure the flux of a stack at the body (``offset_pix`` (0, 0)) or at a control offset.

    Parameters
    ----------
    stack : BodyFrameStack
    offset_pix : (int, int)
        (dx, dy) of the position from the body, pixels of the stack.
    where : str
        Label of the position.
    detection_sigma : float
        Significance of a detection; below it the upper limits are given.

    Returns
    -------
    StackMeasurement
    """
    image = stack.result()
    template = _shifted(stack.template(), *offset_pix)
    h = stack.half_size_pix
    x, y = h + offset_pix[0], h + offset_pix[1]
    position = image.wcs.pixel_to_world(x, y)
    peak = float(template[y, x])
    nan = float("nan")
    if stack.count == 0 or not np.isfinite(image.variance[y, x]) or peak <= 0:
        return StackMeasurement(stack.label, where, stack.count, *([nan] * 11), False, nan, nan, 0.0)
    pixel = float(image.intensity[y, x]) / peak
    pixel_error = float(math.sqrt(image.variance[y, x])) / peak
    correlation = stack.noise_correlation_fwhm_deg
    fixed = photometry.fit_psf(
        image, position, template=template, fwhm_deg=stack.psf_fwhm_deg, noise_correlation_fwhm_deg=correlation
    )
    with_offset = photometry.fit_psf(
        image,
        position,
        template=template,
        fit_offset=True,
        box_radius_fwhm=2.5,
        fwhm_deg=stack.psf_fwhm_deg,
        noise_correlation_fwhm_deg=correlation,
    )
    equivalent_fwhm = fixed.fwhm_deg if np.isfinite(fixed.fwhm_deg) else stack.psf_fwhm_deg
    free = photometry.fit_psf(
        image,
        position,
        fwhm_deg=equivalent_fwhm,
        fit_position=True,
        fit_offset=True,
        box_radius_fwhm=2.5,
        noise_correlation_fwhm_deg=correlation,
    )
    significance = fixed.amplitude / fixed.amplitude_error if fixed.amplitude_error > 0 else nan
    detected = bool(np.isfinite(significance) and significance >= detection_sigma)
    limits = photometry.upper_limits(fixed.amplitude, fixed.amplitude_error)
    return StackMeasurement(
        label=stack.label,
        where=where,
        n_scw=stack.count,
        pixel=pixel,
        pixel_error=pixel_error,
        fit=fixed.amplitude,
        fit_error=fixed.amplitude_error,
        fit_offset=with_offset.amplitude,
        fit_offset_error=with_offset.amplitude_error,
        free_fit=free.amplitude,
        free_fit_error=free.amplitude_error,
        free_dx_deg=(x - free.x) * stack.pixel_deg,
        free_dy_deg=(free.y - y) * stack.pixel_deg,
        significance=significance,
        detected=detected,
        upper_limit_2sigma=nan if detected else limits[2.0],
        upper_limit_3sigma=nan if detected else limits[3.0],
        exposure_s=float(image.exposure[y, x]),
    )


def significance_values(
    stack: BodyFrameStack, *, exclude_pix: Sequence[tuple[int, int]] = ((0, 0),), exclude_radius_fwhm: float = 2.0
) -> np.ndarray:
    """Significance pixels of a stack, without the discs around given offsets (the body, a control source).

    Parameters
    ----------
    stack : BodyFrameStack
    exclude_pix : sequence of (dx, dy)
        Offsets (pixels) to leave out.
    exclude_radius_fwhm : float
        Radius of the discs left out, in PSF FWHM.

    Returns
    -------
    numpy.ndarray
        Finite significance values.
    """
    image = stack.result()
    significance = image.significance
    rows, columns = np.indices(significance.shape)
    h = stack.half_size_pix
    keep = np.isfinite(significance)
    radius = exclude_radius_fwhm * stack.psf_fwhm_deg / stack.pixel_deg
    for dx, dy in exclude_pix:
        keep &= (columns - h - dx) ** 2 + (rows - h - dy) ** 2 > radius**2
    return significance[keep]


class PeriodStacks:
    """Stacks per period (``year`` or ``month``) filled in time order, one open at a time.

    When a ScW of a new period arrives, the previous period's stack is
    handed to ``on_complete`` and dropped, so memory holds one stack
    whatever the number of periods.

    Parameters
    ----------
    period : {'year', 'month'}
    factory : callable
        ``factory(label)`` → a new :class:`BodyFrameStack`.
    on_complete : callable
        ``on_complete(stack)`` for each finished period.
    """

    def __init__(
        self, period: str, factory: Callable[[str], BodyFrameStack], on_complete: Callable[[BodyFrameStack], None]
    ):
        self.period = period
        self.factory = factory
        self.on_complete = on_complete
        self.current: BodyFrameStack | None = None
        self.completed: list[str] = []

    def label_of(self, ijd: float) -> str:
        """The period label of a time."""
        from .calibration import period_labels

        return str(period_labels([ijd], self.period)[0])

    def add(
        self,
        ijd: float,
        mosaic: SkyMosaic,
        body_ra: float,
        body_dec: float,
        *,
        scale: float = 1.0,
        reprojected: dict | None = None,
        scw_id: str = "",
    ) -> bool:
        """Add a ScW image to its period's stack (ScWs must come in time order)."""
        label = self.label_of(ijd)
        if self.current is None or self.current.label != label:
            if label in self.completed:
                raise ValueError(f"ScWs must come in time order: period {label} was already completed")
            self.close()
            self.current = self.factory(label)
        return self.current.add(mosaic, body_ra, body_dec, scale=scale, reprojected=reprojected, scw_id=scw_id)

    def close(self) -> None:
        """Complete the open period (call once at the end)."""
        if self.current is not None:
            self.completed.append(self.current.label)
            self.on_complete(self.current)
            self.current = None


# -- plots -------------------------------------------------------------------------------------------------------


def plot_significance_histogram(
    samples: Mapping[str, np.ndarray], *, title: str = "", path=None, simulated: bool = False
):
    """Histograms of significance values against N(0, 1), with their mean and standard deviation.

    Parameters
    ----------
    samples : mapping of str to array
        Label → significance values (e.g. ``body stack``, ``control``).
    title : str
    path : str or Path, optional
        Save as PNG.
    simulated : bool
        Mark ``[SIMULATED DATA]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from scipy import stats

    from .plotting import readable_log_axis

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.subplots()
    edges = np.linspace(-6, 6, 61)
    for k, (label, values) in enumerate(samples.items()):
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        ax.hist(
            values,
            bins=edges,
            density=True,
            histtype="step",
            lw=1.5,
            color=f"C{k}",
            label=f"{label}: mean {values.mean():+.3f}, std {values.std():.3f} ({len(values)} px)",
        )
    grid = np.linspace(-6, 6, 400)
    ax.plot(grid, stats.norm.pdf(grid), "k--", lw=1, label="N(0, 1)")
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1)
    readable_log_axis(ax.yaxis)
    ax.set_xlabel("significance (σ)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title + ("  [SIMULATED DATA]" if simulated else ""))
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


def plot_stack(
    stack: BodyFrameStack,
    *,
    title: str = "",
    control_offset_pix: tuple[int, int] | None = None,
    path=None,
    simulated: bool = False,
):
    """The stack's significance map in body-frame offsets (deg), the body at the centre.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = figure.subplots()
    significance = stack.result().significance
    extent_deg = (stack.half_size_pix + 0.5) * stack.pixel_deg
    shown = ax.imshow(
        significance,
        origin="lower",
        cmap="RdBu_r",
        vmin=-5,
        vmax=5,
        extent=(extent_deg, -extent_deg, -extent_deg, extent_deg),
    )
    figure.colorbar(shown, ax=ax, label="significance (σ)")
    ax.plot(0, 0, marker="o", ms=16, mfc="none", mec="k")
    if control_offset_pix is not None:
        ax.plot(
            -control_offset_pix[0] * stack.pixel_deg,
            control_offset_pix[1] * stack.pixel_deg,
            marker="s",
            ms=16,
            mfc="none",
            mec="0.4",
        )
    ax.set_xlabel("east offset from the body (deg)")
    ax.set_ylabel("north offset (deg)")
    ax.set_title(f"{title} ({stack.count} ScWs)" + ("  [SIMULATED DATA]" if simulated else ""))
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


# -- the whole stacking pass ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class StackRun:
    """What :func:`stack_in_body_frame` makes.

    Attributes
    ----------
    total : BodyFrameStack
        All ScWs.
    measurements : astropy.table.Table
        One row per stack (``all``, each year, each month) and position
        (``body``, ``control``): :class:`StackMeasurement` fields.
    per_scw : astropy.table.Table
        One row per ScW: time, body position, off-axis angle, PSF-fit rate at
        the body in the ScW's own image (no resampling) and its error, in
        ct/s and scaled (``flux``), the scale, whether it entered the stacks,
        how many fixed sources were masked in it (``masked_sources``) and why
        it was left out (``not_stacked``, '' when stacked).
    significance_body, significance_control : numpy.ndarray
        Significance pixels of the total stack away from the body, and the
        pixels around the control position.
    control_offset_pix : (int, int)
        The control position's offset from the body (pixels, east positive in x... as the stack's columns).
    unit : str
        Unit of the stacked images after scaling (``mCrab`` or ``ct/s``).
    elapsed_s : float
        Time spent stacking (reprojection, accumulation, photometry).
    """

    total: BodyFrameStack
    measurements: Table
    per_scw: Table
    significance_body: np.ndarray
    significance_control: np.ndarray
    control_offset_pix: tuple[int, int]
    unit: str
    elapsed_s: float

    def measurement(self, label: str = "all", where: str = "body") -> dict:
        """The row of ``measurements`` for a stack and position, as a dict."""
        rows = self.measurements[(self.measurements["label"] == label) & (self.measurements["where"] == where)]
        if len(rows) == 0:
            raise KeyError(f"no measurement of stack {label!r} at {where!r}")
        return {name: rows[name][0] for name in rows.colnames}


def stack_in_body_frame(
    images: Iterable[tuple[str, float, SkyMosaic]],
    track: Table,
    *,
    half_size_deg: float,
    psf_fwhm_deg: float,
    control_offset_deg: float,
    detection_sigma: float = 3.0,
    scale: Callable[[float], float] | None = None,
    unit: str = "ct/s",
    per_year: bool = True,
    per_month: bool = True,
    on_period: Callable[[str, BodyFrameStack], None] | None = None,
    order: str = "bicubic",
    fixed_sources: Table | None = None,
) -> StackRun:
    """Stack ScW images in a body's frame, in one pass, with per-year and per-month stacks and photometry.

    Parameters
    ----------
    images : iterable of (scw_id, ijd, SkyMosaic)
        ScW images **in time order** (a generator: only one image is held at a time).
    track : astropy.table.Table
        The body's position per ScW: ``scw_id``, ``ra``, ``dec`` (as INTEGRAL sees it, e.g.
        :func:`integral_workflows.ephemeris.body_track`).
    half_size_deg : float
        Half-size of the stacks.
    psf_fwhm_deg : float
        The instrument's PSF FWHM.
    control_offset_deg : float
        Offset east of the body of the control position (rounded to whole pixels).
    detection_sigma : float
        Threshold of a detection (below: upper limits).
    scale : callable, optional
        ``scale(ijd)`` → factor applied to a ScW's image (e.g. 1000 / Crab rate → mCrab); 1 by default.
    unit : str
        Unit of the scaled images, for the tables.
    per_year, per_month : bool
        Also make the yearly and monthly stacks (measured as they complete, then dropped).
    on_period : callable, optional
        ``on_period(kind, stack)`` for each completed yearly (``kind='year'``) or monthly stack (e.g. to save it).
    order : str
        Interpolation order of the reprojection.
    fixed_sources : astropy.table.Table, optional
        Sources of the fixed sky to mask in every image before stacking
        (``name, ra, dec, mask_radius_deg``; :func:`find_fixed_sources`). A
        ScW in which the body lies inside a mask is left out of the stacks
        (``per_scw['not_stacked']`` says why).

    Returns
    -------
    StackRun
    """
    started = time.perf_counter()
    positions = {str(s): (float(r), float(d)) for s, r, d in zip(track["scw_id"], track["ra"], track["dec"])}
    total: BodyFrameStack | None = None
    measurements: list[dict] = []
    rows: list[tuple] = []
    control_pix = (0, 0)
    stacks: dict[str, PeriodStacks] = {}

    def new_stack(label: str, pixel: float) -> BodyFrameStack:
        return BodyFrameStack(
            pixel_deg=pixel, half_size_deg=half_size_deg, psf_fwhm_deg=psf_fwhm_deg, order=order, label=label
        )

    def measure(stack: BodyFrameStack, kind: str) -> None:
        for where, offset in (("body", (0, 0)), ("control", control_pix)):
            measurements.append(
                {
                    "kind": kind,
                    **measure_stack(stack, offset_pix=offset, where=where, detection_sigma=detection_sigma).as_dict(),
                }
            )
        if on_period is not None and kind != "all":
            on_period(kind, stack)

    for scw_id, ijd, image in images:
        scw_id = str(scw_id)
        if scw_id not in positions:
            raise KeyError(f"ScW {scw_id} has no body position in the track")
        ra, dec = positions[scw_id]
        if total is None:
            pixel = photometry.pixel_scale_deg(image.wcs)
            total = new_stack("all", pixel)
            # East is towards decreasing column index in a north-up image: the control is at −dx columns.
            control_pix = (-int(round(control_offset_deg / pixel)), 0)
            if per_year:
                stacks["year"] = PeriodStacks(
                    "year", lambda label, p=pixel: new_stack(label, p), lambda stack: measure(stack, "year")
                )
            if per_month:
                stacks["month"] = PeriodStacks(
                    "month", lambda label, p=pixel: new_stack(label, p), lambda stack: measure(stack, "month")
                )
        factor = float(scale(ijd)) if scale is not None else 1.0
        fit = photometry.fit_psf(image, (ra, dec), fwhm_deg=psf_fwhm_deg)
        parts = total.reproject(image, ra, dec)
        masked, confused = 0, ""
        if parts is not None and fixed_sources is not None:
            masked, confused = mask_fixed_sources(parts, total.frame(ra, dec), ra, dec, fixed_sources)
        if confused:
            used, reason = False, f"the body is inside the mask of {confused}"
            total.skipped.append(scw_id)
        else:
            used = total.add(image, ra, dec, scale=factor, reprojected=parts, scw_id=scw_id)
            reason = "" if used else "the body is outside the image or on missing pixels"
            if used:
                for period_stacks in stacks.values():
                    period_stacks.add(ijd, image, ra, dec, scale=factor, reprojected=parts, scw_id=scw_id)
        rows.append(
            (
                scw_id,
                float(ijd),
                ra,
                dec,
                fit.amplitude,
                fit.amplitude_error,
                fit.amplitude * factor,
                fit.amplitude_error * factor,
                factor,
                bool(used),
                masked,
                reason,
            )
        )
    if total is None:
        raise ValueError("no image to stack")
    for period_stacks in stacks.values():
        period_stacks.close()
    measure(total, "all")
    per_scw = Table(
        rows=rows,
        names=(
            "scw_id",
            "ijd",
            "body_ra",
            "body_dec",
            "rate",
            "rate_error",
            "flux",
            "flux_error",
            "scale",
            "stacked",
            "masked_sources",
            "not_stacked",
        ),
        dtype=(str, float, float, float, float, float, float, float, float, bool, int, str),
    )
    per_scw.meta["flux_unit"] = unit
    table = Table(rows=[[m[k] for k in measurements[0]] for m in measurements], names=list(measurements[0]))
    table.meta["unit"] = unit
    order_kind = {"all": 0, "year": 1, "month": 2}
    table = table[
        np.lexsort((np.asarray(table["where"]), np.asarray(table["label"]), [order_kind[k] for k in table["kind"]]))
    ]
    body_values = significance_values(total, exclude_pix=((0, 0), control_pix))
    image = total.result()
    rows_idx, columns_idx = np.indices(total.shape)
    h = total.half_size_pix
    radius = 2.0 * psf_fwhm_deg / total.pixel_deg
    near_control = (columns_idx - h - control_pix[0]) ** 2 + (rows_idx - h - control_pix[1]) ** 2 <= radius**2
    control_values = image.significance[near_control & np.isfinite(image.significance)]
    elapsed = time.perf_counter() - started
    log.info("stacked %d ScWs in the body frame (%d skipped) in %.1f s", total.count, len(total.skipped), elapsed)
    return StackRun(
        total=total,
        measurements=table,
        per_scw=per_scw,
        significance_body=body_values,
        significance_control=control_values,
        control_offset_pix=control_pix,
        unit=unit,
        elapsed_s=elapsed,
    )


def images_from_pieces(pieces: Iterable, times: Mapping[str, float]):
    """(scw_id, ijd, SkyMosaic) of one-ScW jobs in time order, decoded one at a time (a generator).

    Parameters
    ----------
    pieces : iterable of integral_workflows.jobs.Piece
        Finished jobs of one ScW each (``session.fetch(..., s_max=1)``).
    times : mapping
        ScW id → mid-time (IJD), which orders them.

    Yields
    ------
    (str, float, SkyMosaic)
    """
    by_scw = {}
    for piece in pieces:
        if len(piece.scw_ids) != 1:
            raise ValueError(
                f"stacking in a body frame needs one-ScW images; a job holds {len(piece.scw_ids)} ScWs (use s_max=1)"
            )
        by_scw[str(piece.scw_ids[0])] = piece
    for scw_id in sorted(by_scw, key=lambda s: times[s]):
        yield scw_id, float(times[scw_id]), SkyMosaic.from_data_collection(by_scw[scw_id].data_collection())


def fetch_scw_images(
    session,
    parameters: Mapping[str, Any],
    table: Table,
    *,
    description: str = "images per ScW",
    max_concurrent: int | None = None,
):
    """One MMODA image job per ScW, each asked at the ScW's own pointing, run concurrently; one merged record.

    Each image is requested with ``RA``/``DEC`` = its pointing (``ra_x``,
    ``dec_x``), so that a backend which grids images on the requested
    position returns the ScW's own projection, not a resampled one: a
    nearest-neighbour resampling moves a point source by up to half a pixel,
    which for ISGRI's ~1-pixel PSF lowers a PSF-fitted rate by up to ~20 %.
    Every job goes through ``session.fetch(request, [scw], s_max=1)``:
    cached, retried, and every ScW accounted for (done, skipped or failed).

    Parameters
    ----------
    session : integral_workflows.session.Session
    parameters : mapping
        Workflow parameters (band, instrument, OSA version...).
    table : astropy.table.Table
        The ScWs (``scw_id``, ``ra_x``, ``dec_x``).
    description : str
        Label of the progress bar.
    max_concurrent : int, optional
        Jobs in flight at once; the session's by default.

    Returns
    -------
    integral_workflows.jobs.RunRecord
        Pieces and outcomes of every ScW.

    Raises
    ------
    integral_workflows.jobs.BackendUnavailable
        If the backend stops answering.
    integral_workflows.jobs.TooManyFailures
        If more ScWs failed than the session allows (``allowed_failed_fraction``).
    """
    import concurrent.futures

    from tqdm.auto import tqdm

    from . import queries
    from .jobs import BackendUnavailable, RunRecord

    ids = scw.scw_ids(table)
    pointings = {s: (float(r), float(d)) for s, r, d in zip(ids, table["ra_x"], table["dec_x"])}
    merged = RunRecord()
    progress, session.progress = session.progress, False  # one bar for all, not one per ScW
    bar = tqdm(total=len(ids), unit="ScW", desc=description, disable=not progress, dynamic_ncols=True)
    failures: list[BaseException] = []

    def one(scw_id: str):
        ra, dec = pointings[scw_id]
        # failures are counted over all ScWs below, not per one-ScW job
        return session.fetch(
            queries.image_request(parameters, ra=ra, dec=dec),
            [scw_id],
            s_max=1,
            description=scw_id,
            allowed_failed_fraction=1.0,
        )

    try:
        with concurrent.futures.ThreadPoolExecutor(
            max_concurrent or session.max_concurrent, thread_name_prefix="scw-image"
        ) as pool:
            futures = {pool.submit(one, scw_id): scw_id for scw_id in ids}
            for future in concurrent.futures.as_completed(futures):
                try:
                    record = future.result()
                except BackendUnavailable:
                    raise
                except Exception as error:  # noqa: BLE001 - a refused request: record it, keep the others
                    failures.append(error)
                    from .jobs import FAILED, ScwOutcome

                    merged.outcomes[futures[future]] = ScwOutcome(
                        futures[future], FAILED, futures[future], reason=f"{type(error).__name__}: {error}"
                    )
                else:
                    merged.outcomes.update(record.outcomes)
                    merged.jobs.extend(record.jobs)
                    merged.pieces.extend(record.pieces)
                    merged.submissions += record.submissions
                    merged.cache_hits += record.cache_hits
                    merged.retries += record.retries
                bar.update(1)
    finally:
        bar.close()
        session.progress = progress
        merged.finished = time.time()
    if failures and len(failures) == len(ids):
        raise failures[0]
    merged.raise_if_failed(allowed_fraction=getattr(session, "allowed_failed_fraction", 0.0), what=description)
    return merged


# -- the moving-target workflow (notebooks/moving_target.ipynb) ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FluxScale:
    """How stacked images are scaled: to mCrab with a Crab calibration, else left in count rates.

    Attributes
    ----------
    unit : str
        ``mCrab`` or ``ct/s``.
    scale : callable or None
        IJD → factor applied to an image of that time (None: no scaling).
    calibration : integral_workflows.calibration.CrabCalibration or None
        The calibration.
    relative_error : float
        The calibration's median relative error (0 without one).
    """

    unit: str = "ct/s"
    scale: Callable[[float], float] | None = None
    calibration: Any = None
    relative_error: float = 0.0

    @property
    def energy_flux_per_unit(self) -> float | None:
        """erg/cm²/s per mCrab in the calibration's band (Crab-like spectrum), or None."""
        return None if self.calibration is None else self.calibration.band_energy_flux / 1000.0


def flux_scale(calibration, mid_ijd: Sequence[float]) -> FluxScale:
    """The scale of each ScW's image: 1000 / the Crab's rate of its period (mCrab), or none without a calibration.

    Parameters
    ----------
    calibration : integral_workflows.calibration.CrabCalibration or None
        Checked against the instrument and band by the caller.
    mid_ijd : sequence of float
        The ScWs' mid-times.

    Returns
    -------
    FluxScale
    """
    if calibration is None:
        return FluxScale()
    mid_ijd = np.asarray(mid_ijd, dtype=float)
    crab_rate, crab_rate_error, _, calibrated = calibration.crab_rate_at(mid_ijd)
    by_time = {round(float(t), 7): float(r) for t, r in zip(mid_ijd, crab_rate)}
    if (~calibrated).any():
        log.warning("%d ScWs outside the calibrated periods use the nearest one", int((~calibrated).sum()))

    def scale(ijd: float) -> float:
        return 1000.0 / by_time[round(float(ijd), 7)]

    return FluxScale(
        unit="mCrab", scale=scale, calibration=calibration, relative_error=float(np.median(crab_rate_error / crab_rate))
    )


class YearStackWriter:
    """Writes each yearly stack as it completes (``stack_<year>.fits``): pass it as ``on_period``.

    Parameters
    ----------
    output_dir : path-like
        Where the stacks go.
    provenance : dict
        FITS provenance cards.

    Attributes
    ----------
    paths : list of Path
        The stacks written.
    """

    def __init__(self, output_dir, *, provenance: dict):
        from pathlib import Path

        self.output_dir, self.provenance, self.paths = Path(output_dir), provenance, []

    def __call__(self, kind: str, stack: BodyFrameStack) -> None:
        if kind == "year":
            path = self.output_dir / f"stack_{stack.label}.fits"
            stack.write(path, provenance=self.provenance)
            self.paths.append(path)


def fluxes_with_energy(result: StackRun, scale: FluxScale) -> Table:
    """The stacks' measurements, with energy fluxes (erg/cm²/s, Crab-like spectrum) when calibrated."""
    fluxes = result.measurements
    band_flux = scale.energy_flux_per_unit
    if band_flux is not None:
        for name in ("fit", "pixel", "upper_limit_2sigma", "upper_limit_3sigma"):
            fluxes[f"{name}_erg"] = np.asarray(fluxes[name], dtype=float) * band_flux
        fluxes["fit_erg_error"] = band_flux * np.hypot(
            np.asarray(fluxes["fit_error"], dtype=float), scale.relative_error * np.asarray(fluxes["fit"], dtype=float)
        )
    return fluxes


def per_scw_mean(per_scw: Table) -> tuple[float, float]:
    """Inverse-variance weighted mean of the per-ScW fluxes and its error (a cross-check of the stack)."""
    weights = 1.0 / np.asarray(per_scw["flux_error"], dtype=float) ** 2
    flux = np.asarray(per_scw["flux"], dtype=float)
    finite = np.isfinite(weights) & np.isfinite(flux)
    if not finite.any():
        return float("nan"), float("nan")
    return float(np.sum(weights[finite] * flux[finite]) / np.sum(weights[finite])), float(
        1.0 / np.sqrt(np.sum(weights[finite]))
    )


def _verdict(row: Mapping[str, Any], where: str, unit: str) -> str:
    if row["detected"]:
        return (
            f"**{where}: detected** at {row['significance']:.1f}σ: {row['fit']:.3g} ± {row['fit_error']:.2g} "
            f"{unit} (pixel {row['pixel']:.3g} ± {row['pixel_error']:.2g})"
        )
    return (
        f"**{where}: not detected** ({row['significance']:+.1f}σ; {row['fit']:.3g} ± {row['fit_error']:.2g} "
        f"{unit}): upper limits {row['upper_limit_2sigma']:.3g} (2σ), "
        f"{row['upper_limit_3sigma']:.3g} (3σ) {unit}"
    )


def flux_summary(result: StackRun, *, body: str, scale: FluxScale, band_keV: tuple[float, float]) -> str:
    """The flux at the body and at the control position in words (Markdown), with the per-ScW cross-check."""
    summary, control = result.measurement("all", "body"), result.measurement("all", "control")
    lines = [
        _verdict(summary, f"{body}, all {summary['n_scw']} ScWs", scale.unit),
        _verdict(control, "control position", scale.unit),
    ]
    band_flux = scale.energy_flux_per_unit
    if band_flux is not None:
        if summary["detected"]:
            error = math.hypot(summary["fit_error"], scale.relative_error * summary["fit"]) * band_flux
            energy = f"{summary['fit'] * band_flux:.3g} ± {error:.2g} erg/cm²/s"
        else:
            energy = f"3σ upper limit {summary['upper_limit_3sigma'] * band_flux:.3g} erg/cm²/s"
        lines.append(f"In energy flux ({band_keV[0]:g}-{band_keV[1]:g} keV, Crab-like spectrum): {energy}")
    mean, error = per_scw_mean(result.per_scw)
    lines.append(f"Cross-check, weighted mean of the per-ScW fits: {mean:.3g} ± {error:.2g} {scale.unit}")
    return "\n\n".join(lines)


def plot_flux_time(
    result: StackRun, fluxes: Table, *, body: str, unit: str, band_keV: tuple[float, float], simulated: bool = False
):
    """The body's flux over time: every ScW's fit, and the monthly and yearly stacks.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from .calibration import period_bounds
    from .lightcurve import ijd_to_year
    from .plotting import year_axis

    per_scw = result.per_scw
    figure = Figure(figsize=(10, 4), layout="constrained")
    ax = figure.subplots()
    ax.errorbar(
        ijd_to_year(per_scw["ijd"]),
        per_scw["flux"],
        yerr=per_scw["flux_error"],
        fmt=".",
        ms=3,
        lw=0.5,
        alpha=0.5,
        label="per ScW (PSF fit in the ScW's image)",
    )
    for kind, style in (("month", "s"), ("year", "o")):
        rows = fluxes[(fluxes["kind"] == kind) & (fluxes["where"] == "body")]
        if len(rows):
            centres = [0.5 * sum(period_bounds(str(label))) for label in rows["label"]]
            ax.errorbar(
                ijd_to_year(centres), rows["fit"], yerr=rows["fit_error"], fmt=style, ms=6, label=f"{kind}ly stacks"
            )
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("year")
    year_axis(ax.xaxis)
    ax.set_ylabel(f"flux at {body} ({unit})")
    ax.legend(fontsize=8)
    ax.set_title(f"{body} {band_keV[0]:g}-{band_keV[1]:g} keV" + ("  [SIMULATED DATA]" if simulated else ""))
    return figure


def _json_value(value: Any) -> Any:
    return float(value) if isinstance(value, (float, np.floating)) else value


def step_summary(result: StackRun, *, body: str) -> dict:
    """JSON-safe facts of a moving-target run for its step record: the flux at the body and the control, noise."""
    return {
        "body": body,
        "unit": result.unit,
        "stacked": result.total.count,
        "flux": {k: _json_value(v) for k, v in result.measurement("all", "body").items()},
        "control": {k: _json_value(v) for k, v in result.measurement("all", "control").items()},
        "significance_std": float(result.significance_body.std()),
    }
