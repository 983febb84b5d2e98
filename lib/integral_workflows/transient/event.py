"""The transient event, as a notice gives it, and the provenance cards of the follow-up's products."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

from astropy.time import Time

from .. import provenance

__all__ = ["Event", "TransientError", "event_from"]


class TransientError(RuntimeError):
    """A service needed by the follow-up refused or answered something unusable."""


@dataclasses.dataclass(frozen=True)
class Event:
    """One transient event, as a notice gives it.

    Attributes
    ----------
    name : str
        ``GRB 090510``, ``S190425z``...
    t0_utc : str
        T0, UTC ISOT.
    ra, dec : float or None
        Position (deg, J2000); None for an event without position.
    radius : float or None
        Error-circle radius (deg); None for a point.
    kind : str
        ``GRB``, ``GW``, ``neutrino``, ``FRB`` or ``other``.
    """

    name: str
    t0_utc: str
    ra: float | None
    dec: float | None
    radius: float | None
    kind: str

    @property
    def has_position(self) -> bool:
        """Whether the notice gave a position (RA = DEC = 0 means it did not)."""
        return self.ra is not None and self.dec is not None

    @property
    def t0(self) -> Time:
        """T0 as an astropy Time (UTC)."""
        return Time(self.t0_utc, format="isot", scale="utc")


def event_from(parameters: Mapping[str, Any]) -> Event:
    """The event of a ``transient_followup`` parameter model (or mapping of its values).

    Parameters
    ----------
    parameters : mapping
        ``event_name``, ``t0_utc``, ``RA``, ``DEC``, ``radius``, ``event_kind``.

    Returns
    -------
    Event
        RA = DEC = 0 becomes an event without position.
    """
    ra, dec = float(parameters["RA"]), float(parameters["DEC"])
    position = not (ra == 0.0 and dec == 0.0)
    radius = parameters.get("radius")
    return Event(
        name=str(parameters["event_name"]),
        t0_utc=str(parameters["t0_utc"]),
        ra=ra if position else None,
        dec=dec if position else None,
        radius=float(radius) if radius is not None and position else None,
        kind=str(parameters["event_kind"]),
    )


@contextlib.contextmanager
def _long_cards_allowed():
    """Let FITS writers shorten long card comments silently (CREATOR names this notebook's long name)."""
    from astropy.io.fits.verify import VerifyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        yield


def _stamp(parameters: Mapping[str, Any], event: Event, **keywords: Any) -> dict:
    """FITS provenance cards of the follow-up's products (OBJECT the event, RA_OBJ/DEC_OBJ its position)."""
    from ..parameters import to_papermill

    values = to_papermill(parameters) if hasattr(parameters, "model_fields") else dict(parameters)
    if not event.has_position:  # RA = DEC = 0 means "no position" here, not "look the name up"
        values = {name: value for name, value in values.items() if name not in ("RA", "DEC")}
    return provenance.fits_provenance(
        notebook="transient_followup.ipynb",
        parameters=values,
        src_name=event.name,
        ra_deg=event.ra,
        dec_deg=event.dec,
        **keywords,
    )
