"""ISGRI and JEM-X as the simulation sees them: geometry, spectral response, noise.

The model and its calibration on the Crab: docs/simulated_sky.md, "The instruments".
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math

import numpy as np
from scipy import optimize, special

log = logging.getLogger(__name__)

#: IJD = MJD − 51544 (TT): the time axis of the ScW catalogue and of every product.
MJDREF = 51544.0

#: The Crab photon spectrum used everywhere (science notes §4): one power law.
CRAB_PHOTON_INDEX = 2.13
#: Crab normalisation at 100 keV, ph cm⁻² s⁻¹ keV⁻¹.
CRAB_NORM_100KEV = 6.2e-4
#: Crab count rates of the ISDC reference catalogue (v43): the calibration targets.
CRAB_CATALOGUE_RATES = {
    "ISGR_FLUX_1": 230.92136,
    "ISGR_FLUX_2": 59.458275,
    "JEMX_FLUX_1": 0.5005482,
    "JEMX_FLUX_2": 0.14248526,
}
#: Catalogue bands, keV.
CATALOGUE_BANDS = {
    "ISGR_FLUX_1": (20.0, 60.0),
    "ISGR_FLUX_2": (60.0, 200.0),
    "JEMX_FLUX_1": (3.0, 10.0),
    "JEMX_FLUX_2": (10.0, 30.0),
}


def year_to_ijd(year):
    """Decimal year → IJD (days since 2000-01-01 TT); good to a day, enough for slow trends."""
    return (np.asarray(year, dtype=float) - 2000.0) * 365.25


#: Epoch at which the ISGRI response equals its catalogue calibration (no ageing yet).
REFERENCE_IJD = float(year_to_ijd(2003.5))


def crab_photon_spectrum(energy_keV):
    """Crab photon spectrum N(E), ph cm⁻² s⁻¹ keV⁻¹ (Γ = 2.13, 6.2e-4 at 100 keV)."""
    return CRAB_NORM_100KEV * (np.asarray(energy_keV, dtype=float) / 100.0) ** -CRAB_PHOTON_INDEX


def power_law_bin_flux(edges_keV, index, norm_100kev=1.0):
    """Exact integral of ``norm·(E/100)^-index`` over each bin, ph cm⁻² s⁻¹.

    Parameters
    ----------
    edges_keV : array_like
        Bin edges, keV (n+1 values).
    index : float
        Photon index.
    norm_100kev : float, optional
        Normalisation at 100 keV.
    """
    edges = np.asarray(edges_keV, dtype=float)
    if abs(index - 1.0) < 1e-9:
        return norm_100kev * 100.0 * np.diff(np.log(edges))
    power = 1.0 - index
    return norm_100kev * 100.0 / power * np.diff((edges / 100.0) ** power)


# --------------------------------------------------------------------------------------------------
# Noise generators
# --------------------------------------------------------------------------------------------------
def normalised_name(name) -> str:
    """Case-, space- and punctuation-insensitive form of a source name (``"GX 339-4"`` → ``"gx339-4"``)."""
    return "".join(str(name).split()).lower().replace("_", "")


def band_label(e1_keV: float, e2_keV: float) -> str:
    """Stable text for an energy band, used in noise seeds."""
    return f"{float(e1_keV):.6g}-{float(e2_keV):.6g}"


def noise_rng(seed: int, swid: str, instrument_key: str, band: str, kind: str, source: str = "") -> np.random.Generator:
    """Random generator of one noise realisation.

    Parameters
    ----------
    seed : int
        Global seed of the server.
    swid : str
        ScW id (version suffix ignored).
    instrument_key : str
        ``isgri``, ``jemx1`` or ``jemx2``.
    band : str
        Energy band label (:func:`band_label`) or ``"spectrum"``.
    kind : str
        Product kind: ``image``, ``lc``, ``spectrum``.
    source : str, optional
        Source name (normalised), empty for images.

    Returns
    -------
    numpy.random.Generator
        Seeded with ``SeedSequence([seed, *sha256(...)])``: the same inputs give
        the same draws in every process (Python's ``hash`` is salted, SHA-256 is not).
    """
    text = "\x1f".join([str(swid).split(".")[0], instrument_key, band, kind, normalised_name(source)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    entropy = [abs(int(seed)) % (2**63), *words]
    return np.random.default_rng(np.random.SeedSequence(entropy))


# --------------------------------------------------------------------------------------------------
# Gnomonic geometry
# --------------------------------------------------------------------------------------------------
def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """Unit vectors (…, 3) of equatorial positions."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def vectors_to_radec(vectors) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of (…, 3) vectors (need not be normalised)."""
    v = np.asarray(vectors, dtype=float)
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return ra, dec


def tangent_basis(ra0_deg: float, dec0_deg: float) -> np.ndarray:
    """Rows: centre, east and north unit vectors of the tangent plane at (ra0, dec0)."""
    ra0, dec0 = math.radians(ra0_deg), math.radians(dec0_deg)
    centre = [math.cos(dec0) * math.cos(ra0), math.cos(dec0) * math.sin(ra0), math.sin(dec0)]
    east = [-math.sin(ra0), math.cos(ra0), 0.0]
    north = [-math.sin(dec0) * math.cos(ra0), -math.sin(dec0) * math.sin(ra0), math.cos(dec0)]
    return np.array([centre, east, north])


def sky_to_plane(basis: np.ndarray, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gnomonic standard coordinates (ξ east, η north; deg) of positions.

    Returns
    -------
    xi, eta : ndarray
        Plane coordinates in degrees (NaN behind the plane).
    cos_distance : ndarray
        Cosine of the angular distance from the tangent point.
    """
    v = unit_vectors(ra_deg, dec_deg)
    along = v @ basis[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(along > 1e-6, np.degrees(1.0) / along, np.nan)
    return (v @ basis[1]) * scale, (v @ basis[2]) * scale, along


def plane_to_sky(basis: np.ndarray, xi_deg, eta_deg) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`sky_to_plane`: RA, Dec (deg) of plane coordinates (deg)."""
    xi = np.radians(np.asarray(xi_deg, dtype=float))[..., None]
    eta = np.radians(np.asarray(eta_deg, dtype=float))[..., None]
    return vectors_to_radec(basis[0] + xi * basis[1] + eta * basis[2])


def instrument_frame(xi_deg, eta_deg, posangle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate plane coordinates into the instrument frame (y, z), deg.

    ``z`` points along the spacecraft Z axis (position angle ``posangle_deg`` east
    of north at the pointing).
    """
    pa = math.radians(float(posangle_deg))
    sin_pa, cos_pa = math.sin(pa), math.cos(pa)
    xi = np.asarray(xi_deg, dtype=float)
    eta = np.asarray(eta_deg, dtype=float)
    return xi * cos_pa - eta * sin_pa, xi * sin_pa + eta * cos_pa


# --------------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _AgeingKnots:
    """ISGRI ageing knots (decimal years) and values: threshold centre, gain at 45 keV, slope."""

    years: tuple = (2002.0, 2003.5, 2007.0, 2010.0, 2013.0, 2016.0, 2017.5, 2019.0, 2020.5, 2022.0, 2023.5, 2025.5)
    threshold_keV: tuple = (18.1, 18.1, 18.0, 18.0, 18.0, 18.1, 18.4, 18.6, 18.8, 19.0, 19.2, 19.2)
    gain_45keV: tuple = (1.0, 1.0, 1.0027, 1.0208, 1.0427, 1.0619, 1.0666, 1.0046, 0.9207, 0.8265, 0.8428, 0.8701)
    slope: tuple = (0.0, 0.0, 0.0175, 0.004, -0.0167, -0.0535, -0.0714, -0.1177, -0.1394, -0.1436, -0.1779, -0.205)


class Instrument:
    """One INTEGRAL imager as the simulation models it.

    Attributes
    ----------
    key : str
        ``isgri``, ``jemx1`` or ``jemx2`` (used in noise seeds).
    instrume : str
        FITS ``INSTRUME``: ``IBIS``, ``JMX1``, ``JMX2``.
    detnam : str or None
        FITS ``DETNAM`` (``ISGRI``), None for JEM-X.
    pixel_deg, psf_fwhm_deg : float
        Sky pixel and Gaussian PSF FWHM, deg.
    energy_limits_keV : tuple
        Allowed request band.
    image_extname, lc_extname, spectrum_extname : str
        Extension names of the products.
    intensity_imatype : str
        ``IMATYPE`` of the intensity image (INTENSITY or RECONSTRUCTED).
    true_edges_keV, channel_edges_keV : ndarray
        True-energy grid of the ARF/RMF and channel boundaries (EBOUNDS).
    rmf : ndarray
        Redistribution probabilities, shape (n_true, n_channels).
    noise_source_factor : float
        ξ of the noise model.
    """

    key = ""
    instrume = ""
    detnam = None
    pixel_deg = 0.0
    psf_fwhm_deg = 0.0
    energy_limits_keV = (0.0, 0.0)
    image_extname = lc_extname = spectrum_extname = ""
    intensity_imatype = "INTENSITY"
    good_time_column = ""
    #: Largest off-axis distance (deg, in the tangent plane) with a non-zero response.
    field_radius_deg = 0.0
    #: ξ: variance added per unit of (rate × response) of the sources in the field.
    noise_source_factor = 0.0

    def __init__(self):
        self.true_edges_keV, self.channel_edges_keV = self._energy_grids()
        self.true_centres_keV = np.sqrt(self.true_edges_keV[:-1] * self.true_edges_keV[1:])
        self.channel_centres_keV = np.sqrt(self.channel_edges_keV[:-1] * self.channel_edges_keV[1:])
        self.n_channels = len(self.channel_edges_keV) - 1
        self.rmf = self._redistribution()
        self._band_cache: dict = {}
        self._calibrate()

    # -- to be provided by the concrete instruments ------------------------------------------------
    def _energy_grids(self):
        raise NotImplementedError

    def resolution_fwhm_keV(self, energy_keV):
        """Energy resolution (FWHM, keV) at true energy ``energy_keV``."""
        raise NotImplementedError

    def arf(self, ijd) -> np.ndarray:
        """Effective area (cm², or the catalogue scale for JEM-X) per true-energy bin at IJD ``ijd``."""
        raise NotImplementedError

    def background_rates(self, ijd) -> np.ndarray:
        """Background noise-equivalent rate β per channel at ``ijd`` (ct/s)."""
        raise NotImplementedError

    def field_response(self, y_deg, z_deg) -> np.ndarray:
        """Field-of-view response (0–1) at instrument-frame coordinates (deg)."""
        raise NotImplementedError

    def _calibrate(self):
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------------
    @property
    def psf_sigma_deg(self) -> float:
        """Gaussian σ of the PSF, deg."""
        return self.psf_fwhm_deg / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    def good_time(self, row) -> float:
        """Good time of this instrument in a ScW record, s."""
        return float(row[self.good_time_column])

    def _redistribution(self) -> np.ndarray:
        centres = self.true_centres_keV
        sigma = self.resolution_fwhm_keV(centres) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        standardised = (self.channel_edges_keV[None, :] - centres[:, None]) / (math.sqrt(2.0) * sigma[:, None])
        cumulative = 0.5 * (1.0 + special.erf(standardised))
        matrix = np.diff(cumulative, axis=1)
        # Probabilities below 1e-7 are numerical dust; dropping them keeps the OGIP matrix compact.
        matrix[matrix < 1e-7] = 0.0
        return matrix

    def channel_weights(self, e1_keV: float, e2_keV: float) -> np.ndarray:
        """Fraction of each channel inside [e1, e2] (partial edge channels pro rata)."""
        lo, hi = self.channel_edges_keV[:-1], self.channel_edges_keV[1:]
        overlap = np.clip(np.minimum(hi, e2_keV) - np.maximum(lo, e1_keV), 0.0, None)
        return overlap / (hi - lo)

    def band_response(self, e1_keV: float, e2_keV: float) -> np.ndarray:
        """Probability that a photon of each true-energy bin is counted in the band."""
        key = (round(float(e1_keV), 6), round(float(e2_keV), 6))
        cached = self._band_cache.get(key)
        if cached is None:
            cached = self.rmf @ self.channel_weights(*key)
            self._band_cache[key] = cached
        return cached

    def band_area(self, e1_keV: float, e2_keV: float, ijd) -> np.ndarray:
        """Per true-energy bin: ARF × probability of landing in the band (cm²)."""
        return self.arf(ijd) * self.band_response(e1_keV, e2_keV)

    def band_rate(self, bin_flux, e1_keV: float, e2_keV: float, ijd) -> np.ndarray:
        """Count rate in a band of photon fluxes per true bin (…, n_true) at ``ijd`` (scalar)."""
        return np.asarray(bin_flux) @ self.band_area(e1_keV, e2_keV, ijd)

    def fold(self, bin_flux, ijd) -> np.ndarray:
        """Expected count rate per channel: RMF·(ARF·flux) for fluxes per true bin (…, n_true)."""
        return (np.asarray(bin_flux) * self.arf(ijd)) @ self.rmf

    def band_background(self, e1_keV: float, e2_keV: float, ijd) -> float:
        """Σ β over the band (ct/s), partial edge channels pro rata."""
        return float(self.background_rates(ijd) @ self.channel_weights(e1_keV, e2_keV))

    def crab_band_rate(self, e1_keV: float, e2_keV: float, ijd=REFERENCE_IJD) -> float:
        """The Crab's on-axis band rate at ``ijd`` (ct/s)."""
        flux = power_law_bin_flux(self.true_edges_keV, CRAB_PHOTON_INDEX, CRAB_NORM_100KEV)
        return float(self.band_rate(flux, e1_keV, e2_keV, ijd))

    def sigma_2ks_mcrab(self, e1_keV: float, e2_keV: float, ijd=REFERENCE_IJD, *, with_crab: bool = False) -> float:
        """1σ of a 2 ks on-axis measurement in mCrab (empty field, or with the Crab on axis)."""
        crab = self.crab_band_rate(e1_keV, e2_keV, ijd)
        numerator = self.band_background(e1_keV, e2_keV, ijd)
        if with_crab:
            numerator += self.noise_source_factor * crab
        return 1000.0 * math.sqrt(numerator / 2000.0) / crab

    def sky_position_response(self, pointing, ra_deg, dec_deg) -> np.ndarray:
        """Field response at sky positions for a pointing (a ScW record or ``(ra, dec, posangle)``)."""
        if isinstance(pointing, tuple):
            ra0, dec0, posangle = pointing
        else:
            ra0, dec0, posangle = pointing["RA_SCX"], pointing["DEC_SCX"], pointing["POSANGLE"]
        xi, eta, _ = sky_to_plane(tangent_basis(float(ra0), float(dec0)), ra_deg, dec_deg)
        y, z = instrument_frame(xi, eta, float(posangle))
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.field_response(y, z), nan=0.0)

    def describe(self) -> dict:
        """A short JSON-serialisable description (for logs and docs)."""
        return {
            "key": self.key,
            "instrume": self.instrume,
            "pixel_deg": self.pixel_deg,
            "psf_fwhm_deg": self.psf_fwhm_deg,
            "channels": self.n_channels,
            "energy_limits_keV": list(self.energy_limits_keV),
        }

    def __repr__(self):
        return f"<{type(self).__name__} {self.key}>"


def _interp_years(ijd, knots_years, values):
    return np.interp(np.asarray(ijd, dtype=float), year_to_ijd(knots_years), values)


class Isgri(Instrument):
    """IBIS/ISGRI (figures in docs/simulated_sky.md, "The instruments")."""

    key = "isgri"
    instrume = "IBIS"
    detnam = "ISGRI"
    pixel_deg = 0.082286
    psf_fwhm_deg = 12.0 / 60.0
    energy_limits_keV = (15.0, 800.0)
    image_extname = "ISGR-MOSA-IMA"
    lc_extname = "ISGR-SRC.-LCR"
    spectrum_extname = "ISGR-EVTS-SPE"
    intensity_imatype = "INTENSITY"
    good_time_column = "GOOD_ISGRI"
    fully_coded_half_deg = 4.5
    zero_response_half_deg = 14.5
    field_radius_deg = 14.5 * math.sqrt(2.0)
    threshold_width_keV = 1.6
    high_energy_power = 2.5
    background_power = 1.5
    ageing = _AgeingKnots()
    #: Crab-on-axis significance per 2 ks in 30–60 keV at the reference epoch, and its share of the variance.
    crab_sigmas_2ks = 128.0
    crab_variance_share = 0.15

    def _energy_grids(self):
        return np.geomspace(10.0, 1000.0, 641), np.geomspace(13.0, 1000.0, 257)

    def resolution_fwhm_keV(self, energy_keV):
        """Energy resolution (FWHM, keV) at true energy ``energy_keV``: 8 % at 60 keV, growing as its square root."""
        return 0.08 * 60.0 * np.sqrt(np.asarray(energy_keV, dtype=float) / 60.0)

    def threshold_keV(self, ijd):
        """Centre of the low-threshold turn-on at ``ijd``, keV."""
        return _interp_years(ijd, self.ageing.years, self.ageing.threshold_keV)

    def ageing_factor(self, energy_keV, ijd: float):
        """Multiplicative change of the area since the reference epoch (clipped to 0.5–1.5)."""
        gain = float(_interp_years(ijd, self.ageing.years, self.ageing.gain_45keV))
        slope = float(_interp_years(ijd, self.ageing.years, self.ageing.slope))
        return np.clip(gain * (np.asarray(energy_keV, dtype=float) / 45.0) ** slope, 0.5, 1.5)

    def _threshold_efficiency(self, energy_keV, ijd: float):
        centre = float(self.threshold_keV(ijd))
        return 0.5 * (
            1.0
            + special.erf((np.asarray(energy_keV, dtype=float) - centre) / (math.sqrt(2.0) * self.threshold_width_keV))
        )

    def _shape(self, ijd, cutoff_keV):
        energy = self.true_centres_keV
        absorption = 1.0 - np.exp(-((cutoff_keV / energy) ** self.high_energy_power))
        return self._threshold_efficiency(energy, ijd) * absorption * self.ageing_factor(energy, ijd)

    def arf(self, ijd) -> np.ndarray:
        """Effective area (cm²) per true-energy bin at IJD ``ijd`` (cached per date).

        The calibrated normalisation times the low-threshold turn-on, the high-energy fall-off and the ageing
        of the detector at that date.
        """
        ijd = float(ijd)
        cached = self._arf_cache.get(ijd)
        if cached is None:
            cached = self.area_norm * self._shape(ijd, self.cutoff_keV)
            if len(self._arf_cache) > 4096:
                self._arf_cache.clear()
            self._arf_cache[ijd] = cached
        return cached

    def background_rates(self, ijd) -> np.ndarray:
        """Background noise-equivalent rate per channel at ``ijd`` (ct/s).

        A power law in energy (``background_power``, referred to 30 keV) times the channel width and the
        low-threshold efficiency at that date.
        """
        centres = self.channel_centres_keV
        widths = np.diff(self.channel_edges_keV)
        return (
            self.background_norm
            * (centres / 30.0) ** -self.background_power
            * widths
            * self._threshold_efficiency(centres, float(ijd))
        )

    def field_response(self, y_deg, z_deg) -> np.ndarray:
        """Field-of-view response (0–1) at instrument-frame coordinates (deg).

        1 in the fully coded square (±``fully_coded_half_deg``), falling linearly along each axis to 0 at
        ±``zero_response_half_deg``.
        """
        span = self.zero_response_half_deg - self.fully_coded_half_deg
        along_y = np.clip((self.zero_response_half_deg - np.abs(y_deg)) / span, 0.0, 1.0)
        along_z = np.clip((self.zero_response_half_deg - np.abs(z_deg)) / span, 0.0, 1.0)
        return along_y * along_z

    def _calibrate(self):
        self._arf_cache = {}
        crab = power_law_bin_flux(self.true_edges_keV, CRAB_PHOTON_INDEX, CRAB_NORM_100KEV)
        low_band, high_band = CATALOGUE_BANDS["ISGR_FLUX_1"], CATALOGUE_BANDS["ISGR_FLUX_2"]
        target_ratio = CRAB_CATALOGUE_RATES["ISGR_FLUX_2"] / CRAB_CATALOGUE_RATES["ISGR_FLUX_1"]

        def band(cutoff, e1, e2):
            return float((crab * self._shape(REFERENCE_IJD, cutoff)) @ self.band_response(e1, e2))

        def ratio_mismatch(cutoff):
            return band(cutoff, *high_band) / band(cutoff, *low_band) - target_ratio

        self.cutoff_keV = optimize.brentq(ratio_mismatch, 40.0, 2000.0, xtol=1e-10)
        self.area_norm = CRAB_CATALOGUE_RATES["ISGR_FLUX_1"] / band(self.cutoff_keV, *low_band)
        self._arf_cache.clear()
        # Noise: the Crab on axis at `crab_sigmas_2ks` in 30–60 keV, supplying `crab_variance_share` of it.
        crab_30_60 = self.crab_band_rate(30.0, 60.0)
        total = (crab_30_60 / self.crab_sigmas_2ks) ** 2 * 2000.0
        self.noise_source_factor = self.crab_variance_share * total / crab_30_60
        self.background_norm = 1.0
        shape_30_60 = self.band_background(30.0, 60.0, REFERENCE_IJD)
        self.background_norm = (1.0 - self.crab_variance_share) * total / shape_30_60
        log.debug(
            "ISGRI calibrated: A0=%.1f cm2, E_c=%.1f keV, xi=%.3f",
            self.area_norm,
            self.cutoff_keV,
            self.noise_source_factor,
        )


class JemX(Instrument):
    """JEM-X unit 1 or 2 (one shared response; see docs/simulated_sky.md, "The instruments")."""

    pixel_deg = 0.026
    psf_fwhm_deg = 3.0 / 60.0
    energy_limits_keV = (3.0, 35.0)
    intensity_imatype = "RECONSTRUCTED"
    field_radius_deg = 6.6
    window_keV = 2.6
    gas_power = 2.7
    background_power = 0.3
    crab_sigmas_2ks = 100.0
    crab_variance_share = 0.40

    def __init__(self, unit: int):
        if unit not in (1, 2):
            raise ValueError(f"JEM-X unit must be 1 or 2, not {unit!r}")
        self.unit = unit
        self.key = f"jemx{unit}"
        self.instrume = f"JMX{unit}"
        self.image_extname = f"JMX{unit}-MOSA-IMA"
        self.lc_extname = f"JMX{unit}-SRC.-LCR"
        self.spectrum_extname = f"JMX{unit}-PHA1-SPE"
        self.good_time_column = f"GOOD_JEMX{unit}"
        super().__init__()

    def _energy_grids(self):
        return np.geomspace(2.0, 40.0, 301), np.geomspace(3.0, 35.0, 17)

    def resolution_fwhm_keV(self, energy_keV):
        """Energy resolution (FWHM, keV) at true energy ``energy_keV``: 0.4 E √(1/E + 1/60)."""
        energy = np.asarray(energy_keV, dtype=float)
        return 0.4 * np.sqrt(1.0 / energy + 1.0 / 60.0) * energy

    def _shape(self, gas_keV):
        energy = self.true_centres_keV
        return np.exp(-((self.window_keV / energy) ** 3)) * (1.0 - np.exp(-((gas_keV / energy) ** self.gas_power)))

    def arf(self, ijd) -> np.ndarray:
        """Effective area (catalogue scale) per true-energy bin; the same at every ``ijd`` (no ageing modelled)."""
        return self._arf

    def background_rates(self, ijd) -> np.ndarray:
        """Background noise-equivalent rate per channel (ct/s); the same at every ``ijd``."""
        return self._background

    def field_response(self, y_deg, z_deg) -> np.ndarray:
        """Field-of-view response (0–1): falls linearly with the off-axis angle, to 0 at ``field_radius_deg``."""
        return np.clip(1.0 - np.hypot(y_deg, z_deg) / self.field_radius_deg, 0.0, 1.0)

    def _calibrate(self):
        crab = power_law_bin_flux(self.true_edges_keV, CRAB_PHOTON_INDEX, CRAB_NORM_100KEV)
        low_band, high_band = CATALOGUE_BANDS["JEMX_FLUX_1"], CATALOGUE_BANDS["JEMX_FLUX_2"]
        target_ratio = CRAB_CATALOGUE_RATES["JEMX_FLUX_2"] / CRAB_CATALOGUE_RATES["JEMX_FLUX_1"]

        def band(gas, e1, e2):
            return float((crab * self._shape(gas)) @ self.band_response(e1, e2))

        def ratio_mismatch(gas):
            return band(gas, *high_band) / band(gas, *low_band) - target_ratio

        self.gas_keV = optimize.brentq(ratio_mismatch, 3.0, 200.0, xtol=1e-10)
        self.area_norm = CRAB_CATALOGUE_RATES["JEMX_FLUX_1"] / band(self.gas_keV, *low_band)
        self._arf = self.area_norm * self._shape(self.gas_keV)
        crab_3_10 = self.crab_band_rate(*low_band)
        total = (crab_3_10 / self.crab_sigmas_2ks) ** 2 * 2000.0
        self.noise_source_factor = self.crab_variance_share * total / crab_3_10
        centres = self.channel_centres_keV
        shape = (centres / 6.0) ** -self.background_power * np.diff(self.channel_edges_keV)
        self._background = (
            shape * (1.0 - self.crab_variance_share) * total / float(shape @ self.channel_weights(*low_band))
        )


@functools.cache
def _instrument(key: str) -> Instrument:
    if key == "isgri":
        return Isgri()
    return JemX(int(key[-1]))


def instrument_for(name: str, *, jemx_unit=None) -> Instrument:
    """The instrument model for a request.

    Parameters
    ----------
    name : str
        ``isgri``, ``jemx`` (with ``jemx_unit``), ``jemx1`` or ``jemx2``.
    jemx_unit : int or str, optional
        JEM-X unit for ``jemx`` (default 2, as the dispatcher's ``jemx_num``).

    Returns
    -------
    Instrument
        A shared, read-only instance (built once per process).
    """
    key = str(name).lower()
    if key == "isgri":
        return _instrument("isgri")
    if key == "jemx":
        unit = int(jemx_unit) if jemx_unit not in (None, "") else 2
        return _instrument(f"jemx{unit}") if unit in (1, 2) else JemX(unit)
    if key in ("jemx1", "jemx2"):
        return _instrument(key)
    raise ValueError(f"unknown instrument {name!r}")


def problem_with_scw(row, instrument: Instrument) -> str | None:
    """Why a ScW cannot be analysed for an instrument, or None.

    Parameters
    ----------
    row : table row or mapping
        A ScW record (see docs/architecture.md).
    instrument : Instrument

    Returns
    -------
    str or None
        ``"radiation belt"`` for pointings in the belts, ``"no good time for <INSTRUME>"``
        when the instrument has less than 1 s of good time, else None.
    """
    if bool(row["IN_BELT"]):
        return "radiation belt"
    if not instrument.good_time(row) >= 1.0:
        return f"no good time for {instrument.instrume}"
    return None


class ScwView:
    """What one instrument sees of the sky during one ScW.

    Holds the pointing frame, the good time and the sources in the field
    (positions in the ScW's tangent plane, field responses, reference photon
    fluxes and mean variability over the ScW), and computes the true rates
    and the noise-model variance every product uses.

    Parameters
    ----------
    row : table row or mapping
        ScW record (RA_SCX, DEC_SCX, POSANGLE, TSTART, TSTOP, TELAPSE, SWID, good times).
    sky : mmoda_local.sky.Sky
    instrument : Instrument
    """

    def __init__(self, row, sky, instrument: Instrument):
        self.sky = sky
        self.instrument = instrument
        self.swid = str(row["SWID"]).split(".")[0]
        self.tstart = float(row["TSTART"])
        self.tstop = float(row["TSTOP"])
        self.telapse = float(row["TELAPSE"]) if "TELAPSE" in _keys(row) else (self.tstop - self.tstart) * 86400.0
        self.mid_ijd = 0.5 * (self.tstart + self.tstop)
        self.good_time = instrument.good_time(row)
        self.ra = float(row["RA_SCX"])
        self.dec = float(row["DEC_SCX"])
        self.posangle = float(row["POSANGLE"])
        self.basis = tangent_basis(self.ra, self.dec)
        reach = instrument.field_radius_deg + 3.0 * instrument.psf_fwhm_deg
        field = sky.sources_in_field(self.ra, self.dec, reach, self.mid_ijd)
        xi, eta, _ = sky_to_plane(self.basis, field.ra, field.dec)
        y, z = instrument_frame(xi, eta, self.posangle)
        with np.errstate(invalid="ignore"):
            response = np.nan_to_num(instrument.field_response(y, z), nan=0.0)
        # A source with no response is invisible to a coded mask, even if its PSF would reach the field.
        seen = response > 0
        self.index = field.index[seen]
        self.names = field.names[seen]
        self.source_ra = field.ra[seen]
        self.source_dec = field.dec[seen]
        self.xi = xi[seen]
        self.eta = eta[seen]
        self.response = response[seen]
        self.reference_flux = sky.bin_flux(instrument.true_edges_keV)[self.index]
        self.mean_variability = sky.mean_variability(self.index, self.tstart, self.tstop)

    def __len__(self):
        return len(self.index)

    def band_rates(self, e1_keV: float, e2_keV: float) -> np.ndarray:
        """ScW-mean on-axis-equivalent band rates of the sources in the field (ct/s)."""
        area = self.instrument.band_area(e1_keV, e2_keV, self.mid_ijd)
        return self.mean_variability * (self.reference_flux @ area)

    def band_rates_in(self, e1_keV: float, e2_keV: float, t_edges, *, samples: int = 9) -> np.ndarray:
        """Band rates averaged over each interval of ``t_edges`` (IJD), shape (n_sources, n_intervals)."""
        area = self.instrument.band_area(e1_keV, e2_keV, self.mid_ijd)
        reference = self.reference_flux @ area
        t_edges = np.asarray(t_edges, dtype=float)
        factors = np.ones((len(self.index), len(t_edges) - 1))
        variable = np.array([self.sky.is_variable(i) for i in self.index], dtype=bool)
        if variable.any():
            # Midpoint rule with `samples` points per interval, as the ScW mean of the images.
            fractions = (np.arange(samples) + 0.5) / samples
            times = t_edges[:-1, None] + fractions[None, :] * np.diff(t_edges)[:, None]
            values = self.sky.variability(self.index[variable], times)
            factors[variable] = values.mean(axis=-1)
        return reference[:, None] * factors

    def channel_rates(self) -> np.ndarray:
        """ScW-mean on-axis count rates per channel of each source, (n_sources, n_channels)."""
        return self.mean_variability[:, None] * self.instrument.fold(self.reference_flux, self.mid_ijd)

    def folded_sum(self, weights) -> np.ndarray:
        """Σ_s w_s · (ScW-mean channel rates of source s), per channel.

        Summing the photon spectra before folding costs one matrix-vector
        product instead of one per source.
        """
        combined = (np.asarray(weights, dtype=float) * self.mean_variability) @ self.reference_flux
        return self.instrument.fold(combined, self.mid_ijd)

    def variance_numerator(self, e1_keV: float, e2_keV: float, rates=None) -> float:
        """Σ_band β + ξ Σ r_s R_s: the variance of a rate is this / (T R²)."""
        rates = self.band_rates(e1_keV, e2_keV) if rates is None else rates
        return self.instrument.band_background(
            e1_keV, e2_keV, self.mid_ijd
        ) + self.instrument.noise_source_factor * float(np.sum(rates * self.response))

    def channel_variance_numerator(self) -> np.ndarray:
        """Per channel: β + ξ Σ_s c_s R_s."""
        return self.instrument.background_rates(self.mid_ijd) + self.instrument.noise_source_factor * self.folded_sum(
            self.response
        )

    def plane(self, ra_deg, dec_deg):
        """Tangent-plane coordinates (deg) of sky positions in this ScW."""
        xi, eta, _ = sky_to_plane(self.basis, ra_deg, dec_deg)
        return xi, eta

    def response_at(self, ra_deg, dec_deg) -> np.ndarray:
        """Field response at sky positions."""
        xi, eta = self.plane(ra_deg, dec_deg)
        y, z = instrument_frame(xi, eta, self.posangle)
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.instrument.field_response(y, z), nan=0.0)

    def psf_weights(self, ra_deg: float, dec_deg: float) -> np.ndarray:
        """PSF (peak 1) of each source in the field evaluated at a sky position."""
        xi, eta = self.plane(ra_deg, dec_deg)
        distance2 = (self.xi - xi) ** 2 + (self.eta - eta) ** 2
        return np.exp(-0.5 * distance2 / self.instrument.psf_sigma_deg**2)


def _keys(row):
    if hasattr(row, "colnames"):
        return row.colnames
    return row.keys()
