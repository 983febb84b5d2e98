"""The suite's workflows: long_term, moving_target, crab_calibration, revolution and transient (registered on import).

Steps whose notebooks make gallery products declare the gallery upload as a hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .hooks import GALLERY_UPLOAD
from .layout import period_folder_name, revolution_folder_name, sanitise
from .workflows import Step, Upstream, register_workflow

__all__ = ["SCW_TABLE", "MOSAIC_SOURCES", "CRAB_CALIBRATION", "crab_folder_name", "transient_folder_name"]

#: The ScW list of scw_selection, consumed by every later step of a source's run.
SCW_TABLE = Upstream(parameter="scw_table_file", step="scw_selection", product="scws.ecsv")
#: The mosaic's sources are the light curves' and spectra's extraction catalogue (make_image).
MOSAIC_SOURCES = Upstream(parameter="source_catalog_file", step="mosaic", product="sources.ecsv")
#: The Crab calibration the moving-target stacks convert their rates with.
CRAB_CALIBRATION = Upstream(parameter="crab_calibration_file", step="crab_calibration", product="crab_calibration.ecsv")


def crab_folder_name(values: Mapping[str, Any]) -> str:
    """Name a ``crab_calibration`` run's folder: ``Crab/<instrument>_<band>_<T1>_<T2>`` (its source is the Crab)."""
    return f"Crab/{period_folder_name(values)}"


def transient_folder_name(values: Mapping[str, Any]) -> str:
    """Name a ``transient`` run's folder: ``<event_name>/<T0>``, e.g. ``GRB_090510/2009-05-10T002259.970``."""
    return f"{sanitise(values['event_name'])}/{sanitise(str(values['t0_utc']).replace(':', ''))}"


register_workflow(
    "long_term",
    [
        Step("scw_selection", "scw_selection.ipynb"),
        Step("mosaic", "mosaic.ipynb", (SCW_TABLE,), after=(GALLERY_UPLOAD,)),
        Step("lightcurve", "lightcurve.ipynb", (SCW_TABLE, MOSAIC_SOURCES), after=(GALLERY_UPLOAD,)),
        Step("spectrum", "spectrum.ipynb", (SCW_TABLE, MOSAIC_SOURCES), after=(GALLERY_UPLOAD,)),
    ],
    description="Long-term products of one source: ScW selection, mosaic, light curve, spectrum",
    replace=True,
)

register_workflow(
    "moving_target",
    [
        Step("scw_selection", "scw_selection.ipynb"),
        Step("crab_calibration", "crab_calibration.ipynb"),
        Step("moving_target", "moving_target.ipynb", (SCW_TABLE, CRAB_CALIBRATION)),
    ],
    description="A solar-system body (src_name: Jupiter...): ScWs along its track, Crab calibration, one image per "
    "ScW stacked in the body's frame, fluxes or upper limits",
    replace=True,
)

register_workflow(
    "crab_calibration",
    [Step("crab_calibration", "crab_calibration.ipynb")],
    description="Crab count rates per half-year and year from images and light curves, and the "
    "conversion to mCrab and erg/cm2/s",
    folder_name=crab_folder_name,
    replace=True,
)

register_workflow(
    "revolution",
    [Step("revolution_mosaics", "revolution_mosaics.ipynb", after=(GALLERY_UPLOAD,))],
    description="Products of INTEGRAL revolutions (Generic Revolution Mosaics): one mosaic per "
    "observation and instrument; a matrix over rev_num runs a range of revolutions",
    folder_name=revolution_folder_name,
    replace=True,
)

register_workflow(
    "transient",
    [Step("transient_followup", "transient_followup.ipynb", after=(GALLERY_UPLOAD,))],
    description="INTEGRAL at the time of transient events (GRB, GW, neutrino, FRB): attitude, exposure, SPI-ACS "
    "excess and limits, ISGRI image of the ScW, GCN-style summary; a matrix over the events processes a list",
    folder_name=transient_folder_name,
    replace=True,
)
