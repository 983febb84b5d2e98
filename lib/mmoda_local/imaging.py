"""Sky images of single ScWs and mosaics, their source catalogue and FITS form.

The model (planes, noise, mosaics): docs/simulated_sky.md, "Images and mosaics".
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage

from . import CREATOR, ORIGIN
from .instrument import (
    MJDREF,
    Instrument,
    ScwView,
    band_label,
    noise_rng,
    plane_to_sky,
    sky_to_plane,
    tangent_basis,
    unit_vectors,
    vectors_to_radec,
)

log = logging.getLogger(__name__)

#: Largest distance (pixels) of a mosaic edge from the mosaic centre, per axis.
MAX_HALF_PIXELS = 1024
#: New excesses closer than this many PSF FWHM to a known source are attributed to it.
NEW_SOURCE_EXCLUSION_FWHM = 3.0
SIMULATED_COMMENT = "SIMULATED DATA: made by mmoda_local from a simulated sky, not INTEGRAL observations."
CATALOG_COLUMNS = ("meta_ID", "src_names", "significance", "ra", "dec", "NEW_SOURCE", "ISGRI_FLAG", "FLAG", "ERR_RAD")
IMAGE_PLANES = ("INTENSITY", "VARIANCE", "SIGNIFICANCE", "EXPOSURE")
#: OSA's dead-time correction keyword. The simulation's good time is already the live time (no dead time
#: is simulated), so DEADC = 1 and EXPOSURE = ONTIME × DEADC = ONTIME.
DEADC_CARD = (1.0, "dead time not simulated: good time is live time")


def osa_date(ijd: float) -> str:
    """UTC date of an IJD (TT) as OSA writes DATE-OBS/DATE-END: ``YYYY-MM-DDThh:mm:ss`` (no fraction).

    The real mosaic GROUPING of the oda_api TestAPI notebook has TSTART 1169.97844975867 and
    DATE-OBS 2003-03-15T23:27:53: the UTC of TSTART, seconds truncated.
    """
    from .archive import ijd_to_utc_isot

    return ijd_to_utc_isot(float(ijd))[:19]


@dataclasses.dataclass(frozen=True)
class Grid:
    """A north-up TAN pixel grid.

    Column ``j`` (0-based) is at ξ = −pixel·(j + 1 − crpix1), row ``i`` at
    η = pixel·(i + 1 − crpix2) in the tangent plane at (ra0, dec0) (degrees;
    FITS ``CRPIX`` are 1-based).
    """

    ra0: float
    dec0: float
    pixel_deg: float
    nx: int
    ny: int
    crpix1: float
    crpix2: float

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of an image on the grid, (ny, nx)."""
        return self.ny, self.nx

    @functools.cached_property
    def basis(self) -> np.ndarray:
        """Centre, east and north unit vectors of the tangent plane at (ra0, dec0), as rows (computed once)."""
        return tangent_basis(self.ra0, self.dec0)

    def xi(self) -> np.ndarray:
        """ξ of the columns (deg)."""
        return -self.pixel_deg * (np.arange(self.nx) + 1.0 - self.crpix1)

    def eta(self) -> np.ndarray:
        """η of the rows (deg)."""
        return self.pixel_deg * (np.arange(self.ny) + 1.0 - self.crpix2)

    def world_to_pixel(self, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
        """0-based (x = column, y = row) pixel coordinates of sky positions (NaN behind the plane)."""
        xi, eta, _ = sky_to_plane(self.basis, ra_deg, dec_deg)
        return self.crpix1 - 1.0 - xi / self.pixel_deg, self.crpix2 - 1.0 + eta / self.pixel_deg

    def pixel_to_world(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (deg) of 0-based pixel coordinates."""
        xi = -self.pixel_deg * (np.asarray(x, dtype=float) + 1.0 - self.crpix1)
        eta = self.pixel_deg * (np.asarray(y, dtype=float) + 1.0 - self.crpix2)
        return plane_to_sky(self.basis, xi, eta)

    def header_cards(self) -> dict:
        """FITS celestial WCS keywords."""
        return {
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CUNIT1": "deg",
            "CUNIT2": "deg",
            "CRPIX1": float(self.crpix1),
            "CRPIX2": float(self.crpix2),
            "CRVAL1": float(self.ra0),
            "CRVAL2": float(self.dec0),
            "CD1_1": -self.pixel_deg,
            "CD1_2": 0.0,
            "CD2_1": 0.0,
            "CD2_2": self.pixel_deg,
            "RADESYS": "FK5",
            "EQUINOX": 2000.0,
        }

    @classmethod
    def centred(cls, ra0: float, dec0: float, pixel_deg: float, half_x_deg: float, half_y_deg: float) -> Grid:
        """A grid whose central pixel is (ra0, dec0), reaching ±half_x, ±half_y degrees of plane."""
        kx = min(int(math.ceil(half_x_deg / pixel_deg - 1e-9)), MAX_HALF_PIXELS)
        ky = min(int(math.ceil(half_y_deg / pixel_deg - 1e-9)), MAX_HALF_PIXELS)
        return cls(ra0, dec0, pixel_deg, 2 * kx + 1, 2 * ky + 1, kx + 1.0, ky + 1.0)


@dataclasses.dataclass
class SkyImage:
    """An image (one ScW or a mosaic): the four planes, their grid and what went into them.

    Attributes
    ----------
    grid : Grid
    intensity, variance, significance, exposure : ndarray
        float64 planes, shape ``grid.shape``.
    instrument : Instrument
    e1_keV, e2_keV : float
    tstart, tstop : float
        First start and last stop (IJD).
    telapse, ontime : float
        Summed elapsed and good time of the ScWs (s).
    swids : list of str
    """

    grid: Grid
    intensity: np.ndarray
    variance: np.ndarray
    significance: np.ndarray
    exposure: np.ndarray
    instrument: Instrument
    e1_keV: float
    e2_keV: float
    tstart: float
    tstop: float
    telapse: float
    ontime: float
    swids: list

    @property
    def mid_ijd(self) -> float:
        """Middle of the image's time span, (tstart + tstop) / 2 (IJD)."""
        return 0.5 * (self.tstart + self.tstop)

    @property
    def wcs(self):
        """astropy WCS of the image."""
        from astropy.wcs import WCS

        header = fits.Header()
        header["NAXIS"] = 2
        header["NAXIS1"], header["NAXIS2"] = self.grid.nx, self.grid.ny
        for key, value in self.grid.header_cards().items():
            header[key] = value
        return WCS(header)

    def value_at(self, plane: str, ra_deg, dec_deg) -> np.ndarray:
        """Nearest-pixel values of a plane at sky positions (NaN outside the image)."""
        data = getattr(self, plane.lower())
        x, y = self.grid.world_to_pixel(ra_deg, dec_deg)
        x = np.atleast_1d(x)
        y = np.atleast_1d(y)
        inside = np.isfinite(x) & np.isfinite(y)
        col = np.full(x.shape, -1)
        row = np.full(y.shape, -1)
        col[inside] = np.rint(x[inside]).astype(int)
        row[inside] = np.rint(y[inside]).astype(int)
        inside &= (col >= 0) & (col < self.grid.nx) & (row >= 0) & (row < self.grid.ny)
        out = np.full(x.shape, np.nan)
        out[inside] = data[row[inside], col[inside]]
        return out


# --------------------------------------------------------------------------------------------------
# One ScW
# --------------------------------------------------------------------------------------------------
def native_grid(row, instrument: Instrument) -> Grid:
    """The north-up grid of a ScW image: centred on the pointing, holding the rotated field."""
    if instrument.key == "isgri":
        pa = math.radians(float(row["POSANGLE"]))
        half = instrument.zero_response_half_deg * (abs(math.cos(pa)) + abs(math.sin(pa)))
    else:
        half = instrument.field_radius_deg
    return Grid.centred(float(row["RA_SCX"]), float(row["DEC_SCX"]), instrument.pixel_deg, half, half)


@functools.cache
def _kernel_norm(sigma_pixels: float) -> float:
    """√Σk² of the 2-D Gaussian smoothing kernel (makes smoothed white noise unit-variance)."""
    delta = np.zeros(129)
    delta[64] = 1.0
    profile = ndimage.gaussian_filter1d(delta, sigma_pixels, mode="constant")
    return float(np.sum(profile**2))  # (Σk²)^½ of k⊗k = Σ over one axis of k²


def correlated_noise(rng: np.random.Generator, shape, instrument: Instrument, *, dtype=np.float64) -> np.ndarray:
    """Unit-variance noise correlated like a deconvolved coded-mask image (PSF-shaped correlation)."""
    sigma_pixels = noise_sigma_pixels(instrument)
    white = rng.standard_normal(shape, dtype=dtype)
    # 'wrap' keeps the variance uniform up to the edges (no reflected duplicates).
    smoothed = ndimage.gaussian_filter(white, sigma_pixels, mode="wrap")
    smoothed /= _kernel_norm(sigma_pixels)
    return smoothed


def _add_point_sources(image: np.ndarray, grid: Grid, xi, eta, rates, instrument: Instrument):
    """Add r·PSF (peak r at the true position) for each source, on stamps of ±5σ."""
    sigma_pixels = instrument.psf_sigma_deg / instrument.pixel_deg
    reach = int(math.ceil(5.0 * sigma_pixels))
    columns = grid.crpix1 - 1.0 - np.asarray(xi) / grid.pixel_deg
    rows = grid.crpix2 - 1.0 + np.asarray(eta) / grid.pixel_deg
    offsets = np.arange(-reach, reach + 1)
    for col, row, rate in zip(columns, rows, rates):
        if rate == 0 or not (np.isfinite(col) and np.isfinite(row)):
            continue
        c0, r0 = int(round(col)), int(round(row))
        cols = c0 + offsets
        rws = r0 + offsets
        keep_c = (cols >= 0) & (cols < grid.nx)
        keep_r = (rws >= 0) & (rws < grid.ny)
        if not keep_c.any() or not keep_r.any():
            continue
        profile_c = np.exp(-0.5 * ((cols[keep_c] - col) / sigma_pixels) ** 2)
        profile_r = np.exp(-0.5 * ((rws[keep_r] - row) / sigma_pixels) ** 2)
        image[np.ix_(rws[keep_r], cols[keep_c])] += rate * np.outer(profile_r, profile_c)


def scw_image(
    row,
    sky,
    instrument: Instrument,
    e1_keV: float,
    e2_keV: float,
    *,
    seed: int | None = None,
    view: ScwView | None = None,
) -> SkyImage:
    """The image of one ScW.

    Parameters
    ----------
    row : table row or mapping
        ScW record.
    sky : mmoda_local.sky.Sky
    instrument : Instrument
    e1_keV, e2_keV : float
        Energy band.
    seed : int, optional
        Global noise seed.
    view : ScwView, optional
        A ready view of this ScW (saves recomputing the sources in the field).

    Returns
    -------
    SkyImage
    """
    view = view or ScwView(row, sky, instrument)
    grid = native_grid(row, instrument)
    xi = grid.xi()[None, :]
    eta = grid.eta()[:, None]
    pa = math.radians(view.posangle)
    y_inst = xi * math.cos(pa) - eta * math.sin(pa)
    z_inst = xi * math.sin(pa) + eta * math.cos(pa)
    response = instrument.field_response(y_inst, z_inst)
    rates = view.band_rates(e1_keV, e2_keV)
    truth = np.zeros(grid.shape)
    _add_point_sources(truth, grid, view.xi, view.eta, rates, instrument)
    numerator = view.variance_numerator(e1_keV, e2_keV, rates)
    inside = response > 0
    good_time = max(view.good_time, 1e-9)
    variance = np.full(grid.shape, np.nan)
    variance[inside] = numerator / (good_time * response[inside] ** 2)
    rng = noise_rng(sky.seed if seed is None else seed, view.swid, instrument.key, band_label(e1_keV, e2_keV), "image")
    noise = correlated_noise(rng, grid.shape, instrument)
    intensity = np.where(inside, truth + noise * np.sqrt(np.where(inside, variance, 0.0)), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        significance = intensity / np.sqrt(variance)
    exposure = view.good_time * response
    return SkyImage(
        grid=grid,
        intensity=intensity,
        variance=variance,
        significance=significance,
        exposure=exposure,
        instrument=instrument,
        e1_keV=float(e1_keV),
        e2_keV=float(e2_keV),
        tstart=view.tstart,
        tstop=view.tstop,
        telapse=view.telapse,
        ontime=view.good_time,
        swids=[view.swid],
    )


# --------------------------------------------------------------------------------------------------
# Mosaics
# --------------------------------------------------------------------------------------------------
def _rows_of(rows) -> list:
    if hasattr(rows, "colnames"):
        return [rows[i] for i in range(len(rows))]
    return list(rows)


def mosaic_grid(rows, instrument: Instrument, *, centre: tuple[float, float] | None = None) -> Grid:
    """Common grid of several ScWs: extent the union of their fields.

    The tangent point is ``centre`` when given (the request's source: mosaics
    of one source made of different ScWs then share a pixel grid exactly),
    else the mean pointing.
    """
    rows = _rows_of(rows)
    if len(rows) == 1 and centre is None:
        return native_grid(rows[0], instrument)
    pointings = unit_vectors([float(r["RA_SCX"]) for r in rows], [float(r["DEC_SCX"]) for r in rows])
    ra0, dec0 = vectors_to_radec(pointings.sum(axis=0))
    if centre is not None:
        ra0, dec0 = float(centre[0]), float(centre[1])
    basis = tangent_basis(float(ra0), float(dec0))
    xi_all, eta_all = [], []
    for row in rows:
        native = native_grid(row, instrument)
        corner_x = np.array([0.0, native.nx - 1.0, native.nx - 1.0, 0.0])
        corner_y = np.array([0.0, 0.0, native.ny - 1.0, native.ny - 1.0])
        ra, dec = native.pixel_to_world(corner_x, corner_y)
        xi, eta, along = sky_to_plane(basis, ra, dec)
        if np.any(~np.isfinite(xi)) or np.any(along < 0.1):
            log.warning("ScW %s reaches beyond the mosaic's tangent plane; its far side is dropped", row["SWID"])
            limit = MAX_HALF_PIXELS * instrument.pixel_deg
            xi = np.nan_to_num(xi, nan=limit, posinf=limit, neginf=-limit)
            eta = np.nan_to_num(eta, nan=limit, posinf=limit, neginf=-limit)
        xi_all.extend(xi)
        eta_all.extend(eta)
    pixel = instrument.pixel_deg
    # The tolerance absorbs rounding, so that ScWs sharing a pointing share the native grid's size.
    k_east = int(math.ceil(max(xi_all) / pixel - 1e-6))
    k_west = int(math.ceil(-min(xi_all) / pixel - 1e-6))
    k_north = int(math.ceil(max(eta_all) / pixel - 1e-6))
    k_south = int(math.ceil(-min(eta_all) / pixel - 1e-6))
    capped = [min(max(k, 0), MAX_HALF_PIXELS) for k in (k_east, k_west, k_north, k_south)]
    if capped != [k_east, k_west, k_north, k_south]:
        log.warning("mosaic of %d ScWs capped at ±%d pixels from its centre", len(rows), MAX_HALF_PIXELS)
    k_east, k_west, k_north, k_south = capped
    return Grid(float(ra0), float(dec0), pixel, k_east + k_west + 1, k_north + k_south + 1, k_east + 1.0, k_south + 1.0)


@functools.cache
def noise_lag_correlation(sigma_pixels: float) -> float:
    """Correlation of :func:`correlated_noise` between pixels one step apart along an axis.

    The smoothing kernel is k⊗k, so the 2-D correlation is separable: ρ(Δx, Δy) = ρ₁(Δx)·ρ₁(Δy), with
    ρ₁(1) = Σₙ k[n]·k[n+1] / Σₙ k[n]² of the same discrete kernel that makes the noise.
    """
    delta = np.zeros(129)
    delta[64] = 1.0
    profile = ndimage.gaussian_filter1d(delta, sigma_pixels, mode="constant")
    return float(np.sum(profile[:-1] * profile[1:]) / np.sum(profile**2))


def noise_sigma_pixels(instrument: Instrument) -> float:
    """σ (pixels) of the Gaussian smoothing that correlates the image noise (σ_PSF/√2)."""
    return instrument.psf_sigma_deg / instrument.pixel_deg / math.sqrt(2.0)


def _footprint_box(target: Grid, source: Grid) -> tuple[int, int, int, int] | None:
    """Target-pixel bounding box (x0, x1, y0, y1), inclusive and not clipped to the target, of a source grid.

    Computed from the offsets to the target's tangent point, so grids of one
    family (tangent point and pixel size; CRPIX are whole numbers) give the
    same box up to their integer shift. None when part of the source grid lies
    behind the target's tangent plane.
    """
    corner_x = np.array([-0.5, source.nx - 0.5, source.nx - 0.5, -0.5])
    corner_y = np.array([-0.5, -0.5, source.ny - 0.5, source.ny - 0.5])
    ra, dec = source.pixel_to_world(corner_x, corner_y)
    xi, eta, _ = sky_to_plane(target.basis, ra, dec)
    if not (np.all(np.isfinite(xi)) and np.all(np.isfinite(eta))):
        return None
    east, north = -np.asarray(xi) / target.pixel_deg, np.asarray(eta) / target.pixel_deg
    shift_x, shift_y = int(round(target.crpix1 - 1.0)), int(round(target.crpix2 - 1.0))
    return (
        int(math.floor(east.min())) + shift_x,
        int(math.ceil(east.max())) + shift_x,
        int(math.floor(north.min())) + shift_y,
        int(math.ceil(north.max())) + shift_y,
    )


def _source_coordinates(target: Grid, source: Grid, posangle_deg: float, box):
    """Where the target pixel centres fall in a source grid, over the bounding box of its footprint.

    Two gnomonic planes are related by a projective transform: each coordinate
    is an affine function of the target's plane coordinates divided by another,
    a few float32 operations per pixel (float32 keeps ~1e-4 pixel here; mosaic
    planes are float32 in their FITS files).

    Parameters
    ----------
    box : tuple or None
        :func:`_footprint_box` of ``source`` on ``target``.

    Returns
    -------
    (row_slice, col_slice, src_x, src_y, y_inst, z_inst) or None when there is no overlap
        0-based (column, row) coordinates in the source grid, and the instrument-frame coordinates
        (deg; the frame at position angle ``posangle_deg``) of the target pixel centres, as float32
        arrays over ``target[row_slice, col_slice]``. Pixels behind the source plane get coordinates
        far outside any field.
    """
    if box is None:
        x0, x1, y0, y1 = 0, target.nx - 1, 0, target.ny - 1
    else:
        x0, x1 = max(box[0], 0), min(box[1], target.nx - 1)
        y0, y1 = max(box[2], 0), min(box[3], target.ny - 1)
    if x1 < x0 or y1 < y0:
        return None
    xi = np.radians(-target.pixel_deg * (np.arange(x0, x1 + 1) + 1.0 - target.crpix1))[None, :]
    eta = np.radians(target.pixel_deg * (np.arange(y0, y1 + 1) + 1.0 - target.crpix2))[:, None]
    # u = c + ξ e + η n (unnormalised: the gnomonic ratios do not care); project on the source frame.
    dots = target.basis @ source.basis.T  # dots[a, b] = target_a · source_b
    pa = math.radians(float(posangle_deg))
    to_pixels = math.degrees(1.0) / source.pixel_deg
    # Rows of `numerators`: source east and north in pixels, instrument y and z in degrees (each before ÷ along).
    numerators = np.array(
        [
            -to_pixels * dots[:, 1],
            to_pixels * dots[:, 2],
            math.degrees(1.0) * (dots[:, 1] * math.cos(pa) - dots[:, 2] * math.sin(pa)),
            math.degrees(1.0) * (dots[:, 1] * math.sin(pa) + dots[:, 2] * math.cos(pa)),
        ]
    )

    def affine(coefficients):
        return (coefficients[0] + xi * coefficients[1]).astype(np.float32) + (eta * coefficients[2]).astype(np.float32)

    along = affine(dots[:, 0])
    behind = along <= 0 if box is None else None
    if behind is not None:
        along[behind] = 1.0
    inverse = np.reciprocal(along, out=along)
    src_x = affine(numerators[0])
    src_x *= inverse
    src_x += np.float32(source.crpix1 - 1.0)
    src_y = affine(numerators[1])
    src_y *= inverse
    src_y += np.float32(source.crpix2 - 1.0)
    y_inst = affine(numerators[2])
    y_inst *= inverse
    z_inst = affine(numerators[3])
    z_inst *= inverse
    if behind is not None:
        # Behind the source plane: far off any field.
        for plane in (src_x, src_y, y_inst, z_inst):
            plane[behind] = 1e6
    return slice(y0, y1 + 1), slice(x0, x1 + 1), src_x, src_y, y_inst, z_inst


def _bilinear_noise_factor(coordinate: np.ndarray, rho: float) -> np.ndarray:
    """Variance factor, along one axis, of a bilinear combination of noise with lag correlation ρ₁.

    At fractional offset f from the pixel below, the weights (1−f, f) give
    (1−f)² + f² + 2ρf(1−f) = 1 − 2(1−ρ)f(1−f); with t = f − ½ this is
    (1+ρ)/2 + 2(1−ρ)t². The 2-D factor Σₖₗ wₖwₗρₖₗ (ρ₁² diagonally) is the
    product of the two axes' factors: 1 on a source pixel, ((1+ρ)/2)² between four.
    """
    t = coordinate - np.floor(coordinate)
    t -= np.float32(0.5)
    t *= t
    t *= np.float32(2.0 * (1.0 - rho))
    t += np.float32(0.5 * (1.0 + rho))
    return t


def _stamp_truth(view: ScwView, native: Grid, target: Grid, rates, bbox, src_x, src_y, instrument: Instrument):
    """The ScW's point sources as they land on the mosaic: bilinear resampling of their native-grid PSF stamps.

    Returns
    -------
    (flat_index, values)
        Flat indices into the bounding box ``bbox`` of the ScW on ``target`` and the resampled rates there
        (indices repeat where stamps overlap).
    """
    shown = np.flatnonzero(rates != 0)
    if not len(shown):
        return np.empty(0, dtype=np.intp), np.empty(0)
    sigma = instrument.psf_sigma_deg / instrument.pixel_deg
    reach = int(math.ceil(5.0 * sigma))
    # Source positions on the native grid (the ScW image's stamps: ±reach pixels around the nearest pixel) ...
    col = native.crpix1 - 1.0 - view.xi[shown] / native.pixel_deg
    row = native.crpix2 - 1.0 + view.eta[shown] / native.pixel_deg
    # ... and on the mosaic, where a stamp turned by the small angle between the two planes fits in ±(1.5 reach + 2).
    mosaic_x, mosaic_y = target.world_to_pixel(view.source_ra[shown], view.source_dec[shown])
    keep = np.isfinite(mosaic_x) & np.isfinite(mosaic_y) & np.isfinite(col) & np.isfinite(row)
    if not keep.any():
        return np.empty(0, dtype=np.intp), np.empty(0)
    shown, col, row, mosaic_x, mosaic_y = shown[keep], col[keep], row[keep], mosaic_x[keep], mosaic_y[keep]
    half = int(math.ceil(1.5 * reach)) + 2
    offsets = np.arange(-half, half + 1)
    row_slice, col_slice = bbox
    height, width = src_x.shape
    local_c = np.rint(mosaic_x).astype(np.intp)[:, None] + offsets[None, :] - col_slice.start
    local_r = np.rint(mosaic_y).astype(np.intp)[:, None] + offsets[None, :] - row_slice.start
    inside = ((local_r >= 0) & (local_r < height))[:, :, None] & ((local_c >= 0) & (local_c < width))[:, None, :]
    source, r_idx, c_idx = np.nonzero(inside)
    local = local_r[source, r_idx] * width + local_c[source, c_idx]
    x = src_x.ravel()[local]
    y = src_y.ravel()[local]
    c0 = np.floor(x)
    r0 = np.floor(y)
    fx = x - c0
    fy = y - r0
    centre_c = np.rint(col)[source]
    centre_r = np.rint(row)[source]

    def profile(pixel, position, centre, size):
        # The ScW image's stamp: sampled at pixel centres within ±reach of the nearest pixel, inside its grid.
        on_stamp = (np.abs(pixel - centre) <= reach) & (pixel >= 0) & (pixel < size)
        return np.where(on_stamp, np.exp(-0.5 * ((pixel - position) / sigma) ** 2), 0.0)

    along_x = (1.0 - fx) * profile(c0, col[source], centre_c, native.nx) + fx * profile(
        c0 + 1.0, col[source], centre_c, native.nx
    )
    along_y = (1.0 - fy) * profile(r0, row[source], centre_r, native.ny) + fy * profile(
        r0 + 1.0, row[source], centre_r, native.ny
    )
    values = rates[shown][source] * along_x * along_y
    useful = values != 0
    return local[useful], values[useful]


def _place_scw(row, view: ScwView, instrument: Instrument, band, target: Grid, seed: int, sums) -> bool:
    """Add one ScW to a mosaic's running sums: Σ 1/V, Σ T/V, Σ noise·√V/V and Σ exposure.

    The ScW is seen as its image resampled onto the mosaic (see :func:`mosaic`): at each mosaic pixel its
    variance is that of the bilinear combination of the 4 ScW pixels around it, V = σ²(p)·(variance
    factor of the correlated noise), its exposure good time × response, its true rates the bilinear
    resampling of the ScW image's point-source stamps, its noise √V times the ScW's unit noise field
    (:func:`_scw_noise`).

    Returns
    -------
    bool
        False when the ScW does not reach the mosaic grid.
    """
    native = native_grid(row, instrument)
    box = _footprint_box(target, native)
    mapping = _source_coordinates(target, native, view.posangle, box)
    if mapping is None:
        return False
    row_slice, col_slice, src_x, src_y, y_inst, z_inst = mapping
    # Response at the mosaic pixel centres, as the ScW image evaluates it at its own (0 off the field).
    response = instrument.field_response(y_inst, z_inst)
    rates = view.band_rates(*band)
    numerator = view.variance_numerator(*band, rates)
    good_time = max(view.good_time, 1e-9)
    rho = noise_lag_correlation(noise_sigma_pixels(instrument))
    # 1/V = T R² / (numerator · f): zero off the field, where R = 0.
    inverse = response * response
    inverse *= np.float32(good_time / numerator)
    inverse /= _bilinear_noise_factor(src_x, rho)
    inverse /= _bilinear_noise_factor(src_y, rho)
    weight_sum, weighted_truth, weighted_noise, exposure = sums
    weight_sum[row_slice, col_slice] += inverse
    response *= np.float32(view.good_time)
    exposure[row_slice, col_slice] += response
    # w·(√V·u) = √w·u
    noise = _scw_noise(seed, view.swid, instrument, band, target, box, (row_slice, col_slice))
    noise *= np.sqrt(inverse)
    weighted_noise[row_slice, col_slice] += noise
    local, values = _stamp_truth(view, native, target, rates, (row_slice, col_slice), src_x, src_y, instrument)
    if len(local):
        width = src_x.shape[1]
        flat = (local // width + row_slice.start) * target.nx + (local % width + col_slice.start)
        np.add.at(weighted_truth.ravel(), flat, values * inverse.ravel()[local])
    return True


def _scw_noise(seed: int, swid: str, instrument: Instrument, band, target: Grid, box, bbox) -> np.ndarray:
    """One ScW's unit-variance image noise on a mosaic grid, over ``bbox`` (row and column slices of ``target``).

    The noise is drawn on the ScW's whole footprint box and depends only on the
    seed, the ScW, the band and the grid family (tangent point, pixel size):
    every mosaic of a source sees the same noise of a ScW at the same pixel, so
    mosaics of parts of a period combine into the mosaic of the whole period,
    as with real data. ``box`` is the ScW's :func:`_footprint_box` on ``target``.
    """
    row_slice, col_slice = bbox
    if box is None:
        box = (0, target.nx - 1, 0, target.ny - 1)
    x0, x1, y0, y1 = box
    family = f"mosaic {target.ra0:.9f} {target.dec0:.9f} {target.pixel_deg:.9g} {x0 - target.crpix1:.0f} {y0 - target.crpix2:.0f}"
    rng = noise_rng(seed, swid, instrument.key, band_label(*band), family)
    noise = correlated_noise(rng, (y1 - y0 + 1, x1 - x0 + 1), instrument, dtype=np.float32)
    return noise[row_slice.start - y0 : row_slice.stop - y0, col_slice.start - x0 : col_slice.stop - x0]


def mosaic(
    rows,
    sky,
    instrument: Instrument,
    e1_keV: float,
    e2_keV: float,
    *,
    seed: int | None = None,
    centre: tuple[float, float] | None = None,
) -> SkyImage:
    """Inverse-variance mosaic of several ScWs.

    The mosaic is what combining the ScW images would give, made directly on
    the mosaic grid. Each ScW image, resampled bilinearly onto the grid (the
    overlap-area weights of OSA's mosaic step for equal pixel sizes), brings
    at each mosaic pixel its true rates Tₛ (the bilinear resampling of its
    point-source stamps: a source's summed rate is kept, the PSF widens a
    little), a variance Vₛ = σₛ²·f (σₛ² of the ScW at that place, f the
    variance of a bilinear sum of the correlated image noise), its noise
    √Vₛ·uₛ (uₛ the ScW's unit image noise on the grid) and an exposure. They
    combine with inverse-variance weights: I = Σ((Tₛ + √Vₛ·uₛ)/Vₛ)/Σ(1/Vₛ),
    V = 1/Σ(1/Vₛ), S = I/√V, EXPOSURE = Σ exposure.

    Parameters
    ----------
    rows : astropy Table or sequence of rows
        ScW records (at least one).
    sky : mmoda_local.sky.Sky
    instrument : Instrument
    e1_keV, e2_keV : float
        Energy band.
    seed : int, optional
        Global noise seed (each ScW's noise depends only on it, the ScW, the band and the grid's tangent point).
    centre : (float, float), optional
        Tangent point of the mosaic grid (see :func:`mosaic_grid`).

    Returns
    -------
    SkyImage
        For one ScW and no ``centre``, exactly :func:`scw_image`.
    """
    rows = _rows_of(rows)
    if not rows:
        raise ValueError("a mosaic needs at least one ScW")
    seed = sky.seed if seed is None else seed
    if len(rows) == 1 and centre is None:
        return scw_image(rows[0], sky, instrument, e1_keV, e2_keV, seed=seed)
    grid = mosaic_grid(rows, instrument, centre=centre)
    sums = tuple(np.zeros(grid.shape) for _ in range(4))
    tstart, tstop, telapse, ontime, swids = math.inf, -math.inf, 0.0, 0.0, []
    for row in rows:
        view = ScwView(row, sky, instrument)
        tstart, tstop = min(tstart, view.tstart), max(tstop, view.tstop)
        telapse += view.telapse
        ontime += view.good_time
        swids.append(view.swid)
        if not _place_scw(row, view, instrument, (e1_keV, e2_keV), grid, seed, sums):
            log.warning("ScW %s falls outside the mosaic grid", view.swid)
    weight_sum, weighted_truth, weighted_noise, exposure = sums
    covered = weight_sum > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(covered, 1.0 / weight_sum, np.nan)
        intensity = np.where(covered, (weighted_truth + weighted_noise) * variance, np.nan)
        significance = intensity / np.sqrt(variance)
    return SkyImage(
        grid=grid,
        intensity=intensity,
        variance=variance,
        significance=significance,
        exposure=exposure,
        instrument=instrument,
        e1_keV=float(e1_keV),
        e2_keV=float(e2_keV),
        tstart=tstart,
        tstop=tstop,
        telapse=telapse,
        ontime=ontime,
        swids=swids,
    )


# --------------------------------------------------------------------------------------------------
# Source catalogue
# --------------------------------------------------------------------------------------------------
def _selected_entries(selected_catalog) -> list[tuple[str, float, float]]:
    """(name, ra, dec) of a user catalogue: a list of tuples/dicts or a table (src_names|name, ra, dec)."""
    if hasattr(selected_catalog, "colnames"):
        names_column = "src_names" if "src_names" in selected_catalog.colnames else "name"
        return [(str(r[names_column]), float(r["ra"]), float(r["dec"])) for r in selected_catalog]
    entries = []
    for entry in selected_catalog:
        if isinstance(entry, dict):
            name = entry.get("src_names", entry.get("name"))
            entries.append((str(name), float(entry["ra"]), float(entry["dec"])))
        else:
            name, ra, dec = entry[:3]
            entries.append((str(name), float(ra), float(dec)))
    return entries


def error_radius_deg(significance, instrument: Instrument) -> np.ndarray:
    """90 % location error of a new source: ≈ (21′/S + 0.2′) for ISGRI, scaled with the PSF."""
    scale = instrument.psf_fwhm_deg / 0.2
    return (21.0 / np.maximum(np.asarray(significance, dtype=float), 1.0) + 0.2) / 60.0 * scale


def source_catalog(
    image: SkyImage, sky, *, detection_threshold: float = 7.0, selected_catalog=None, include_new_sources: bool = True
) -> Table:
    """Sources of an image, with the nine columns of the real OSA catalogue.

    Parameters
    ----------
    image : SkyImage
    sky : mmoda_local.sky.Sky
    detection_threshold : float, optional
        Significance above which catalogue sources and new excesses are kept.
    selected_catalog : sequence or Table, optional
        ``(name, ra, dec)`` entries replacing the reference catalogue; every
        entry is kept, with its significance measured (NaN outside the image).
    include_new_sources : bool, optional
        Add excesses above the threshold farther than 3 PSF FWHM from any known
        source, named ``NEW_1``, ``NEW_2``… by decreasing significance.

    Returns
    -------
    astropy.table.Table
        Columns meta_ID, src_names, significance, ra, dec, NEW_SOURCE (−32768
        for known sources, 1 for new ones), ISGRI_FLAG, FLAG, ERR_RAD (deg);
        known sources first, by decreasing significance.
    """
    grid = image.grid
    if selected_catalog is not None:
        entries = _selected_entries(selected_catalog)
        names = [e[0] for e in entries]
        ra = np.array([e[1] for e in entries], dtype=float)
        dec = np.array([e[2] for e in entries], dtype=float)
        sky_index = [sky.find(n) for n in names]
        keep = np.ones(len(names), dtype=bool)
    else:
        half_diagonal = math.hypot(grid.nx, grid.ny) * 0.5 * grid.pixel_deg
        field = sky.sources_in_field(grid.ra0, grid.dec0, min(half_diagonal, 90.0), image.mid_ijd)
        names = [str(n) for n in field.names]
        ra, dec = field.ra, field.dec
        sky_index = list(field.index)
        keep = None
    significance = image.value_at("significance", ra, dec) if len(names) else np.array([])
    if keep is None:
        keep = np.nan_to_num(significance, nan=-np.inf) > detection_threshold
    rows = []
    for k in np.nonzero(keep)[0]:
        i = sky_index[k]
        known = i is not None and i < sky.catalogue_size
        err = float(sky.catalogue_err_rad[i]) if known and np.isfinite(sky.catalogue_err_rad[i]) else 0.0
        flag = int(sky.catalogue_isgri_flag[i]) if known else 0
        rows.append((names[k], float(significance[k]), float(ra[k]), float(dec[k]), -32768, flag, 0, err))
    rows.sort(key=lambda r: -np.nan_to_num(r[1], nan=-np.inf))
    if include_new_sources:
        rows.extend(_new_sources(image, ra, dec, detection_threshold))
    columns = list(zip(*rows)) if rows else [[] for _ in range(8)]
    table = Table()
    table["meta_ID"] = np.arange(len(rows), dtype=np.int64)
    table["src_names"] = np.array(columns[0], dtype=str) if rows else np.array([], dtype="U1")
    table["significance"] = np.array(columns[1], dtype=np.float64)
    table["ra"] = np.array(columns[2], dtype=np.float64)
    table["dec"] = np.array(columns[3], dtype=np.float64)
    table["NEW_SOURCE"] = np.array(columns[4], dtype=np.int64)
    table["ISGRI_FLAG"] = np.array(columns[5], dtype=np.int64)
    table["FLAG"] = np.array(columns[6], dtype=np.int64)
    table["ERR_RAD"] = np.array(columns[7], dtype=np.float64)
    table.meta.update({"FRAME": "fk5", "COORD_UNIT": "deg", "LON_NAME": "ra", "LAT_NAME": "dec"})
    return table


def _new_sources(image: SkyImage, known_ra, known_dec, threshold: float) -> list:
    grid = image.grid
    significance = np.nan_to_num(image.significance, nan=-np.inf)
    peaks = (significance > threshold) & (significance == ndimage.maximum_filter(significance, size=3))
    if not peaks.any():
        return []
    rows_idx, cols_idx = np.nonzero(peaks)
    values = significance[rows_idx, cols_idx]
    order = np.argsort(-values)
    rows_idx, cols_idx, values = rows_idx[order], cols_idx[order], values[order]
    # Sub-pixel position: significance-weighted centroid of the 3×3 neighbourhood.
    x = cols_idx.astype(float)
    y = rows_idx.astype(float)
    for n, (r, c) in enumerate(zip(rows_idx, cols_idx)):
        patch = significance[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
        weights = np.clip(np.nan_to_num(patch, neginf=0.0), 0.0, None)
        if weights.sum() > 0:
            rr, cc = np.mgrid[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            y[n] = float((rr * weights).sum() / weights.sum())
            x[n] = float((cc * weights).sum() / weights.sum())
    ra, dec = grid.pixel_to_world(x, y)
    ra, dec = np.atleast_1d(ra), np.atleast_1d(dec)
    exclusion = NEW_SOURCE_EXCLUSION_FWHM * image.instrument.psf_fwhm_deg
    far = np.ones(len(ra), dtype=bool)
    if len(known_ra):
        known = unit_vectors(known_ra, known_dec)
        candidates = unit_vectors(ra, dec)
        far = (candidates @ known.T).max(axis=1) < math.cos(math.radians(exclusion))
    # Keep only the strongest peak within an exclusion radius (one excess, one source).
    kept = []
    kept_vectors = []
    for n in np.nonzero(far)[0]:
        vector = unit_vectors(ra[n], dec[n])
        if kept_vectors and max(float(v @ vector) for v in kept_vectors) >= math.cos(math.radians(exclusion)):
            continue
        kept.append(n)
        kept_vectors.append(vector)
    errors = error_radius_deg(values, image.instrument)
    return [
        (f"NEW_{k + 1}", float(values[n]), float(ra[n]), float(dec[n]), 1, 0, 0, float(errors[n]))
        for k, n in enumerate(kept)
    ]


# --------------------------------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------------------------------
def _time_cards(image: SkyImage) -> dict:
    """The mosaic's times, whole-mosaic values (first ScW start to last ScW stop)."""
    return {
        "TSTART": (image.tstart, "[d] IJD (TT) start of the first ScW"),
        "TSTOP": (image.tstop, "[d] IJD (TT) stop of the last ScW"),
        "DATE-OBS": (osa_date(image.tstart), "UTC of TSTART"),
        "DATE-END": (osa_date(image.tstop), "UTC of TSTOP"),
        "MJDREF": MJDREF,
        "TIMESYS": "TT",
        "TIMEUNIT": "d",
        "TIMEREF": "LOCAL",
    }


def _utc_mjd(date: str) -> float:
    from astropy.time import Time

    return float(Time(date, format="isot", scale="utc").mjd)


def _channel_range(image: SkyImage) -> tuple[int, int]:
    weights = image.instrument.channel_weights(image.e1_keV, image.e2_keV)
    inside = np.nonzero(weights > 0)[0]
    return (int(inside[0]), int(inside[-1])) if len(inside) else (0, 0)


def mosaic_hdulist(image: SkyImage) -> fits.HDUList:
    """The image as the real dispatcher's mosaic product (protocol notes §3.6, §4.2).

    PRIMARY (no data), GROUPING (ISDC group index of the four images, as in
    the oda_api TestAPI notebook's real product), then four image HDUs named
    ``ISGR-MOSA-IMA`` (``JMX<n>-MOSA-IMA``) with IMATYPE INTENSITY
    (RECONSTRUCTED for JEM-X), VARIANCE, SIGNIFICANCE, EXPOSURE, as
    big-endian float32 with a celestial TAN WCS.

    Times are the whole mosaic's: TSTART/TSTOP and TFIRST/TLAST (IJD, d) span
    all the ScWs (no GTIs are simulated, so TFIRST = TSTART), DATE-OBS/DATE-END
    their UTC, ONTIME the summed good time (s), EXPOSURE = ONTIME × DEADC (s),
    TELAPSE the summed elapsed time of the ScWs (s; equal to the ScW's
    TELAPSE for one ScW, as in the real product).
    """
    instrument = image.instrument
    identity = {"TELESCOP": "INTEGRAL", "INSTRUME": instrument.instrume}
    if instrument.detnam:
        identity["DETNAM"] = instrument.detnam
    identity.update({"ORIGIN": ORIGIN, "CREATOR": CREATOR})
    times = _time_cards(image)
    primary = fits.PrimaryHDU()
    primary.header["COMMENT"] = SIMULATED_COMMENT
    imatypes = (instrument.intensity_imatype, "VARIANCE", "SIGNIFICANCE", "EXPOSURE")
    units = ("count/s", "count2/s2", "", "s")
    planes = (image.intensity, image.variance, image.significance, image.exposure)
    chanmin, chanmax = _channel_range(image)
    e_mean = math.sqrt(image.e1_keV * image.e2_keV)
    exposure_s = image.ontime * DEADC_CARD[0]
    # CHANMIN/CHANMAX are unsigned 16-bit integers (1I with TZERO 32768), as in the real GROUPING.
    channel_column = {"format": "I", "bzero": 32768}
    grouping_columns = [
        fits.Column("MEMBER_XTENSION", "8A", array=["IMAGE"] * 4),
        fits.Column("MEMBER_NAME", "32A", array=[instrument.image_extname] * 4),
        fits.Column("MEMBER_VERSION", "1J", array=np.arange(1, 5)),
        # FITS HDU positions are 1-based: PRIMARY 1, GROUPING 2, the images 3 to 6 (the real values).
        fits.Column("MEMBER_POSITION", "1J", array=np.arange(3, 7)),
        fits.Column("MEMBER_LOCATION", "256A", array=[""] * 4),
        fits.Column("MEMBER_URI_TYPE", "3A", array=[""] * 4),
        fits.Column("IMATYPE", "32A", array=list(imatypes)),
        fits.Column("CHANMIN", array=np.full(4, chanmin, dtype=np.uint16), **channel_column),
        fits.Column("CHANMAX", array=np.full(4, chanmax, dtype=np.uint16), **channel_column),
        fits.Column("E_MIN", "1E", unit="keV", array=[image.e1_keV] * 4),
        fits.Column("E_MEAN", "1E", unit="keV", array=[e_mean] * 4),
        fits.Column("E_MAX", "1E", unit="keV", array=[image.e2_keV] * 4),
        fits.Column("TFIRST", "1D", unit="d", array=[image.tstart] * 4),
        fits.Column("TLAST", "1D", unit="d", array=[image.tstop] * 4),
        fits.Column("TELAPSE", "1D", unit="s", array=[image.telapse] * 4),
        fits.Column("ONTIME", "1D", unit="s", array=[image.ontime] * 4),
    ]
    grouping = fits.BinTableHDU.from_columns(grouping_columns, name="GROUPING")
    header = grouping.header
    header["BASETYPE"] = "DAL_GROUP"
    header["GRPNAME"] = f"{instrument.image_extname}-IDX"
    header["IDXMEMBR"] = instrument.image_extname
    header["ISDCLEVL"] = "IMA"
    header.update(identity)
    header.update(times)
    header["COMMENT"] = SIMULATED_COMMENT
    hdus = [primary, grouping]
    for version, (imatype, unit, plane) in enumerate(zip(imatypes, units, planes), start=1):
        hdu = fits.ImageHDU(data=np.asarray(plane, dtype=">f4"), name=instrument.image_extname)
        header = hdu.header
        header["EXTVER"] = version
        header["IMATYPE"] = imatype
        if unit:
            header["BUNIT"] = unit
        header.update(image.grid.header_cards())
        header.update(identity)
        header.update(times)
        # MJDREF 51544 in TT is 2000-01-01T00:00:00; saying so, and giving MJD-OBS/MJD-END (the UTC MJDs of
        # DATE-OBS/DATE-END, as in the real gallery mosaic), spares WCS readers "datfix" warnings.
        header["DATEREF"] = "2000-01-01T00:00:00"
        header["MJD-OBS"] = (_utc_mjd(times["DATE-OBS"][0]), "[d] MJD (UTC) of DATE-OBS")
        header["MJD-END"] = (_utc_mjd(times["DATE-END"][0]), "[d] MJD (UTC) of DATE-END")
        header["TFIRST"] = (image.tstart, "[d] IJD (TT) of the first data")
        header["TLAST"] = (image.tstop, "[d] IJD (TT) of the last data")
        header["TELAPSE"] = (image.telapse, "[s] summed elapsed time of the ScWs")
        header["ONTIME"] = (image.ontime, "[s] summed good time of the ScWs")
        header["DEADC"] = DEADC_CARD
        header["EXPOSURE"] = (exposure_s, "[s] ONTIME x DEADC")
        header["E_MIN"] = (image.e1_keV, "[keV] lower energy bound")
        header["E_MAX"] = (image.e2_keV, "[keV] upper energy bound")
        header["CHANMIN"], header["CHANMAX"] = chanmin, chanmax
        header["COMMENT"] = SIMULATED_COMMENT
        hdus.append(hdu)
    return fits.HDUList(hdus)


def image_products(
    rows,
    sky,
    instrument: Instrument,
    e1_keV: float,
    e2_keV: float,
    *,
    seed: int | None = None,
    detection_threshold: float = 7.0,
    selected_catalog=None,
    include_new_sources: bool = True,
    centre: tuple[float, float] | None = None,
) -> tuple[fits.HDUList, Table, SkyImage]:
    """Everything an image request returns: the mosaic HDUList, its source catalogue and the image.

    Parameters are those of :func:`mosaic` and :func:`source_catalog`.
    """
    image = mosaic(rows, sky, instrument, e1_keV, e2_keV, seed=seed, centre=centre)
    catalog = source_catalog(
        image,
        sky,
        detection_threshold=detection_threshold,
        selected_catalog=selected_catalog,
        include_new_sources=include_new_sources,
    )
    return mosaic_hdulist(image), catalog, image


__all__ = [
    "Grid",
    "SkyImage",
    "native_grid",
    "scw_image",
    "mosaic_grid",
    "mosaic",
    "source_catalog",
    "mosaic_hdulist",
    "image_products",
    "correlated_noise",
    "noise_lag_correlation",
    "error_radius_deg",
]
