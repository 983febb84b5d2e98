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

__all__ = ["DEFAULT_PSF_FWHM_DEG", "SIGMA_PER_FWHM", "PixelValue", "PsfFit", "AnnulusCheck", "psf_fwhm_for",
           "pixel_scale_deg", "pixel_value", "fit_psf", "annulus_check", "upper_limits",
           "interpolation_variance_factor", "interpolation_weights", "gaussian_psf_image"]

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


def interpolation_variance_factor(fraction, *, order: str | int = "bicubic", correlation_sigma_pix: float = 0.0
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
    return np.exp(-0.5 * ((columns - x) ** 2 + (rows - y) ** 2) / sigma_pix ** 2)


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
    """

    value: float
    error: float
    raw_value: float
    raw_error: float
    x: float
    y: float
    psf_factor: float = 1.0

    @property
    def significance(self) -> float:
        """value / error."""
        return self.value / self.error if self.error > 0 else float("nan")


def pixel_value(mosaic, position, *, order: str | int = "bicubic", psf_fwhm_deg: float | None = None,
                noise_correlation_fwhm_deg: float | None = None) -> PixelValue:
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
    correlation_fwhm = (noise_correlation_fwhm_deg if noise_correlation_fwhm_deg is not None
                        else (psf_fwhm_deg if psf_fwhm_deg is not None else psf_fwhm_for(mosaic)))
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
    local_variance = float(ndimage.map_coordinates(np.where(np.isfinite(variance), variance, 0.0), local,
                                                   order=1, mode="nearest")[0])
    factor = float(interpolation_variance_factor(x - x0, order=spline, correlation_sigma_pix=correlation_sigma)
                   * interpolation_variance_factor(y - y0, order=spline, correlation_sigma_pix=correlation_sigma))
    raw_error = math.sqrt(max(local_variance * factor, 0.0))
    psf_factor = 1.0
    if psf_fwhm_deg is not None:
        sigma = psf_fwhm_deg * SIGMA_PER_FWHM / pixel
        model = gaussian_psf_image(filled.shape, local[1][0], local[0][0], sigma)
        psf_factor = float(ndimage.map_coordinates(model, local, order=spline, mode="nearest")[0])
    return PixelValue(raw / psf_factor, raw_error / psf_factor, raw, raw_error, x, y, psf_factor)


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
        PSF FWHM used (deg; the template's equivalent when a template was fitted).
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

    @property
    def significance(self) -> float:
        """amplitude / amplitude_error."""
        return self.amplitude / self.amplitude_error if self.amplitude_error > 0 else float("nan")

    def as_dict(self) -> dict:
        """JSON-safe dict."""
        return {key: (float(value) if isinstance(value, (float, np.floating)) else value)
                for key, value in dataclasses.asdict(self).items()}


def _failed_fit(message: str, x: float, y: float, coord: SkyCoord, fwhm: float, fit_position: bool,
                fit_offset: bool) -> PsfFit:
    nan = float("nan")
    return PsfFit(nan, nan, nan, nan, x, y, float(coord.ra.deg), float(coord.dec.deg), nan, fwhm, fit_position,
                  fit_offset, nan, 0, False, message)


def _correlation_matrix(columns: np.ndarray, rows: np.ndarray, sigma_pix: float) -> np.ndarray:
    if sigma_pix <= 0:
        return np.eye(len(columns))
    distance2 = (columns[:, None] - columns[None, :]) ** 2 + (rows[:, None] - rows[None, :]) ** 2
    return np.exp(-0.5 * distance2 / sigma_pix ** 2)


def fit_psf(mosaic, position, *, fwhm_deg: float | None = None, fit_position: bool = False,
            fit_offset: bool = False, box_radius_fwhm: float = 1.5, max_shift_fwhm: float = 0.5,
            noise_correlation_fwhm_deg: float | None = None, template: np.ndarray | None = None) -> PsfFit:
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
    if template is not None and fit_position:
        raise ValueError("a template fit keeps the position fixed: fit_position=False")
    if not (np.isfinite(x0) and np.isfinite(y0)):
        return _failed_fit("position outside the image projection", x0, y0, coord, fwhm, fit_position, fit_offset)
    radius = box_radius_fwhm * fwhm / pixel
    ny, nx = mosaic.intensity.shape
    lo_x, hi_x = max(int(math.floor(x0 - radius)), 0), min(int(math.ceil(x0 + radius)), nx - 1)
    lo_y, hi_y = max(int(math.floor(y0 - radius)), 0), min(int(math.ceil(y0 + radius)), ny - 1)
    if lo_x > hi_x or lo_y > hi_y:
        return _failed_fit("position outside the image", x0, y0, coord, fwhm, fit_position, fit_offset)
    rows, columns = np.mgrid[lo_y:hi_y + 1, lo_x:hi_x + 1]
    data = mosaic.intensity[lo_y:hi_y + 1, lo_x:hi_x + 1]
    variance = mosaic.variance[lo_y:hi_y + 1, lo_x:hi_x + 1]
    inside = ((columns - x0) ** 2 + (rows - y0) ** 2 <= radius ** 2) & np.isfinite(data) & np.isfinite(variance) \
        & (variance > 0)
    columns, rows, data, variance = columns[inside].astype(float), rows[inside].astype(float), data[inside], \
        variance[inside]
    n_free = 1 + (2 if fit_position else 0) + (1 if fit_offset else 0)
    if len(data) < n_free + 2 or not np.any((columns - x0) ** 2 + (rows - y0) ** 2 <= 1.0):
        return _failed_fit("too few valid pixels around the position", x0, y0, coord, fwhm, fit_position,
                           fit_offset)
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
        gaussian = models.Gaussian2D(amplitude=max(float(np.nanmax(data)), 1e-12), x_mean=x0, y_mean=y0,
                                     x_stddev=sigma, y_stddev=sigma, theta=0.0)
        gaussian.x_stddev.fixed = gaussian.y_stddev.fixed = gaussian.theta.fixed = True
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
        model_values = fitted(columns, rows)
        # Jacobian of the free parameters at the solution (analytic for a Gaussian).
        profile = np.exp(-0.5 * ((columns - x) ** 2 + (rows - y) ** 2) / sigma ** 2)
        design = [profile]
        if fit_position:
            design += [amplitude * profile * (columns - x) / sigma ** 2, amplitude * profile * (rows - y) / sigma ** 2]
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
    offset_error = float(errors[index]) if fit_offset else 0.0
    world = mosaic.wcs.pixel_to_world(x, y)
    chi2 = float(np.sum((data - model_values) ** 2 / variance))
    return PsfFit(amplitude, amplitude_error, offset, offset_error, x, y, float(world.ra.deg), float(world.dec.deg),
                  position_error, fwhm, fit_position, fit_offset, chi2, int(len(data)), converged, message)


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
        return {key: float(value) if isinstance(value, (float, np.floating)) else value
                for key, value in dataclasses.asdict(self).items()}


def _robust_std(values: np.ndarray) -> float:
    if len(values) == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def annulus_check(mosaic, position, *, inner_deg: float | None = None, outer_deg: float | None = None
                  ) -> AnnulusCheck:
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
    rows, columns = np.mgrid[lo_y:hi_y + 1, lo_x:hi_x + 1]
    world = mosaic.wcs.pixel_to_world(columns.ravel(), rows.ravel())
    distance = world.separation(coord).deg.reshape(rows.shape)
    intensity = mosaic.intensity[lo_y:hi_y + 1, lo_x:hi_x + 1]
    variance = mosaic.variance[lo_y:hi_y + 1, lo_x:hi_x + 1]
    chosen = (distance >= inner) & (distance <= outer) & np.isfinite(intensity) & np.isfinite(variance) \
        & (variance > 0)
    values = intensity[chosen]
    if len(values) < 5:
        return AnnulusCheck(int(len(values)), inner, outer, nan, nan, nan, nan, nan, nan)
    expected = float(np.sqrt(np.median(variance[chosen])))
    robust = _robust_std(values)
    return AnnulusCheck(int(len(values)), inner, outer, float(np.mean(values)), float(np.std(values)), robust,
                        expected, robust / expected, _robust_std(values / np.sqrt(variance[chosen])))


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
