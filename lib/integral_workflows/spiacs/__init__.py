"""SPI-ACS light curves around a time: fetch (``spi_acs_lc``), background, excess search, upper limits, fluences.

The methods are written down in ``docs/science_notes.md``, section "SPI-ACS".
"""

from __future__ import annotations

from .background import RED_NOISE_P as RED_NOISE_P
from .background import SpiAcsBackground, fit_background
from .data import (
    DEFAULT_TIMESCALES_S,
    SpiAcsError,
    SpiAcsLightCurve,
    SpiAcsNoData,
    SpiAcsRefused,
    fetch_spiacs_lightcurve,
    light_curve_from_unit,
)
from .data import NATIVE_BIN_S as NATIVE_BIN_S
from .data import SAMPLE_TIME_TO_CENTRE_S as SAMPLE_TIME_TO_CENTRE_S
from .limits import fluence_upper_limits, upper_limits
from .plots import plot_light_curve, plot_significance
from .products import to_hdulist as to_hdulist
from .products import write_products
from .response import FLUENCE_BAND_KEV, SPECTRA, angular_response, counts_per_fluence, effective_area_cm2
from .response import PEAK_AREA_CM2 as PEAK_AREA_CM2
from .search import WINDOW_COLUMNS, Excess, ExcessSearch, excess_in_window, scan_timescale, search_excess
from .search import scan_p_value as scan_p_value

__all__ = [
    "DEFAULT_TIMESCALES_S",
    "FLUENCE_BAND_KEV",
    "SPECTRA",
    "Excess",
    "ExcessSearch",
    "SpiAcsBackground",
    "SpiAcsError",
    "SpiAcsLightCurve",
    "SpiAcsNoData",
    "SpiAcsRefused",
    "WINDOW_COLUMNS",
    "angular_response",
    "counts_per_fluence",
    "effective_area_cm2",
    "excess_in_window",
    "fetch_spiacs_lightcurve",
    "fit_background",
    "fluence_upper_limits",
    "light_curve_from_unit",
    "plot_light_curve",
    "plot_significance",
    "scan_timescale",
    "search_excess",
    "upper_limits",
    "write_products",
]
