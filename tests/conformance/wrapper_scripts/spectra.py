"""Drive ``long_scw_list_call`` of the wrapper for ISGRI or JEM-X spectra over many ScWs, then ``sum_spectra``.

The ``--call`` JSON holds ``scw_list``, ``s_max``, ``sleep_time``, ``selected_catalog_region`` (optional, see
:func:`harness.apply_selected_catalog`), ``source`` (``name``: the source whose spectrum is described) and
``parameters`` (the oda_api arguments). Steps in the summary:

1. ``long_scw_list_call``: one job per ``s_max`` ScWs, polled until all are done; the wrapper then returns
   ``sum_spectra()`` of the per-job results (an error there ends the step, with ``sum_spectra`` in its traceback).
   The per-job spectra are described whatever happened after the jobs.
2. ``sum_spectra``: called again on the same per-job results, so that its own result or error is recorded.
"""

from __future__ import annotations

import numpy as np

import harness

SPECTRUM_KEYS = (
    "EXTNAME",
    "INSTRUME",
    "DETNAM",
    "NAME",
    "TSTART",
    "TSTOP",
    "TELAPSE",
    "ONTIME",
    "EXPOSURE",
    "EXP_SRC",
    "DETCHANS",
    "HDUCLAS1",
    "HDUCLAS2",
    "HDUCLAS3",
    "POISSERR",
    "BACKFILE",
    "RESPFILE",
    "ANCRFILE",
)


def _kind(product) -> str | None:
    product_kind = str((getattr(product, "meta_data", {}) or {}).get("product", ""))
    for kind in ("spectrum", "arf", "rmf"):
        if kind in product_kind:
            return kind
    return None


def describe_collection(collection, source_name: str) -> dict:
    """The source's spectrum (header, channels, rates), ARF and RMF (extensions, MATRIX shape); all sources' names."""
    described = {
        "type": type(collection).__name__,
        "n_products": len(collection._p_list),
        "sources": [],
        "products": [],
    }
    sources = set()
    for product in collection._p_list:
        meta = getattr(product, "meta_data", {}) or {}
        kind = _kind(product)
        sources.add(meta.get("src_name"))
        # the wrapper tells the RMF's matrix by the EXTNAME keyword of units 1 and 2, not by the unit's name
        entry = {
            "src_name": meta.get("src_name"),
            "kind": kind,
            "product": meta.get("product"),
            "extnames": [unit.name for unit in product.data_unit],
            "extname_keywords": [(unit.header or {}).get("EXTNAME") for unit in product.data_unit],
        }
        described["products"].append(entry)
        if meta.get("src_name") != source_name or kind is None:
            continue
        if kind == "spectrum":
            unit = product.data_unit[1]
            data = unit.data
            entry.update(
                harness.unit_headers(unit, SPECTRUM_KEYS), channels=int(len(data)), columns=list(data.dtype.names)
            )
            rate = np.asarray(data["RATE"], dtype=float)
            entry.update(rate_sum=float(np.nansum(rate)), rate_finite_fraction=float(np.isfinite(rate).mean()))
        elif kind == "arf":
            unit = product.data_unit[1]
            entry.update(rows=int(len(unit.data)), specresp_max=float(np.nanmax(unit.data["SPECRESP"])))
        else:
            matrices = [
                unit
                for unit in product.data_unit
                if unit.data is not None and unit.data.dtype.names and "MATRIX" in unit.data.dtype.names
            ]
            entry["matrix_extnames"] = [unit.name for unit in matrices]
            if matrices:
                matrix = matrices[0].data["MATRIX"]
                entry["matrix_rows"] = int(len(matrix))
                entry["matrix_row_length"] = int(len(matrix[0])) if len(matrix) else 0
                # a variable-length column reads as astropy's _VLF, a fixed one as a 2-D array
                entry["matrix_column_class"] = type(matrix).__name__
    described["sources"] = sorted(str(s) for s in sources if s is not None)
    described["source_products"] = [p for p in described["products"] if p["src_name"] == source_name]
    return described


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
        summary.step("sum_spectra", wrap.sum_spectra, describe=lambda result: describe_collection(result, name))
    summary.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
