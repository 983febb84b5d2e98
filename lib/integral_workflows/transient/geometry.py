"""Fields of view of ISGRI, JEM-X and SPI and their coded fractions (approximations in ``docs/transients.md``)."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["INSTRUMENT_FIELDS", "FieldGeometry", "coded_fraction"]


def _unit(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _radec(vector: np.ndarray) -> tuple[float, float]:
    vector = np.asarray(vector, float) / np.linalg.norm(vector)
    return float(np.degrees(np.arctan2(vector[1], vector[0])) % 360.0), float(np.degrees(np.arcsin(vector[2])))


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


@dataclasses.dataclass(frozen=True)
class FieldGeometry:
    """An instrument's field of view, as the exposure approximation sees it.

    Attributes
    ----------
    instrument : str
        ``ISGRI``, ``JEM-X`` or ``SPI``.
    shape : str
        ``square`` (sides along the spacecraft Y and Z axes) or ``circle``.
    fully_coded_deg : float
        Side (square) or diameter (circle) of the fully coded field, deg.
    zero_response_deg : float
        Side or diameter where the response reaches zero, deg.
    """

    instrument: str
    shape: str
    fully_coded_deg: float
    zero_response_deg: float

    def coded_fraction(self, y_deg, z_deg) -> np.ndarray:
        """Coded fraction at instrument-frame angles (see :func:`coded_fraction`)."""
        return coded_fraction(self, y_deg, z_deg)


#: The fields of view (docs/transients.md): IBIS/ISGRI 9°×9° fully coded, 29°×29° zero response (squares);
#: JEM-X 4.8° fully coded, 13.2° zero response (diameters); SPI 16° fully coded, 31° zero response (diameters).
INSTRUMENT_FIELDS = {
    "ISGRI": FieldGeometry("ISGRI", "square", 9.0, 29.0),
    "JEM-X": FieldGeometry("JEM-X", "circle", 4.8, 13.2),
    "SPI": FieldGeometry("SPI", "circle", 16.0, 31.0),
}


def coded_fraction(field: FieldGeometry, y_deg, z_deg) -> np.ndarray:
    """Fraction of the detector a source illuminates through the mask, 0 to 1 (the approximation of the docs).

    Square fields (ISGRI): 1 inside the fully coded square, falling linearly along each axis to 0 at the edge
    of the zero-response square, the two axes multiplied (the shadow of a square mask on a square detector).
    Circular fields (JEM-X, SPI): 1 within the fully coded radius, falling linearly with the off-axis angle to 0
    at the zero-response radius.

    Parameters
    ----------
    field : FieldGeometry
        The instrument's field.
    y_deg, z_deg : float or array_like
        Angles from the pointing axis along the spacecraft Y and Z axes, deg (:func:`instrument_frame`).

    Returns
    -------
    numpy.ndarray
        Coded fraction.
    """
    y, z = np.abs(np.asarray(y_deg, float)), np.abs(np.asarray(z_deg, float))
    inner, outer = field.fully_coded_deg / 2.0, field.zero_response_deg / 2.0
    if field.shape == "square":
        along_y = np.clip((outer - y) / (outer - inner), 0.0, 1.0)
        along_z = np.clip((outer - z) / (outer - inner), 0.0, 1.0)
        return along_y * along_z
    off_axis = np.hypot(y, z)
    return np.clip((outer - off_axis) / (outer - inner), 0.0, 1.0)
