"""One parameter model per notebook, assembled from the shared blocks.

A model's fields are exactly the names of its notebook's ``parameters`` cell, with the same defaults
(tested). Blocks listed last in a class statement come first in the cell (pydantic orders fields
from the most basic class of the MRO).
"""

from __future__ import annotations

from pydantic import BaseModel

from .blocks import (
    BodyQuery,
    CalibrationInput,
    CrabCalibration,
    DataRights,
    DataVersion,
    Detection,
    EnergyBand,
    Ephemeris,
    Extraction,
    GalleryUploadFlag,
    Host,
    InstrumentChoice,
    Jobs,
    LightCurveBinning,
    MovingTarget,
    NotebookParameters,
    OsaAnalysis,
    Output,
    RevolutionProducts,
    ScwSelectionCuts,
    ScwTableInput,
    SourceQuery,
    SpectralGrouping,
    SpiAcsAnalysis,
    SpiAcsWindow,
    TimeSpan,
    TransientEvent,
    TransientImaging,
    own_default,
    parameter,
)
from .types import IsoTime, Real, TextList


class ScwSelectionParameters(Output, ScwSelectionCuts, Ephemeris, DataVersion, InstrumentChoice, TimeSpan, SourceQuery):
    """Parameters of ``notebooks/scw_selection.ipynb``: which ScWs saw the source, after the cuts."""


class MosaicParameters(
    Output,
    GalleryUploadFlag,
    ScwTableInput,
    Detection,
    Jobs,
    DataRights,
    OsaAnalysis,
    EnergyBand,
    TimeSpan,
    SourceQuery,
):
    """Parameters of ``notebooks/mosaic.ipynb``: a long-term mosaic around a source."""


class LightCurveParameters(
    Output,
    GalleryUploadFlag,
    CalibrationInput,
    ScwTableInput,
    LightCurveBinning,
    Extraction,
    Detection,
    Jobs,
    DataRights,
    OsaAnalysis,
    EnergyBand,
    TimeSpan,
    SourceQuery,
):
    """Parameters of ``notebooks/lightcurve.ipynb``: long-term light curves of a source and its neighbours."""


class SpectrumParameters(
    Output,
    GalleryUploadFlag,
    ScwTableInput,
    SpectralGrouping,
    Extraction,
    Detection,
    Jobs,
    DataRights,
    OsaAnalysis,
    EnergyBand,
    TimeSpan,
    SourceQuery,
):
    """Parameters of ``notebooks/spectrum.ipynb``: long-term spectra of a source and its neighbours."""


class CrabCalibrationParameters(Output, CrabCalibration, Jobs, DataRights, OsaAnalysis, EnergyBand, TimeSpan):
    """Parameters of ``notebooks/crab_calibration.ipynb``: count rate to mCrab and erg/cm²/s."""

    T1: IsoTime = parameter(
        "2021-05-01T00:00:00",
        "Start of the period (UTC, ISOT); the calibration covers the calendar years of T1 to T2.",
        ontology="StartTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss' earlier than T2",
    )
    T2: IsoTime = parameter(
        "2021-07-01T00:00:00",
        "End of the period (UTC, ISOT).",
        ontology="EndTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss' later than T1",
    )


class MovingTargetParameters(
    Output,
    CalibrationInput,
    ScwTableInput,
    MovingTarget,
    Ephemeris,
    DataRights,
    OsaAnalysis,
    EnergyBand,
    TimeSpan,
    BodyQuery,
):
    """Parameters of ``notebooks/moving_target.ipynb``: a solar-system body stacked in its own frame."""

    T1: IsoTime = parameter(
        "2021-05-01T00:00:00",
        "Start of the period (UTC, ISOT).",
        ontology="StartTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss' earlier than T2",
    )
    T2: IsoTime = parameter(
        "2021-07-01T00:00:00",
        "End of the period (UTC, ISOT).",
        ontology="EndTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss' later than T1",
    )


class RevolutionMosaicsParameters(
    Output, GalleryUploadFlag, LightCurveBinning, Jobs, Detection, OsaAnalysis, RevolutionProducts
):
    """Parameters of ``notebooks/revolution_mosaics.ipynb``: one mosaic per observation of a revolution."""


class TransientFollowupParameters(
    Output, GalleryUploadFlag, Host, LightCurveBinning, TransientImaging, SpiAcsWindow, TransientEvent
):
    """Parameters of ``notebooks/transient_followup.ipynb``: INTEGRAL at the time of one transient event."""

    # A burst's trigger: a short stretch before it, an excess searched from just before.
    before_s: Real = own_default(SpiAcsWindow, "before_s", 100.0)
    search_before_s: Real = own_default(SpiAcsWindow, "search_before_s", 5.0)
    lc_time_bin: Real = parameter(
        100.0,
        "Bin of the ISGRI light curve of the ScW active at T0.",
        ontology="TimeIntervalSeconds",
        unit="s",
        gt=0.0,
    )


class _SpiAcsTime(NotebookParameters):
    """The reference time of an SPI-ACS light curve (first in the cell)."""

    t0_utc: IsoTime = parameter(
        "2017-08-17T12:41:06.470",
        "Reference time T0 (UTC, ISOT), e.g. a GRB trigger or a gravitational-wave merger.",
        ontology="StartTime",
        allowed="a UTC time 'YYYY-MM-DDThh:mm:ss[.fff]' within the mission",
    )


class SpiAcsLightCurveParameters(Output, Host, SpiAcsAnalysis, SpiAcsWindow, _SpiAcsTime):
    """Parameters of ``notebooks/spi_acs_lightcurve.ipynb``: an SPI-ACS light curve around a time, its excesses."""


def _run_folder_given(p):
    """run_folder is given."""
    if not p.run_folder.strip():
        yield ("run_folder",), "run_folder is empty: give a run folder of run_all.py (it holds manifest.json)"


class GalleryUploadParameters(Host):
    """Parameters of ``notebooks/gallery_upload.ipynb``: a finished run folder's products to the gallery."""

    run_folder: str = parameter(
        "",
        "Run folder of run_all.py holding manifest.json, e.g. "
        "outputs/revolution/0300/isgri_28-40keV_jemx1_3-20keV_CONS.",
        ontology="String",
        allowed="the path of a run folder (required)",
    )
    steps: TextList = parameter(
        (), "Only the products of these steps, e.g. ['mosaic']; empty for every step.", ontology="StructuredParameter"
    )
    dry_run: bool = parameter(False, "List what would be uploaded and upload nothing.", ontology="Boolean")
    output_dir: str = parameter("", "Where gallery_uploads.json goes; empty for the run folder.", ontology="String")

    cross_field_rules = (_run_folder_given,)


class ObservationParameters(
    SpectralGrouping, LightCurveBinning, Extraction, Detection, Jobs, DataRights, OsaAnalysis, EnergyBand, SourceQuery
):
    """The analysis parameters of one observation with one instrument (a revolution run's per-instrument jobs).

    Not a notebook's: :func:`integral_workflows.revolution.instrument_parameters` derives it from a
    revolution run's parameters, with the instrument, its band and the observation's position.
    """


#: The model of each notebook, by notebook name (the file name without ``.ipynb``).
NOTEBOOK_MODELS: dict[str, type[NotebookParameters]] = {
    "scw_selection": ScwSelectionParameters,
    "mosaic": MosaicParameters,
    "lightcurve": LightCurveParameters,
    "spectrum": SpectrumParameters,
    "crab_calibration": CrabCalibrationParameters,
    "moving_target": MovingTargetParameters,
    "revolution_mosaics": RevolutionMosaicsParameters,
    "transient_followup": TransientFollowupParameters,
    "gallery_upload": GalleryUploadParameters,
    "spi_acs_lightcurve": SpiAcsLightCurveParameters,
}


def model_for(notebook: str) -> type[BaseModel]:
    """Return the parameter model of ``notebook`` (e.g. ``"mosaic"``).

    Parameters
    ----------
    notebook : str
        A notebook name, as :func:`notebook_names` lists them.

    Returns
    -------
    type of pydantic.BaseModel
        Its model (``extra="forbid"``).

    Raises
    ------
    ParameterError
        For a notebook without a model (with the closest name).
    """
    try:
        return NOTEBOOK_MODELS[notebook]
    except KeyError:
        from .errors import ParameterError, closest_names

        close = closest_names(notebook, NOTEBOOK_MODELS)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"known: {', '.join(NOTEBOOK_MODELS)}"
        raise ParameterError(f"no parameter model for notebook {notebook!r}: {hint}") from None


def notebook_names() -> list[str]:
    """The notebooks that have a parameter model: ``["scw_selection", "mosaic", ...]``."""
    return list(NOTEBOOK_MODELS)


def declared_names(notebook: str) -> list[str]:
    """The parameters ``notebook`` declares: its model's fields, in the order of its ``parameters`` cell."""
    return list(model_for(notebook).model_fields)


def default_value(name: str, *, instrument: str | None = None):
    """The default of parameter ``name`` in the first notebook that declares it.

    An instrument-dependent default (``radius``, ``E1_keV``...) is the ``instrument``'s, or None
    (meaning "the instrument's default") when no instrument is given.

    For library functions that take a partial mapping of parameters (a mosaic's parameters given to the
    ScW selection, which also reads ``scw_source``): the missing names mean what they mean in their block.

    Raises
    ------
    KeyError
        If no notebook declares ``name``.
    """
    from .blocks import INSTRUMENT_DEFAULTS

    for model in NOTEBOOK_MODELS.values():
        field = model.model_fields.get(name)
        if field is None:
            continue
        if field.default is None and name in INSTRUMENT_DEFAULTS:
            return INSTRUMENT_DEFAULTS[name][instrument] if instrument else None
        return model.model_fields[name].default
    raise KeyError(f"no notebook declares a parameter {name!r}")
