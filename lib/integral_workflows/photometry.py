"""Photometry on INTEGRAL sky images: sub-pixel values, PSF fits, the variance map checked.

Three measurements of the count rate of a point source at a known sky
position in an image (a :class:`integral_workflows.mosaic.SkyMosaic`: one
ScW, a mosaic, or a body-frame stack):

* :func:`pixel_value`: the intensity interpolated at the exact position
  (proper WCS, sub-pixel, cubic spline; nothing is truncated to a pixel
  index), optionally divided by what the same interpolation makes of the
  peak of a point source there (``psf_fwhm_deg``), since ISGRI's PSF is only
  ~1 pixel σ wide and an interpolated peak between pixels is lower than the
  source's rate (by up to 3 % with a cubic spline, 21 % with a bilinear one);
* :func:`fit_psf`: a weighted least-squares fit (``astropy.modeling``) of a
  Gaussian PSF (12′ FWHM for ISGRI, 3′ for JEM-X by default) plus an
  optional constant offset, with the position fixed or free; or of any
  given template (the effective PSF of a stack) with a fixed position;
* :func:`annulus_check`: the scatter of the intensity in an annulus around
  the position against the variance map, which checks the map.

Errors and noise correlation
----------------------------
Deconvolved coded-mask images have noise correlated over about a PSF
(the local MMODA imitates it: its noise has the PSF's shape). The variance
map gives each pixel's variance, but a fit over several pixels must know
the correlation, or it claims an error √(number of pixels in a PSF) too
small. The errors here come from the sandwich formula
``Cov = A⁻¹ Jᵀ W C W J A⁻¹`` (``A = Jᵀ W J``, ``W`` the inverse variances,
``C`` the noise covariance: the variances with a Gaussian correlation of
FWHM ``noise_correlation_fwhm_deg``, the PSF's by default; 0 means
uncorrelated pixels). For an ISGRI point source it gives an amplitude error
≈ 1.15 × the pixel σ, as it should. The same model gives the variance of an
interpolated value (:func:`interpolation_variance_factor`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy import ndimage

log = logging.getLogger(__name__)

__all__ = [
    "EffectivePsf",
    "measure_psf",
    "regridding_scatter_deg",
    "RESAMPLING_VARIANCE_SPREAD",
    "point_source_factor",
    "DEFAULT_PSF_FWHM_DEG",
    "SIGMA_PER_FWHM",
    "PixelValue",
    "PsfFit",
    "AnnulusCheck",
    "psf_fwhm_for",
    "pixel_scale_deg",
    "pixel_value",
    "fit_psf",
    "annulus_check",
    "upper_limits",
    "interpolation_variance_factor",
    "interpolation_weights",
    "gaussian_psf_image",
]

#: PSF FWHM of the images by instrument (science notes §3): ISGRI 12′, JEM-X 3′.
DEFAULT_PSF_FWHM_DEG = {"isgri": 12.0 / 60.0, "jemx": 3.0 / 60.0}
SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_ORDERS = {"nearest-neighbor": 0, "bilinear": 1, "biquadratic": 2, "bicubic": 3}
#: Half-width of the 1-D impulse responses of spline interpolation (their weights decay as 0.27^k).
_IMPULSE_HALF_WIDTH = 12


def _order(order: str | int) -> int:
    if isinstance(order, (int, np.integer)):
        return int(order)
    try:
        return _ORDERS[order]
    except KeyError:
        raise ValueError(f"order = {order!r}: one of {list(_ORDERS)} or 0-5") from None


def psf_fwhm_for(mosaic_or_instrument) -> float:
    """PSF FWHM (deg) of an image's instrument (``INSTRUME`` IBIS → ISGRI, JMX1/JMX2 → JEM-X) or of a name.

    Parameters
    ----------
    mosaic_or_instrument : SkyMosaic or str
        An image with ``meta['INSTRUME']``, or ``'isgri'``/``'jemx'``.
    """
    if isinstance(mosaic_or_instrument, str):
        key = mosaic_or_instrument.lower()
    else:
        instrume = str(getattr(mosaic_or_instrument, "meta", {}).get("INSTRUME", "IBIS")).upper()
        key = "jemx" if instrume.startswith(("JMX", "JEM")) else "isgri"
    key = "jemx" if key.startswith("jemx") else key
    if key not in DEFAULT_PSF_FWHM_DEG:
        raise ValueError(f"no default PSF for instrument {mosaic_or_instrument!r}")
    return DEFAULT_PSF_FWHM_DEG[key]


def pixel_scale_deg(wcs) -> float:
    """Mean pixel side (deg) of a celestial WCS."""
    return float(np.mean(np.abs(proj_plane_pixel_scales(wcs.celestial))))


def _coord(position) -> SkyCoord:
    if isinstance(position, SkyCoord):
        return position
    ra, dec = position
    return SkyCoord(float(ra) * u.deg, float(dec) * u.deg)


# -- interpolation and its noise ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _impulse_responses(order: int, steps: int = 256) -> np.ndarray:
    """Weights c_k(f) of 1-D spline interpolation at fraction f ∈ [0, 1], k = −K…K: shape (steps + 1, 2K + 1)."""
    half = _IMPULSE_HALF_WIDTH
    fractions = np.linspace(0.0, 1.0, steps + 1)
    weights = np.zeros((steps + 1, 2 * half + 1))
    for k in range(2 * half + 1):
        impulse = np.zeros(2 * half + 1)
        impulse[k] = 1.0
        weights[:, k] = ndimage.map_coordinates(impulse, [half + fractions], order=order, mode="nearest")
    return weights


def interpolation_weights(fraction, *, order: str | int = "bicubic") -> np.ndarray:
    """Weights of the samples k = −K…K in a 1-D spline interpolation at ``fraction`` (0…1) past sample 0.

    Parameters
    ----------
    fraction : array_like
        Fractional positions in [0, 1].
    order : str or int
        As ``reproject_interp``'s ``order``.

    Returns
    -------
    numpy.ndarray
        Shape ``fraction.shape + (2K + 1,)``.
    """
    table = _impulse_responses(_order(order))
    f = np.clip(np.asarray(fraction, dtype=float), 0.0, 1.0) * (table.shape[0] - 1)
    low = np.floor(f).astype(int)
    high = np.minimum(low + 1, table.shape[0] - 1)
    t = (f - low)[..., None]
    return (1.0 - t) * table[low] + t * table[high]


@functools.lru_cache(maxsize=64)
def _variance_factor_table(order: int, correlation_sigma_pix: float, steps: int = 256) -> np.ndarray:
    weights = _impulse_responses(order, steps)
    k = np.arange(weights.shape[1])
    if correlation_sigma_pix > 0:
        correlation = np.exp(-0.5 * ((k[:, None] - k[None, :]) / correlation_sigma_pix) ** 2)
    else:
        correlation = np.eye(len(k))
    return np.einsum("fk,kl,fl->f", weights, correlation, weights)


def interpolation_variance_factor(
    fraction, *, order: str | int = "bicubic", correlation_sigma_pix: float = 0.0
) -> np.ndarray:
    """Variance of an interpolated value over the local pixel variance, along one axis.

    An interpolated value is Σ c_k I_k; its variance is Σ c_k c_l C_kl. With
    a locally constant variance V and a Gaussian noise correlation ρ of
    σ = ``correlation_sigma_pix``, that is V · g(f), and for two axes (spline
    interpolation and the correlation are both separable) V · g(fx) · g(fy).
    g is 1 at whole pixels and dips between them: at half a pixel, bicubic,
    to 0.76 per axis (0.57 for both) for uncorrelated noise and to ~0.97 per
    axis for ISGRI's PSF-correlated noise.

    Parameters
    ----------
    fraction : array_like
        Fractional pixel positions (any real: only the fractional part counts).
    order : str or int
        Interpolation order (``'bilinear'``, ``'bicubic'``...).
    correlation_sigma_pix : float
        σ of the noise correlation in pixels; 0 for uncorrelated pixels.

    Returns
    -------
    numpy.ndarray
        g, same shape as ``fraction``.
    """
    table = _variance_factor_table(_order(order), round(float(correlation_sigma_pix), 4))
    f = np.mod(np.asarray(fraction, dtype=float), 1.0) * (len(table) - 1)
    low = np.floor(f).astype(int)
    high = np.minimum(low + 1, len(table) - 1)
    t = f - low
    return (1.0 - t) * table[low] + t * table[high]


def gaussian_psf_image(shape: Sequence[int], x: float, y: float, sigma_pix: float) -> np.ndarray:
    """A unit-peak circular Gaussian centred at pixel (x, y), sampled at the pixel centres."""
    rows, columns = np.indices(tuple(shape), dtype=float)
    return np.exp(-0.5 * ((columns - x) ** 2 + (rows - y) ** 2) / sigma_pix**2)


# -- pixel value ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PixelValue:
    """The intensity at a sky position.

    Attributes
    ----------
    value, error : float
        Rate and 1σ error (PSF-corrected when a PSF was given), image units.
    raw_value, raw_error : float
        The interpolated intensity and its error, without PSF correction.
    x, y : float
        0-based pixel coordinates of the position (sub-pixel).
    psf_factor : float
        What the interpolation makes of a unit point source at the position (1 without PSF).
    psf_error : float
        The part of ``error`` from the PSF width's uncertainty (in quadrature; 0 when none was given).
    """

    value: float
    error: float
    raw_value: float
    raw_error: float
    x: float
    y: float
    psf_factor: float = 1.0
    psf_error: float = 0.0

    @property
    def significance(self) -> float:
        """value / error."""
        return self.value / self.error if self.error > 0 else float("nan")


def pixel_value(
    mosaic,
    position,
    *,
    order: str | int = "bicubic",
    psf_fwhm_deg: float | None = None,
    noise_correlation_fwhm_deg: float | None = None,
    native_fwhm_deg: float | None = None,
    psf_fwhm_error_deg: float = 0.0,
) -> PixelValue:
    """The intensity and its error at a sky position, interpolated (no truncation to a pixel).

    Parameters
    ----------
    mosaic : SkyMosaic
        An image with ``intensity``, ``variance`` and ``wcs``.
    position : SkyCoord or (ra, dec)
        Where (deg).
    order : str or int
        Spline order of the interpolation (``'bicubic'`` by default; 1 is
        bilinear, as :meth:`SkyMosaic.value_at`).
    psf_fwhm_deg : float, optional
        When given, the value is divided by what the interpolation makes of
        a unit Gaussian point source exactly at the position (the point-source
        rate); None leaves the interpolated intensity as it is.
    noise_correlation_fwhm_deg : float, optional
        FWHM of the noise correlation for the error; the PSF's (given, or the
        instrument's) by default, 0 for uncorrelated pixels.
    native_fwhm_deg : float, optional
        FWHM of the PSF whose peak is the rate (the ScW images'). When given,
        the image's PSF (``psf_fwhm_deg``, e.g. a mosaic's measured one) is
        taken to be that PSF widened with its flux kept, so its peak is
        (native / psf)² of the rate (:func:`point_source_factor`).
    psf_fwhm_error_deg : float
        1σ uncertainty of ``psf_fwhm_deg``: propagated into the rate through
        the correction factor and added to the error in quadrature.

    Returns
    -------
    PixelValue
        NaN values when the position is outside the image or too close to
        missing pixels.
    """
    coord = _coord(position)
    x, y = (float(v) for v in mosaic.wcs.world_to_pixel(coord))
    nan = PixelValue(float("nan"), float("nan"), float("nan"), float("nan"), x, y, float("nan"))
    pixel = pixel_scale_deg(mosaic.wcs)
    correlation_fwhm = (
        noise_correlation_fwhm_deg
        if noise_correlation_fwhm_deg is not None
        else (psf_fwhm_deg if psf_fwhm_deg is not None else psf_fwhm_for(mosaic))
    )
    correlation_sigma = correlation_fwhm * SIGMA_PER_FWHM / pixel
    if not (np.isfinite(x) and np.isfinite(y)):
        return nan
    spline = _order(order)
    # A window of finite pixels around the position: a spline's prefilter would spread a NaN over a whole row.
    half = 4 if spline <= 1 else 8
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    ny, nx = mosaic.intensity.shape
    if not (half <= x0 < nx - half - 1 and half <= y0 < ny - half - 1):
        return nan
    window = (slice(y0 - half, y0 + half + 2), slice(x0 - half, x0 + half + 2))
    intensity, variance = mosaic.intensity[window], mosaic.variance[window]
    core = (slice(half - 1, half + 3), slice(half - 1, half + 3))
    if not (np.all(np.isfinite(intensity[core])) and np.all(np.isfinite(variance[core]))):
        return nan
    filled = np.where(np.isfinite(intensity), intensity, np.nanmean(intensity[core]))
    local = [[y - (y0 - half)], [x - (x0 - half)]]
    raw = float(ndimage.map_coordinates(filled, local, order=spline, mode="nearest")[0])
    local_variance = float(
        ndimage.map_coordinates(np.where(np.isfinite(variance), variance, 0.0), local, order=1, mode="nearest")[0]
    )
    factor = float(
        interpolation_variance_factor(x - x0, order=spline, correlation_sigma_pix=correlation_sigma)
        * interpolation_variance_factor(y - y0, order=spline, correlation_sigma_pix=correlation_sigma)
    )
    raw_error = math.sqrt(max(local_variance * factor, 0.0))
    if psf_fwhm_deg is None:
        return PixelValue(raw, raw_error, raw, raw_error, x, y, 1.0)
    native_pix = None if native_fwhm_deg is None else native_fwhm_deg / pixel

    def factor(fwhm_deg: float) -> float:
        return point_source_factor(
            filled.shape, local[1][0], local[0][0], fwhm_deg / pixel, order=spline, native_fwhm_pix=native_pix
        )

    psf_factor = factor(psf_fwhm_deg)
    psf_error = 0.0
    if psf_fwhm_error_deg > 0:
        # Half the spread of the rate over FWHM ± 1σ (the factor is smooth: as good as a derivative).
        low = factor(max(psf_fwhm_deg - psf_fwhm_error_deg, 0.05 * psf_fwhm_deg))
        high = factor(psf_fwhm_deg + psf_fwhm_error_deg)
        psf_error = 0.5 * abs(raw / high - raw / low)
    error = math.hypot(raw_error / psf_factor, psf_error)
    return PixelValue(raw / psf_factor, error, raw, raw_error, x, y, psf_factor, psf_error)


def point_source_factor(
    shape: Sequence[int],
    x: float,
    y: float,
    fwhm_pix: float,
    *,
    order: str | int = "bicubic",
    native_fwhm_pix: float | None = None,
) -> float:
    """What interpolating an image at pixel (x, y) makes of a point source of unit rate there.

    The source is a circular Gaussian of FWHM ``fwhm_pix`` sampled at the
    pixel centres. Its peak is 1 (a ScW image: the rate is the peak), or,
    given ``native_fwhm_pix``, (native / fwhm)²: the native PSF widened with
    its flux kept, as mosaicking does (each ScW lands on the mosaic's grid
    a fraction of a pixel off, which convolves the PSF and lowers its peak).

    Parameters
    ----------
    shape : sequence of int
        Shape of the window (the position well inside it).
    x, y : float
        Position in the window (0-based pixels).
    fwhm_pix : float
        FWHM of the image's PSF (pixels).
    order : str or int
        Spline order of the interpolation.
    native_fwhm_pix : float, optional
        FWHM of the PSF whose peak is the rate (pixels).

    Returns
    -------
    float
        Divide an interpolated value by this to get the rate.
    """
    model = gaussian_psf_image(shape, x, y, fwhm_pix * SIGMA_PER_FWHM)
    interpolated = float(ndimage.map_coordinates(model, [[y], [x]], order=_order(order), mode="nearest")[0])
    if native_fwhm_pix is None:
        return interpolated
    return interpolated * (float(native_fwhm_pix) / float(fwhm_pix)) ** 2


# -- PSF fit ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PsfFit:
    """The result of :func:`fit_psf`.

    Attributes
    ----------
    amplitude, amplitude_error : float
        The point source's rate (the PSF's peak) and its 1σ error.
    offset, offset_error : float
        The constant background level (0 ± 0 when not fitted).
    x, y : float
        Fitted (or fixed) 0-based pixel position.
    ra, dec : float
        The same on the sky (deg).
    position_error_deg : float
        1σ radial position error (0 when the position was fixed).
    fwhm_deg : float
        PSF FWHM used or fitted (deg; the template's equivalent when a template was fitted).
    fit_position, fit_offset : bool
        What was free.
    chi2 : float
        Σ residual²/variance over the fitted pixels (not a calibrated χ²:
        the pixels are correlated).
    n_pixels : int
        Pixels in the fit.
    converged : bool
        False if the fitter reported a problem or the position hit its bounds.
    message : str
        The fitter's message or the reason of a failure.
    fit_width : bool
        Whether the width was free.
    fwhm_error_deg : float
        1σ error of a fitted FWHM (0 when the width was fixed).
    """

    amplitude: float
    amplitude_error: float
    offset: float
    offset_error: float
    x: float
    y: float
    ra: float
    dec: float
    position_error_deg: float
    fwhm_deg: float
    fit_position: bool
    fit_offset: bool
    chi2: float
    n_pixels: int
    converged: bool
    message: str = ""
    fit_width: bool = False
    fwhm_error_deg: float = 0.0

    @property
    def significance(self) -> float:
        """amplitude / amplitude_error."""
        return self.amplitude / self.amplitude_error if self.amplitude_error > 0 else float("nan")

    def as_dict(self) -> dict:
        """JSON-safe dict."""
        return {
            key: (float(value) if isinstance(value, (float, np.floating)) else value)
            for key, value in dataclasses.asdict(self).items()
        }


def _failed_fit(
    message: str, x: float, y: float, coord: SkyCoord, fwhm: float, fit_position: bool, fit_offset: bool
) -> PsfFit:
    nan = float("nan")
    return PsfFit(
        nan,
        nan,
        nan,
        nan,
        x,
        y,
        float(coord.ra.deg),
        float(coord.dec.deg),
        nan,
        fwhm,
        fit_position,
        fit_offset,
        nan,
        0,
        False,
        message,
    )


def _correlation_matrix(columns: np.ndarray, rows: np.ndarray, sigma_pix: float) -> np.ndarray:
    if sigma_pix <= 0:
        return np.eye(len(columns))
    distance2 = (columns[:, None] - columns[None, :]) ** 2 + (rows[:, None] - rows[None, :]) ** 2
    return np.exp(-0.5 * distance2 / sigma_pix**2)


def fit_psf(
    mosaic,
    position,
    *,
    fwhm_deg: float | None = None,
    fit_position: bool = False,
    fit_offset: bool = False,
    box_radius_fwhm: float = 1.5,
    max_shift_fwhm: float = 0.5,
    noise_correlation_fwhm_deg: float | None = None,
    template: np.ndarray | None = None,
    fit_width: bool = False,
) -> PsfFit:
    """Fit a point source's PSF at (or near) a sky position: its amplitude is the source's rate.

    Parameters
    ----------
    mosaic : SkyMosaic
        The image (``intensity``, ``variance``, ``wcs``).
    position : SkyCoord or (ra, dec)
        The source's position (deg): fixed, or the start of a free fit.
    fwhm_deg : float, optional
        Gaussian PSF FWHM; the instrument's (12′ ISGRI, 3′ JEM-X) by default.
    fit_position : bool
        Let the position move (within ``max_shift_fwhm`` FWHM).
    fit_offset : bool
        Fit a constant background level too.
    box_radius_fwhm : float
        Pixels within this many FWHM of the position enter the fit.
    max_shift_fwhm : float
        Largest move of a free position, in FWHM.
    noise_correlation_fwhm_deg : float, optional
        FWHM of the Gaussian noise correlation for the errors; ``fwhm_deg``
        by default; 0 for uncorrelated pixels.
    template : numpy.ndarray, optional
        A PSF image on the mosaic's grid (e.g. a stack's effective PSF,
        peak at the position) fitted instead of the Gaussian; the position
        is then fixed.
    fit_width : bool
        Let the Gaussian's width (circular) move too, from ``fwhm_deg``
        within a factor 0.4–2.5: the measurement of an image's PSF
        (:func:`measure_psf`). The noise correlation stays ``fwhm_deg``'s.

    Returns
    -------
    PsfFit
        With ``converged`` False and NaN values when the position is outside
        the image or the fit failed.
    """
    from astropy.modeling import fitting, models

    coord = _coord(position)
    fwhm = float(fwhm_deg) if fwhm_deg is not None else psf_fwhm_for(mosaic)
    pixel = pixel_scale_deg(mosaic.wcs)
    sigma = fwhm * SIGMA_PER_FWHM / pixel
    correlation_fwhm = fwhm if noise_correlation_fwhm_deg is None else float(noise_correlation_fwhm_deg)
    correlation_sigma = correlation_fwhm * SIGMA_PER_FWHM / pixel
    x0, y0 = (float(v) for v in mosaic.wcs.world_to_pixel(coord))
    if template is not None and (fit_position or fit_width):
        raise ValueError("a template fit keeps the position and shape fixed: fit_position=fit_width=False")
    if not (np.isfinite(x0) and np.isfinite(y0)):
        return _failed_fit("position outside the image projection", x0, y0, coord, fwhm, fit_position, fit_offset)
    radius = box_radius_fwhm * fwhm / pixel
    ny, nx = mosaic.intensity.shape
    lo_x, hi_x = max(int(math.floor(x0 - radius)), 0), min(int(math.ceil(x0 + radius)), nx - 1)
    lo_y, hi_y = max(int(math.floor(y0 - radius)), 0), min(int(math.ceil(y0 + radius)), ny - 1)
    if lo_x > hi_x or lo_y > hi_y:
        return _failed_fit("position outside the image", x0, y0, coord, fwhm, fit_position, fit_offset)
    rows, columns = np.mgrid[lo_y : hi_y + 1, lo_x : hi_x + 1]
    data = mosaic.intensity[lo_y : hi_y + 1, lo_x : hi_x + 1]
    variance = mosaic.variance[lo_y : hi_y + 1, lo_x : hi_x + 1]
    inside = (
        ((columns - x0) ** 2 + (rows - y0) ** 2 <= radius**2)
        & np.isfinite(data)
        & np.isfinite(variance)
        & (variance > 0)
    )
    columns, rows, data, variance = (
        columns[inside].astype(float),
        rows[inside].astype(float),
        data[inside],
        variance[inside],
    )
    n_free = 1 + (2 if fit_position else 0) + (1 if fit_width else 0) + (1 if fit_offset else 0)
    if len(data) < n_free + 2 or not np.any((columns - x0) ** 2 + (rows - y0) ** 2 <= 1.0):
        return _failed_fit("too few valid pixels around the position", x0, y0, coord, fwhm, fit_position, fit_offset)
    weights = 1.0 / np.sqrt(variance)

    message = ""
    if template is not None:
        shape_values = np.asarray(template, dtype=float)[rows.astype(int), columns.astype(int)]
        design = [shape_values] + ([np.ones_like(data)] if fit_offset else [])
        jacobian = np.stack(design, axis=1)
        normal = jacobian.T @ (jacobian / variance[:, None])
        parameters = np.linalg.solve(normal, jacobian.T @ (data / variance))
        amplitude = float(parameters[0])
        offset = float(parameters[1]) if fit_offset else 0.0
        x, y = x0, y0
        model_values = jacobian @ parameters
        converged = True
        # The template's equivalent FWHM: the Gaussian of the same peak-normalised volume.
        volume = float(np.nansum(template)) / max(float(np.nanmax(template)), 1e-30)
        fwhm = math.sqrt(volume / (2 * math.pi)) / SIGMA_PER_FWHM * pixel
    else:
        gaussian = models.Gaussian2D(
            amplitude=max(float(np.nanmax(data)), 1e-12),
            x_mean=x0,
            y_mean=y0,
            x_stddev=sigma,
            y_stddev=sigma,
            theta=0.0,
        )
        gaussian.theta.fixed = True
        if fit_width:
            gaussian.x_stddev.bounds = (0.4 * sigma, 2.5 * sigma)
            gaussian.y_stddev.tied = lambda m: m.x_stddev_0
        else:
            gaussian.x_stddev.fixed = gaussian.y_stddev.fixed = True
        shift = max_shift_fwhm * fwhm / pixel
        if fit_position:
            gaussian.x_mean.bounds = (x0 - shift, x0 + shift)
            gaussian.y_mean.bounds = (y0 - shift, y0 + shift)
        else:
            gaussian.x_mean.fixed = gaussian.y_mean.fixed = True
        background = models.Const2D(amplitude=0.0)
        background.amplitude.fixed = not fit_offset
        model = gaussian + background
        fitter = fitting.TRFLSQFitter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns on "unsuccessful fit" via AstropyUserWarning: read below
            fitted = fitter(model, columns, rows, data, weights=weights, maxiter=200)
        info = fitter.fit_info or {}
        message = str(info.get("message", ""))
        amplitude = float(fitted.amplitude_0.value)
        x, y = float(fitted.x_mean_0.value), float(fitted.y_mean_0.value)
        offset = float(fitted.amplitude_1.value)
        converged = bool(info.get("status", 1) > 0) if "status" in info else True
        if fit_position and (abs(x - x0) > shift * 0.999 or abs(y - y0) > shift * 0.999):
            converged, message = False, f"the position reached its bound ({max_shift_fwhm} FWHM): {message}"
        if fit_width:
            start_sigma, sigma = sigma, float(fitted.x_stddev_0.value)
            fwhm = sigma / SIGMA_PER_FWHM * pixel
            if not 0.401 * start_sigma < sigma < 2.499 * start_sigma:
                converged, message = False, f"the width reached its bound: {message}"
        model_values = fitted(columns, rows)
        # Jacobian of the free parameters at the solution (analytic for a Gaussian).
        profile = np.exp(-0.5 * ((columns - x) ** 2 + (rows - y) ** 2) / sigma**2)
        design = [profile]
        if fit_position:
            design += [amplitude * profile * (columns - x) / sigma**2, amplitude * profile * (rows - y) / sigma**2]
        if fit_width:
            design.append(amplitude * profile * ((columns - x) ** 2 + (rows - y) ** 2) / sigma**3)
        if fit_offset:
            design.append(np.ones_like(data))
        jacobian = np.stack(design, axis=1)

    # Sandwich covariance with the correlated-noise model (module docstring).
    weighted = jacobian / variance[:, None]
    normal = jacobian.T @ weighted
    try:
        inverse = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return _failed_fit("singular fit (degenerate pixels)", x0, y0, coord, fwhm, fit_position, fit_offset)
    scale = np.sqrt(variance)
    covariance_noise = _correlation_matrix(columns, rows, correlation_sigma) * np.outer(scale, scale)
    middle = weighted.T @ covariance_noise @ weighted
    covariance = inverse @ middle @ inverse
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    amplitude_error = float(errors[0])
    position_error = 0.0
    index = 1
    if fit_position:
        position_error = float(math.hypot(errors[1], errors[2]) * pixel)
        index = 3
    fwhm_error = 0.0
    if fit_width:
        fwhm_error = float(errors[index] / SIGMA_PER_FWHM * pixel)
        index += 1
    offset_error = float(errors[index]) if fit_offset else 0.0
    world = mosaic.wcs.pixel_to_world(x, y)
    chi2 = float(np.sum((data - model_values) ** 2 / variance))
    return PsfFit(
        amplitude,
        amplitude_error,
        offset,
        offset_error,
        x,
        y,
        float(world.ra.deg),
        float(world.dec.deg),
        position_error,
        fwhm,
        fit_position,
        fit_offset,
        chi2,
        int(len(data)),
        converged,
        message,
        fit_width,
        fwhm_error,
    )


# -- an image's effective PSF ------------------------------------------------------------------------------------


#: Relative standard deviation of the variance a bilinear resampling adds along one axis, over uniform sub-pixel
#: phases f: the added variance is f(1 − f) pixel², of mean 1/6 and standard deviation √(1/180), ratio √(1/5).
RESAMPLING_VARIANCE_SPREAD = math.sqrt(0.2)


def regridding_scatter_deg(fwhm_deg: float, native_fwhm_deg: float, n_images: int) -> float:
    """Expected place-to-place scatter of a mosaic's PSF FWHM from regridding its images (deg).

    A mosaic's PSF is the native PSF widened by the resampling of each image
    onto the mosaic grid: at a given place, image k adds along each axis a
    variance v_k that depends on the place's sub-pixel phase in that image's
    grid (f(1 − f) pixel² for a bilinear resampling). The phases of one
    place in the images of different pointings are unrelated, so the local
    added variance is a mean of ``n_images`` draws of v (two axes each, which
    a circular width averages): its relative spread is
    ``RESAMPLING_VARIANCE_SPREAD / √(2 n)`` about the measured mean, the
    excess w² − native² of the measured FWHM w. In FWHM that is
    ``(w² − native²) · RESAMPLING_VARIANCE_SPREAD / (2 w √(2 n))``: 0.04′–0.06′
    for 30–40 ISGRI ScWs widened to ~12.9′, which moves a rate by ~0.7 %.
    Unequal image weights make the effective n smaller; n is the number of
    images (ScWs) combined.

    Parameters
    ----------
    fwhm_deg : float
        The mosaic's measured (mean) PSF FWHM.
    native_fwhm_deg : float
        The images' own PSF FWHM.
    n_images : int
        Images combined (≥ 1).

    Returns
    -------
    float
        1σ of one place's FWHM about ``fwhm_deg`` (0 when the PSF is not wider than the native one).
    """
    if n_images < 1:
        raise ValueError(f"n_images = {n_images}: at least one image")
    excess = max(float(fwhm_deg) ** 2 - float(native_fwhm_deg) ** 2, 0.0)
    return excess * RESAMPLING_VARIANCE_SPREAD / (2.0 * float(fwhm_deg) * math.sqrt(2.0 * n_images))


@dataclasses.dataclass(frozen=True)
class EffectivePsf:
    """The PSF of an image as measured on its bright isolated sources (:func:`measure_psf`), or the default.

    One source's PSF (:meth:`width_at`) is the field's mean with an error
    that includes how much one place of a mosaic differs from the mean
    (:attr:`local_scatter_deg`), or, for a source whose own free-width fit is
    more precise than that, the source's own width.

    Attributes
    ----------
    fwhm_deg : float
        FWHM of the image's (Gaussian-equivalent) PSF.
    fwhm_error_deg : float
        1σ error of ``fwhm_deg`` (of the weighted mean; 0 for the default).
    scatter_deg : float
        Source-to-source scatter of the fitted widths beyond their fit errors
        (DerSimonian-Laird): the PSF's true place-to-place scatter plus what
        the free-width fits do not model (crowding, background structure,
        a non-Gaussian profile). Noisy with a few sources.
    native_fwhm_deg : float
        The instrument's PSF in ScW images, whose peak is a source's rate.
    source : str
        ``'measured'``, ``'default'`` (no usable source: ``fwhm_deg`` is the
        native PSF) or ``'given'``.
    n_sources : int
        Sources measured.
    names : tuple of str
        Their names, when known.
    n_images : int
        Images (ScWs) combined in the mosaic, 0 when unknown: gives
        :attr:`regridding_scatter_deg`.
    fits : tuple of (ra, dec, fwhm, fwhm_error)
        The sources' own free-width fits (deg), for :meth:`width_at`.
    """

    fwhm_deg: float
    fwhm_error_deg: float
    scatter_deg: float
    native_fwhm_deg: float
    source: str
    n_sources: int = 0
    names: tuple = ()
    n_images: int = 0
    fits: tuple = ()

    @property
    def regridding_scatter_deg(self) -> float:
        """Expected place-to-place scatter of the FWHM (:func:`regridding_scatter_deg`); 0 when not known."""
        if self.n_images < 1 or self.source != "measured":
            return 0.0
        return regridding_scatter_deg(self.fwhm_deg, self.native_fwhm_deg, self.n_images)

    @property
    def local_scatter_deg(self) -> float:
        """How much one place's PSF differs from the mean (deg).

        The regridding expectation when the number of images is known (robust:
        the fitted widths' scatter also holds fit systematics, and is noisy),
        else the measured scatter ``scatter_deg`` (conservative).
        """
        return self.regridding_scatter_deg if self.n_images >= 1 else self.scatter_deg

    @property
    def fit_systematic_deg(self) -> float:
        """The part of the fitted widths' scatter that is not the PSF's (deg).

        √(scatter² − regridding scatter²), or the whole scatter when the
        number of images is unknown.
        """
        if self.n_images < 1:
            return self.scatter_deg
        return math.sqrt(max(self.scatter_deg**2 - self.regridding_scatter_deg**2, 0.0))

    @property
    def source_error_deg(self) -> float:
        """Uncertainty of one source's PSF taken as the mean: the mean's error and the local scatter in quadrature."""
        return math.hypot(self.fwhm_error_deg, self.local_scatter_deg)

    def width_at(self, position, *, match_radius_fwhm: float = 0.1) -> tuple[float, float]:
        """The PSF FWHM of a source at ``position`` and its 1σ error (deg).

        The field's mean with :attr:`source_error_deg`, unless the source was
        measured (its free-width fit is within ``match_radius_fwhm`` native
        FWHM) and its own width is the more precise: its fit error with the
        fits' systematic (:attr:`fit_systematic_deg`) in quadrature below
        :attr:`source_error_deg`. Then its own width and that error.

        Parameters
        ----------
        position : SkyCoord or (ra, dec)
            The source.
        match_radius_fwhm : float
            How close a fit must be, in native FWHM.

        Returns
        -------
        (float, float)
        """
        field = (self.fwhm_deg, self.source_error_deg)
        if not self.fits:
            return field
        coord = _coord(position)
        ra, dec, widths, errors = (np.array(column, dtype=float) for column in zip(*self.fits))
        distance = coord.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg
        nearest = int(np.argmin(distance))
        if distance[nearest] > match_radius_fwhm * self.native_fwhm_deg:
            return field
        own_error = math.hypot(errors[nearest], self.fit_systematic_deg)
        return (float(widths[nearest]), own_error) if own_error < field[1] else field

    def meta(self) -> dict:
        """Metadata keywords, FITS-ready.

        PSF_FWHM, PSF_ERR, PSF_SCAT, PSF_LOC (:attr:`local_scatter_deg`),
        PSF_NAT (deg), PSF_SRC, PSF_NSRC, PSF_NIMG.
        """
        return {
            "PSF_FWHM": float(self.fwhm_deg),
            "PSF_ERR": float(self.fwhm_error_deg),
            "PSF_SCAT": float(self.scatter_deg),
            "PSF_LOC": float(self.local_scatter_deg),
            "PSF_NAT": float(self.native_fwhm_deg),
            "PSF_SRC": self.source,
            "PSF_NSRC": int(self.n_sources),
            "PSF_NIMG": int(self.n_images),
        }

    @classmethod
    def from_meta(cls, meta) -> EffectivePsf | None:
        """Read back :meth:`meta` (a table's or a FITS header's); None when absent.

        The sources' own fits are not kept there: every source then gets the
        field's PSF.
        """
        if "PSF_FWHM" not in meta:
            return None
        return cls(
            float(meta["PSF_FWHM"]),
            float(meta.get("PSF_ERR", 0.0)),
            float(meta.get("PSF_SCAT", 0.0)),
            float(meta.get("PSF_NAT", meta["PSF_FWHM"])),
            str(meta.get("PSF_SRC", "given")),
            int(meta.get("PSF_NSRC", 0)),
            n_images=int(meta.get("PSF_NIMG", 0)),
        )


def measure_psf(
    mosaic,
    positions,
    *,
    significances: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    neighbours=None,
    min_significance: float = 20.0,
    isolation_fwhm: float = 3.0,
    box_radius_fwhm: float = 2.0,
    native_fwhm_deg: float | None = None,
    n_images: int | None = None,
) -> EffectivePsf:
    """Measure an image's PSF: a free-width Gaussian fitted to each bright isolated source, combined.

    Mosaicking widens the PSF (each ScW lands on the mosaic grid a fraction
    of a pixel off; real OSA mosaics as the local MMODA's), by an amount that
    depends on the grids and the resampling, so it is measured rather than
    assumed. Each source brighter than ``min_significance`` with no other
    source between 0.5 and ``isolation_fwhm`` native FWHM of it gets a
    Gaussian fit with free amplitude, position, width and background
    (:func:`fit_psf`). The widths are combined with inverse-variance
    weights, after adding in quadrature the source-to-source scatter that
    the fit errors do not explain (DerSimonian-Laird); the error of the mean
    is that of those weights. Without such a source the native PSF is
    returned with ``source='default'`` and a warning is logged.

    One source's PSF differs from that mean (each place of a mosaic is
    widened by its own sub-pixel phases): given the number of images
    combined, by the regridding expectation
    (:func:`regridding_scatter_deg`), otherwise by the fitted widths'
    scatter. The sources' own fits are kept: a source whose own width is
    known better than that uses it (:meth:`EffectivePsf.width_at`).

    Parameters
    ----------
    mosaic : SkyMosaic
        The image.
    positions : SkyCoord
        Candidate sources (e.g. the detected ones).
    significances : sequence of float, optional
        Their significances; read from the significance map when not given.
    names : sequence of str, optional
        Their names (recorded).
    neighbours : SkyCoord, optional
        Other sources that spoil isolation (e.g. catalogue sources seen in
        the image); the candidates count as neighbours of each other.
    min_significance : float
        Only sources at least this significant are fitted.
    isolation_fwhm : float
        No other source within this many native FWHM.
    box_radius_fwhm : float
        Fit radius in native FWHM.
    native_fwhm_deg : float, optional
        The instrument's PSF (:func:`psf_fwhm_for`) by default: start of the
        fits and their noise correlation.
    n_images : int, optional
        Images (ScWs) combined in the mosaic, for the expected place-to-place
        scatter of its PSF; unknown by default.

    Returns
    -------
    EffectivePsf
    """
    native = float(native_fwhm_deg) if native_fwhm_deg is not None else psf_fwhm_for(mosaic)
    images = int(n_images) if n_images is not None else 0
    default = EffectivePsf(native, 0.0, 0.0, native, "default", 0, (), images)
    coords = _coord_array(positions)
    if len(coords) == 0:
        log.warning("no source to measure the PSF on: the default PSF (%.2f′ FWHM) is assumed", native * 60)
        return default
    if significances is None:
        x, y = mosaic.wcs.world_to_pixel(coords)
        significance_map = mosaic.significance
        ix = np.clip(np.rint(np.nan_to_num(x)).astype(int), 0, significance_map.shape[1] - 1)
        iy = np.clip(np.rint(np.nan_to_num(y)).astype(int), 0, significance_map.shape[0] - 1)
        significances = np.nan_to_num(significance_map[iy, ix])
    significances = np.asarray(significances, dtype=float)
    labels = [str(n) for n in names] if names is not None else [f"#{i}" for i in range(len(coords))]
    others = coords
    if neighbours is not None and len(_coord_array(neighbours)):
        extra = _coord_array(neighbours).icrs
        ra = np.concatenate([coords.icrs.ra.deg, extra.ra.deg])
        others = SkyCoord(ra * u.deg, np.concatenate([coords.icrs.dec.deg, extra.dec.deg]) * u.deg)
    widths, errors, used, fits = [], [], [], []
    for i in np.nonzero(significances >= min_significance)[0]:
        distance = coords[i].separation(others).deg
        if np.any((distance > 0.5 * native) & (distance <= isolation_fwhm * native)):
            continue
        fit = fit_psf(
            mosaic,
            coords[i],
            fwhm_deg=native,
            fit_position=True,
            fit_offset=True,
            fit_width=True,
            box_radius_fwhm=box_radius_fwhm,
        )
        if fit.converged and np.isfinite(fit.fwhm_deg) and fit.fwhm_error_deg > 0:
            widths.append(fit.fwhm_deg)
            errors.append(fit.fwhm_error_deg)
            used.append(labels[i])
            # at the candidate's position: the one a rate is then read at (point_source_rate)
            fits.append((float(coords[i].icrs.ra.deg), float(coords[i].icrs.dec.deg), fit.fwhm_deg, fit.fwhm_error_deg))
        else:
            log.debug("PSF fit of %s rejected: %s", labels[i], fit.message)
    if not widths:
        log.warning(
            "no bright (≥ %g σ) isolated source to measure the PSF on: the default PSF (%.2f′ FWHM) is assumed, "
            "and a mosaic's wider PSF would make its point-source rates low",
            min_significance,
            native * 60,
        )
        return default
    mean, error, scatter = _random_effects_mean(np.array(widths), np.array(errors))
    psf = EffectivePsf(mean, error, scatter, native, "measured", len(widths), tuple(used), images, tuple(fits))
    log.info(
        "PSF measured on %d source(s): FWHM %.3f′ ± %.3f′ (fitted widths' scatter %.3f′, one place's %.3f′; "
        "native %.2f′)",
        len(widths),
        mean * 60,
        error * 60,
        scatter * 60,
        psf.local_scatter_deg * 60,
        native * 60,
    )
    return psf


def _random_effects_mean(values: np.ndarray, errors: np.ndarray) -> tuple[float, float, float]:
    """Weighted mean, its error and the extra scatter τ (DerSimonian-Laird) of measurements with errors."""
    weights = 1.0 / errors**2
    mean = float(np.sum(weights * values) / np.sum(weights))
    tau2 = 0.0
    if len(values) > 1:
        q = float(np.sum(weights * (values - mean) ** 2))
        denominator = float(np.sum(weights) - np.sum(weights**2) / np.sum(weights))
        tau2 = max(0.0, (q - (len(values) - 1)) / denominator) if denominator > 0 else 0.0
    weights = 1.0 / (errors**2 + tau2)
    mean = float(np.sum(weights * values) / np.sum(weights))
    return mean, float(1.0 / math.sqrt(np.sum(weights))), math.sqrt(tau2)


def _coord_array(positions) -> SkyCoord:
    if isinstance(positions, SkyCoord):
        return positions if not positions.isscalar else positions.reshape((1,))
    positions = list(positions)
    if not positions:
        return SkyCoord([] * u.deg, [] * u.deg)
    ra, dec = np.asarray(positions, dtype=float).T
    return SkyCoord(ra * u.deg, dec * u.deg)


# -- the variance map checked ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AnnulusCheck:
    """Scatter of the intensity in an annulus against the variance map.

    Attributes
    ----------
    n_pixels : int
        Valid pixels in the annulus.
    inner_deg, outer_deg : float
        Radii of the annulus.
    mean : float
        Mean intensity (a background level, ideally 0).
    scatter : float
        Standard deviation of the intensity.
    robust_scatter : float
        1.4826 × median absolute deviation (insensitive to a few sources).
    expected : float
        √(median variance): what the variance map predicts.
    ratio : float
        ``robust_scatter / expected``: ≈ 1 when the variance map is right.
    significance_std : float
        Robust standard deviation of intensity/√variance in the annulus (≈ 1).
    """

    n_pixels: int
    inner_deg: float
    outer_deg: float
    mean: float
    scatter: float
    robust_scatter: float
    expected: float
    ratio: float
    significance_std: float

    def as_dict(self) -> dict:
        """JSON-safe dict."""
        return {
            key: float(value) if isinstance(value, (float, np.floating)) else value
            for key, value in dataclasses.asdict(self).items()
        }


def _robust_std(values: np.ndarray) -> float:
    if len(values) == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def annulus_check(mosaic, position, *, inner_deg: float | None = None, outer_deg: float | None = None) -> AnnulusCheck:
    """Compare the intensity's scatter in an annulus around ``position`` with the variance map.

    Parameters
    ----------
    mosaic : SkyMosaic
        The image.
    position : SkyCoord or (ra, dec)
        Centre of the annulus (the source).
    inner_deg, outer_deg : float, optional
        Radii; 4 and 12 PSF FWHM by default (0.8°–2.4° for ISGRI), outside
        the source's PSF, close enough for a similar exposure.

    Returns
    -------
    AnnulusCheck
    """
    coord = _coord(position)
    fwhm = psf_fwhm_for(mosaic)
    inner = 4.0 * fwhm if inner_deg is None else float(inner_deg)
    outer = 12.0 * fwhm if outer_deg is None else float(outer_deg)
    x0, y0 = (float(v) for v in mosaic.wcs.world_to_pixel(coord))
    pixel = pixel_scale_deg(mosaic.wcs)
    reach = int(math.ceil(outer / pixel)) + 1
    ny, nx = mosaic.intensity.shape
    lo_x, hi_x = max(int(x0) - reach, 0), min(int(x0) + reach, nx - 1)
    lo_y, hi_y = max(int(y0) - reach, 0), min(int(y0) + reach, ny - 1)
    nan = float("nan")
    if not (np.isfinite(x0) and np.isfinite(y0)) or lo_x > hi_x or lo_y > hi_y:
        return AnnulusCheck(0, inner, outer, nan, nan, nan, nan, nan, nan)
    rows, columns = np.mgrid[lo_y : hi_y + 1, lo_x : hi_x + 1]
    world = mosaic.wcs.pixel_to_world(columns.ravel(), rows.ravel())
    distance = world.separation(coord).deg.reshape(rows.shape)
    intensity = mosaic.intensity[lo_y : hi_y + 1, lo_x : hi_x + 1]
    variance = mosaic.variance[lo_y : hi_y + 1, lo_x : hi_x + 1]
    chosen = (distance >= inner) & (distance <= outer) & np.isfinite(intensity) & np.isfinite(variance) & (variance > 0)
    values = intensity[chosen]
    if len(values) < 5:
        return AnnulusCheck(int(len(values)), inner, outer, nan, nan, nan, nan, nan, nan)
    expected = float(np.sqrt(np.median(variance[chosen])))
    robust = _robust_std(values)
    return AnnulusCheck(
        int(len(values)),
        inner,
        outer,
        float(np.mean(values)),
        float(np.std(values)),
        robust,
        expected,
        robust / expected,
        _robust_std(values / np.sqrt(variance[chosen])),
    )


def upper_limits(value: float, error: float, *, sigmas: Sequence[float] = (2.0, 3.0)) -> dict[float, float]:
    """Upper limits on a flux measured as ``value ± error``: max(value, 0) + k·error for each k.

    A conservative rule (a negative measurement does not make the limit
    tighter than k·error), as the 3σ limits of the EPFL student project.

    Parameters
    ----------
    value, error : float
        The measurement and its 1σ error (including calibration errors if wanted).
    sigmas : sequence of float
        The k's.

    Returns
    -------
    dict
        k → upper limit.
    """
    return {float(k): max(float(value), 0.0) + float(k) * float(error) for k in sigmas}
