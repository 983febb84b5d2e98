"""Shared parameter blocks: the pieces every notebook's model is built from.

Each block is a pydantic model holding a few fields and the cross-field rules among them
(``cross_field_rules``: functions of the validated model returning ``(names, problem)`` pairs).
:class:`NotebookParameters` is the base of all of them: strict types, ``extra="forbid"``,
frozen, instrument-dependent defaults filled in, every cross-field problem reported together.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import holds_token, is_token_name, token_name_problem, token_value_problem
from .types import (
    INSTRUMENT_LABELS,
    INSTRUMENTS,
    ApiCatalog,
    CountOrFraction,
    HostType,
    Instrument,
    Integer,
    IsoTime,
    JemxUnit,
    JobSize,
    OsaVersion,
    Real,
    RevolutionNumber,
    Revolutions,
    Text,
    choice,
    parse_isot,
)

log = logging.getLogger(__name__)

ONTOLOGY = "http://odahub.io/ontology#"

#: Defaults that depend on the instrument; ``None`` (or no value) means "the instrument's default".
INSTRUMENT_DEFAULTS: dict[str, dict[str, float]] = {
    "radius": {"isgri": 10.5, "jemx": 3.5},
    "E1_keV": {"isgri": 28.0, "jemx": 3.0},
    "E2_keV": {"isgri": 40.0, "jemx": 20.0},
    "systematic_fraction": {"isgri": 0.0015, "jemx": 0.05},
}
#: Energy range of each instrument, inclusive, in keV.
INSTRUMENT_ENERGY_RANGES = {"isgri": (15.0, 800.0), "jemx": (3.0, 35.0)}

CrossFieldRule = Callable[[Any], Iterator[tuple[tuple[str, ...], str]]]


def parameter(default: Any, help: str, *, ontology: str, unit: str = "", allowed: str = "", **constraints: Any):
    """Declare one parameter: its default, help text, ontology term and constraints.

    Parameters
    ----------
    default : object
        The value when the parameter is not given (the notebook's ``parameters`` cell holds the same literal).
    help : str
        One or two sentences for users: the field's description, the notebook comment and the docs.
    ontology : str
        The odahub.io ontology term (the part after ``#``) nb2workflow maps the parameter to.
    unit : str
        Unit of a number.
    allowed : str
        The allowed values in words, when the type and the constraints do not say it all.
    **constraints
        Passed to :func:`pydantic.Field` (``gt``, ``le``...).

    Returns
    -------
    pydantic.fields.FieldInfo
        The field.
    """
    extra = {"ontology": ONTOLOGY + ontology}
    if unit:
        extra["unit"] = unit
    if allowed:
        extra["allowed"] = allowed
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def own_default(block: type[NotebookParameters], name: str, default: Any):
    """A block's parameter with a notebook's own default: the same help, ontology, unit and limits.

    A notebook model keeps the block's meaning of ``name`` and starts it elsewhere, re-annotating it with
    the block's type: ``before_s: Real = own_default(SpiAcsWindow, "before_s", 100.0)``.

    Parameters
    ----------
    block : type of NotebookParameters
        The block that declares ``name``.
    name : str
        The parameter.
    default : object
        The notebook's default (its ``parameters`` cell holds the same literal).

    Returns
    -------
    pydantic.fields.FieldInfo
        The field.
    """
    field = block.model_fields[name]
    # The limits (gt, le...) are annotated_types dataclasses named like Field's arguments; the type's own
    # validators (Real's conversion) come back with the annotation.
    limits = {
        key: value
        for item in field.metadata
        if isinstance(item, annotated_types.BaseMetadata) and dataclasses.is_dataclass(item)
        for key, value in dataclasses.asdict(item).items()
    }
    return Field(default, description=field.description, json_schema_extra=field.json_schema_extra, **limits)


class CrossFieldProblems(ValueError):
    """Every cross-field problem of one model; ``problems`` holds ``(names, problem)`` pairs."""

    def __init__(self, problems: list[tuple[tuple[str, ...], str]]):
        self.problems = problems
        super().__init__("; ".join(problem for _, problem in problems))


class NotebookParameters(BaseModel):
    """Base of every parameter model: strict, closed (``extra="forbid"``), frozen.

    Values read as attributes (``p.E1_keV``) and, for code written against the mapping
    papermill injects, as items (``p["E1_keV"]``, ``p.get("radius")``).
    """

    # Defaults are not validated (they are tested once); rev_num's text default asks for it (validate_default).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False, validate_default=False)

    cross_field_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_tokens_and_fill_instrument_defaults(cls, data: Any, handler):
        if not isinstance(data, dict):
            return handler(data)
        problems = [token_name_problem(name) for name in data if is_token_name(name)]
        problems += [token_value_problem(name) for name, value in data.items() if holds_token(value)]
        if problems:
            raise ValueError("; ".join(problems))
        instrument = data.get("instrument", "isgri") if "instrument" in cls.model_fields else "isgri"
        instrument = instrument.strip().casefold() if isinstance(instrument, str) else None
        filled = {}
        if instrument in INSTRUMENTS:  # else the instrument field reports it
            for name, per_instrument in INSTRUMENT_DEFAULTS.items():
                field = cls.model_fields.get(name)
                if field is not None and field.default is None and data.get(name) is None:
                    filled[name] = per_instrument[instrument]
        model = handler({**data, **filled})
        # A filled-in default was not given: model_fields_set keeps telling what the user set, so that
        # replace(instrument="jemx") takes JEM-X's defaults.
        model.__pydantic_fields_set__.difference_update(filled)
        return model

    @model_validator(mode="after")
    def _check_cross_field_rules(self):
        problems = [problem for rule in self.rules() for problem in rule(self)]
        if problems:
            raise CrossFieldProblems(problems)
        return self

    @classmethod
    def rules(cls) -> list[CrossFieldRule]:
        """The cross-field rules of every block of this model, most general block first."""
        return [rule for klass in reversed(cls.__mro__) for rule in vars(klass).get("cross_field_rules", ())]

    def __getitem__(self, name: str) -> Any:
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of parameter ``name``, or ``default`` if this model has no such parameter."""
        return getattr(self, name) if name in type(self).model_fields else default

    def __contains__(self, name: object) -> bool:
        return name in type(self).model_fields


# -- rules ---------------------------------------------------------------------------------------------------------


def _times_in_order(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """T1 is earlier than T2."""
    if parse_isot(p.T1) >= parse_isot(p.T2):
        yield ("T1", "T2"), f"T1 = {p.T1!r} must be earlier than T2 = {p.T2!r}"


def _band_within_instrument(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """E1_keV and E2_keV lie within the instrument's range (ISGRI 15-800 keV, JEM-X 3-35 keV)."""
    low, high = INSTRUMENT_ENERGY_RANGES[p.instrument]
    for name in ("E1_keV", "E2_keV"):
        value = getattr(p, name)
        if not low <= value <= high:
            yield (
                (name,),
                (
                    f"{name} = {value!r} is outside the {INSTRUMENT_LABELS[p.instrument]} range: allowed "
                    f"{low:g} ≤ {name} ≤ {high:g} keV for instrument {p.instrument!r}"
                ),
            )


def _in_order(low_name: str, high_name: str, reason: str = "") -> CrossFieldRule:
    def rule(p) -> Iterator[tuple[tuple[str, ...], str]]:
        low, high = getattr(p, low_name), getattr(p, high_name)
        if low >= high:
            yield (low_name, high_name), f"{low_name} = {low!r} must be below {high_name} = {high!r}{reason}"

    rule.__name__ = f"{low_name}_below_{high_name}"
    rule.__doc__ = f"{low_name} is below {high_name}{reason}."
    return rule


def _some_instrument_used(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """At least one of use_isgri, use_jemx1, use_jemx2 is true."""
    if not (p.use_isgri or p.use_jemx1 or p.use_jemx2):
        yield (
            ("use_isgri", "use_jemx1", "use_jemx2"),
            "use_isgri, use_jemx1 and use_jemx2 are all false: at least one instrument must be used",
        )


def _note_catalog_choice(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """A warning (not an error) when no extraction catalogue is chosen at all."""
    # Not an error: the extraction then uses the target alone.
    if not p.use_default_catalog and not p.make_image and p.api_catalog_file is None and not p.source_catalog_file:
        log.warning(
            "use_default_catalog and make_image are both false and no api_catalog_file or "
            "source_catalog_file is given: the extraction has no source catalog"
        )
    return iter(())


def _note_large_jobs(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """A note (not an error) that more than 50 ScWs per job need the unige-hpc-full role."""
    if p.s_max > 50:
        log.info("s_max = %d: jobs of more than 50 ScWs need the unige-hpc-full MMODA role", p.s_max)
    return iter(())


# -- blocks --------------------------------------------------------------------------------------------------------


class SourceQuery(NotebookParameters):
    """The target and the cone of pointings around it (MMODA's source query)."""

    src_name: Text = parameter(
        "Crab",
        "Name of the target source; looked up (Simbad when online, else the built-in "
        "catalogue) when RA and DEC are both 0.",
        ontology="AstrophysicalObject",
    )
    RA: Real = parameter(
        0.0,
        "Right ascension of the target (J2000); RA and DEC both 0 (the default) mean: look src_name up.",
        ontology="PointOfInterestRA",
        unit="deg",
        ge=0.0,
        lt=360.0,
    )
    DEC: Real = parameter(
        0.0,
        "Declination of the target (J2000); RA and DEC both 0 (the default) mean: look src_name up.",
        ontology="PointOfInterestDEC",
        unit="deg",
        ge=-90.0,
        le=90.0,
    )
    radius: Real | None = parameter(
        None,
        "Selection radius of ScWs around the target: pointings closer than this to "
        "the source are used. None: 10.5 for ISGRI, 3.5 for JEM-X.",
        ontology="AngleDegrees",
        unit="deg",
        gt=0.0,
        le=180.0,
    )


class BodyQuery(NotebookParameters):
    """A solar-system body and the cone of pointings around its track."""

    src_name: Text = parameter(
        "Jupiter",
        "Solar-system body: Mercury, Venus, Mars, Jupiter, Saturn, Uranus, Neptune or the Sun.",
        ontology="AstrophysicalObject",
    )
    radius: Real | None = parameter(
        None,
        "Largest angle between the body and the pointing. None: 10.5 for ISGRI, 3.5 for JEM-X.",
        ontology="AngleDegrees",
        unit="deg",
        gt=0.0,
        le=180.0,
    )


class TimeSpan(NotebookParameters):
    """The period to analyse."""

    T1: IsoTime = parameter(
        "2005-03-01T00:00:00",
        "Start of the period to analyse (UTC, ISOT).",
        ontology="StartTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss' earlier than T2",
    )
    T2: IsoTime = parameter(
        "2005-04-15T00:00:00",
        "End of the period to analyse (UTC, ISOT).",
        ontology="EndTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss' later than T1",
    )

    cross_field_rules = (_times_in_order,)


class InstrumentChoice(NotebookParameters):
    """The instrument, without an energy band (ScW selection)."""

    instrument: Instrument = parameter(
        "isgri", "INTEGRAL instrument: IBIS/ISGRI (isgri) or JEM-X (jemx).", ontology="String"
    )
    jemx_unit: JemxUnit = parameter(1, "JEM-X unit, 1 or 2 (JEM-X only).", ontology="Integer")


class EnergyBand(InstrumentChoice):
    """The instrument and the energy band of images and light curves."""

    E1_keV: Real | None = parameter(
        None,
        "Lower energy of images and light curves (spectra: the band of the "
        "quoted flux). None: 28 for ISGRI, 3 for JEM-X.",
        ontology="Energy_keV",
        unit="keV",
        allowed="15 to 800 keV for ISGRI, 3 to 35 keV for JEM-X, below E2_keV",
    )
    E2_keV: Real | None = parameter(
        None,
        "Upper energy of images and light curves. None: 40 for ISGRI, 20 for JEM-X.",
        ontology="Energy_keV",
        unit="keV",
        allowed="15 to 800 keV for ISGRI, 3 to 35 keV for JEM-X, above E1_keV",
    )

    cross_field_rules = (_band_within_instrument, _in_order("E1_keV", "E2_keV"))


class Host(NotebookParameters):
    """Which MMODA answers."""

    host_type: HostType = parameter(
        "local",
        "Which MMODA to use: UNIGE production, UNIGE staging, ESA (ESAC "
        "Datalabs only), or local, the local MMODA over a simulated sky (offline).",
        ontology="String",
    )


class DataVersion(Host):
    """Which archive data: consolidated or near real time."""

    data_version: choice("CONS", "NRT") = parameter(
        "CONS",
        "Consolidated data (CONS, ScW version .001), or near-real-time data (NRT, .000) for quick looks.",
        ontology="String",
    )


class OsaAnalysis(DataVersion):
    """The OSA software and the data rights of MMODA analysis jobs."""

    osa_version: OsaVersion = parameter(
        "OSA11.2",
        "Version of the Off-line Scientific Analysis; leave OSA11.2 unless you know why.",
        ontology="String",
        allowed="OSA11.2 or OSA10.2, optionally with -<subversion> and sorted "
        "--<modifier>s (fullbkg, jemxnrt, rmfoffsetv1); OSA11.0 and OSA11.1 "
        "are obsolete",
    )


class DataRights(NotebookParameters):
    """Public data only, or also proprietary data."""

    integral_data_rights: choice("public", "all-private") = parameter(
        "public",
        "Public data only, or also data still in their proprietary period (needs the matching MMODA role).",
        ontology="String",
    )


class Jobs(NotebookParameters):
    """How many ScWs one MMODA job holds."""

    s_max: JobSize = parameter(
        50,
        "Most ScWs per MMODA job: 50 for ordinary users, up to ~300 with the unige-hpc-full role.",
        ontology="Integer",
        allowed="N > 0: at most N ScWs per job; -1: one job per revolution; -N (N ≥ 2): one "
        "job per group of N revolutions; not 0",
    )

    cross_field_rules = (_note_large_jobs,)


class Detection(NotebookParameters):
    """Source detection in images."""

    detection_threshold: Real = parameter(
        7.0, "Detection threshold of sources in images (significance).", ontology="Float", unit="sigma", gt=0.0
    )
    include_new_sources: bool = parameter(
        False, "Keep excesses that match no catalogue source (named NEW_n).", ontology="Boolean"
    )


class GalleryUploadFlag(NotebookParameters):
    """Upload to the MMODA product gallery once the products exist."""

    upload_to_gallery: bool = parameter(
        False,
        "Upload the products to the MMODA product gallery (needs the gallery contributor role).",
        ontology="Boolean",
    )


class Output(NotebookParameters):
    """Where the products go."""

    output_dir: str = parameter(".", "Folder for the products.", ontology="String")


class ScwTableInput(NotebookParameters):
    """The ScW table of an earlier scw_selection step."""

    scw_table_file: str = parameter(
        "", "ScW table of scw_selection (scws.ecsv); empty: select the ScWs here.", ontology="String"
    )


class CalibrationInput(NotebookParameters):
    """The Crab calibration of an earlier crab_calibration step."""

    crab_calibration_file: str = parameter(
        "",
        "Crab calibration (crab_calibration.ecsv of the crab_calibration "
        "notebook): adds mCrab and erg/cm2/s; empty: count rates only.",
        ontology="String",
    )


class ScwSelectionCuts(NotebookParameters):
    """The cuts a long-term analysis applies to the ScW list."""

    scw_source: choice("mmoda", "heasarc") = parameter(
        "mmoda",
        "Where the ScW list comes from: MMODA's ScW-list service (works with the local MMODA, offline) or "
        "HEASARC's intscw table (online only).",
        ontology="String",
    )
    pointings_only: bool = parameter(
        True, "Keep pointing ScWs only (no slews or engineering windows).", ontology="Boolean"
    )
    min_good_time_s: Real = parameter(
        1000.0,
        "Drop ScWs with less good time than this for the instrument.",
        ontology="TimeIntervalSeconds",
        unit="s",
        ge=0.0,
    )
    exclude_radiation_belts: bool = parameter(
        True,
        "Drop the ScWs taken in the radiation belts (the first 5 and "
        "last 10 pointings of each revolution; their analysis fails).",
        ontology="Boolean",
    )
    bad_revolutions: Revolutions = parameter(
        (),
        "Revolutions whose ScWs are never used, besides the known bad ones, as 4-digit strings, e.g. ['0128'].",
        ontology="StructuredParameter",
        allowed="a list of 4-digit revolution strings, e.g. ['0044', '1234']",
    )


class Ephemeris(NotebookParameters):
    """Positions of solar-system bodies."""

    ephemeris: choice("auto", "de421", "builtin", "horizons") = parameter(
        "auto",
        "Ephemeris of solar-system bodies: JPL DE421 (the skyfield-data package, offline), astropy's "
        "builtin one (offline, ~40 arcsec), auto (DE421 when installed) or JPL Horizons (online only).",
        ontology="String",
    )


class Extraction(NotebookParameters):
    """The catalogue of sources extracted in light curves and spectra."""

    use_default_catalog: bool = parameter(
        False,
        "Extract the ISDC reference catalogue's sources around the target (the target is added if missing).",
        ontology="Boolean",
    )
    make_image: bool = parameter(
        True,
        "Without the default catalogue: make a mosaic of n_scw_image ScWs and extract the sources it shows.",
        ontology="Boolean",
    )
    n_scw_image: CountOrFraction = parameter(
        -1,
        "ScWs, drawn at random, of that image: -1 all, -0.2 a fifth of them, 30 thirty of them.",
        ontology="Float",
        allowed="-1: all; between -1 and 0: that fraction; > 0: that many; not 0",
    )
    api_catalog_file: ApiCatalog = parameter(
        None,
        "JSON API catalogue (text or a file) to extract instead; None: not used (specialist use).",
        ontology="String",
    )
    random_seed: Integer = parameter(
        0,
        "Seed of the random choices (ScWs drawn for the image), so that a run can be repeated.",
        ontology="Integer",
        ge=0,
    )
    systematic_fraction: Real | None = parameter(
        None,
        "Systematic error added in quadrature, as a fraction of the rate. None: 0.0015 for ISGRI, 0.05 for JEM-X.",
        ontology="Float",
        ge=0.0,
        lt=1.0,
    )
    source_catalog_file: str = parameter(
        "", "Sources found by the mosaic step (sources.ecsv); empty: build the catalogue here.", ontology="String"
    )

    cross_field_rules = (_note_catalog_choice,)


class LightCurveBinning(NotebookParameters):
    """The light-curve bin."""

    lc_time_bin: Real = parameter(
        3000.0,
        "Light-curve bin. For ISGRI a bin longer than a ScW gives one point per ScW; for JEM-X it merges ScWs.",
        ontology="TimeIntervalSeconds",
        unit="s",
        gt=0.0,
    )


class SpectralGrouping(NotebookParameters):
    """The grouping of ISGRI spectral channels."""

    isgri_grouping_min_energy: Real = parameter(
        20.0,
        "Lowest energy of the ISGRI spectral grouping (channels below are ignored).",
        ontology="Energy_keV",
        unit="keV",
        ge=15.0,
        le=800.0,
    )
    isgri_grouping_max_energy: Real = parameter(
        600.0,
        "Highest energy of the ISGRI spectral grouping (channels above are ignored).",
        ontology="Energy_keV",
        unit="keV",
        ge=15.0,
        le=800.0,
    )
    isgri_grouping_factor: Integer = parameter(
        -30,
        "Groups of ISGRI channels: negative, that many logarithmic; positive, linear; 0, none (256 channels).",
        ontology="Integer",
    )

    cross_field_rules = (_in_order("isgri_grouping_min_energy", "isgri_grouping_max_energy"),)


class CrabCalibration(NotebookParameters):
    """How the Crab calibration is measured."""

    crab_scws_per_period: Integer = parameter(8, "Crab ScWs drawn per half-year.", ontology="Integer", ge=1)
    calibration_period: choice("year", "half-year") = parameter(
        "year", "Period over which Crab rates are averaged into one calibration factor.", ontology="String"
    )
    calibration_method: choice("psf_fit", "pixel", "light_curve") = parameter(
        "psf_fit",
        "Crab rates making the calibration: PSF fits of the images, their sub-pixel value, or the "
        "isgri_lc/jemx_lc light curves.",
        ontology="String",
    )
    random_seed: Integer = parameter(
        0, "Seed of the draw of the Crab ScWs, so that a run can be repeated.", ontology="Integer", ge=0
    )


class MovingTarget(NotebookParameters):
    """A solar-system body stacked in its own frame."""

    parallax_correction: bool = parameter(
        True,
        "Correct the body's position for INTEGRAL's parallax (up to ~1 "
        "arcmin for Jupiter) with the MMODA spacecraft service.",
        ontology="Boolean",
    )
    stack_half_size_deg: Real = parameter(
        2.5,
        "Half-size of the body-frame stacks (images reprojected around the body).",
        ontology="AngleDegrees",
        unit="deg",
        ge=0.2,
        le=15.0,
    )
    control_offset_deg: Real = parameter(
        1.5,
        "Offset east of the body, in the body frame, of the control position measured like the body.",
        ontology="AngleDegrees",
        unit="deg",
        gt=0.0,
        le=15.0,
        allowed="below stack_half_size_deg",
    )
    body_detection_sigma: Real = parameter(
        3.0,
        "Significance above which the body counts as detected; below it 2 and 3 sigma upper limits are given.",
        ontology="Float",
        unit="sigma",
        gt=0.0,
    )
    mask_fixed_sources: bool = parameter(
        True,
        "Mask the catalogue sources of the fixed sky detected along the "
        "track before stacking (else they smear into streaks in the body's "
        "frame).",
        ontology="Boolean",
    )
    fixed_source_sigma: Real = parameter(
        5.0,
        "Detection threshold, in sky mosaics along the track, of the fixed sources to mask.",
        ontology="Float",
        unit="sigma",
        gt=0.0,
    )

    cross_field_rules = (
        _in_order(
            "control_offset_deg", "stack_half_size_deg", " (the control position is measured in the body-frame stack)"
        ),
    )


class RevolutionProducts(NotebookParameters):
    """One revolution's observations, instruments and bands (the gallery's revolution mosaics)."""

    rev_num: RevolutionNumber = parameter(
        "0",
        "INTEGRAL revolution: '0300' names one (4 digits with their zeros); '0' is the current revolution "
        "and '-N' the N-th before it. Science operations ended on 2025-02-28, so the current revolution is the "
        "mission's last.",
        ontology="String",
        validate_default=True,
        allowed="a 4-digit revolution string such as '0300', or an integer ≤ 0 (or its text) counting back from the "
        "current revolution",
    )
    E1_keV: Real = parameter(
        28.0, "Lower energy of the ISGRI mosaics.", ontology="ISGRIEnergy", unit="keV", ge=15.0, le=800.0
    )
    E2_keV: Real = parameter(
        40.0, "Upper energy of the ISGRI mosaics.", ontology="ISGRIEnergy", unit="keV", ge=15.0, le=800.0
    )
    J_E1_keV: Real = parameter(
        3.0, "Lower energy of the JEM-X mosaics.", ontology="JEMXEnergy", unit="keV", ge=3.0, le=35.0
    )
    J_E2_keV: Real = parameter(
        20.0, "Upper energy of the JEM-X mosaics.", ontology="JEMXEnergy", unit="keV", ge=3.0, le=35.0
    )
    use_isgri: bool = parameter(True, "Make IBIS/ISGRI mosaics.", ontology="Boolean")
    use_jemx1: bool = parameter(True, "Make JEM-X1 mosaics.", ontology="Boolean")
    use_jemx2: bool = parameter(True, "Make JEM-X2 mosaics.", ontology="Boolean")
    to_exclude_from_title: str = parameter(
        "",
        "Leave out the observations whose title contains this text (e.g. 'Cen A'); empty keeps every observation.",
        ontology="String",
    )
    extract_source_products: bool = parameter(
        False,
        "Also extract light curves and spectra of the catalogue sources detected in each observation's mosaic.",
        ontology="Boolean",
    )

    cross_field_rules = (_in_order("E1_keV", "E2_keV"), _in_order("J_E1_keV", "J_E2_keV"), _some_instrument_used)


#: Kinds of events the transient follow-up serves (the notices of the transient dashboard).
EVENT_KINDS = ("GRB", "GW", "neutrino", "FRB", "other")
#: Rows of one SPI-ACS light curve a request may ask for (the local MMODA's limit, far below the real service's span).
MAX_SPIACS_BINS = 1_000_000
#: The SPI-ACS data server refuses a light curve reaching further than this from T0, s (before or after).
MAX_SPIACS_HALF_SPAN_S = 400_000.0


def _search_within_light_curve(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """search_before_s ≤ before_s and search_after_s ≤ after_s (the search stays within the light curve)."""
    for search, window in (("search_before_s", "before_s"), ("search_after_s", "after_s")):
        if getattr(p, search) > getattr(p, window):
            yield (
                (search, window),
                f"{search} = {getattr(p, search)!r} must not exceed {window} = {getattr(p, window)!r} "
                "(the excess is searched within the light curve)",
            )


def _spiacs_bins_allowed(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """(before_s + after_s) / time_bin_s is at most 1,000,000 bins."""
    bins = (p.before_s + p.after_s) / p.time_bin_s
    if bins > MAX_SPIACS_BINS:
        yield (
            ("before_s", "after_s", "time_bin_s"),
            f"before_s + after_s = {p.before_s + p.after_s:g} s in bins of time_bin_s = "
            f"{p.time_bin_s:g} s is {bins:.0f} bins: at most {MAX_SPIACS_BINS} (a larger bin or a shorter "
            "window)",
        )


class TransientEvent(NotebookParameters):
    """One event of a notice (GCN, LVK, IceCube...): name, time, position and kind."""

    event_name: Text = parameter(
        "GRB 090510", "Name of the event, e.g. 'GRB 090510' or 'S190425z'.", ontology="AstrophysicalObject"
    )
    t0_utc: IsoTime = parameter(
        "2009-05-10T00:22:59.970",
        "Time of the event, T0 (UTC, ISOT): trigger time, merger time or neutrino arrival.",
        ontology="StartTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss[.fff]'",
    )
    RA: Real = parameter(
        333.552,
        "Right ascension of the event (J2000); RA and DEC both 0: the event has no position.",
        ontology="PointOfInterestRA",
        unit="deg",
        ge=0.0,
        lt=360.0,
    )
    DEC: Real = parameter(
        -26.583,
        "Declination of the event (J2000); RA and DEC both 0: the event has no position.",
        ontology="PointOfInterestDEC",
        unit="deg",
        ge=-90.0,
        le=90.0,
    )
    radius: Real | None = parameter(
        1.0,
        "Radius of the event's error circle; None: a point. The instruments' exposure is given at the "
        "position and at the best place of the circle.",
        ontology="AngleDegrees",
        unit="deg",
        gt=0.0,
        le=180.0,
    )
    event_kind: choice(*EVENT_KINDS) = parameter(
        "GRB", "Kind of event: GRB, GW (gravitational waves), neutrino, FRB or other.", ontology="String"
    )


class SpiAcsWindow(NotebookParameters):
    """An SPI-ACS light curve around T0: its span, bin and data level, and where an excess is searched."""

    before_s: Real = parameter(
        300.0,
        "Light curve from T0 - before_s.",
        ontology="TimeIntervalSeconds",
        unit="s",
        gt=0.0,
        le=MAX_SPIACS_HALF_SPAN_S,
    )
    after_s: Real = parameter(
        300.0,
        "Light curve up to T0 + after_s.",
        ontology="TimeIntervalSeconds",
        unit="s",
        gt=0.0,
        le=MAX_SPIACS_HALF_SPAN_S,
    )
    time_bin_s: Real = parameter(
        0.05,
        "Bin of the SPI-ACS light curve; SPI-ACS counts in 50 ms samples, so the bin is a multiple of 0.05 s "
        "(truncated).",
        ontology="TimeIntervalSeconds",
        unit="s",
        ge=0.05,
        le=100.0,
    )
    data_level: choice("ordinary", "realtime") = parameter(
        "ordinary",
        "Archived SPI-ACS data (ordinary), or real-time data (realtime; needs the integral-realtime MMODA role).",
        ontology="String",
    )
    search_before_s: Real = parameter(
        30.0,
        "Excesses are searched from T0 - search_before_s.",
        ontology="TimeIntervalSeconds",
        unit="s",
        ge=0.0,
        allowed="0 to before_s",
    )
    search_after_s: Real = parameter(
        30.0,
        "Excesses are searched up to T0 + search_after_s.",
        ontology="TimeIntervalSeconds",
        unit="s",
        gt=0.0,
        allowed="above 0, up to after_s",
    )

    cross_field_rules = (_search_within_light_curve, _spiacs_bins_allowed)


class TransientImaging(NotebookParameters):
    """The ISGRI image and light curve of the ScW active at T0, when the event was in the IBIS field."""

    E1_keV: Real = parameter(
        20.0, "Lower energy of the ISGRI image and light curve.", ontology="ISGRIEnergy", unit="keV", ge=15.0, le=800.0
    )
    E2_keV: Real = parameter(
        200.0, "Upper energy of the ISGRI image and light curve.", ontology="ISGRIEnergy", unit="keV", ge=15.0, le=800.0
    )

    cross_field_rules = (_in_order("E1_keV", "E2_keV"),)


def _spiacs_intervals_nest(p) -> Iterator[tuple[tuple[str, ...], str]]:
    """The searched interval lies inside the excluded one, which lies inside the light curve."""
    if not (p.search_before_s <= p.background_exclude_before_s and p.search_after_s <= p.background_exclude_after_s):
        yield (
            ("search_before_s", "search_after_s", "background_exclude_before_s", "background_exclude_after_s"),
            "the searched interval (T0 - search_before_s, T0 + search_after_s) must lie inside the interval "
            "excluded from the background fit (T0 - background_exclude_before_s, T0 + background_exclude_after_s)",
        )
    if not (p.background_exclude_before_s < p.before_s and p.background_exclude_after_s < p.after_s):
        yield (
            ("background_exclude_before_s", "background_exclude_after_s", "before_s", "after_s"),
            "the interval excluded from the background fit must leave background on both sides: "
            "background_exclude_before_s < before_s and background_exclude_after_s < after_s",
        )


class SpiAcsAnalysis(NotebookParameters):
    """The SPI-ACS background (outside an interval around T0), the detection threshold and the upper limits."""

    background_exclude_before_s: Real = parameter(
        50.0,
        "The background is fitted outside T0 - background_exclude_before_s to T0 + background_exclude_after_s.",
        ontology="TimeIntervalSeconds",
        unit="s",
        ge=0.0,
    )
    background_exclude_after_s: Real = parameter(
        50.0,
        "End of the interval left out of the background fit, after T0 (longer for long bursts).",
        ontology="TimeIntervalSeconds",
        unit="s",
        gt=0.0,
    )
    background_order: Integer = parameter(
        2, "Order of the polynomial background (higher near the radiation belts).", ontology="Integer", ge=0, le=6
    )
    excess_threshold_sigma: Real = parameter(
        3.0,
        "Significance after trials (all windows and timescales searched) of a detection.",
        ontology="Float",
        unit="sigma",
        gt=0.0,
    )
    upper_limit_sigma: Real = parameter(
        3.0, "Upper limits are at this many sigma.", ontology="Float", unit="sigma", gt=0.0, le=10.0
    )
    theta_deg: Real | None = parameter(
        None,
        "Angle between the event and INTEGRAL's pointing axis, for fluences; None: averaged over directions.",
        ontology="AngleDegrees",
        unit="deg",
        ge=0.0,
        le=180.0,
    )

    cross_field_rules = (_spiacs_intervals_nest,)
