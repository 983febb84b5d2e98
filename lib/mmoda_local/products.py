"""From a job to the ``products`` block of the answer, with the real names and meta data.

Names the client sees (oda_api ``DataCollection`` attributes) are those of the
real dispatcher: ``mosaic_image_0_mosaic`` and ``dispatcher_catalog_1`` for
images; ``isgri_lc_<i>_<source>`` (``jemx_lc_...``) for light curves;
``isgri_spectrum_<3k>_<source>_isgri_spectrum``, ``..._isgri_arf``,
``..._isgri_rmf`` (``jemx_*``) for spectra. As the real plugin, response data
units are renamed (``SPECRESP``, ``SPECRESP MATRIX``, ``EBOUNDS``) while their
headers keep the OSA extension names (``ISGR-RMF.-RSP``...), which clients
such as oda-integral-wrapper look for.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
from astropy.table import Table

from .encoding import catalog_dict, encode_numpy_product, parse_selected_catalog
from .instrument import Instrument, unit_vectors
from .jobs import JobFailure, JobSpec

log = logging.getLogger(__name__)

#: Sources at least this significant in the imaging step get light curves and spectra (as the real backend).
EXTRACTION_THRESHOLD = 3.0
#: The request's position becomes the mosaic's tangent point when it lies this close to the pointings.
CENTRE_MAX_OFFSET_DEG = 30.0

SIMULATION_COMMENT = "Products simulated by mmoda_local from a model INTEGRAL sky; they are not INTEGRAL archive data."


def build_products(spec: JobSpec, rows: Table, instrument: Instrument, sky, *, seed: int) -> tuple[dict, str]:
    """Compute and encode the products of a job.

    Parameters
    ----------
    spec : JobSpec
        The job (kind ``image``, ``lc`` or ``spectrum``) and its normalised parameters.
    rows : astropy.table.Table
        The ScW records, in the order of ``spec.scw_ids``.
    instrument : Instrument
        ISGRI or a JEM-X unit.
    sky : mmoda_local.sky.Sky
        The simulated sky.
    seed : int
        Noise seed of the server.

    Returns
    -------
    products : dict
        Product keys of the answer (``numpy_data_product_list``, ``catalog``).
    comment : str
        ``exit_status.comment`` (says the products are simulated).
    """
    parameters = spec.parameters
    try:
        selected = parse_selected_catalog(parameters.get("selected_catalog"))
    except ValueError as exc:
        raise JobFailure(
            "Error when getting query products", error_message=str(exc), debug_message=f"ValueError({str(exc)!r})"
        ) from None
    family = "jemx" if instrument.key.startswith("jemx") else "isgri"
    if spec.kind == "image":
        return _image(parameters, rows, instrument, sky, seed, selected, family), SIMULATION_COMMENT
    sources = _sources(parameters, rows, instrument, sky, seed, selected)
    if spec.kind == "lc":
        return _light_curves(parameters, rows, instrument, sky, seed, sources, family), SIMULATION_COMMENT
    if spec.kind == "spectrum":
        dummy = parameters.get("query_type") == "Dummy"
        return _spectra(rows, instrument, sky, seed, sources, family, dummy=dummy), SIMULATION_COMMENT
    raise JobFailure("Error when getting query products", error_message=f"unknown product kind {spec.kind}")


def _centre(parameters: dict, rows: Table) -> tuple[float, float] | None:
    if len(rows) == 1:
        # one ScW: its own native grid, as the real backend returns it (no resampling)
        return None
    pointings = unit_vectors(np.asarray(rows["RA_SCX"], float), np.asarray(rows["DEC_SCX"], float))
    mean = pointings.sum(axis=0)
    mean /= np.linalg.norm(mean)
    request = unit_vectors(float(parameters["RA"]), float(parameters["DEC"])).reshape(3)
    offset = np.degrees(np.arccos(np.clip(mean @ request, -1.0, 1.0)))
    return (float(parameters["RA"]), float(parameters["DEC"])) if offset <= CENTRE_MAX_OFFSET_DEG else None


def _image(parameters, rows, instrument, sky, seed, selected, family) -> dict:
    from .imaging import image_products

    hdul, catalog, _ = image_products(
        rows,
        sky,
        instrument,
        parameters["E1_keV"],
        parameters["E2_keV"],
        seed=seed,
        detection_threshold=parameters["detection_threshold"],
        selected_catalog=selected,
        include_new_sources=selected is None,
        centre=_centre(parameters, rows),
    )
    meta = {"product": "mosaic", "instrument": family, "src_name": ""}
    return {
        "numpy_data_product_list": [encode_numpy_product(hdul, name="mosaic_image", meta_data=meta)],
        "catalog": catalog_dict(catalog),
    }


def _sources(parameters, rows, instrument, sky, seed, selected) -> list[tuple[str, float, float]]:
    """Sources to extract: the selected catalogue, else those the image of these ScWs shows at ≥ 3σ."""
    if selected is not None:
        return [(str(r["src_names"]), float(r["ra"]), float(r["dec"])) for r in selected]
    from .imaging import mosaic, source_catalog

    image = mosaic(rows, sky, instrument, parameters["E1_keV"], parameters["E2_keV"], seed=seed)
    catalog = source_catalog(image, sky, detection_threshold=EXTRACTION_THRESHOLD, include_new_sources=False)
    return [(str(r["src_names"]), float(r["ra"]), float(r["dec"])) for r in catalog]


def _time_bin_s(parameters: dict) -> float:
    time_bin = float(parameters["time_bin"])
    return time_bin * 86400.0 if parameters.get("time_bin_format") == "jd" else time_bin


def _light_curves(parameters, rows, instrument, sky, seed, sources, family) -> dict:
    from .lightcurves import lightcurve_hdulist

    encoded = []
    for name, ra, dec in sources:
        hdul = lightcurve_hdulist(
            rows,
            sky,
            instrument,
            parameters["E1_keV"],
            parameters["E2_keV"],
            name,
            ra,
            dec,
            time_bin_s=_time_bin_s(parameters),
            seed=seed,
        )
        meta = {
            "src_name": name,
            "time_bin": float(hdul[1].header["TIMEDEL"]),
            "time": "TIME",
            "rate": "RATE",
            "rate_err": "ERROR",
        }
        encoded.append(encode_numpy_product(hdul, name=f"{family}_lc", meta_data=meta))
    return {"numpy_data_product_list": encoded}


def _spectra(rows, instrument, sky, seed, sources, family, *, dummy: bool = False) -> dict:
    from .spectra import spectra_products, wire_names

    renamed = wire_names(instrument)
    encoded = []
    rmf_units = None
    for (name, _, _), (spectrum, arf, rmf) in zip(sources, spectra_products(rows, sky, instrument, sources, seed=seed)):
        if dummy and instrument.key == "isgri":
            # The real dispatcher's Dummy RMF (captured s4) puts the matrix before EBOUNDS; the real OSA 11
            # ISGRI RMF (tests/data/real_products/isgri_rmf_Crab.fits) has EBOUNDS first.
            rmf = type(rmf)([rmf[0], rmf[2], rmf[1]])
        for hdul, kind in ((spectrum, "spectrum"), (arf, "arf"), (rmf, "rmf")):
            meta = {"src_name": name, "product": f"{family}_{kind}"}
            if kind == "rmf" and rmf_units is not None:
                # Every source has the same RMF: its data units are encoded once (the slowest part of a spectrum).
                encoded.append(_with_data_units(rmf_units, name="", meta_data=meta))
                continue
            product = encode_numpy_product(hdul, name="", unit_names=renamed, meta_data=meta)
            if kind == "rmf":
                rmf_units = product["data_unit_list"]
            encoded.append(product)
    return {"numpy_data_product_list": encoded}


def _with_data_units(units: list, *, name: str, meta_data: dict) -> dict:
    """An encoded NumpyDataProduct made of already encoded data units (copied: no two products share a dict)."""
    from oda_api.data_products import NumpyDataProduct

    from .protocol import strings_containing_null

    encoded = NumpyDataProduct([], name=name, meta_data=meta_data).encode()
    encoded["data_unit_list"] = copy.deepcopy(units)
    leftovers = strings_containing_null(encoded)
    if leftovers:
        raise RuntimeError(f"encoded product still holds 'null' in strings at {leftovers[:5]}")
    return encoded
