"""Drive the wrapper's time-system helpers: ``get_pointings``, ``get_utc_from_revnum`` and ``converttime``.

They are static methods that call ``<oda_public_host>/gw/timesystem/api/v1.0/...`` with ``requests`` (no
dispatcher, no token). The ``--call`` JSON holds ``pointings`` (a list of keyword sets for ``get_pointings``),
``revolutions`` (numbers for ``get_utc_from_revnum``) and ``conversions`` (``[informat, value, outformat]`` for
``converttime``). One step per call, named after it and its arguments.
"""

from __future__ import annotations

import harness


def describe_pointings(answer) -> dict:
    """The columns and lengths of a ``get_pointings`` answer (a dict column → list, or what else came back)."""
    if not isinstance(answer, dict):
        return {"type": type(answer).__name__, "value": repr(answer)[:500]}
    return {
        "type": "dict",
        "columns": sorted(answer),
        "lengths": {key: len(value) for key, value in answer.items()},
        "SWID": list(answer.get("SWID", [])),
        "RA_SCX": list(answer.get("RA_SCX", [])),
        "DEC_SCX": list(answer.get("DEC_SCX", [])),
    }


def describe_value(answer) -> dict:
    """Any JSON-ready answer with its type (strings, lists, tuples of them)."""
    if isinstance(answer, tuple):
        return {"type": "tuple", "items": [describe_value(item) for item in answer]}
    if isinstance(answer, (str, int, float, bool)) or answer is None:
        return {"type": type(answer).__name__, "value": answer}
    if isinstance(answer, (list, dict)):
        return {"type": type(answer).__name__, "value": answer}
    return {"type": type(answer).__name__, "value": repr(answer)[:500]}


def main() -> int:
    """Run the steps; exit 0 even when a step fails (the summary carries the verdict)."""
    args = harness.parse_args(__doc__.splitlines()[0])
    call = args.call
    summary = harness.Summary(args.summary, call).start()
    wrapper_module = harness.point_wrapper_at(args.url)
    wrapper_class = wrapper_module.INTEGRALwrapper
    for keywords in call.get("pointings", []):
        summary.step(
            f"get_pointings({keywords})",
            lambda kw=keywords: wrapper_class.get_pointings(**kw),
            describe=describe_pointings,
        )
    for revolution in call.get("revolutions", []):
        summary.step(
            f"get_utc_from_revnum({revolution})",
            lambda rev=revolution: wrapper_class.get_utc_from_revnum(rev),
            describe=describe_value,
        )
    for informat, value, outformat in call.get("conversions", []):
        summary.step(
            f"converttime({informat}, {value}, {outformat})",
            lambda f=informat, v=value, o=outformat: wrapper_class.converttime(f, v, o),
            describe=describe_value,
        )
    summary.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
