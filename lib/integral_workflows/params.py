"""One schema for the workflows' parameters: YAML files, papermill and notebooks.

Every parameter the notebooks accept is one entry of :data:`PARAMETER_TABLE`:
its name, type, default, allowed values and meaning. Validation, defaults,
the help text (:func:`describe_parameters`) and the JSON-safe form handed to
papermill (:func:`to_json_dict`) are all derived from that table, so a new
parameter (say ``rev_num`` for revolution products) is one new entry, plus a
cross-field rule in :data:`CROSS_FIELD_RULES` if it constrains another one.

The first block is the standard parameter set of the MMODA long-term INTEGRAL
services (T1, T2, src_name, RA, DEC, radius, osa_version, ... see the
services' parameter reference); the ScW-selection block is this project's.

Typical use, in the cell after a notebook's ``parameters`` cell::

    from integral_workflows import params
    p = params.from_namespace(globals())
    p.E1_keV        # the instrument default (28.0 for ISGRI) if the cell said None

and for a parameter file::

    p = params.load_parameters("parameters/crab.yaml")

The MMODA token is never a parameter: it comes from ``ODA_TOKEN`` or a
``.oda-token`` file (see :func:`integral_workflows.hosts.discover_token`),
because papermill copies parameters verbatim into the executed notebook.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import logging
import math
import numbers
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

__all__ = [
    "ParameterError", "PerInstrument", "Parameter", "PARAMETER_TABLE", "PARAMETERS", "CROSS_FIELD_RULES",
    "WorkflowParameters", "resolve", "from_namespace", "to_json_dict", "describe_parameters",
    "parse_yaml", "read_parameter_file", "load_parameters", "to_yaml", "INSTRUMENTS", "HOST_TYPES",
]

INSTRUMENTS = ("isgri", "jemx")
HOST_TYPES = ("production", "staging", "esa", "local")
INSTRUMENT_LABELS = {"isgri": "ISGRI", "jemx": "JEM-X"}

#: OSA versions the MMODA INTEGRAL plugin accepts as a base (``OSA11.2[-sub][--modifier...]``).
OSA_VERSIONS = ("OSA11.2", "OSA10.2")
OBSOLETE_OSA_VERSIONS = ("OSA11.0", "OSA11.1")
OSA_MODIFIERS = ("fullbkg", "jemxnrt", "rmfoffsetv1")

#: The mission's science window: launch (2002-10-17) to the end of science operations (2025-02-28).
MISSION_START = dt.datetime(2002, 10, 17)
MISSION_END = dt.datetime(2025, 3, 1)

#: Names a token could hide under; rejected outright (compared case-insensitively).
TOKEN_PARAMETER_NAMES = frozenset({"token", "oda_token", "odatoken", "jwt", "access_token", "api_token"})

# A JWT is three base64url parts, the first two JSON objects, so both start with "eyJ" ('{"').
_JWT_PATTERN = re.compile(r"^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_ISOT_PATTERN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
_REVOLUTION_PATTERN = re.compile(r"^\d{4}$")

_TOKEN_ADVICE = ("the MMODA token is never a parameter: it is read from the ODA_TOKEN environment variable "
                 "or a .oda-token file (working folder, then home) by integral_workflows.hosts.discover_token(); "
                 "papermill copies parameters verbatim into the executed notebook, where a token would leak")


class ParameterError(ValueError):
    """A parameter is unknown, of the wrong type, out of range or inconsistent with another one.

    Parameters
    ----------
    message : str
        What is wrong and what is allowed.
    name : str or None
        The parameter at fault (the first one when several are); None for
        problems of a whole parameter file (syntax, not a mapping).
    names : iterable of str, optional
        Every parameter at fault, when several are reported at once.

    Attributes
    ----------
    name : str or None
        The parameter at fault.
    names : tuple of str
        Every parameter at fault.
    """

    def __init__(self, message: str, *, name: str | None, names: Iterable[str] | None = None):
        super().__init__(message)
        self.name = name
        self.names = tuple(names) if names is not None else ((name,) if name else ())


@dataclasses.dataclass(frozen=True)
class PerInstrument:
    """A value that depends on the instrument (a default or an allowed range).

    Parameters
    ----------
    isgri : object
        The value for IBIS/ISGRI.
    jemx : object
        The value for JEM-X.
    """

    isgri: Any
    jemx: Any

    def for_instrument(self, instrument: str) -> Any:
        """Return the value for ``instrument`` (``'isgri'`` or ``'jemx'``)."""
        return getattr(self, instrument)

    def __str__(self) -> str:
        return ", ".join(f"{_show(getattr(self, key))} for {label}" for key, label in INSTRUMENT_LABELS.items())


#: Kinds of value a parameter can hold, with how they are named in help and errors.
KIND_DESCRIPTIONS = {
    "time": "a UTC time string in ISOT format, e.g. '2003-02-22T00:00:00'",
    "text": "a string",
    "choice": "a string",
    "real": "a number",
    "integer": "an integer",
    "number": "a number (an integer or a fraction)",
    "flag": "a boolean (true or false)",
    "revolution": "a 4-digit revolution number as a string with its zeros, e.g. '0044'",
    "revolutions": "a list of 4-digit revolution strings, e.g. ['0044', '1234']",
    "revolution_number": "a 4-digit revolution number as a string with its zeros, e.g. '0300', or an integer "
                         "≤ 0 counting back from the current revolution (0 the current one, -1 the one before)",
}
KIND_TYPES = {"time": "str (UTC ISOT)", "text": "str", "choice": "str", "real": "float", "integer": "int",
              "number": "int or float", "flag": "bool", "revolution": "str (4 digits)",
              "revolutions": "list of str (4 digits)", "revolution_number": "str (4 digits) or int ≤ 0"}


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One entry of the parameter table.

    Parameters
    ----------
    name : str
        The name, as the notebooks and MMODA spell it.
    kind : str
        One of :data:`KIND_DESCRIPTIONS`.
    default : object
        Value when the parameter is not given; a :class:`PerInstrument` for
        instrument-dependent defaults (then ``None`` also means "the default").
    meaning : str
        One or two sentences for the help text.
    unit : str
        Unit of a number, for help and errors.
    choices : tuple
        Allowed values of a ``choice`` (matched case-insensitively) or of an
        ``integer``.
    minimum, maximum : float, optional
        Allowed range of a number; ``exclusive_minimum``/``exclusive_maximum``
        make the bounds strict.
    instrument_range : PerInstrument, optional
        ``(minimum, maximum)`` per instrument, inclusive, checked once the
        instrument is known.
    optional : bool
        Whether ``None`` is a valid value (meaning "not given").
    rule : callable, optional
        Extra check of a converted value; returns what is wrong, or None.
    allowed : str
        The allowed values in words, when the fields above do not say it all.
    ontology : str
        The odahub.io ontology term MMODA maps the parameter to, if any.
    """

    name: str
    kind: str
    default: Any
    meaning: str
    unit: str = ""
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    instrument_range: PerInstrument | None = None
    optional: bool = False
    rule: Callable[[Any], str | None] | None = None
    allowed: str = ""
    ontology: str = ""

    def __post_init__(self):
        if self.kind not in KIND_DESCRIPTIONS:
            raise ValueError(f"parameter {self.name}: unknown kind {self.kind!r}, known: {sorted(KIND_DESCRIPTIONS)}")

    @property
    def instrument_dependent(self) -> bool:
        """True if the default depends on the instrument."""
        return isinstance(self.default, PerInstrument)

    def allowed_text(self) -> str:
        """The allowed values in words (for help and error messages)."""
        parts = []
        if not self.choices and self.minimum is None and self.maximum is None and self.instrument_range is None:
            parts.append(KIND_DESCRIPTIONS[self.kind])
        if self.choices:
            parts.append("one of " + ", ".join(_show(choice) for choice in self.choices))
        bounds = self.range_text()
        if bounds:
            parts.append(bounds)
        if self.instrument_range is not None:
            parts.append("; ".join(
                f"{_show(low)} ≤ {self.name} ≤ {_show(high)}{_unit(self.unit)} for {INSTRUMENT_LABELS[key]}"
                for key in INSTRUMENTS
                for low, high in [self.instrument_range.for_instrument(key)]))
        if self.allowed:
            parts.append(self.allowed)
        if self.optional:
            parts.append("None (null in YAML) for " + ("the instrument default" if self.instrument_dependent
                                                        else "not given"))
        return "; ".join(parts) if parts else KIND_DESCRIPTIONS[self.kind]

    def range_text(self) -> str:
        """The numeric range in words, e.g. ``0 < radius ≤ 180 deg``, or ''."""
        low_sign = "<" if self.exclusive_minimum else "≤"
        high_sign = "<" if self.exclusive_maximum else "≤"
        if self.minimum is None and self.maximum is None:
            return ""
        if self.maximum is None:
            return f"{self.name} {'>' if self.exclusive_minimum else '≥'} {_show(self.minimum)}{_unit(self.unit)}"
        if self.minimum is None:
            return f"{self.name} {high_sign} {_show(self.maximum)}{_unit(self.unit)}"
        return f"{_show(self.minimum)} {low_sign} {self.name} {high_sign} {_show(self.maximum)}{_unit(self.unit)}"


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def _show(value: Any) -> str:
    """A value as the user would write it (strings quoted)."""
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


# -- per-value rules (return what is wrong, or None) ---------------------------------------------------------------

def _rule_not_blank(value: str) -> str | None:
    return "must not be empty" if not value.strip() else None


def _rule_s_max(value: int) -> str | None:
    if value == 0:
        return "a job of 0 ScWs means nothing"
    return None


def _rule_n_scw_image(value: float) -> str | None:
    if value == 0:
        return "an image of 0 ScWs means nothing"
    if value < -1:
        return "below -1 means nothing (-1 already means all ScWs)"
    if value > 0 and not float(value).is_integer():
        return "a positive value is a number of ScWs and must be whole"
    return None


def _rule_osa_version(value: str) -> str | None:
    match = re.match(r"^(?P<base>OSA\d+\.\d+)(?P<sub>-[A-Za-z0-9_.]+)?(?P<mods>(?:--[A-Za-z0-9]+)*)$", value)
    if match is None:
        return "must look like OSA11.2, OSA11.2-<subversion> or OSA11.2--<modifier>"
    base = match["base"]
    if base in OBSOLETE_OSA_VERSIONS:
        return f"{base} is obsolete and MMODA refuses it: use OSA11.2 (recommended) or OSA10.2"
    if base not in OSA_VERSIONS:
        return f"unknown OSA version {base}: use OSA11.2 (recommended) or OSA10.2"
    modifiers = [m for m in match["mods"].split("--") if m]
    unknown = [m for m in modifiers if m not in OSA_MODIFIERS]
    if unknown:
        return f"unknown modifier(s) {unknown}: known modifiers are {list(OSA_MODIFIERS)}"
    if modifiers != sorted(modifiers):
        sorted_version = f"{base}{match['sub'] or ''}--" + "--".join(sorted(modifiers))
        return f"modifiers must be sorted (MMODA's rule): write {sorted_version}"
    return None


def _rule_api_catalog(value: str) -> str | None:
    text = value.strip()
    if not text:
        return "must not be empty (use None for no catalog)"
    if text[0] in "{[":
        # Text that starts like JSON is the catalog itself, not a path: it must parse.
        try:
            json.loads(text)
        except ValueError as error:
            return f"looks like JSON catalog text but does not parse ({error})"
    return None


def _rule_revolution_number(value: str | int) -> str | None:
    if isinstance(value, str) and int(value) == 0:
        return "there is no revolution 0000; the integer 0 means the current revolution"
    return None


def _rule_time_within_mission(value: str) -> str | None:
    # Outside the mission there is simply no data: worth a warning, not an error.
    moment = _parse_isot(value)
    if moment is not None and not MISSION_START <= moment <= MISSION_END:
        log.warning("%s is outside INTEGRAL's science operations (%s to %s): no data there",
                    value, MISSION_START.date(), MISSION_END.date())
    return None


# -- the table ------------------------------------------------------------------------------------------------------

PARAMETER_TABLE: tuple[Parameter, ...] = (
    # Standard query (MMODA's SourceQuery).
    Parameter("T1", "time", "2003-02-22T00:00:00", "Start of the period to analyse (UTC).",
              rule=_rule_time_within_mission, allowed="earlier than T2",
              ontology="http://odahub.io/ontology#StartTime"),
    Parameter("T2", "time", "2003-02-25T00:00:00", "End of the period to analyse (UTC).",
              rule=_rule_time_within_mission, allowed="later than T1",
              ontology="http://odahub.io/ontology#EndTime"),
    Parameter("src_name", "text", "Crab", "Name of the target source.", rule=_rule_not_blank,
              ontology="http://odahub.io/ontology#AstrophysicalObject"),
    Parameter("RA", "real", 83.63321, "Right ascension of the target (J2000); RA = DEC = 0 means look src_name up "
              "(Simbad when online, else the built-in catalogue).", unit="deg", minimum=0.0, maximum=360.0,
              exclusive_maximum=True, ontology="http://odahub.io/ontology#PointOfInterestRA"),
    Parameter("DEC", "real", 22.014471, "Declination of the target (J2000); RA = DEC = 0 means look src_name up.",
              unit="deg", minimum=-90.0, maximum=90.0, ontology="http://odahub.io/ontology#PointOfInterestDEC"),
    # Instrument and data.
    Parameter("instrument", "choice", "isgri", "INTEGRAL instrument: IBIS/ISGRI or JEM-X.", choices=INSTRUMENTS),
    Parameter("jemx_unit", "integer", 1, "JEM-X unit (JEM-X only).", choices=(1, 2)),
    Parameter("radius", "real", PerInstrument(10.5, 3.5), "Selection radius of ScWs around the target: pointings "
              "closer than this to the source are used.", unit="deg", minimum=0.0, maximum=180.0,
              exclusive_minimum=True, optional=True),
    Parameter("osa_version", "text", "OSA11.2", "Version of the Off-line Scientific Analysis; leave OSA11.2 "
              "unless you know why.", rule=_rule_osa_version,
              allowed="OSA11.2 or OSA10.2, optionally with -<subversion> and sorted --<modifier>s "
                      f"({', '.join(OSA_MODIFIERS)}); OSA11.0 and OSA11.1 are obsolete"),
    Parameter("data_version", "choice", "CONS", "Consolidated data, or near-real-time data for quick look.",
              choices=("CONS", "NRT")),
    Parameter("integral_data_rights", "choice", "public", "Public data only, or also data still in their "
              "proprietary period (needs the matching MMODA role).", choices=("public", "all-private")),
    Parameter("s_max", "integer", 50, "Most ScWs per MMODA job; 50 for ordinary users, up to ~300 with the "
              "unige-hpc-full role.", allowed="N > 0: at most N ScWs per job; -1: one job per revolution; "
              "-N (N ≥ 2): one job per group of N revolutions; not 0", rule=_rule_s_max),
    Parameter("host_type", "choice", "production", "Which MMODA to use: UNIGE production, UNIGE staging, ESA "
              "(ESAC Datalabs only), or the local MMODA over a simulated sky (offline).", choices=HOST_TYPES),
    Parameter("upload_to_gallery", "flag", False, "Upload the results to the MMODA product gallery "
              "(privileged users)."),
    # Energy band of images and light curves.
    Parameter("E1_keV", "real", PerInstrument(28.0, 3.0), "Lower energy of images and light curves (spectra are "
              "not affected, except the catalog image).", unit="keV",
              instrument_range=PerInstrument((15.0, 800.0), (3.0, 35.0)), optional=True, allowed="below E2_keV"),
    Parameter("E2_keV", "real", PerInstrument(40.0, 20.0), "Upper energy of images and light curves.", unit="keV",
              instrument_range=PerInstrument((15.0, 800.0), (3.0, 35.0)),
              optional=True, allowed="above E1_keV"),
    Parameter("detection_threshold", "real", 7.0, "Detection threshold of sources in images (significance).",
              unit="sigma", minimum=0.0, exclusive_minimum=True),
    # Catalog used for spectra and light curves.
    Parameter("use_default_catalog", "flag", False, "Use MMODA's default catalog for spectra and light curves "
              "(the target is added if missing)."),
    Parameter("make_image", "flag", True, "Without the default catalog: make an image first and build the "
              "catalog from it."),
    Parameter("n_scw_image", "number", -1, "How many ScWs, drawn at random, make the catalog image.",
              allowed="-1: all; between -1 and 0: that fraction (-0.2 = 20%); > 0: that many; not 0",
              rule=_rule_n_scw_image),
    Parameter("api_catalog_file", "text", None, "Path to, or JSON text of, an MMODA API catalog for spectra and "
              "light curves (specialist use).", optional=True, rule=_rule_api_catalog),
    # Mosaics.
    Parameter("isdc_cat_url", "text", None, "URL or local file of the reference catalog used to name sources in "
              "mosaics.", optional=True, rule=_rule_not_blank),
    Parameter("include_new_sources", "flag", False, "Let sources absent from the reference catalog appear in "
              "mosaics."),
    # Spectra and light curves.
    Parameter("systematic_fraction", "real", PerInstrument(0.0015, 0.05), "Systematic fraction added to light "
              "curves and spectra.", minimum=0.0, maximum=1.0, exclusive_maximum=True, optional=True),
    Parameter("lc_time_bin", "real", 3000.0, "Light-curve bin. For ISGRI a bin longer than a ScW gives one point "
              "per ScW; for JEM-X it merges ScWs.", unit="s", minimum=0.0, exclusive_minimum=True),
    Parameter("isgri_grouping_min_energy", "real", 20.0, "Lowest energy of the ISGRI spectral grouping.",
              unit="keV", minimum=15.0, maximum=800.0, allowed="below isgri_grouping_max_energy"),
    Parameter("isgri_grouping_max_energy", "real", 600.0, "Highest energy of the ISGRI spectral grouping.",
              unit="keV", minimum=15.0, maximum=800.0, allowed="above isgri_grouping_min_energy"),
    Parameter("isgri_grouping_factor", "integer", 0, "Number of bins of the ISGRI spectral grouping (spectra "
              "have 256 channels otherwise).", allowed="< 0: |N| logarithmic bins; > 0: N linear bins; "
              "0: no grouping"),
    # Revolution products (notebook revolution_mosaics, workflow revolution).
    Parameter("rev_num", "revolution_number", 0, "INTEGRAL revolution to process: '0300' names one; 0 means the "
              "current revolution and -N the N-th before it. The mission has ended (science operations stopped "
              "on 2025-02-28), so the current revolution is the last one with data in the archive; while the "
              "mission ran, only near-real-time data (data_version NRT) existed for the latest revolutions.",
              rule=_rule_revolution_number),
    Parameter("J_E1_keV", "real", 3.0, "Lower energy of JEM-X images in revolution products (E1_keV is ISGRI's "
              "there).", unit="keV", minimum=3.0, maximum=35.0, allowed="below J_E2_keV"),
    Parameter("J_E2_keV", "real", 20.0, "Upper energy of JEM-X images in revolution products.", unit="keV",
              minimum=3.0, maximum=35.0, allowed="above J_E1_keV"),
    Parameter("use_isgri", "flag", True, "Make IBIS/ISGRI products in revolution products."),
    Parameter("use_jemx1", "flag", True, "Make JEM-X1 products in revolution products."),
    Parameter("use_jemx2", "flag", True, "Make JEM-X2 products in revolution products."),
    Parameter("to_exclude_from_title", "text", "", "Leave out the observations whose title contains this text "
              "(e.g. 'Cen A'); '' keeps every observation."),
    Parameter("extract_source_products", "flag", False, "Revolution products: also extract light curves and "
              "spectra of the catalogue sources detected in each observation's mosaic."),
    # Moving targets and Crab calibration (notebooks moving_target, crab_calibration; workflow moving_target).
    Parameter("ephemeris", "choice", "auto", "Ephemeris of solar-system bodies: JPL DE421 (the skyfield-data "
              "package, offline), astropy's builtin one (offline, ~40 arcsec), auto (DE421 when installed) or JPL "
              "Horizons (online only).", choices=("auto", "de421", "builtin", "horizons")),
    Parameter("parallax_correction", "flag", True, "Correct a body's position for INTEGRAL's parallax (up to ~1 "
              "arcmin for Jupiter) with the MMODA spacecraft service."),
    Parameter("stack_half_size_deg", "real", 2.5, "Half-size of the body-frame stacks (images reprojected around "
              "the body).", unit="deg", minimum=0.2, maximum=15.0),
    Parameter("control_offset_deg", "real", 1.5, "Offset east of the body, in the body frame, of the control "
              "position measured like the body.", unit="deg", minimum=0.0, exclusive_minimum=True, maximum=15.0,
              allowed="below stack_half_size_deg"),
    Parameter("body_detection_sigma", "real", 3.0, "Significance above which the body counts as detected; below "
              "it 2 and 3 sigma upper limits are given.", unit="sigma", minimum=0.0, exclusive_minimum=True),
    Parameter("mask_fixed_sources", "flag", True, "Before stacking a moving target, mask the catalogue sources "
              "of the fixed sky detected along its track (else they smear into streaks in the body's frame)."),
    Parameter("fixed_source_sigma", "real", 5.0, "Detection threshold, in sky mosaics along the track, of the fixed "
              "sources to mask.", unit="sigma", minimum=0.0, exclusive_minimum=True),
    Parameter("crab_scws_per_period", "integer", 8, "Crab ScWs drawn per half-year for the Crab calibration.",
              minimum=1),
    Parameter("calibration_period", "choice", "year", "Period over which Crab rates are averaged into one "
              "calibration factor.", choices=("year", "half-year")),
    Parameter("calibration_method", "choice", "psf_fit", "Crab rates making the calibration: PSF fits of the "
              "images, their sub-pixel value, or the isgri_lc/jemx_lc light curves.",
              choices=("psf_fit", "pixel", "light_curve")),
    # ScW selection (this project's).
    Parameter("scw_source", "choice", "mmoda", "Where the ScW list comes from: MMODA's time-system gateway "
              "(works with the local MMODA, offline) or HEASARC's INTEGRAL tables (online only).",
              choices=("mmoda", "heasarc")),
    Parameter("min_good_time_s", "real", 1000.0, "Drop ScWs with less good time than this for the instrument.",
              unit="s", minimum=0.0),
    Parameter("exclude_radiation_belts", "flag", True, "Drop ScWs taken in the radiation belts (their analysis "
              "fails)."),
    Parameter("bad_revolutions", "revolutions", (), "Revolutions whose ScWs are never used."),
    Parameter("pointings_only", "flag", True, "Keep pointing ScWs only (no slews)."),
    Parameter("random_seed", "integer", 0, "Seed of the random choices (ScWs drawn for the catalog image...), "
              "so that a run can be repeated.", minimum=0),
)

#: The table by name.
PARAMETERS: Mapping[str, Parameter] = types.MappingProxyType({p.name: p for p in PARAMETER_TABLE})


# -- conversion of one value -------------------------------------------------------------------------------------

def _parse_isot(text: str) -> dt.datetime | None:
    match = _ISOT_PATTERN.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    microsecond = int((match[7] or "0")[:6].ljust(6, "0"))
    try:
        return dt.datetime(year, month, day, hour, minute, second, microsecond)
    except ValueError:
        return None


def _looks_like_jwt(value: Any) -> bool:
    return isinstance(value, str) and _JWT_PATTERN.match(value.strip()) is not None


def _safe_repr(value: Any) -> str:
    """repr of a value for an error message, never showing a token."""
    if _looks_like_jwt(value):
        return "<a JWT token, not shown>"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _type_error(spec: Parameter, value: Any) -> ParameterError:
    return ParameterError(f"{spec.name} = {_safe_repr(value)} ({type(value).__name__}) has the wrong type: "
                          f"expected {KIND_DESCRIPTIONS[spec.kind]}" + (f" in {spec.unit}" if spec.unit else "")
                          + (f"; allowed: {spec.allowed_text()}" if spec.kind == "choice" else ""),
                          name=spec.name)


def _value_error(spec: Parameter, value: Any, problem: str) -> ParameterError:
    return ParameterError(f"{spec.name} = {_safe_repr(value)} is not allowed: {problem}; "
                          f"allowed: {spec.allowed_text()}", name=spec.name)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _to_revolution(spec: Parameter, value: Any) -> str:
    if isinstance(value, str) and _REVOLUTION_PATTERN.match(value.strip()):
        return value.strip()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1000 <= int(value) <= 9999:
        return f"{int(value):04d}"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        # An unquoted 0044 in plain YAML 1.1 becomes the octal 36: refuse to guess.
        raise ParameterError(f"{spec.name} = {value!r} is ambiguous: write revolution numbers as 4-digit strings "
                             f"with their zeros, e.g. '0044' (quote them in YAML)", name=spec.name)
    raise _type_error(spec, value)


def _to_revolution_number(spec: Parameter, value: Any) -> str | int:
    # Zero or a negative number counts back from the current revolution; anything else names one revolution.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) <= 0:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"0|-[1-9][0-9]*", value.strip()):
        return int(value.strip())
    return _to_revolution(spec, value)


def _convert(spec: Parameter, value: Any) -> Any:
    """Check the type of ``value`` for ``spec`` and return its canonical form."""
    kind = spec.kind
    if kind == "time":
        if isinstance(value, dt.datetime):
            # A datetime is what plain yaml.safe_load makes of an unquoted time: lossless to convert back.
            if value.tzinfo is not None:
                value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
        if not isinstance(value, str):
            raise _type_error(spec, value)
        text = value.strip()
        if _parse_isot(text) is None:
            raise ParameterError(f"{spec.name} = {_safe_repr(value)} is not a valid UTC time: expected ISOT "
                                 f"format YYYY-MM-DDThh:mm:ss[.fff], e.g. '2003-02-22T00:00:00'", name=spec.name)
        return text
    if kind == "text":
        if not isinstance(value, str):
            raise _type_error(spec, value)
        return value
    if kind == "choice":
        if not isinstance(value, str):
            raise _type_error(spec, value)
        by_casefold = {choice.casefold(): choice for choice in spec.choices}
        if value.strip().casefold() in by_casefold:
            return by_casefold[value.strip().casefold()]
        close = difflib.get_close_matches(value.strip().casefold(), list(by_casefold), n=1)
        hint = f" (did you mean {by_casefold[close[0]]!r}?)" if close else ""
        raise ParameterError(f"{spec.name} = {_safe_repr(value)} is not allowed{hint}; allowed: "
                             f"{spec.allowed_text()}", name=spec.name)
    if kind in ("real", "number"):
        if not _is_real(value):
            raise _type_error(spec, value)
        if not math.isfinite(float(value)):
            raise _value_error(spec, value, "must be a finite number")
        if kind == "number":
            # Counts stay ints (10, -1), fractions floats (-0.2): the two meanings of n_scw_image.
            return int(value) if float(value).is_integer() else float(value)
        return float(value)
    if kind == "integer":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if _is_real(value) and math.isfinite(float(value)) and float(value).is_integer():
            return int(value)
        raise _type_error(spec, value)
    if kind == "flag":
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        raise _type_error(spec, value)
    if kind == "revolution":
        return _to_revolution(spec, value)
    if kind == "revolution_number":
        return _to_revolution_number(spec, value)
    if kind == "revolutions":
        if isinstance(value, str):
            # "0044, 0045" is the natural way to write a few revolutions on a command line.
            items = [item for item in re.split(r"[,\s]+", value) if item]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise _type_error(spec, value)
        revolutions = tuple(_to_revolution(spec, item) for item in items)
        return tuple(sorted(set(revolutions)))
    raise AssertionError(f"unhandled kind {kind}")  # __post_init__ keeps this unreachable


def _check_value(spec: Parameter, value: Any) -> Any:
    """Convert ``value`` and check it against ``spec`` alone (not other parameters)."""
    if value is None:
        if spec.optional:
            return None
        raise ParameterError(f"{spec.name} = None is not allowed: expected {KIND_DESCRIPTIONS[spec.kind]}; "
                             f"allowed: {spec.allowed_text()}", name=spec.name)
    if _looks_like_jwt(value) or (isinstance(value, (list, tuple)) and any(_looks_like_jwt(v) for v in value)):
        raise ParameterError(f"{spec.name} holds what looks like a token: {_TOKEN_ADVICE}", name=spec.name)
    converted = _convert(spec, value)
    if spec.kind == "integer" and spec.choices and converted not in spec.choices:
        raise _value_error(spec, value, "not one of the allowed values")
    if spec.kind in ("real", "integer", "number"):
        number = float(converted)
        too_low = spec.minimum is not None and (number < spec.minimum or
                                                (spec.exclusive_minimum and number == spec.minimum))
        too_high = spec.maximum is not None and (number > spec.maximum or
                                                 (spec.exclusive_maximum and number == spec.maximum))
        if too_low or too_high:
            raise _value_error(spec, value, "out of range")
    if spec.rule is not None:
        problem = spec.rule(converted)
        if problem:
            raise _value_error(spec, value, problem)
    return converted


# -- rules across parameters -------------------------------------------------------------------------------------

def _rule_times_in_order(values: dict) -> None:
    if _parse_isot(values["T1"]) >= _parse_isot(values["T2"]):
        raise ParameterError(f"T1 = {values['T1']!r} must be earlier than T2 = {values['T2']!r}", name="T1",
                             names=("T1", "T2"))


def _rule_instrument_ranges(values: dict) -> None:
    instrument = values["instrument"]
    for spec in PARAMETER_TABLE:
        value = values.get(spec.name)
        if spec.instrument_range is None or value is None:
            continue
        low, high = spec.instrument_range.for_instrument(instrument)
        if not low <= value <= high:
            raise ParameterError(f"{spec.name} = {value!r} is outside the {INSTRUMENT_LABELS[instrument]} range: "
                                 f"allowed {_show(low)} ≤ {spec.name} ≤ {_show(high)}{_unit(spec.unit)} "
                                 f"for instrument {instrument!r}", name=spec.name)


def _rule_energy_band_in_order(values: dict) -> None:
    if values["E1_keV"] >= values["E2_keV"]:
        raise ParameterError(f"E1_keV = {values['E1_keV']!r} must be below E2_keV = {values['E2_keV']!r}",
                             name="E1_keV", names=("E1_keV", "E2_keV"))


def _rule_grouping_band_in_order(values: dict) -> None:
    if values["isgri_grouping_min_energy"] >= values["isgri_grouping_max_energy"]:
        raise ParameterError(f"isgri_grouping_min_energy = {values['isgri_grouping_min_energy']!r} must be below "
                             f"isgri_grouping_max_energy = {values['isgri_grouping_max_energy']!r}",
                             name="isgri_grouping_min_energy",
                             names=("isgri_grouping_min_energy", "isgri_grouping_max_energy"))


def _rule_jemx_band_in_order(values: dict) -> None:
    if values["J_E1_keV"] >= values["J_E2_keV"]:
        raise ParameterError(f"J_E1_keV = {values['J_E1_keV']!r} must be below J_E2_keV = {values['J_E2_keV']!r}",
                             name="J_E1_keV", names=("J_E1_keV", "J_E2_keV"))


def _rule_some_instrument_used(values: dict) -> None:
    # Only revolution products read these flags, but a run asked to make nothing is a mistake in any workflow.
    if not (values["use_isgri"] or values["use_jemx1"] or values["use_jemx2"]):
        raise ParameterError("use_isgri, use_jemx1 and use_jemx2 are all false: at least one instrument must be used",
                             name="use_isgri", names=("use_isgri", "use_jemx1", "use_jemx2"))


def _note_catalog_choice(values: dict) -> None:
    # Not an error: mosaics need no catalog, and only spectrum/light-curve notebooks would miss one.
    if not values["use_default_catalog"] and not values["make_image"] and values["api_catalog_file"] is None:
        log.warning("use_default_catalog and make_image are both false and no api_catalog_file is given: "
                    "spectra and light curves will have no source catalog")
    if values["s_max"] > 50:
        log.info("s_max = %d: jobs of more than 50 ScWs need the unige-hpc-full MMODA role", values["s_max"])


def _rule_control_inside_stack(values: dict) -> None:
    # The control position is measured in the body-frame stack, with a PSF's margin to its edge.
    if values["control_offset_deg"] >= values["stack_half_size_deg"]:
        raise ParameterError(f"control_offset_deg = {values['control_offset_deg']!r} must be below "
                             f"stack_half_size_deg = {values['stack_half_size_deg']!r} (the control position is "
                             "measured in the body-frame stack)", name="control_offset_deg",
                             names=("control_offset_deg", "stack_half_size_deg"))


#: Checks that involve several parameters, run in order on the complete, resolved values.
CROSS_FIELD_RULES: list[Callable[[dict], None]] = [
    _rule_times_in_order,
    _rule_instrument_ranges,
    _rule_energy_band_in_order,
    _rule_grouping_band_in_order,
    _rule_jemx_band_in_order,
    _rule_some_instrument_used,
    _rule_control_inside_stack,
    _note_catalog_choice,
]


# -- the validated, frozen parameter set -------------------------------------------------------------------------

class WorkflowParameters(Mapping):
    """A validated, complete and immutable set of workflow parameters.

    Values are read as attributes (``p.E1_keV``) or items (``p["E1_keV"]``).
    Instrument-dependent defaults are already resolved. Build it with
    :func:`resolve`, :func:`from_namespace` or :func:`load_parameters`.

    Parameters
    ----------
    values : mapping
        Every parameter of :data:`PARAMETERS`, already validated.
    given : mapping, optional
        The values as the user gave them (validated, before defaults), so
        that :meth:`replace` can resolve defaults again; ``values`` if omitted.
    """

    __slots__ = ("_values", "_given")

    def __init__(self, values: Mapping[str, Any], given: Mapping[str, Any] | None = None):
        object.__setattr__(self, "_values", types.MappingProxyType(dict(values)))
        object.__setattr__(self, "_given", types.MappingProxyType(dict(given if given is not None else values)))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(_unknown_message([name])) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"WorkflowParameters are frozen: use .replace({name}=...) for a changed copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("WorkflowParameters are frozen")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return "WorkflowParameters(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def __reduce__(self):
        return (WorkflowParameters, (dict(self._values), dict(self._given)))

    @property
    def explicit_names(self) -> frozenset:
        """Names the user gave a value (not None); the others took their (instrument) default."""
        return frozenset(name for name, value in self._given.items() if value is not None)

    def replace(self, **changes: Any) -> "WorkflowParameters":
        """Return a validated copy with ``changes`` applied.

        Defaults the user did not set are resolved again, so changing
        ``instrument`` also changes the default energy band and radius.
        """
        given = {**self._given, **changes}
        return resolve(given)

    def to_json_dict(self, *, names: Iterable[str] | None = None) -> dict:
        """Return the values as a JSON-safe dict (see :func:`to_json_dict`)."""
        return to_json_dict(self, names=names)


def _unknown_message(unknown: list[str]) -> str:
    lines = []
    by_casefold = {name.casefold(): name for name in PARAMETERS}
    for name in unknown:
        name = str(name)  # a YAML key may be a number
        close = difflib.get_close_matches(name.casefold(), list(by_casefold), n=3, cutoff=0.6)
        # difflib misses abbreviations ("src" for "src_name"): a name the unknown one starts is a good guess too.
        if len(name) >= 3:
            close += [key for key in by_casefold if key.startswith(name.casefold()) and key not in close]
        close = close[:3]
        if close:
            suggestions = " or ".join(repr(by_casefold[c]) for c in close)
            lines.append(f"unknown parameter {name!r}: did you mean {suggestions}?")
        else:
            lines.append(f"unknown parameter {name!r}: not a workflow parameter "
                         f"(integral_workflows.params.describe_parameters() lists them all)")
    return "\n".join(lines)


def _reject_token_names(names: Iterable[str]) -> None:
    for name in names:
        if isinstance(name, str) and name.casefold() in TOKEN_PARAMETER_NAMES:
            raise ParameterError(f"{name!r} must not be a parameter: {_TOKEN_ADVICE}", name=name)


def _raise_all(problems: list[ParameterError]) -> None:
    if len(problems) == 1:
        raise problems[0]
    names = [n for problem in problems for n in problem.names]
    raise ParameterError(f"{len(problems)} parameters are not valid:\n" + "\n".join(f"- {p}" for p in problems),
                         name=problems[0].name, names=names)


def resolve(values: Mapping[str, Any]) -> WorkflowParameters:
    """Validate parameter values, fill in defaults and return the frozen set.

    Parameters
    ----------
    values : mapping
        Parameter values by name (from a YAML file, papermill or a notebook);
        missing parameters take their default, and ``None`` for an
        instrument-dependent one (E1_keV, E2_keV, radius,
        systematic_fraction) means the instrument's default.

    Returns
    -------
    WorkflowParameters
        Every parameter, validated, with instrument defaults resolved.

    Raises
    ------
    ParameterError
        For an unknown name (with the closest valid names), a token passed as
        a parameter, a wrong type, a value out of range, or inconsistent
        values (T1 ≥ T2, E1_keV ≥ E2_keV, energies outside the instrument's
        range...). ``.name`` is the parameter at fault.
    """
    if not isinstance(values, Mapping):
        raise ParameterError(f"parameters must be a mapping of name to value, got {type(values).__name__}",
                             name=None)
    _reject_token_names(values)
    unknown = [name for name in values if name not in PARAMETERS]
    if unknown:
        raise ParameterError(_unknown_message(unknown), name=unknown[0], names=unknown)

    checked, problems = {}, []
    for name, value in values.items():
        try:
            checked[name] = _check_value(PARAMETERS[name], value)
        except ParameterError as problem:
            problems.append(problem)
    if problems:
        _raise_all(problems)

    complete = {spec.name: checked.get(spec.name, spec.default) for spec in PARAMETER_TABLE}
    instrument = complete["instrument"]
    for spec in PARAMETER_TABLE:
        if spec.instrument_dependent and complete[spec.name] in (None, spec.default):
            complete[spec.name] = spec.default.for_instrument(instrument)
    for rule in CROSS_FIELD_RULES:
        rule(complete)
    return WorkflowParameters(complete, given=checked)


def from_namespace(namespace: Mapping[str, Any], *, names: Iterable[str] | None = None) -> WorkflowParameters:
    """Validate the parameters a notebook defined (call it with ``globals()``).

    Parameters
    ----------
    namespace : mapping
        The notebook's globals, after its ``parameters`` cell and papermill's
        injected one.
    names : iterable of str, optional
        The parameters this notebook declares; by default every name of
        :data:`PARAMETERS` found in ``namespace``. Missing ones take their
        default.

    Returns
    -------
    WorkflowParameters
        The validated, frozen parameters.

    Raises
    ------
    ParameterError
        As :func:`resolve`; also if the namespace holds a variable named like
        a token (``token``...), which must come from ODA_TOKEN or .oda-token.
    """
    _reject_token_names(namespace)
    wanted = list(PARAMETERS) if names is None else list(names)
    given = {name: namespace[name] for name in wanted if name in namespace}
    missing_declared = [name for name in wanted if name not in namespace and names is not None]
    if missing_declared:
        log.debug("declared parameters not defined in the notebook, defaults used: %s", missing_declared)
    _warn_near_misses(namespace)
    return resolve(given)


def _warn_near_misses(namespace: Mapping[str, Any]) -> None:
    # A typo in the parameters cell (E1_kev) would otherwise be silently ignored in favour of the default.
    simple = (str, int, float, bool, list, tuple, type(None))
    by_casefold = {name.casefold(): name for name in PARAMETERS}
    for variable, value in namespace.items():
        if variable.startswith("_") or variable in PARAMETERS or not isinstance(value, simple):
            continue
        close = difflib.get_close_matches(variable.casefold(), list(by_casefold), n=1, cutoff=0.85)
        if close and by_casefold[close[0]] not in namespace:
            parameter = by_casefold[close[0]]
            log.warning("notebook variable %r looks like the parameter %r, which is not set: %r takes its default",
                        variable, parameter, parameter)


def to_json_dict(parameters: Mapping[str, Any], *, names: Iterable[str] | None = None) -> dict:
    """Return parameters as a JSON-safe dict, for papermill injection and manifests.

    Parameters
    ----------
    parameters : WorkflowParameters or mapping
        Validated parameters; a plain mapping is validated first.
    names : iterable of str, optional
        Only these parameters (e.g. those a given notebook declares, so that
        papermill does not warn about unknown ones).

    Returns
    -------
    dict
        Plain str/int/float/bool/None/list values (tuples become lists).

    Raises
    ------
    ParameterError
        If a name in ``names`` is not a parameter, or the values do not validate.
    """
    if not isinstance(parameters, WorkflowParameters):
        parameters = resolve(parameters)
    selected = list(parameters) if names is None else list(names)
    unknown = [name for name in selected if name not in parameters]
    if unknown:
        raise ParameterError(_unknown_message(unknown), name=unknown[0], names=unknown)
    result = {name: list(parameters[name]) if isinstance(parameters[name], tuple) else parameters[name]
              for name in selected}
    json.dumps(result, allow_nan=False)  # proves the promise; validation already refused NaN and odd types
    return result


# -- help --------------------------------------------------------------------------------------------------------

def describe_parameters(*, names: Iterable[str] | None = None, markdown: bool = False) -> str:
    """Render the help text of the parameters: name, type, default, allowed values, meaning.

    Parameters
    ----------
    names : iterable of str, optional
        Only these parameters (default: all, in table order).
    markdown : bool
        A Markdown table instead of plain text.

    Returns
    -------
    str
        The help text.
    """
    selected = [PARAMETERS[name] for name in names] if names is not None else list(PARAMETER_TABLE)
    if markdown:
        rows = ["| name | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for spec in selected:
            cells = [f"`{spec.name}`", _type_text(spec), str(spec.default) if spec.instrument_dependent
                     else f"`{_show(spec.default)}`", spec.allowed_text(), spec.meaning + _unit_note(spec)]
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return "\n".join(rows)
    blocks = []
    for spec in selected:
        default = str(spec.default) if spec.instrument_dependent else _show(spec.default)
        blocks.append(f"{spec.name} : {_type_text(spec)}, default {default}\n"
                      f"    {spec.meaning}{_unit_note(spec)}\n"
                      f"    Allowed: {spec.allowed_text()}.")
    return "\n".join(blocks)


def _type_text(spec: Parameter) -> str:
    return KIND_TYPES[spec.kind] + (" or None" if spec.optional else "")


def _unit_note(spec: Parameter) -> str:
    return f" Unit: {spec.unit}." if spec.unit else ""


# -- YAML ----------------------------------------------------------------------------------------------------------

class _ParameterLoader(yaml.SafeLoader):
    """SafeLoader that keeps times, zero-padded numbers and yes/no as strings.

    Plain YAML 1.1 turns ``T1: 2003-03-15T23:27:40`` into a datetime (which
    papermill cannot write), ``rev: 0044`` into the octal 36, ``05:34:31``
    into the sexagesimal 20071 and ``NO`` into False. Here only ``true`` and
    ``false`` are booleans, only plain decimals are numbers, and nothing is a
    timestamp.
    """

    def construct_mapping(self, node, deep=False):
        # A key given twice in a parameter file is a mistake PyYAML would silently resolve to the last one.
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"parameter {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_REPLACED_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                  "tag:yaml.org,2002:timestamp"}
_ParameterLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ParameterLoader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                       re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_ParameterLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"),
                                       list("-+0123456789"))
_ParameterLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"
               r"|^[-+]?(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str, *, source: str = "<text>") -> dict:
    """Parse YAML parameter text, keeping times and zero-padded numbers as strings.

    Parameters
    ----------
    text : str
        YAML mapping of parameter names to values.
    source : str
        Where the text comes from, for error messages.

    Returns
    -------
    dict
        Raw values (not validated; see :func:`resolve`). An empty document
        gives an empty dict.

    Raises
    ------
    ParameterError
        If the text is not valid YAML, not a mapping, or repeats a key.
    """
    try:
        values = yaml.load(text, Loader=_ParameterLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ParameterError(f"{source} is not a valid parameter file: {error}", name=None) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ParameterError(f"{source} must be a mapping of parameter names to values, "
                             f"got a {type(values).__name__}", name=None)
    return values


def read_parameter_file(path: str | Path) -> dict:
    """Read a ``parameters/*.yaml`` file into raw values (see :func:`parse_yaml`).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    dict
        Raw values, not validated.
    """
    path = Path(path)
    return parse_yaml(path.read_text(encoding="utf-8"), source=str(path))


def load_parameters(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> WorkflowParameters:
    """Read, validate and resolve a parameter file.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    overrides : mapping, optional
        Values that replace the file's (e.g. from a command line).

    Returns
    -------
    WorkflowParameters
        The validated parameters.

    Raises
    ------
    ParameterError
        If the file or a value is not valid; the message names the file.
    """
    values = read_parameter_file(path)
    values.update(overrides or {})
    try:
        return resolve(values)
    except ParameterError as error:
        raise ParameterError(f"{path}: {error}", name=error.name, names=error.names) from None


def to_yaml(parameters: Mapping[str, Any], *, names: Iterable[str] | None = None) -> str:
    """Write parameters as YAML that :func:`parse_yaml` reads back identically.

    Parameters
    ----------
    parameters : WorkflowParameters or mapping
        The parameters (validated first if a plain mapping).
    names : iterable of str, optional
        Only these parameters.

    Returns
    -------
    str
        YAML text, in table order; times and revolutions come out quoted.
    """
    return yaml.safe_dump(to_json_dict(parameters, names=names), sort_keys=False, allow_unicode=True)
