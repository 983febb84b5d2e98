"""INTEGRAL at the time of a transient event: attitude, exposure, SPI-ACS limits, ISGRI image, GCN-style summary.

What it computes, and the approximations (fields of view, SPI-ACS response, occultation): ``docs/transients.md``.
"""

from __future__ import annotations

from .active_scw import IJD_MJD_OFFSET as IJD_MJD_OFFSET
from .active_scw import ActiveScw, scw_at
from .attitude import EARTH_OCCULTATION_RADIUS_KM as EARTH_OCCULTATION_RADIUS_KM
from .attitude import (
    SPACECRAFT_PATH,
    Attitude,
    InstrumentExposure,
    earth_occulted,
    exposure,
    instrument_frame,
    spacecraft_attitude,
)
from .event import Event, TransientError, event_from
from .field_sketch import plot_fields
from .geometry import INSTRUMENT_FIELDS, FieldGeometry, coded_fraction
from .isgri import IsgriFollowUp, isgri_follow_up
from .spi_acs import LIMIT_TIMESCALES_S as LIMIT_TIMESCALES_S
from .spi_acs import SEARCH_TIMESCALES_S as SEARCH_TIMESCALES_S
from .spi_acs import SPECTRA as SPECTRA
from .spi_acs import THETA_GRID_DEG as THETA_GRID_DEG
from .spi_acs import SpiAcsFollowUp, plot_spiacs, spiacs_follow_up, write_spiacs_products
from .summary import summary_record, summary_text, write_summary

__all__ = [
    "INSTRUMENT_FIELDS",
    "SPACECRAFT_PATH",
    "ActiveScw",
    "Attitude",
    "Event",
    "FieldGeometry",
    "InstrumentExposure",
    "IsgriFollowUp",
    "SpiAcsFollowUp",
    "TransientError",
    "coded_fraction",
    "earth_occulted",
    "event_from",
    "exposure",
    "instrument_frame",
    "isgri_follow_up",
    "plot_fields",
    "plot_spiacs",
    "scw_at",
    "spacecraft_attitude",
    "spiacs_follow_up",
    "summary_record",
    "summary_text",
    "write_spiacs_products",
    "write_summary",
]
