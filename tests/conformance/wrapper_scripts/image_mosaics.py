"""Drive ``long_scw_list_call`` of the wrapper for an ISGRI or JEM-X image over many ScWs, then ``combine_mosaics``.

The ``--call`` JSON holds ``scw_list``, ``s_max``, ``sleep_time``, ``detection_threshold``, ``source`` (name, ra,
dec: the source whose detection is described) and ``parameters`` (the oda_api arguments: ``product``,
``instrument``, ``osa_version``, energies...). Steps in the summary:

1. ``long_scw_list_call``: the wrapper submits one job per ``s_max`` ScWs, polls them all until done, then tries
   ``combine_mosaics`` itself and, when that raises, returns the list of per-job results instead (its own
   ``except``); the description says which of the two came back.
2. ``combine_mosaics``: called again on the same per-job results, so that its error, if any, is recorded exactly.
"""

from __future__ import annotations

import math

import numpy as np

import harness

MOSAIC_KEYS = ("INSTRUME", "DETNAM", "IMATYPE", "TSTART", "TSTOP", "TELAPSE", "ONTIME", "EXPOSURE", "E_MIN", "E_MAX")


def _mosaic_product(collection):
    """The mosaic product of an image collection, as the wrapper looks for it."""
    if hasattr(collection, "mosaic_image_0_mosaic"):
        return collection.mosaic_image_0_mosaic
    return collection.mosaic_image_0


def _angular_distance_deg(ra1, dec1, ra2, dec2) -> float:
    ra1, dec1, ra2, dec2 = (math.radians(float(v)) for v in (ra1, dec1, ra2, dec2))
    cos_d = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos_d))))


def describe_image(collection, source: dict) -> dict:
    """Mosaic units (IMATYPE, shape, finite max, header times) and the catalogue (sources, the source's detection)."""
    mosaic = _mosaic_product(collection)
    units = []
    for unit in mosaic.data_unit:
        data = unit.data
        entry = {"name": unit.name, **harness.unit_headers(unit, MOSAIC_KEYS)}
        if data is not None and getattr(data, "ndim", 0) == 2:
            finite = np.isfinite(data)
            entry.update(
                shape=list(data.shape),
                finite_fraction=float(finite.mean()),
                max=float(np.nanmax(data)) if finite.any() else None,
            )
        units.append(entry)
    table = collection.dispatcher_catalog_1.table
    names = [str(name) for name in table["src_names"]] if len(table) else []
    matches = []
    for row in table:
        distance = _angular_distance_deg(row["ra"], row["dec"], source["ra"], source["dec"])
        if distance < 0.25:
            matches.append(
                {
                    "name": str(row["src_names"]),
                    "distance_deg": round(distance, 4),
                    "significance": float(row["significance"]),
                }
            )
    return {
        "type": type(collection).__name__,
        "products": list(collection._n_list),
        "units": units,
        "n_sources": len(names),
        "sources": names,
        "columns": list(table.colnames),
        "source_matches": matches,
    }


def describe_long_call(result, wrap, source: dict) -> dict:
    """What ``long_scw_list_call`` returned: the combined collection, or the list of per-job results."""
    per_job = [describe_image(collection, source) for collection in wrap.all_data]
    if isinstance(result, list):
        return {"returned": "list", "n_jobs": len(wrap.all_data), "per_job": per_job}
    return {
        "returned": "combined",
        "n_jobs": len(wrap.all_data),
        "per_job": per_job,
        "combined": describe_image(result, source),
    }


def main() -> int:
    """Run the steps; exit 0 even when a step fails (the summary carries the verdict)."""
    args = harness.parse_args(__doc__.splitlines()[0])
    call = args.call
    summary = harness.Summary(args.summary, call).start()
    wrap = summary.step("INTEGRALwrapper", lambda: harness.make_wrapper(args.url, args.token))
    if wrap is None:
        return 0
    source = call["source"]
    parameters = dict(call["parameters"], detection_threshold=call["detection_threshold"])
    summary.step(
        "long_scw_list_call",
        lambda: wrap.long_scw_list_call(
            call["scw_list"], s_max=call["s_max"], sleep_time=call["sleep_time"], **parameters
        ),
        describe=lambda result: describe_long_call(result, wrap, source),
    )
    if getattr(wrap, "all_data", None):
        summary.step(
            "combine_mosaics",
            lambda: wrap.combine_mosaics(detection_threshold=call["detection_threshold"]),
            describe=lambda result: describe_image(result, source),
        )
    summary.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
