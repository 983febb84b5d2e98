"""SPI-ACS response: from counts to fluence (the approximation is in ``docs/science_notes.md``, "SPI-ACS")."""

from __future__ import annotations

import numpy as np
from scipy import integrate

__all__ = ["FLUENCE_BAND_KEV", "SPECTRA", "angular_response", "counts_per_fluence", "effective_area_cm2"]


#: Band of the quoted fluences, keV (the band of INTEGRAL's SPI-ACS GCN circulars).
FLUENCE_BAND_KEV = (75.0, 2000.0)
SPECTRA = {
    "short-hard": {"model": "cutoffpl", "alpha": -0.5, "epeak_keV": 600.0},
    "long-soft": {"model": "band", "alpha": -1.0, "beta": -2.5, "epeak_keV": 300.0},
}
#: Low threshold of the shield's counting, keV, and the width of its turn-on (von Kienlin et al. 2003: ~80 keV).
_THRESHOLD_KEV, _TURN_ON_KEV = 75.0, 50.0
#: Highest photon energy counted in the conversion, keV.
_E_MAX_KEV = 10_000.0
#: Calibration (Viganò & Mereghetti 2009): ≈ 1e-10 erg/cm² (75–1000 keV) per count, directions ⟂ to the axis.
_CALIBRATION_ERG_PER_COUNT = 1.0e-10
_CALIBRATION_BAND_KEV = (75.0, 1000.0)
_CALIBRATION_SPECTRUM = "long-soft"
_KEV_TO_ERG = 1.602176634e-9


def _photon_spectrum(energy_keV, spectrum: str) -> np.ndarray:
    """Unnormalised photon spectrum N(E) of a named typical spectrum."""
    spec = SPECTRA[spectrum]
    e = np.asarray(energy_keV, dtype=float)
    alpha, epeak = spec["alpha"], spec["epeak_keV"]
    e0 = epeak / (2.0 + alpha)
    if spec["model"] == "cutoffpl":
        return (e / 100.0) ** alpha * np.exp(-e / e0)
    beta = spec["beta"]
    e_break = (alpha - beta) * e0
    low = (e / 100.0) ** alpha * np.exp(-e / e0)
    high = (e_break / 100.0) ** (alpha - beta) * np.exp(beta - alpha) * (e / 100.0) ** beta
    return np.where(e < e_break, low, high)


def angular_response(theta_deg) -> np.ndarray:
    """Relative response of the shield to a burst at ``theta_deg`` from the pointing (X) axis (1 at 90°).

    The approximation of ``docs/science_notes.md``: 0.3 + 0.7 sin²θ in front (the camera and the mask's
    aperture around the axis are not shield), 0.6 + 0.4 sin²θ behind (the service module shadows part
    of the bottom shield). ``None`` or NaN: the average over all directions.
    """
    if theta_deg is None:
        return np.asarray(_MEAN_RESPONSE)
    theta = np.radians(np.asarray(theta_deg, dtype=float))
    s2 = np.sin(theta) ** 2
    response = np.where(np.cos(theta) >= 0, 0.3 + 0.7 * s2, 0.6 + 0.4 * s2)
    return np.where(np.isfinite(theta), response, _MEAN_RESPONSE)


# average over the sphere: ∫ R sinθ dθ / 2 with R above (front 0.3 + 0.7·2/3, back 0.6 + 0.4·2/3)
_MEAN_RESPONSE = 0.5 * ((0.3 + 0.7 * 2 / 3) + (0.6 + 0.4 * 2 / 3))


def _energy_shape(energy_keV) -> np.ndarray:
    """Relative effective area with energy: a turn-on above the threshold, a slow decline above 1 MeV."""
    e = np.asarray(energy_keV, dtype=float)
    turn_on = np.where(e > _THRESHOLD_KEV, -np.expm1(-(e - _THRESHOLD_KEV) / _TURN_ON_KEV), 0.0)
    return turn_on * np.minimum(1.0, (e / 1000.0) ** -0.3)


def _integral(function, low: float, high: float) -> float:
    grid = np.geomspace(low, high, 2001)
    return float(integrate.trapezoid(function(grid), grid))


def _counts_per_unit_area(spectrum: str, band_keV: tuple[float, float]) -> float:
    """Shield counts per cm² of (unit-shape) area for a burst of 1 erg/cm² in ``band_keV``."""
    counted = _integral(lambda e: _energy_shape(e) * _photon_spectrum(e, spectrum), 20.0, _E_MAX_KEV)
    energy = _integral(lambda e: e * _photon_spectrum(e, spectrum), *band_keV) * _KEV_TO_ERG
    return counted / energy


#: Peak effective area (cm², directions ⟂ to the axis, the energy shape's maximum) fixed by the calibration.
PEAK_AREA_CM2 = 1.0 / (_CALIBRATION_ERG_PER_COUNT * _counts_per_unit_area(_CALIBRATION_SPECTRUM, _CALIBRATION_BAND_KEV))


def effective_area_cm2(energy_keV, theta_deg=90.0) -> np.ndarray:
    """The approximate effective area of the shield, cm², at ``energy_keV`` for a burst at ``theta_deg``."""
    return PEAK_AREA_CM2 * _energy_shape(energy_keV) * angular_response(theta_deg)


def counts_per_fluence(spectrum: str, *, theta_deg=None, band_keV: tuple[float, float] = FLUENCE_BAND_KEV) -> float:
    """Shield counts of a burst of 1 erg/cm² in ``band_keV`` with a typical spectrum at ``theta_deg``.

    Parameters
    ----------
    spectrum : str
        A key of :data:`SPECTRA` (``short-hard``, ``long-soft``).
    theta_deg : float, optional
        Angle between the burst and the pointing axis; None: averaged over directions.
    band_keV : (float, float)
        Band of the fluence.

    Returns
    -------
    float
        Counts per erg/cm².
    """
    if spectrum not in SPECTRA:
        raise ValueError(f"spectrum {spectrum!r}: one of {', '.join(SPECTRA)}")
    return float(PEAK_AREA_CM2 * _counts_per_unit_area(spectrum, tuple(band_keV)) * angular_response(theta_deg))
