"""The MMODA ``gw`` helper services over the simulated archive: ScW lists, time conversion, spacecraft.

The semantics of each service, after the real ones: docs/simulated_sky.md, "The `gw` services".
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

import numpy as np

from . import archive as _archive
from . import orbit as _orbit

log = logging.getLogger(__name__)

#: Columns the ScW-list service can return (``SW_VER``/``SW_TYPE`` are per readiness / constant).
SCWLIST_COLUMNS = (
    "SWID",
    "SW_TYPE",
    "SW_VER",
    "REVOL",
    "TSTART",
    "TSTOP",
    "TELAPSE",
    "RA_SCX",
    "DEC_SCX",
    "RA_SCZ",
    "DEC_SCZ",
    "POSANGLE",
    "GOOD_ISGRI",
    "GOOD_JEMX1",
    "GOOD_JEMX2",
    "IBISMODE",
    "OBS_ID",
    "FILLED",
)
_SW_VER = {"NRT": "000", "CONS": "001"}
#: Time formats of ``converttime``.
TIME_FORMATS = ("IJD", "UTC", "REVNUM", "SCWID", "MJD")


def _bad(message: str) -> tuple[int, dict]:
    return 400, {"bad request": message}


def _arg_float(args: Mapping, name: str):
    """``request.args.get(name, default=None, type=float)``: None when absent or not a number."""
    value = args.get(name) if args is not None else None
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _plain(values, name: str) -> list:
    """Column values as plain JSON-ready Python values (no NaN)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        return [str(v) for v in arr.tolist()]
    if arr.dtype.kind == "b":
        return [bool(v) for v in arr.tolist()]
    if arr.dtype.kind in "iu":
        return [int(v) for v in arr.tolist()]
    out = [float(v) for v in arr.astype(float).tolist()]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"non-finite value in column {name}")
    return out


def _scwlist_one(
    archive, source: str, t1: float, t2: float, ra, dec, radius, min_good_isgri, return_columns: str | None
) -> dict:
    """The answer of one index (NRT or CONS): column → list. Raises ValueError on an unknown column."""
    table = archive.table
    rows = archive.select(t1, t2, ra=ra, dec=dec, radius=radius)
    if min_good_isgri is not None:
        rows = rows[(np.asarray(table["TELAPSE"])[rows] > min_good_isgri) & (np.asarray(table["IBISMODE"])[rows] == 41)]
    names = (return_columns or "SWID").split(",")
    out = {}
    for name in names:
        if name not in SCWLIST_COLUMNS:
            raise ValueError(f"undefined column name {name}, have: {', '.join(SCWLIST_COLUMNS)}")
        if name == "SW_VER":
            out[name] = [_SW_VER[source]] * len(rows)
        elif name == "SW_TYPE":
            out[name] = ["POINTING"] * len(rows)
        else:
            out[name] = _plain(np.asarray(table[name])[rows], name)
    return out


def scwlist(archive, readiness: str, t1: str, t2: str, args: Mapping | None = None) -> tuple[int, object]:
    """``GET gw/timesystem/api/v1.0/scwlist/<readiness>/<t1>/<t2>``.

    Parameters
    ----------
    archive : ScwArchive
    readiness : str
        ``cons``, ``nrt`` or ``any`` (case-insensitive).
    t1, t2 : str
        Times: IJD (< 10000), MJD, or ISO/ISOT UTC.
    args : Mapping, optional
        Query arguments: ``ra``, ``dec``, ``radius`` (deg), ``min_good_isgri``,
        ``return_columns`` (comma-separated), ``return_index_version``
        (``yes``), ``index_version`` (digits; only with ``cons``/``nrt``),
        ``debug``.

    Returns
    -------
    (int, object)
        HTTP status and JSON body: a sorted list of unique SWIDs; or a dict
        column → list with ``return_columns``; wrapped as ``{"scwlist": …,
        "index_version": …}`` with ``return_index_version=yes``. 400 bodies:
        ``{"bad request": …}`` or a list of problems.
    """
    args = args if args is not None else {}
    ra, dec, radius = _arg_float(args, "ra"), _arg_float(args, "dec"), _arg_float(args, "radius")
    min_good_isgri = _arg_float(args, "min_good_isgri")
    return_columns = args.get("return_columns")
    kind = str(readiness).lower()
    sources = {"any": ["NRT", "CONS"], "nrt": ["NRT"], "cons": ["CONS"]}.get(kind)
    if sources is None:
        return _bad("readiness undefined")

    index_version = args.get("index_version")
    if index_version is not None:
        if len(sources) > 1:
            return _bad('index version can only be set with "cons" or "nrt" source, not "any"')
        if not re.match(r"\d+", str(index_version)):
            return _bad("non-conforming index version")
        if str(index_version) != _archive.INDEX_VERSION and int(re.match(r"\d+", str(index_version)).group(0)) > int(
            _archive.INDEX_VERSION
        ):
            return 400, [
                {
                    f"problem in {sources[0]}": f"no index with requested version: {index_version}; "
                    f"have: {_archive.INDEX_VERSION} - {_archive.INDEX_VERSION}"
                }
            ]

    try:
        t1_ijd = _archive.parse_time_to_ijd(t1)
        t2_ijd = _archive.parse_time_to_ijd(t2)
    except ValueError as exc:
        return _bad("failed to interpret time: " + repr(exc))

    output: dict = {}
    problems = []
    for source in sources:
        try:
            for key, values in _scwlist_one(
                archive, source, t1_ijd, t2_ijd, ra, dec, radius, min_good_isgri, return_columns
            ).items():
                output.setdefault(key, []).extend(values)
        except ValueError as exc:
            problems.append({f"problem in {source}": str(exc)})
    if problems:
        return 400, problems

    result = sorted(set(output["SWID"])) if return_columns is None else output
    if "debug" in args:
        last = str(archive.table["SWID"][-1]) if len(archive.table) else ""
        return 200, {
            "output": result,
            "t1_ijd": float(t1_ijd),
            "t2_ijd": float(t2_ijd),
            "readiness": sources[-1],
            "lastscw": last,
            "index_version": _archive.INDEX_VERSION,
        }
    if args.get("return_index_version", "no") == "yes":
        return 200, {"scwlist": result, "index_version": _archive.INDEX_VERSION}
    return 200, result


def spacecraft(archive, time_str: str, ra, dec) -> tuple[int, dict]:
    """``GET gw/scsystem/api/v1.0/sc/<time>/<ra>/<dec>``.

    Parameters
    ----------
    archive : ScwArchive
    time_str : str
        ISOT UTC or IJD (MJD accepted too).
    ra, dec : str or float
        Source direction for ``barytime`` (deg).

    Returns
    -------
    (int, dict)
        200 and :func:`mmoda_local.orbit.spacecraft_state`, or 400 and
        ``{"bad request": …}`` (bad time, bad coordinates, or a time outside
        the archive's revolutions 39–2885).
    """
    try:
        ijd = _archive.parse_time_to_ijd(time_str)
    except ValueError as exc:
        return _bad("failed to interpret time: " + repr(exc))
    try:
        ra_f, dec_f = float(ra), float(dec)
    except (TypeError, ValueError):
        return _bad(f"failed to interpret coordinates: ra={ra!r}, dec={dec!r}")
    if not (math.isfinite(ra_f) and math.isfinite(dec_f)) or not -90.0 <= dec_f <= 90.0:
        return _bad(f"coordinates out of range: ra={ra!r}, dec={dec!r}")
    lo, hi = archive.time_range
    if not lo <= ijd <= hi:
        return _bad(
            f"no spacecraft data at IJD {ijd:.6f}: the archive covers IJD {lo:.3f} to {hi:.3f} "
            f"({_archive.ijd_to_utc_isot(lo)} to {_archive.ijd_to_utc_isot(hi)})"
        )
    return 200, _orbit.spacecraft_state(archive, ijd, ra=ra_f, dec=dec_f)


def _detect_format(value: str) -> str:
    """Guess the format of a time (``ANY``): SCWID, IJD (< 20000), MJD, UTC."""
    text = str(value).strip()
    if re.fullmatch(r"\d{12}(\.\d{3})?", text):
        return "SCWID"
    try:
        return "MJD" if float(text) > 20000 else "IJD"
    except ValueError:
        pass
    _archive.parse_time_to_ijd(text)  # raises ValueError if not a date
    return "UTC"


def _ijd_text(ijd: float) -> str:
    """An IJD as OSA's ``converttime`` prints it: fixed point, 20 decimals.

    The one output seen, ``Boundary 1088.19982851851864324999 1091.19060398148167223553``
    (REVNUM 24), has this form; single IJDs are assumed to be printed alike.
    """
    return f"{float(ijd):.20f}"


def _input_interval(archive, informat: str, value: str) -> tuple[float, float | None]:
    """The time a value stands for (IJD), with the end of the interval for REVNUM and SCWID."""
    text = str(value).strip()
    if informat == "IJD":
        return float(text), None
    if informat == "MJD":
        return float(text) - _archive.IJD_MJD_OFFSET, None
    if informat == "UTC":
        try:
            float(text)
        except ValueError:
            return _archive.parse_time_to_ijd(text), None
        raise ValueError(f"not a UTC date: {text!r}")
    if informat == "REVNUM":
        rev = int(text)
        if not _archive.FIRST_REV <= rev <= _archive.LAST_REV:
            raise ValueError(f"revolution {rev} outside the archive ({_archive.FIRST_REV}-{_archive.LAST_REV})")
        return float(archive.revolution_start(rev)), float(archive.revolution_start(rev + 1))
    if informat == "SCWID":
        try:
            row = archive.index_of([text])[0]
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        return float(archive.table["TSTART"][row]), float(archive.table["TSTOP"][row])
    raise ValueError(f"unknown input format {informat}")


def _output_text(archive, informat: str, ijd: float, end: float | None, outformat: str) -> str:
    """What OSA's ``converttime`` prints after ``Output Time(<outformat>):``."""
    if outformat == "IJD":
        if informat == "REVNUM":
            return f"Boundary {_ijd_text(ijd)} {_ijd_text(end)}"
        if informat == "SCWID":
            return f"{_ijd_text(ijd)}:{_ijd_text(end)}"
        return _ijd_text(ijd)
    if outformat == "MJD":
        return _ijd_text(ijd + _archive.IJD_MJD_OFFSET)
    if outformat == "UTC":
        return _archive.ijd_to_utc_isot(ijd)
    lo, hi = archive.time_range
    if outformat == "REVNUM":
        if not lo <= ijd < hi:
            raise ValueError(f"IJD {ijd} outside revolutions {_archive.FIRST_REV}-{_archive.LAST_REV}")
        return f"{int(archive.revolution_of(ijd)):04d}"
    if outformat == "SCWID":
        row = archive.pointing_at(ijd)
        if row >= 0:
            return str(archive.table["SWID"][row])
        # OSA names the nearest ScW and says so; the service refuses such an answer for SCWID alone.
        nearest = archive.nearest_pointing(ijd)
        if len(archive.table) == 0 or not lo <= ijd < hi:
            raise ValueError(f"IJD {ijd} outside the archive")
        return f"{archive.table['SWID'][nearest]} is close"
    raise ValueError(f"unknown output format {outformat}")


def _problems(message: str, informat: str, value: str, outformat: str) -> list:
    """The real service's failure body: one problem per archive it tried (NRT, then CONS)."""
    log_text = (
        f"Log_1  : Parameter informat = {informat}\nLog_1  : Parameter intime = {value}\n"
        f"Log_1  : Parameter outformat = {outformat}\n"
    )
    return [
        {"error from converttime": repr(Exception(message)), "output": log_text, "traceback": f"Exception: {message}\n"}
        for _ in ("NRT", "CONS")
    ]


def converttime(archive, informat: str, value: str, outformat: str) -> tuple[int, object]:
    """``GET gw/timesystem/api/v1.0/converttime/<informat>/<value>/<outformat>``, as the real service answers.

    The real ``integral-timesystem`` service runs OSA's ``converttime`` and
    answers, for one output format, the text the tool prints after
    ``Output Time(<outformat>):`` as a plain-text body (not JSON); for
    ``ANY``, a JSON object of those texts; on failure, HTTP 500 and a JSON
    list of problems (one per archive, NRT then CONS).

    Parameters
    ----------
    archive : ScwArchive
    informat : str
        ``IJD``, ``UTC``, ``REVNUM``, ``SCWID``, ``MJD`` or ``ANY`` (guessed:
        a 12-digit id is SCWID, a number < 20000 IJD, a larger one MJD, else
        UTC).
    value : str
    outformat : str
        ``IJD``, ``UTC``, ``REVNUM``, ``SCWID``, ``MJD`` or ``ANY``.

    Returns
    -------
    (int, object)
        ``(200, str)`` for one output format, to be sent as text
        (``text/html``, what Flask gives a string): IJD
        ``2000.00000000000000000000``; for a revolution ``Boundary <start>
        <end>`` (what oda-integral-wrapper's ``get_utc_from_revnum`` splits);
        for a ScW ``<start>:<end>`` (what integralclient splits at ``:``);
        UTC ``2005-06-22T23:58:55.816``; REVNUM ``0328``; SCWID
        ``032800550010``. ``(200, dict)`` for ``ANY`` (IJD, UTC, REVNUM,
        SCWID texts; SCWID ``<id> is close`` in a slew or gap).
        ``(500, list)`` when the conversion fails (a SCWID that is only
        "close" included).
    """
    informat = str(informat).upper()
    outformat = str(outformat).upper()
    try:
        if informat not in TIME_FORMATS + ("ANY",):
            raise ValueError(f"unknown input format {informat}; have: {', '.join(TIME_FORMATS)}, ANY")
        if outformat not in TIME_FORMATS + ("ANY",):
            raise ValueError(f"unknown output format {outformat}; have: {', '.join(TIME_FORMATS)}, ANY")
        if informat == "ANY":
            informat = _detect_format(value)
        ijd, end = _input_interval(archive, informat, value)
        if not math.isfinite(ijd):
            raise ValueError(f"time is not finite: {value!r}")
        if outformat != "ANY":
            text = _output_text(archive, informat, ijd, end, outformat)
            if "is close" in text:
                raise ValueError(f"conversion impossible: {{{outformat!r}: {text!r}}}")
            return 200, text
        out = {}
        for name in ("IJD", "UTC", "REVNUM", "SCWID"):
            try:
                out[name] = _output_text(archive, informat, ijd, end, name)
            except ValueError as exc:
                log.debug("converttime %s %s -> %s: %s", informat, value, name, exc)
        return 200, out
    except (ValueError, OverflowError) as exc:
        return 500, _problems(str(exc), informat, value, outformat)
