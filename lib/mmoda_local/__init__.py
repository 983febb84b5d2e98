"""A local MMODA: an HTTP dispatcher over a simulated INTEGRAL sky.

The unmodified ``oda_api`` client talks to it as to the real MMODA dispatcher
(https://www.astro.unige.ch/mmoda/dispatch-data). Every product it makes is
simulated and says so in its FITS headers (``ORIGIN``/``CREATOR``).
"""

__version__ = "0.2.0"

#: Written in every product header so nobody mistakes simulated data for archive data.
ORIGIN = "mmoda_local (SIMULATED DATA)"
CREATOR = f"mmoda_local {__version__} simulated INTEGRAL sky"
