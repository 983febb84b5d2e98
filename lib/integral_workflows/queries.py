"""MMODA product queries built from workflow parameters.

One place decides which MMODA parameters a product query carries, so that
every notebook asks the same way and the chunk cache recognises identical
queries. Times (``T1``/``T2``) are left out on purpose: with an explicit
``scw_list`` they do not change the products, and leaving them out lets
runs over different periods share the chunks they have in common.
"""

from __future__ import annotations

from collections.abc import Mapping

from .jobs import ProductRequest


def _value(parameters: Mapping, name: str):
    """A parameter's value, or its block's default when the notebook does not declare it (e.g. a threshold)."""
    from .parameters.models import default_value

    return parameters[name] if name in parameters else default_value(name)


def _common(parameters: Mapping, ra: float, dec: float) -> dict:
    common = {
        "osa_version": parameters["osa_version"],
        "integral_data_rights": _value(parameters, "integral_data_rights"),
        "E1_keV": float(parameters["E1_keV"]),
        "E2_keV": float(parameters["E2_keV"]),
        "RA": float(ra),
        "DEC": float(dec),
        "src_name": str(parameters["src_name"]),
    }
    if parameters["instrument"] == "jemx":
        common["jemx_num"] = int(parameters["jemx_unit"])
    return common


def image_request(parameters: Mapping, *, ra: float, dec: float) -> ProductRequest:
    """The ``isgri_image`` / ``jemx_image`` query of a mosaic.

    Parameters
    ----------
    parameters : Mapping
        A notebook's parameter model (:mod:`integral_workflows.parameters`) or a mapping of its values.
    ra, dec : float
        The target's position (resolved), in degrees.
    """
    query = dict(_common(parameters, ra, dec), detection_threshold=float(_value(parameters, "detection_threshold")))
    return ProductRequest(parameters["instrument"], f"{parameters['instrument']}_image", query)


def light_curve_request(
    parameters: Mapping, *, ra: float, dec: float, selected_catalog: str | None, time_bin_s: float | None = None
) -> ProductRequest:
    """The ``isgri_lc`` / ``jemx_lc`` query for the sources of ``selected_catalog`` (API catalogue JSON).

    ``time_bin_s`` defaults to ``lc_time_bin``. MMODA bins whole ScWs when the
    bin is longer than a ScW; finer stitching and rebinning happen client-side.
    """
    query = dict(
        _common(parameters, ra, dec),
        time_bin=float(time_bin_s or _value(parameters, "lc_time_bin")),
        time_bin_format="sec",
    )
    if selected_catalog:
        query["selected_catalog"] = selected_catalog
    return ProductRequest(parameters["instrument"], f"{parameters['instrument']}_lc", query)


def spectrum_request(parameters: Mapping, *, ra: float, dec: float, selected_catalog: str | None) -> ProductRequest:
    """The ``isgri_spectrum`` / ``jemx_spectrum`` query for the sources of ``selected_catalog``."""
    query = _common(parameters, ra, dec)
    if selected_catalog:
        query["selected_catalog"] = selected_catalog
    return ProductRequest(parameters["instrument"], f"{parameters['instrument']}_spectrum", query)
