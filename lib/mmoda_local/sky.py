"""The simulated INTEGRAL sky: sources, spectra, variability, solar-system bodies.

What it contains, what is real and what is invented: docs/simulated_sky.md, "The sky".
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import logging
import math
import os
import threading

import numpy as np

from .instrument import (
    CATALOGUE_BANDS,
    CRAB_CATALOGUE_RATES,
    CRAB_NORM_100KEV,
    CRAB_PHOTON_INDEX,
    MJDREF,
    REFERENCE_IJD,
    crab_photon_spectrum,
    instrument_for,
    normalised_name,
    unit_vectors,
    vectors_to_radec,
)

log = logging.getLogger(__name__)

__all__ = [
    "Sky",
    "FieldSources",
    "CRAB_PHOTON_INDEX",
    "CRAB_NORM_100KEV",
    "crab_photon_spectrum",
    "BODIES",
    "date_to_ijd",
    "normalise_injected_source",
    "parse_injected_source",
    "shape_lightcurve",
    "de421_path",
]

CATALOGUE_FILE = "isdc_ref_cat_0043_subset.ecsv"
#: Solar-system bodies of the sky (astropy ``get_body`` names).
BODIES = ("venus", "mars", "jupiter", "saturn", "uranus", "neptune")
#: Indices are clipped to this range.
INDEX_LIMITS = (1.0, 4.0)
#: JEM-X and ISGRI power laws are blended over this range (keV).
JOIN_RANGE_KEV = (15.0, 25.0)
#: A catalogue rate below this fraction of the Crab's is treated as missing.
MISSING_FRACTION = 1e-6
#: Invented flux range (mCrab) of catalogue entries without any usable rate.
FAINT_MCRAB_RANGE = (0.3, 3.0)
CRAB_20_60 = CRAB_CATALOGUE_RATES["ISGR_FLUX_1"]
#: Planets stay within this ecliptic latitude (deg, geocentric; Venus reaches ~9°).
BODY_MAX_ECLIPTIC_LATITUDE = 10.0
#: Step (days) of the cached body ephemeris grid, interpolated with cubic Lagrange polynomials.
BODY_GRID_STEP_DAYS = 1.0
BODY_BLOCK_POINTS = 32
OBLIQUITY_DEG = 23.4392911
#: Speed of light, km/s (light time of the body ephemerides).
LIGHT_SPEED_KM_S = 299792.458


def date_to_ijd(date: str) -> float:
    """ISO date (``YYYY-MM-DD``, UTC ≈ TT to a minute) → IJD (days since 2000-01-01)."""
    return float((np.datetime64(date, "s") - np.datetime64("2000-01-01T00:00:00", "s")) / np.timedelta64(1, "D"))


def _hash_uniforms(text: str, count: int) -> np.ndarray:
    """``count`` deterministic uniforms in [0, 1) from a text (SHA-256 based)."""
    out = []
    counter = 0
    while len(out) < count:
        digest = hashlib.sha256(f"{text}\x1f{counter}".encode()).digest()
        out.extend(int.from_bytes(digest[i : i + 8], "little") / 2.0**64 for i in range(0, 32, 8))
        counter += 1
    return np.array(out[:count])


# --------------------------------------------------------------------------------------------------
# Light-curve building blocks
# --------------------------------------------------------------------------------------------------
class Flaring:
    """Deterministic log-normal "red noise": exp(σ·m(t) − σ²/2), m a fixed sum of sinusoids.

    Parameters
    ----------
    name : str
        Seeds the frequencies and phases (so each source flares its own way).
    sigma : float
        σ of the log-flux.
    shortest_days, longest_days : float
        Range of the time scales.
    """

    def __init__(self, name: str, sigma: float, shortest_days: float, longest_days: float, components: int = 40):
        draws = _hash_uniforms(f"flaring:{name}", 2 * components)
        base = np.geomspace(1.0 / longest_days, 1.0 / shortest_days, components)
        self.frequencies = base * (1.0 + 0.15 * (draws[:components] - 0.5))
        self.phases = 2.0 * np.pi * draws[components:]
        # Equal amplitude per logarithmic frequency interval: a flicker-noise (1/f) power spectrum.
        self.amplitude = math.sqrt(2.0 / components)
        self.sigma = sigma

    def __call__(self, ijd) -> np.ndarray:
        t = np.asarray(ijd, dtype=float)
        m = self.amplitude * np.sin(2.0 * np.pi * np.multiply.outer(t, self.frequencies) + self.phases).sum(axis=-1)
        return np.exp(self.sigma * m - 0.5 * self.sigma**2)


@dataclasses.dataclass(frozen=True)
class Outburst:
    """A fast-rise exponential-decay outburst."""

    peak_date: str
    peak_mcrab: float
    rise_days: float = 5.0
    decay_days: float = 30.0

    @property
    def peak_ijd(self) -> float:
        return date_to_ijd(self.peak_date)

    def __call__(self, ijd) -> np.ndarray:
        dt = np.asarray(ijd, dtype=float) - self.peak_ijd
        with np.errstate(over="ignore"):
            return self.peak_mcrab * np.where(
                dt < 0, np.exp(np.clip(dt / self.rise_days, -700, 0)), np.exp(-np.clip(dt / self.decay_days, 0, 700))
            )


def _smooth_step(ijd, date: str, width_days: float) -> np.ndarray:
    """Logistic step from 0 to 1 around ``date``."""
    x = (np.asarray(ijd, dtype=float) - date_to_ijd(date)) / width_days
    return 0.5 * (1.0 + np.tanh(x))


def _eclipse(
    ijd, period_days: float, mid_eclipse_ijd: float, duration_days: float, ingress_days: float, depth_level: float
) -> np.ndarray:
    """Flux factor of an eclipse: 1 out of eclipse, ``depth_level`` inside, linear ingress/egress."""
    phase_days = (np.asarray(ijd, dtype=float) - mid_eclipse_ijd + 0.5 * period_days) % period_days - 0.5 * period_days
    half = 0.5 * duration_days
    fraction_in = np.clip((half + ingress_days - np.abs(phase_days)) / ingress_days, 0.0, 1.0)
    return 1.0 - (1.0 - depth_level) * fraction_in


class LightCurve:
    """Base of the variability models.

    ``relative`` models return a factor multiplying the catalogue spectrum;
    absolute ones return mCrab.
    """

    relative = True
    description = ""

    def __call__(self, ijd) -> np.ndarray:
        raise NotImplementedError


class OutburstLightCurve(LightCurve):
    """Quiescent level + outbursts + plateaus (+ optional flaring during outbursts), in mCrab."""

    relative = False

    def __init__(self, outbursts=(), *, quiescent_mcrab=0.0, plateaus=(), flaring=None, description=""):
        self.outbursts = tuple(outbursts)
        self.quiescent_mcrab = quiescent_mcrab
        self.plateaus = tuple(plateaus)
        self.flaring = flaring
        self.description = description or "; ".join(
            [f"outburst {o.peak_date} {o.peak_mcrab:g} mCrab" for o in self.outbursts]
            + [f"{m:g} mCrab {a}..{b}" for a, b, m in self.plateaus]
            + ([f"flaring sigma {flaring.sigma:g}"] if flaring is not None else [])
            + [f"quiescent {quiescent_mcrab:g} mCrab"]
        )

    def __call__(self, ijd) -> np.ndarray:
        t = np.asarray(ijd, dtype=float)
        active = np.zeros_like(t)
        for outburst in self.outbursts:
            active = active + outburst(t)
        for start, stop, mcrab in self.plateaus:
            active = active + mcrab * _smooth_step(t, start, 10.0) * (1.0 - _smooth_step(t, stop, 30.0))
        if self.flaring is not None:
            active = active * self.flaring(t)
        return self.quiescent_mcrab + active


class VelaX1(LightCurve):
    """Vela X-1: eclipsing 8.964-d orbit and strong flaring (relative to the catalogue rate)."""

    description = "8.964357-d orbit, 1.72-d eclipses (MJD 52974.227), flaring sigma 0.6"

    def __init__(self):
        self.flaring = Flaring("Vela X-1", 0.6, 0.02, 5.0)

    def __call__(self, ijd):
        return self.flaring(ijd) * _eclipse(ijd, 8.964357, 52974.227 - MJDREF, 1.72, 0.1, 0.03)


class HerX1(LightCurve):
    """Her X-1: 35-d super-orbital cycle and 1.7-d eclipses (mCrab)."""

    relative = False
    description = "35-d cycle (main-on 100 mCrab, short-on 30, off 3), 1.700167-d orbit with eclipses"
    superorbital_days = 34.85
    turn_on_ijd = 52000.0 - MJDREF

    def __init__(self):
        self.flaring = Flaring("Her X-1", 0.1, 0.01, 2.0)

    def __call__(self, ijd):
        t = np.asarray(ijd, dtype=float)
        phase = ((t - self.turn_on_ijd) / self.superorbital_days) % 1.0
        main_on = np.where(phase < 0.31, np.sin(np.pi * np.clip(phase / 0.31, 0, 1)) ** 0.6, 0.0)
        short_on = np.where((phase > 0.57) & (phase < 0.78), np.sin(np.pi * np.clip((phase - 0.57) / 0.21, 0, 1)), 0.0)
        mcrab = 3.0 + 97.0 * main_on + 27.0 * short_on
        eclipse = _eclipse(t, 1.700167, 46359.87194 - MJDREF, 0.23, 0.02, 0.0)
        return mcrab * eclipse * self.flaring(t)


class CenX3(LightCurve):
    """Cen X-3: 2.087-d eclipsing orbit and flaring (mCrab)."""

    relative = False
    description = "80 mCrab, 2.08704-d orbit, 0.45-d eclipses, flaring sigma 0.4"

    def __init__(self):
        self.flaring = Flaring("Cen X-3", 0.4, 0.05, 30.0)

    def __call__(self, ijd):
        return 80.0 * self.flaring(ijd) * _eclipse(ijd, 2.08704, 50506.788 - MJDREF, 0.45, 0.03, 0.02)


class CygX1(LightCurve):
    """Cyg X-1: hard state at the catalogue rate, soft episodes at 35 % (relative)."""

    description = "hard state; soft states 2010-06..2011-05, 2011-06..2012-06, 2013-01..2014-05, 2016-12..2017-03"
    soft_states = (
        ("2010-06-20", "2011-05-10"),
        ("2011-06-20", "2012-06-30"),
        ("2013-01-15", "2014-05-01"),
        ("2016-12-01", "2017-03-31"),
    )
    soft_level = 0.35

    def __init__(self):
        self.flaring = Flaring("Cyg X-1", 0.15, 0.01, 30.0)

    def __call__(self, ijd):
        t = np.asarray(ijd, dtype=float)
        softness = np.zeros_like(t)
        for start, stop in self.soft_states:
            softness = np.maximum(softness, _smooth_step(t, start, 15.0) * (1.0 - _smooth_step(t, stop, 15.0)))
        return (1.0 - (1.0 - self.soft_level) * softness) * self.flaring(t)


class Grs1915(LightCurve):
    """GRS 1915+105: strong flaring; obscured state from mid-2018 (relative)."""

    description = "flaring sigma 0.4 (2 min to 20 d); obscured (x0.08) from 2018-06-15"

    def __init__(self):
        self.flaring = Flaring("GRS 1915+105", 0.4, 0.0015, 20.0)

    def __call__(self, ijd):
        t = np.asarray(ijd, dtype=float)
        return (1.0 - 0.92 * _smooth_step(t, "2018-06-15", 60.0)) * self.flaring(t)


class Persistent(LightCurve):
    """A constant level in mCrab with optional flaring."""

    relative = False

    def __init__(self, mcrab: float, flaring=None, description=""):
        self.mcrab = mcrab
        self.flaring = flaring
        self.description = description or f"{mcrab:g} mCrab"

    def __call__(self, ijd):
        t = np.asarray(ijd, dtype=float)
        return self.mcrab * (self.flaring(t) if self.flaring is not None else np.ones_like(t))


class InventedOutbursts(LightCurve):
    """Recurrent outbursts at the catalogue (peak) rate, dates drawn from the name's hash (relative)."""

    quiescent_fraction = 0.002

    def __init__(self, name: str, *, peak_factor: float = 1.0):
        self.peak_factor = peak_factor
        draws = _hash_uniforms(f"outbursts:{name}", 4)
        self.recurrence_days = 365.25 * (4.0 + 7.0 * draws[0])
        self.first_peak_ijd = 1000.0 + self.recurrence_days * draws[1]
        self.rise_days = 3.0 + 7.0 * draws[2]
        self.decay_days = 15.0 + 45.0 * draws[3]
        first = np.datetime64("2000-01-01") + np.timedelta64(int(self.first_peak_ijd), "D")
        self.description = (
            f"invented: peaks every {self.recurrence_days / 365.25:.1f} yr from {first}, "
            f"rise {self.rise_days:.0f} d, decay {self.decay_days:.0f} d"
        )

    def __call__(self, ijd):
        t = np.asarray(ijd, dtype=float)
        # The nearest peaks before and after t (rises are short: the next one only matters just before it).
        cycles = np.floor((t - self.first_peak_ijd) / self.recurrence_days)
        previous_peak = self.first_peak_ijd + cycles * self.recurrence_days
        next_peak = previous_peak + self.recurrence_days
        decay = np.exp(-np.clip((t - previous_peak) / self.decay_days, 0, 700))
        rise = np.exp(np.clip((t - next_peak) / self.rise_days, -700, 0))
        return self.peak_factor * (self.quiescent_fraction + (1 - self.quiescent_fraction) * np.maximum(decay, rise))


class Flare(LightCurve):
    """An injected source's Gaussian flare: 1 + (peak − 1)·exp(−½((t − t0)/width)²) (relative)."""

    def __init__(self, t0_ijd: float, width_days: float, peak_factor: float):
        self.t0_ijd, self.width_days, self.peak_factor = float(t0_ijd), float(width_days), float(peak_factor)
        self.description = f"flare at IJD {t0_ijd:g}, sigma {width_days:g} d, peak x{peak_factor:g}"

    def __call__(self, ijd):
        x = (np.asarray(ijd, dtype=float) - self.t0_ijd) / self.width_days
        return 1.0 + (self.peak_factor - 1.0) * np.exp(-0.5 * np.minimum(x * x, 1400.0))


class Sine(LightCurve):
    """An injected source's sinusoidal modulation: 1 + a·sin(2π(t − t0)/P) (relative)."""

    def __init__(self, period_days: float, amplitude: float, t0_ijd: float = 0.0):
        self.period_days, self.amplitude, self.t0_ijd = float(period_days), float(amplitude), float(t0_ijd)
        self.description = f"sine, period {period_days:g} d, amplitude {amplitude:g}, t0 IJD {t0_ijd:g}"

    def __call__(self, ijd):
        phase = 2.0 * np.pi * (np.asarray(ijd, dtype=float) - self.t0_ijd) / self.period_days
        return 1.0 + self.amplitude * np.sin(phase)


#: Grammar of an injected source's light-curve shape (docs/simulated_sky.md, "Injected sources").
SHAPE_GRAMMAR = "constant | flare:T0_IJD:WIDTH_DAYS:PEAK_FACTOR | sine:PERIOD_DAYS:AMPLITUDE[:T0_IJD]"


def shape_lightcurve(shape: str | None) -> LightCurve | None:
    """The light-curve model of an injected source's shape string (None for ``constant``).

    Parameters
    ----------
    shape : str or None
        ``constant`` (default), ``flare:T0_IJD:WIDTH_DAYS:PEAK_FACTOR`` (a
        Gaussian flare of σ WIDTH_DAYS at T0_IJD reaching PEAK_FACTOR times
        the flux) or ``sine:PERIOD_DAYS:AMPLITUDE[:T0_IJD]`` (flux × (1 + A
        sin(2π(t − T0)/P)), 0 ≤ A ≤ 1).

    Raises
    ------
    ValueError
        For anything else, saying what is expected.
    """
    text = "constant" if shape is None else str(shape).strip()
    kind, *fields = [part.strip() for part in text.split(":")]
    kind = kind.lower()
    if kind in ("", "constant") and not fields:
        return None
    try:
        numbers = [float(field) for field in fields]
    except ValueError:
        raise ValueError(f"shape {text!r}: the fields after the kind must be numbers ({SHAPE_GRAMMAR})") from None
    if not all(math.isfinite(x) for x in numbers):
        raise ValueError(f"shape {text!r}: the fields must be finite numbers")
    if kind == "flare" and len(numbers) == 3:
        t0, width, peak = numbers
        if width <= 0 or peak < 0:
            raise ValueError(f"shape {text!r}: WIDTH_DAYS must be > 0 and PEAK_FACTOR >= 0")
        return Flare(t0, width, peak)
    if kind == "sine" and len(numbers) in (2, 3):
        period, amplitude = numbers[:2]
        if period <= 0 or not 0 <= amplitude <= 1:
            raise ValueError(f"shape {text!r}: PERIOD_DAYS must be > 0 and 0 <= AMPLITUDE <= 1")
        return Sine(period, amplitude, numbers[2] if len(numbers) == 3 else 0.0)
    raise ValueError(f"shape {text!r} is not one of {SHAPE_GRAMMAR}")


def normalise_injected_source(entry: dict) -> dict:
    """Check an injected source and fill its defaults.

    Parameters
    ----------
    entry : dict
        ``name`` (str), ``ra``, ``dec`` (deg), ``flux_mcrab`` (> 0), optional
        ``index`` (photon index, default 2.0) and ``shape`` (see
        :func:`shape_lightcurve`, default ``constant``).

    Returns
    -------
    dict
        The six keys, typed, ``ra`` in [0, 360).

    Raises
    ------
    ValueError
        When a key is missing, unknown or out of range.
    """
    if not isinstance(entry, dict):
        raise ValueError(f"an injected source is a dict, got {entry!r}")
    unknown = sorted(set(entry) - {"name", "ra", "dec", "flux_mcrab", "index", "shape"})
    if unknown:
        raise ValueError(f"injected source {entry!r}: unknown keys {unknown}")
    missing = [key for key in ("name", "ra", "dec", "flux_mcrab") if key not in entry]
    if missing:
        raise ValueError(f"injected source {entry!r}: missing {missing}")
    name = str(entry["name"]).strip()
    if not name:
        raise ValueError("an injected source needs a name")
    try:
        ra, dec, flux = float(entry["ra"]), float(entry["dec"]), float(entry["flux_mcrab"])
        index = float(entry.get("index", 2.0) if entry.get("index") is not None else 2.0)
    except (TypeError, ValueError):
        raise ValueError(f"injected source {name!r}: ra, dec, flux_mcrab and index must be numbers") from None
    if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise ValueError(f"injected source {name!r}: dec={dec} must be within [-90, 90] and ra finite")
    if not (math.isfinite(flux) and flux > 0):
        raise ValueError(f"injected source {name!r}: flux_mcrab={flux} must be > 0")
    if not (math.isfinite(index) and 0.0 <= index <= 5.0):
        raise ValueError(f"injected source {name!r}: index={index} must be within [0, 5]")
    shape = str(entry.get("shape") or "constant").strip()
    shape_lightcurve(shape)  # raises on a bad shape
    return {"name": name, "ra": ra % 360.0, "dec": dec, "flux_mcrab": flux, "index": index, "shape": shape}


def parse_injected_source(text: str) -> dict:
    """``NAME,RA,DEC,FLUX_MCRAB[,INDEX[,SHAPE]]`` → the dict of :func:`normalise_injected_source`."""
    parts = [part.strip() for part in str(text).split(",")]
    if not 4 <= len(parts) <= 6:
        raise ValueError(f"expected NAME,RA,DEC,FLUX_MCRAB[,INDEX[,SHAPE]], got {text!r}")
    entry = dict(zip(("name", "ra", "dec", "flux_mcrab", "index", "shape"), parts))
    if entry.get("index") == "":
        entry.pop("index")
    return normalise_injected_source(entry)


@dataclasses.dataclass(frozen=True)
class CuratedSource:
    """A source whose light curve (and possibly spectrum) is set by hand.

    ``indices`` = (ISGRI, JEM-X) photon indices, or None to keep the
    catalogue's spectral shape.
    """

    lightcurve: LightCurve
    indices: tuple | None = None


def _outbursts(*specs, quiescent=0.0, plateaus=(), flaring=None, description=""):
    return OutburstLightCurve(
        [Outburst(*spec) for spec in specs],
        quiescent_mcrab=quiescent,
        plateaus=plateaus,
        flaring=flaring,
        description=description,
    )


def _curated_sources() -> dict:
    """The hand-modelled sources (documented in docs/simulated_sky.md, "The sky")."""
    return {
        "Vela X-1": CuratedSource(VelaX1()),
        "Cyg X-1": CuratedSource(CygX1()),
        "GRS 1915+105": CuratedSource(Grs1915()),
        "Her X-1": CuratedSource(HerX1(), (3.3, 1.0)),
        "Cen X-3": CuratedSource(CenX3(), (3.0, 1.2)),
        "GX 1+4": CuratedSource(Persistent(40.0, Flaring("GX 1+4", 0.5, 0.04, 60.0)), (2.3, 1.5)),
        "GRS 1758-258": CuratedSource(Persistent(60.0, Flaring("GRS 1758-258", 0.2, 1.0, 100.0)), (1.8, 1.8)),
        "SGR 1806-20": CuratedSource(Persistent(5.0, description="5 mCrab persistent"), (1.7, 2.0)),
        "KS 1731-260": CuratedSource(Persistent(0.1, description="quiescent since 2001"), (2.5, 2.0)),
        "GX 339-4": CuratedSource(
            _outbursts(
                ("2002-05-15", 700, 8, 40),
                ("2004-08-20", 400, 10, 40),
                ("2007-02-01", 600, 10, 30),
                ("2010-03-25", 800, 15, 30),
                ("2013-09-01", 150, 10, 30),
                ("2014-12-20", 400, 15, 30),
                ("2017-09-10", 200, 10, 30),
                ("2021-02-10", 500, 10, 30),
                quiescent=0.05,
                description="outbursts 2002, 2004, 2007, 2010, 2013, 2014/15, 2017, 2021",
            ),
            (1.7, 1.7),
        ),
        "1A 0535+262": CuratedSource(
            _outbursts(
                ("2005-06-01", 3500, 5, 12),
                ("2005-08-30", 700, 4, 8),
                ("2009-05-21", 400, 4, 8),
                ("2009-12-10", 4500, 5, 10),
                ("2011-02-25", 3000, 6, 10),
                ("2020-11-19", 10000, 7, 12),
                quiescent=1.4,
                description="giant outbursts 2005-06, 2009-12, 2011-02, 2020-11; normal ones",
            ),
            (3.0, 1.2),
        ),
        "MAXI J1820+070": CuratedSource(_outbursts(("2018-03-23", 3000, 3, 70)), (1.6, 1.6)),
        "MAXI J1348-630": CuratedSource(
            _outbursts(("2019-02-03", 1200, 3, 12), ("2019-05-20", 200, 5, 20)), (1.8, 1.8)
        ),
        "Swift J0243.6+6124": CuratedSource(_outbursts(("2017-10-30", 4000, 12, 25)), (2.8, 1.0)),
        "MAXI J1535-571": CuratedSource(_outbursts(("2017-09-10", 1500, 3, 15)), (1.9, 1.9)),
        "MAXI J1631-478": CuratedSource(_outbursts(("2019-01-05", 600, 5, 25)), (2.2, 2.2)),
        "V404 Cyg": CuratedSource(
            _outbursts(
                ("2015-06-22", 6000, 4, 3), ("2015-12-29", 400, 1, 4), flaring=Flaring("V404 Cyg", 1.0, 0.003, 1.0)
            ),
            (1.6, 1.6),
        ),
        "XTE J1550-564": CuratedSource(_outbursts(("2003-03-28", 350, 5, 20)), (1.8, 1.8)),
        "GRO J1744-28": CuratedSource(
            _outbursts(("2014-02-20", 1000, 10, 30), ("2017-02-15", 400, 10, 25)), (2.8, 1.5)
        ),
        "Swift J1728.9-3613": CuratedSource(_outbursts(("2019-02-05", 400, 4, 20)), (2.0, 2.0)),
        "Swift J1858.6-0814": CuratedSource(
            _outbursts(("2018-11-10", 100, 10, 80), flaring=Flaring("Swift J1858.6-0814", 0.8, 0.005, 5.0)), (1.8, 1.8)
        ),
        "MAXI J1621-501": CuratedSource(_outbursts(("2017-10-15", 40, 5, 30)), (2.0, 2.0)),
        "SWIFT J1910.2-0546": CuratedSource(_outbursts(("2012-06-05", 250, 5, 40)), (2.0, 2.0)),
        "IGR J17091-3624": CuratedSource(
            _outbursts(("2011-02-20", 120, 10, 120), ("2016-03-10", 100, 10, 60)), (1.8, 1.8)
        ),
        "XTE J1752-223": CuratedSource(_outbursts(("2009-11-05", 500, 8, 40)), (1.6, 1.6)),
        "MAXI J1659-152": CuratedSource(_outbursts(("2010-09-28", 200, 3, 20)), (1.9, 1.9)),
        "MAXI J1836-194": CuratedSource(_outbursts(("2011-09-05", 150, 5, 30)), (1.8, 1.8)),
        "MAXI J1813-095": CuratedSource(_outbursts(("2018-02-25", 60, 3, 20)), (1.8, 1.8)),
        "IGR J17591-2342": CuratedSource(_outbursts(("2018-08-15", 25, 3, 15)), (1.9, 1.9)),
        "IGR J17503-2636": CuratedSource(_outbursts(("2018-08-12", 15, 2, 8)), (2.0, 2.0)),
        "SWIFT J1753.5-0127": CuratedSource(
            _outbursts(("2005-07-05", 250, 5, 40), plateaus=(("2005-08-01", "2016-10-01", 80.0),)), (1.7, 1.7)
        ),
    }


TRANSIENT_PREFIXES = ("maxi", "xte", "gro", "sax", "swift", "gs", "exo", "ks", "sgr")
TRANSIENT_MIN_MCRAB = 10.0
MAX_INVENTED_PEAK_MCRAB = 1000.0


def _looks_like_peak_entry(name: str, source_class: int, reference_mcrab: float, isgri_bands_consistent: bool) -> bool:
    """Catalogue entries whose rate is an outburst peak.

    Transient-style names of a Galactic or unknown class, or entries whose
    ISGRI bands contradict each other (60–200 keV given, 20–60 keV empty: a
    peak recorded in one band only), brighter than 10 mCrab.
    """
    lowered = name.strip().lower()
    galactic_or_unknown = 1000 <= source_class < 2000 or source_class == 9999
    transient_name = lowered.startswith(TRANSIENT_PREFIXES) and galactic_or_unknown
    return (transient_name or not isgri_bands_consistent) and reference_mcrab > TRANSIENT_MIN_MCRAB


# --------------------------------------------------------------------------------------------------
# Spectral bookkeeping
# --------------------------------------------------------------------------------------------------
def join_weight(energy_keV) -> np.ndarray:
    """Weight of the JEM-X power law: 1 below 15 keV, 0 above 25 keV, cosine in log E between."""
    lo, hi = JOIN_RANGE_KEV
    x = np.clip(np.log(np.asarray(energy_keV, dtype=float) / lo) / math.log(hi / lo), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


class _ResponseTables:
    """Band rates of unit power laws through the simulated responses at the reference epoch."""

    def __init__(self):
        self.isgri = instrument_for("isgri")
        self.jemx = instrument_for("jemx2")
        self.indices = np.round(np.arange(0.0, 5.0001, 0.01), 4)
        self.isgri_low = self._table(self.isgri, "ISGR_FLUX_1", 1.0)
        self.isgri_high = self._table(self.isgri, "ISGR_FLUX_2", 1.0)
        self.isgri_low_jemx_part = self._table(self.isgri, "ISGR_FLUX_1", "jemx")
        self.isgri_low_isgri_part = self._table(self.isgri, "ISGR_FLUX_1", "isgri")
        self.jemx_low = self._table(self.jemx, "JEMX_FLUX_1", 1.0)
        self.jemx_high = self._table(self.jemx, "JEMX_FLUX_2", 1.0)

    def _table(self, instrument, band_name, part):
        energy = _simpson_nodes(instrument.true_edges_keV)
        weights = _simpson_weights(instrument.true_edges_keV)
        if part == "jemx":
            weights = weights * join_weight(energy)
        elif part == "isgri":
            weights = weights * (1.0 - join_weight(energy))
        shape = (energy[None, :] / 100.0) ** -self.indices[:, None] * weights
        bin_flux = _simpson_reduce(shape)
        return bin_flux @ instrument.band_area(*CATALOGUE_BANDS[band_name], REFERENCE_IJD)

    def at(self, table, index):
        return np.interp(index, self.indices, table)

    def index_from_ratio(self, high_table, low_table, ratio_relative_to_crab):
        """Index whose folded high/low ratio, relative to the Crab's, equals the given one."""
        ratios = high_table / low_table
        crab_ratio = float(np.interp(CRAB_PHOTON_INDEX, self.indices, ratios))
        target = np.asarray(ratio_relative_to_crab) * crab_ratio
        # The folded ratio falls monotonically with the index: interpolate on the reversed table.
        index = np.interp(target, ratios[::-1], self.indices[::-1])
        return np.clip(index, *INDEX_LIMITS)


def _simpson_nodes(edges):
    edges = np.asarray(edges, dtype=float)
    mids = 0.5 * (edges[:-1] + edges[1:])
    return np.stack([edges[:-1], mids, edges[1:]], axis=-1).reshape(-1)


def _simpson_weights(edges):
    widths = np.diff(np.asarray(edges, dtype=float))
    return (widths[:, None] * np.array([1.0, 4.0, 1.0]) / 6.0).reshape(-1)


def _simpson_reduce(values):
    """Sum groups of three Simpson nodes: (…, 3n) → (…, n)."""
    return values.reshape(values.shape[:-1] + (-1, 3)).sum(axis=-1)


@functools.lru_cache(maxsize=1)
def _response_tables() -> _ResponseTables:
    return _ResponseTables()


@functools.lru_cache(maxsize=1)
def _catalogue_columns() -> dict:
    """The reference catalogue as plain numpy columns (masked and junk rates → NaN)."""
    from astropy.table import Table

    resource = importlib.resources.files("mmoda_local") / "data" / CATALOGUE_FILE
    with importlib.resources.as_file(resource) as path:
        table = Table.read(str(path), format="ascii.ecsv")
    columns = {
        "name": np.array([str(n).strip() for n in table["NAME"]], dtype=object),
        "ra": np.asarray(table["RA_OBJ"], dtype=float),
        "dec": np.asarray(table["DEC_OBJ"], dtype=float),
        "class": np.asarray(table["CLASS"], dtype=int),
        "err_rad": np.asarray(
            table["ERR_RAD"].filled(np.nan) if hasattr(table["ERR_RAD"], "filled") else table["ERR_RAD"], dtype=float
        ),
        "isgri_flag": np.asarray(table["ISGRI_FLAG"], dtype=int),
    }
    for band in CATALOGUE_BANDS:
        column = table[band]
        values = np.asarray(column.filled(np.nan) if hasattr(column, "filled") else column, dtype=float)
        values[~(values > MISSING_FRACTION * CRAB_CATALOGUE_RATES[band])] = np.nan
        columns[band] = values
    return columns


@dataclasses.dataclass
class FieldSources:
    """Sources in a field: names, positions (deg) and indices into the sky."""

    names: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    index: np.ndarray

    def __len__(self):
        return len(self.index)


@functools.cache
def de421_path() -> str | None:
    """Path of the JPL DE421 kernel shipped in the ``skyfield_data`` package, or None (logged) if unusable.

    DE421 (1900–2050) is the ephemeris the client's solar-system tools use; the
    kernel is read by astropy through jplephem. Without the file (or jplephem)
    the sky falls back to astropy's builtin ephemeris, ~40″ off for Jupiter.
    """
    try:
        import jplephem  # noqa: F401  (astropy reads SPK kernels with it)

        resource = importlib.resources.files("skyfield_data") / "data" / "de421.bsp"
        path = str(resource)
    except (ImportError, ModuleNotFoundError, TypeError) as exc:
        log.warning("DE421 unavailable (%s): solar-system bodies use astropy's builtin ephemeris", exc)
        return None
    if not os.path.isfile(path):
        log.warning("DE421 kernel %s is missing: solar-system bodies use astropy's builtin ephemeris", path)
        return None
    return path


def body_ephemeris() -> str:
    """The ``ephemeris`` argument of astropy's body functions used by the sky: DE421's path, else 'builtin'."""
    return de421_path() or "builtin"


class _BodyEphemeris:
    """Body directions seen from INTEGRAL: geocentric vectors cached on a 1-day grid (cubic), minus INTEGRAL's.

    The geocentric vector is astrometric (light-time corrected barycentric
    position of the body minus the Earth's, JPL DE421 through astropy): a
    sky image, whose attitude is solved on catalogue stars, shows bodies at
    their astrometric place. INTEGRAL's geocentric position comes from
    :func:`mmoda_local.orbit.integral_position_gcrs` (the same orbit the
    spacecraft service answers), so a client that corrects the parallax with
    that service's ``ephs`` recovers the simulated position.
    """

    def __init__(self):
        self._blocks: dict = {}
        self._lock = threading.Lock()

    @staticmethod
    def exact_geocentric_km(body: str, ijd) -> np.ndarray:
        """Astrometric geocentric vectors (…, 3), km, from DE421 (astropy's builtin ephemeris without it)."""
        import astropy.units as u
        from astropy.coordinates import get_body_barycentric
        from astropy.time import Time
        from astropy.utils import iers

        t = np.asarray(ijd, dtype=float)
        times = Time(t.reshape(-1) + MJDREF, format="mjd", scale="tt")
        # The ephemeris is passed explicitly: astropy's global solar_system_ephemeris is left alone (setting it
        # closes a kernel another thread of the process may be reading); a path opens a private kernel per call.
        ephemeris = body_ephemeris()
        with iers.conf.set_temp("auto_download", False):
            earth = get_body_barycentric("earth", times, ephemeris=ephemeris).xyz.to_value(u.km).T
            vector = get_body_barycentric(body, times, ephemeris=ephemeris).xyz.to_value(u.km).T - earth
            for _ in range(3):  # light time: converged to far below a microsecond for the planets
                delay = np.linalg.norm(vector, axis=-1) / LIGHT_SPEED_KM_S
                vector = (
                    get_body_barycentric(body, times - delay * u.s, ephemeris=ephemeris).xyz.to_value(u.km).T - earth
                )
        return vector.reshape(t.shape + (3,))

    @staticmethod
    def integral_km(ijd) -> np.ndarray:
        """INTEGRAL's geocentric position (…, 3), km (the spacecraft service's orbit)."""
        from .orbit import integral_position_gcrs

        t = np.asarray(ijd, dtype=float)
        return integral_position_gcrs(t.reshape(-1)).reshape(t.shape + (3,))

    def _block(self, body: str, block: int) -> np.ndarray:
        key = (body, block)
        values = self._blocks.get(key)
        if values is None:
            with self._lock:
                values = self._blocks.get(key)
                if values is None:
                    grid = (block * BODY_BLOCK_POINTS + np.arange(BODY_BLOCK_POINTS)) * BODY_GRID_STEP_DAYS
                    values = self.exact_geocentric_km(body, grid)
                    self._blocks[key] = values
        return values

    def _grid_points(self, body: str, indices: np.ndarray) -> np.ndarray:
        blocks = np.floor_divide(indices, BODY_BLOCK_POINTS)
        out = np.empty(indices.shape + (3,))
        for block in np.unique(blocks):
            chosen = blocks == block
            out[chosen] = self._block(body, int(block))[indices[chosen] - block * BODY_BLOCK_POINTS]
        return out

    def geocentric_km(self, body: str, ijd) -> np.ndarray:
        """Interpolated astrometric geocentric vectors (…, 3), km, at ``ijd`` (any shape)."""
        t = np.asarray(ijd, dtype=float)
        x = t / BODY_GRID_STEP_DAYS
        base = np.floor(x).astype(int)
        u = x - base
        # Cubic Lagrange weights on the nodes base-1 … base+2.
        weights = [
            -u * (u - 1) * (u - 2) / 6,
            (u + 1) * (u - 1) * (u - 2) / 2,
            -(u + 1) * u * (u - 2) / 2,
            (u + 1) * u * (u - 1) / 6,
        ]
        vector = np.zeros(t.shape + (3,))
        for offset, weight in zip((-1, 0, 1, 2), weights):
            vector += weight[..., None] * self._grid_points(body, base + offset)
        return vector

    def position(
        self, body: str, ijd, *, observer: str = "integral", integral_km=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (deg) at ``ijd`` (any shape), seen from INTEGRAL (default) or from the geocentre."""
        vector = self.geocentric_km(body, ijd)
        if observer == "integral":
            vector = vector - (self.integral_km(ijd) if integral_km is None else integral_km)
        elif observer != "geocentre":
            raise ValueError(f"observer = {observer!r}: 'integral' or 'geocentre'")
        return vectors_to_radec(vector)


# --------------------------------------------------------------------------------------------------
# The sky
# --------------------------------------------------------------------------------------------------
class Sky:
    """The simulated sky: catalogue sources, their spectra and light curves, and solar-system bodies.

    Parameters
    ----------
    body_fluxes_mcrab : dict, optional
        Flux injected at solar-system bodies: ``{"jupiter": 5.0}`` (Crab-like
        spectrum) or ``{"jupiter": {"mcrab": 5.0, "index": 0.6}}``. 0 by default.
    seed : int, optional
        Global noise seed of the products made from this sky (the sky itself,
        light curves included, does not depend on it).
    injected_sources : list of dict, optional
        Point sources added to the sky, each ``{"name", "ra", "dec",
        "flux_mcrab", "index", "shape"}`` (see
        :func:`normalise_injected_source`): a power law of that photon index
        (2 by default) giving ``flux_mcrab`` mCrab in ISGRI 20–60 keV at the
        reference epoch, in both instruments, modulated by the shape's light
        curve. Their names must not be taken.

    Notes
    -----
    Sources are addressed by an index: reference catalogue entries first (file
    order, ``reference_size`` of them), then the injected sources (together
    the ``catalogue_size`` fixed sources), then the bodies in :data:`BODIES`
    order.
    """

    def __init__(self, *, body_fluxes_mcrab=None, seed: int = 0, injected_sources=None):
        self.seed = int(seed)
        columns = _catalogue_columns()
        self.injected_sources = [normalise_injected_source(entry) for entry in injected_sources or ()]
        injected = self.injected_sources
        self.reference_size = len(columns["name"])
        self.catalogue_size = self.reference_size + len(injected)
        self.body_names = tuple(name.capitalize() for name in BODIES)
        injected_names = np.array([entry["name"] for entry in injected], dtype=object)
        self.names = np.concatenate([columns["name"], injected_names, np.array(self.body_names, dtype=object)])
        self.n_sources = len(self.names)
        self.is_body = np.zeros(self.n_sources, dtype=bool)
        self.is_body[self.catalogue_size :] = True
        self.is_injected = np.zeros(self.n_sources, dtype=bool)
        self.is_injected[self.reference_size : self.catalogue_size] = True
        self.catalogue_ra = np.concatenate([columns["ra"], [entry["ra"] for entry in injected]])
        self.catalogue_dec = np.concatenate([columns["dec"], [entry["dec"] for entry in injected]])
        self._catalogue_vectors = unit_vectors(self.catalogue_ra, self.catalogue_dec)
        # Injected sources have no catalogue error radius and no ISGRI flag.
        self.catalogue_err_rad = np.concatenate([columns["err_rad"], np.full(len(injected), np.nan)])
        self.catalogue_isgri_flag = np.concatenate([columns["isgri_flag"], np.zeros(len(injected), dtype=int)])
        self._lookup = {}
        for index, name in enumerate(self.names):
            key = normalised_name(name)
            if self.reference_size <= index < self.catalogue_size and key in self._lookup:
                raise ValueError(f"injected source name {name!r} is already taken by {self.names[self._lookup[key]]!r}")
            self._lookup.setdefault(key, index)
        self._ephemeris = _BodyEphemeris()
        self._bin_flux_cache: dict = {}
        self._cache_lock = threading.Lock()
        self._build_spectra(columns, body_fluxes_mcrab or {})
        self._build_variability(columns)

    @classmethod
    def default(cls, *, body_fluxes_mcrab=None, seed: int = 0, injected_sources=None) -> Sky:
        """The standard simulated sky (reference catalogue v43 + bodies).

        Parameters
        ----------
        body_fluxes_mcrab : dict, optional
            See :class:`Sky`.
        seed : int, optional
            Global noise seed.
        injected_sources : list of dict, optional
            See :class:`Sky`.
        """
        return cls(body_fluxes_mcrab=body_fluxes_mcrab, seed=seed, injected_sources=injected_sources)

    # -- construction --------------------------------------------------------------------------------
    def _build_spectra(self, columns: dict, body_fluxes: dict):
        """Per source: ISGRI and JEM-X power laws (index, norm at 100 keV) of the joined spectrum."""
        tables = _response_tables()
        n = self.n_sources
        self.index_isgri = np.full(n, 2.0)
        self.index_jemx = np.full(n, 2.0)
        self.norm_isgri = np.zeros(n)
        self.norm_jemx = np.zeros(n)
        self.spectrum_origin = np.empty(n, dtype=object)
        curated = _curated_sources()
        f1 = columns["ISGR_FLUX_1"]
        # 60–200 keV without 20–60 keV is a catalogue inconsistency (values up to 22 100 ct/s): ignored.
        f2 = np.where(np.isfinite(f1), columns["ISGR_FLUX_2"], np.nan)
        j1, j2 = columns["JEMX_FLUX_1"], columns["JEMX_FLUX_2"]
        crab = CRAB_CATALOGUE_RATES
        isgri_index = tables.index_from_ratio(
            tables.isgri_high, tables.isgri_low, (f2 / f1) / (crab["ISGR_FLUX_2"] / crab["ISGR_FLUX_1"])
        )
        jemx_index = tables.index_from_ratio(
            tables.jemx_high, tables.jemx_low, (j2 / j1) / (crab["JEMX_FLUX_2"] / crab["JEMX_FLUX_1"])
        )
        for i in range(self.reference_size):
            name = columns["name"][i]
            has_isgri_pair = np.isfinite(f1[i]) and np.isfinite(f2[i])
            has_jemx_pair = np.isfinite(j1[i]) and np.isfinite(j2[i])
            has_isgri = np.isfinite(f1[i]) or np.isfinite(f2[i])
            has_jemx = np.isfinite(j1[i]) or np.isfinite(j2[i])
            gamma_i = isgri_index[i] if has_isgri_pair else (jemx_index[i] if has_jemx_pair else 2.0)
            gamma_j = jemx_index[i] if has_jemx_pair else (isgri_index[i] if has_isgri_pair else 2.0)
            if name == "Crab":
                self._set_single(i, CRAB_PHOTON_INDEX, CRAB_NORM_100KEV, "Crab: one power law")
                continue
            if name in curated and curated[name].indices is not None:
                self._set_broken(i, *curated[name].indices, "curated")
                continue
            if has_isgri and has_jemx:
                norm_j = self._jemx_norm(tables, gamma_j, j1[i], j2[i])
                norm_i = self._isgri_norm(tables, gamma_i, f1[i], f2[i], jemx_part=(gamma_j, norm_j))
                self.index_isgri[i], self.norm_isgri[i] = gamma_i, norm_i
                self.index_jemx[i], self.norm_jemx[i] = gamma_j, norm_j
                self.spectrum_origin[i] = "catalogue (ISGRI and JEM-X)"
            elif has_isgri:
                self._set_single(i, gamma_i, self._isgri_norm(tables, gamma_i, f1[i], f2[i]), "catalogue (ISGRI)")
            elif has_jemx:
                # Hard X-ray spectra steepen: above the JEM-X band the law is not taken harder than Γ = 2.
                norm_j = self._jemx_norm(tables, gamma_j, j1[i], j2[i])
                gamma_up = max(gamma_j, 2.0)
                self.index_isgri[i], self.index_jemx[i] = gamma_up, gamma_j
                self.norm_jemx[i] = norm_j
                self.norm_isgri[i] = norm_j * (20.0 / 100.0) ** (gamma_up - gamma_j)
                self.spectrum_origin[i] = "catalogue (JEM-X)"
            else:
                low, high = FAINT_MCRAB_RANGE
                mcrab = low * (high / low) ** _hash_uniforms(f"faint:{name}", 1)[0]
                norm = mcrab / 1000.0 * CRAB_20_60 / tables.at(tables.isgri_low, 2.0)
                self._set_single(i, 2.0, norm, f"invented faint flux {mcrab:.2f} mCrab")
            if name in curated and not curated[name].lightcurve.relative:
                # Absolute light curves are in mCrab: put the reference spectrum at 1 Crab (20–60 keV).
                self._rescale_to_crab(i, tables)
        for k, entry in enumerate(self.injected_sources):
            # The mCrab of the docs: ISGRI 20–60 keV rate at the reference epoch relative to the Crab's.
            norm = entry["flux_mcrab"] / 1000.0 * CRAB_20_60 / tables.at(tables.isgri_low, entry["index"])
            self._set_single(
                self.reference_size + k,
                entry["index"],
                norm,
                f"injected {entry['flux_mcrab']:g} mCrab, index {entry['index']:g}, {entry['shape']}",
            )
        settings = {str(name).strip().lower(): value for name, value in body_fluxes.items()}
        unknown = sorted(set(settings) - set(BODIES))
        if unknown:
            log.warning("no such simulated bodies %s (known: %s); their fluxes are ignored", unknown, BODIES)
        for k, body in enumerate(BODIES):
            i = self.catalogue_size + k
            setting = settings.get(body, 0.0)
            if isinstance(setting, dict):
                mcrab, index = float(setting.get("mcrab", 0.0)), setting.get("index")
            elif isinstance(setting, (tuple, list)):
                mcrab, index = float(setting[0]), (setting[1] if len(setting) > 1 else None)
            else:
                mcrab, index = float(setting or 0.0), None
            if index is None:
                self._set_single(
                    i, CRAB_PHOTON_INDEX, CRAB_NORM_100KEV * mcrab / 1000.0, f"injected {mcrab:g} mCrab, Crab-like"
                )
            else:
                norm = mcrab / 1000.0 * CRAB_20_60 / tables.at(tables.isgri_low, float(index))
                self._set_single(i, float(index), norm, f"injected {mcrab:g} mCrab, index {index}")
        self.body_fluxes_mcrab = {
            body: float(self._reference_mcrab(self.catalogue_size + k)) for k, body in enumerate(BODIES)
        }

    def _set_single(self, i, index, norm, origin):
        self.index_isgri[i] = self.index_jemx[i] = index
        self.norm_isgri[i] = self.norm_jemx[i] = norm
        self.spectrum_origin[i] = origin

    def _set_broken(self, i, index_isgri, index_jemx, origin):
        """A broken power law continuous at 20 keV, normalised to 1 Crab in ISGRI 20–60 keV."""
        self.index_isgri[i], self.index_jemx[i] = index_isgri, index_jemx
        # N_J(20) = N_I(20) keeps the blend continuous.
        self.norm_isgri[i] = 1.0
        self.norm_jemx[i] = (20.0 / 100.0) ** (index_jemx - index_isgri)
        self.spectrum_origin[i] = origin
        self._rescale_to_crab(i, _response_tables())

    def _rescale_to_crab(self, i, tables):
        rate = self._reference_isgri_rate(i, tables)
        if rate > 0:
            self.norm_isgri[i] *= CRAB_20_60 / rate
            self.norm_jemx[i] *= CRAB_20_60 / rate

    def _reference_isgri_rate(self, i, tables):
        return self.norm_isgri[i] * tables.at(tables.isgri_low_isgri_part, self.index_isgri[i]) + self.norm_jemx[
            i
        ] * tables.at(tables.isgri_low_jemx_part, self.index_jemx[i])

    def _reference_mcrab(self, i):
        return 1000.0 * self._reference_isgri_rate(i, _response_tables()) / CRAB_20_60

    @staticmethod
    def _jemx_norm(tables, gamma, rate_low, rate_high):
        if np.isfinite(rate_low):
            return rate_low / tables.at(tables.jemx_low, gamma)
        return rate_high / tables.at(tables.jemx_high, gamma)

    @staticmethod
    def _isgri_norm(tables, gamma, rate_low, rate_high, jemx_part=None):
        if not np.isfinite(rate_low):
            return rate_high / tables.at(tables.isgri_high, gamma)
        if jemx_part is None:
            return rate_low / tables.at(tables.isgri_low, gamma)
        gamma_j, norm_j = jemx_part
        # The JEM-X law contributes below 25 keV; the ISGRI law makes up the rest of the 20–60 keV rate.
        remainder = rate_low - norm_j * tables.at(tables.isgri_low_jemx_part, gamma_j)
        own = tables.at(tables.isgri_low_isgri_part, gamma)
        if remainder <= 0.05 * rate_low:
            return rate_low / tables.at(tables.isgri_low, gamma)
        return remainder / own

    def _build_variability(self, columns: dict):
        """Light-curve models per source index (sources not listed are constant)."""
        self.lightcurves: dict = {}
        curated = _curated_sources()
        for i in range(self.reference_size):
            name = columns["name"][i]
            if name in curated:
                self.lightcurves[i] = curated[name].lightcurve
            else:
                consistent = np.isfinite(columns["ISGR_FLUX_1"][i]) or not np.isfinite(columns["ISGR_FLUX_2"][i])
                reference_mcrab = self._reference_mcrab(i)
                if _looks_like_peak_entry(name, columns["class"][i], reference_mcrab, consistent):
                    # A few "peaks" are catalogue glitches of several Crab: outbursts top out at 1 Crab.
                    self.lightcurves[i] = InventedOutbursts(
                        name, peak_factor=min(1.0, MAX_INVENTED_PEAK_MCRAB / reference_mcrab)
                    )
        for k, entry in enumerate(self.injected_sources):
            model = shape_lightcurve(entry["shape"])
            if model is not None:
                self.lightcurves[self.reference_size + k] = model
        self._variable_indices = np.array(sorted(self.lightcurves), dtype=int)

    # -- look-ups ------------------------------------------------------------------------------------
    def find(self, name: str) -> int | None:
        """Index of a source or body by name (case-, space- and underscore-insensitive), or None."""
        return self._lookup.get(normalised_name(name))

    def is_variable(self, index: int) -> bool:
        """True if the source has a light-curve model."""
        return int(index) in self.lightcurves

    def variable_sources(self) -> list[dict]:
        """The modelled variable sources: name, kind of model, description."""
        return [
            {
                "name": str(self.names[i]),
                "model": type(model).__name__,
                "relative": model.relative,
                "description": model.description,
            }
            for i, model in sorted(self.lightcurves.items())
        ]

    def positions(self, index, ijd) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (deg) of sources at ``ijd`` (scalar): bodies move, the others do not."""
        index = np.atleast_1d(np.asarray(index, dtype=int))
        ra = np.empty(len(index))
        dec = np.empty(len(index))
        fixed = index < self.catalogue_size
        ra[fixed] = self.catalogue_ra[index[fixed]]
        dec[fixed] = self.catalogue_dec[index[fixed]]
        integral = self._ephemeris.integral_km(float(ijd)) if np.any(~fixed) else None
        for k in np.nonzero(~fixed)[0]:
            body = BODIES[index[k] - self.catalogue_size]
            body_ra, body_dec = self._ephemeris.position(body, float(ijd), integral_km=integral)
            ra[k], dec[k] = float(body_ra), float(body_dec)
        return ra, dec

    def body_position(
        self, name: str, ijd, *, exact: bool = False, observer: str = "integral"
    ) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (deg) of a body at IJD(s), where INTEGRAL sees it (or the geocentre).

        Parameters
        ----------
        name : str
            Body name (``jupiter``…).
        ijd : float or array_like
            Times (IJD, TT).
        exact : bool, optional
            Call astropy for every time instead of interpolating the cached grid
            (the two agree to better than 0.01″).
        observer : {'integral', 'geocentre'}, optional
            Where the body is seen from: INTEGRAL (what the products use: the
            geocentric astrometric position corrected for INTEGRAL's parallax,
            ≤ 1′ for Jupiter) or the Earth's centre.
        """
        body = str(name).lower()
        if body not in BODIES:
            raise KeyError(f"{name!r} is not one of the simulated bodies {BODIES}")
        if exact:
            vector = self._ephemeris.exact_geocentric_km(body, ijd)
            if observer == "integral":
                vector = vector - self._ephemeris.integral_km(ijd)
            elif observer != "geocentre":
                raise ValueError(f"observer = {observer!r}: 'integral' or 'geocentre'")
            return vectors_to_radec(vector)
        return self._ephemeris.position(body, ijd, observer=observer)

    def sources_in_field(self, ra: float, dec: float, radius_deg: float, ijd: float) -> FieldSources:
        """Sources (bodies at their position at ``ijd``) within ``radius_deg`` of (ra, dec).

        Returns
        -------
        FieldSources
            ``names``, ``ra``, ``dec`` (deg), ``index`` (into this sky), in index order.
        """
        centre = unit_vectors(ra, dec)
        cos_radius = math.cos(math.radians(min(float(radius_deg), 180.0)))
        inside = np.nonzero(self._catalogue_vectors @ centre >= cos_radius)[0]
        ra_out = list(self.catalogue_ra[inside])
        dec_out = list(self.catalogue_dec[inside])
        index_out = list(inside)
        if self._ecliptic_latitude(ra, dec) <= BODY_MAX_ECLIPTIC_LATITUDE + radius_deg:
            integral = self._ephemeris.integral_km(float(ijd))  # once for all bodies
            for k, body in enumerate(BODIES):
                body_ra, body_dec = self._ephemeris.position(body, float(ijd), integral_km=integral)
                if float(unit_vectors(body_ra, body_dec) @ centre) >= cos_radius:
                    ra_out.append(float(body_ra))
                    dec_out.append(float(body_dec))
                    index_out.append(self.catalogue_size + k)
        index_array = np.array(index_out, dtype=int)
        return FieldSources(
            names=self.names[index_array],
            ra=np.array(ra_out, dtype=float),
            dec=np.array(dec_out, dtype=float),
            index=index_array,
        )

    @staticmethod
    def _ecliptic_latitude(ra, dec) -> float:
        v = unit_vectors(ra, dec)
        eps = math.radians(OBLIQUITY_DEG)
        return abs(math.degrees(math.asin(np.clip(-v[1] * math.sin(eps) + v[2] * math.cos(eps), -1, 1))))

    # -- spectra and variability ----------------------------------------------------------------------
    def reference_spectrum(self, index, energy_keV) -> np.ndarray:
        """Photon spectrum (ph cm⁻² s⁻¹ keV⁻¹) without variability; (n_index, n_energy) for arrays."""
        index = np.asarray(index, dtype=int)
        energy = np.asarray(energy_keV, dtype=float)
        idx = index[..., None] if index.ndim else index
        scaled = energy / 100.0
        isgri = self.norm_isgri[idx] * scaled ** -self.index_isgri[idx]
        jemx = self.norm_jemx[idx] * scaled ** -self.index_jemx[idx]
        weight = join_weight(energy)
        return weight * jemx + (1.0 - weight) * isgri

    def photon_spectrum(self, index, energy_keV, ijd) -> np.ndarray:
        """Photon spectrum at time ``ijd`` (scalar): reference spectrum × variability.

        Parameters
        ----------
        index : int or array_like of int
            Source indices.
        energy_keV : array_like
            Energies, keV.
        ijd : float
            Time (IJD).

        Returns
        -------
        ndarray
            ph cm⁻² s⁻¹ keV⁻¹, shape ``energy`` for a scalar index, (n_index, n_energy) otherwise.
        """
        factor = self.variability(index, float(ijd))
        spectrum = self.reference_spectrum(index, energy_keV)
        return spectrum * (factor[..., None] if np.ndim(index) else factor)

    def variability(self, index, ijd) -> np.ndarray:
        """Flux factor relative to the reference spectrum.

        Parameters
        ----------
        index : int or array_like of int
        ijd : float or array_like

        Returns
        -------
        ndarray
            Shape ``ijd`` for a scalar index, (n_index,) + shape(ijd) otherwise. 1 for constant sources.
        """
        t = np.asarray(ijd, dtype=float)
        scalar = np.ndim(index) == 0
        indices = np.atleast_1d(np.asarray(index, dtype=int))
        out = np.ones(indices.shape + t.shape)
        for k, i in enumerate(indices):
            model = self.lightcurves.get(int(i))
            if model is not None:
                values = model(t)
                out[k] = values if model.relative else values / 1000.0
        return out[0] if scalar else out

    def mean_variability(self, index, t_start: float, t_stop: float, *, samples: int = 9) -> np.ndarray:
        """Variability averaged over [t_start, t_stop] (midpoint rule), (n_index,)."""
        indices = np.atleast_1d(np.asarray(index, dtype=int))
        out = np.ones(len(indices))
        variable = np.isin(indices, self._variable_indices)
        if variable.any():
            times = t_start + (np.arange(samples) + 0.5) / samples * (t_stop - t_start)
            out[variable] = self.variability(indices[variable], times).mean(axis=-1)
        return out

    def bin_flux(self, edges_keV) -> np.ndarray:
        """Reference photon flux (ph cm⁻² s⁻¹) of every source in each energy bin, (n_sources, n_bins).

        Integrated with Simpson's rule on each bin; cached per grid.
        """
        edges = np.asarray(edges_keV, dtype=float)
        key = (len(edges), float(edges[0]), float(edges[-1]), hashlib.sha1(edges.tobytes()).hexdigest())
        cached = self._bin_flux_cache.get(key)
        if cached is None:
            with self._cache_lock:
                cached = self._bin_flux_cache.get(key)
                if cached is None:
                    nodes = _simpson_nodes(edges)
                    values = self.reference_spectrum(np.arange(self.n_sources), nodes)
                    cached = _simpson_reduce(values * _simpson_weights(edges))
                    cached.setflags(write=False)
                    self._bin_flux_cache[key] = cached
        return cached

    def spectral_parameters(self, index: int) -> dict:
        """Spectral model of a source: indices, normalisations at 100 keV, origin, reference mCrab."""
        i = int(index)
        return {
            "name": str(self.names[i]),
            "index_isgri": float(self.index_isgri[i]),
            "norm_isgri_100keV": float(self.norm_isgri[i]),
            "index_jemx": float(self.index_jemx[i]),
            "norm_jemx_100keV": float(self.norm_jemx[i]),
            "origin": str(self.spectrum_origin[i]),
            "reference_mcrab": float(self._reference_mcrab(i)),
            "variable": self.is_variable(i),
        }
