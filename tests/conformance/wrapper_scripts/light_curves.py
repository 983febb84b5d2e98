"""Drive ``long_scw_list_call`` of the wrapper for ISGRI or JEM-X light curves over many ScWs, then ``stitch_lc``.

The ``--call`` JSON holds ``scw_list``, ``s_max``, ``sleep_time``, ``selected_catalog_region`` (optional, see
:func:`harness.apply_selected_catalog`), ``source`` (``name``: the source whose light curve is described) and
``parameters`` (the oda_api arguments). Steps in the summary:

1. ``long_scw_list_call``: one job per ``s_max`` ScWs, polled until all are done; the wrapper then returns
   ``stitch_lc()`` of the per-job results (an error there ends the step, with ``stitch_lc`` in its traceback).
   The per-job light curves are described whatever happened after the jobs.
2. ``stitch_lc``: called again on the same per-job results, so that its own result or error is recorded.
"""

from __future__ import annotations

import numpy as np

import harness

LC_KEYS = (
    "INSTRUME",
    "DETNAM",
    "NAME",
    "TSTART",
    "TSTOP",
    "TLAST",
    "TELAPSE",
    "ONTIME",
    "EXPOSURE",
    "EXP_SRC",
    "TIMEDEL",
    "TIMEPIXR",
    "TIMEREF",
    "TIMESYS",
    "MJDREF",
    "E_MIN",
    "E_MAX",
)


def describe_collection(collection, source_name: str) -> dict:
    """Every light curve of a collection (source, extension, header times, rows) and the source's one in detail."""
    curves = []
    for product in collection._p_list:
        meta = getattr(product, "meta_data", {}) or {}
        for unit in product.data_unit:
            if "LC" not in unit.name:
                continue
            entry = {
                "src_name": meta.get("src_name"),
                "product_name": product.name,
                "extname": unit.name,
                "rows": int(len(unit.data)) if unit.data is not None else 0,
                "columns": list(unit.data.dtype.names) if unit.data is not None else [],
                **harness.unit_headers(unit, LC_KEYS),
            }
            if meta.get("src_name") == source_name and unit.data is not None and len(unit.data):
                time = np.asarray(unit.data["TIME"], dtype=float)
                rate = np.asarray(unit.data["RATE"], dtype=float)
                entry.update(
                    time_first=float(time[0]),
                    time_last=float(time[-1]),
                    time_sorted=bool(np.all(np.diff(time) > 0)),
                    rate_mean=float(np.nanmean(rate)),
                    rate_finite_fraction=float(np.isfinite(rate).mean()),
                )
            curves.append(entry)
    return {
        "type": type(collection).__name__,
        "n_products": len(collection._p_list),
        "sources": sorted({c["src_name"] for c in curves if c["src_name"] is not None}),
        "curves": curves,
        "source_curve": next((c for c in curves if c["src_name"] == source_name), None),
    }


def main() -> int:
    """Run the steps; exit 0 even when a step fails (the summary carries the verdict)."""
    args = harness.parse_args(__doc__.splitlines()[0])
    call = args.call
    summary = harness.Summary(args.summary, call).start()
    wrap = summary.step("INTEGRALwrapper", lambda: harness.make_wrapper(args.url, args.token))
    if wrap is None:
        return 0
    name = call["source"]["name"]
    parameters = summary.step(
        "get_oda_catalog_from_region_string",
        lambda: harness.apply_selected_catalog(wrap, call),
        describe=lambda result: {"selected_catalog": result.get("selected_catalog")},
    )
    if parameters is None:
        return 0
    summary.step(
        "long_scw_list_call",
        lambda: wrap.long_scw_list_call(
            call["scw_list"], s_max=call["s_max"], sleep_time=call["sleep_time"], **parameters
        ),
        describe=lambda result: describe_collection(result, name),
    )
    per_job = [describe_collection(collection, name) for collection in getattr(wrap, "all_data", None) or []]
    summary.data["per_job"] = per_job
    summary.write()
    if per_job:
        summary.step("stitch_lc", wrap.stitch_lc, describe=lambda result: describe_collection(result, name))
    summary.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
