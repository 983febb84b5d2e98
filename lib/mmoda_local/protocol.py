"""The shapes of the real dispatcher's answers (dispatcher-app 1.3.6, oda_api 1.3.5).

Every ``run_analysis`` answer carries all the keys the client indexes
(``job_monitor.job_id``/``session_id``, ``exit_status.comment`` and the three
messages, ``products``). JSON leaving the server goes through :func:`to_json`,
which refuses bare NaN/Infinity: the client re-parses answers with
``ast.literal_eval(str(json).replace('null', 'None'))``.
"""

from __future__ import annotations

import json
import logging
import math
import time

import numpy as np

log = logging.getLogger(__name__)

DISPATCHER_VERSION = "1.3.6"
CLIENT_VERSION_SEEN = "1.3.5"

#: The message that makes oda_api raise ``FailedToFindAnyUsefulResults`` (trailing space included).
NO_DATA_MESSAGE = "failed: get dataserver products "

SUPPORT_TEXT = (
    "\n\nThe support team has been notified, and we are investigating to resolve the issue as soon as "
    'possible\n\nIf you are willing to help us, please use the "Write a feedback" button below. We will '
    "make sure to respond to any feedback provided"
)


def exit_status(
    *,
    status: int = 0,
    job_status: str = "done",
    message: str = "",
    error_message: str = "",
    debug_message: str = "",
    comment: str = "",
    warning: str = "",
) -> dict:
    """Return an ``exit_status`` block with every key the client reads."""
    return {
        "job_status": job_status,
        "status": status,
        "message": message,
        "error_message": error_message,
        "debug_message": debug_message,
        "comment": comment,
        "warning": warning,
    }


def run_analysis_answer(
    *,
    query_status: str,
    job_id: str,
    session_id: str,
    products: dict | None = None,
    status: dict | None = None,
    job_status: str | None = None,
    reports: list | None = None,
    status_code: int | None = None,
) -> dict:
    """Return a ``run_analysis`` answer.

    Parameters
    ----------
    query_status : str
        ``submitted``, ``progress``, ``ready``, ``done`` or ``failed``.
    job_id, session_id : str
        Echoed in ``job_monitor`` (the client checks the job id never changes).
    products : dict, optional
        The ``products`` block (``{}`` while the job runs).
    status : dict, optional
        The ``exit_status`` block; a successful one by default.
    job_status : str, optional
        The job monitor status; ``query_status`` by default.
    reports : list of dict, optional
        ``job_monitor.full_report_dict_list``; each entry has a ``message``.
    status_code : int, optional
        Added as ``status_code`` (the real server does it for 403 answers).
    """
    job_status = job_status or query_status
    monitor = {"job_id": job_id, "session_id": session_id, "status": job_status}
    if reports is not None:
        monitor["full_report_dict_list"] = reports
        if reports:
            monitor["full_report_dict"] = reports[-1]
    answer = {
        "query_status": query_status,
        "products": products if products is not None else {},
        "exit_status": status if status is not None else exit_status(job_status=job_status),
        "job_monitor": monitor,
        "job_status": job_status,
        "session_id": session_id,
        "time_request": time.time(),
    }
    if status_code is not None:
        answer["status_code"] = status_code
    return answer


def common_error_payload(installed_instruments: list[str], *, debug: bool) -> dict:
    """Keys the real dispatcher adds to every 400/500 answer."""
    return {
        "cdci_data_analysis_version": DISPATCHER_VERSION,
        "cdci_data_analysis_version_details": "mmoda_local",
        "oda_api_version": CLIENT_VERSION_SEEN,
        "installed_instruments": installed_instruments,
        "debug_mode": "yes" if debug else "no",
        "config": {"backend": "mmoda_local (simulated INTEGRAL sky)"},
    }


def bad_request(
    message: str, installed_instruments: list[str], *, kind: str = "RequestNotUnderstood", debug: bool = False
) -> dict:
    """HTTP 400 body: the client raises ``RequestNotUnderstood`` and shows ``error``."""
    return {
        "error_message": message,
        "error": f"{kind}():{message}",
        **common_error_payload(installed_instruments, debug=debug),
    }


def server_error(message: str, installed_instruments: list[str], *, debug: bool = False) -> dict:
    """HTTP 500 body for an unhandled failure (the client raises ``DispatcherException``)."""
    return {
        "message": "request not valid",
        "error_message": message,
        **common_error_payload(installed_instruments, debug=debug),
    }


def forbidden_token(
    message: str, installed_instruments: list[str] | None = None, *, debug: bool = False, debug_message: str = ""
) -> dict:
    """HTTP 403 body of a ``RequestNotAuthorized`` (expired or invalid token), as the real APIerror handler.

    The client raises ``Unauthorized(body['error'])``, whose text starts with
    ``RequestNotAuthorized():`` (``str()`` of the exception, then ``:`` and the
    message). With ``installed_instruments`` the body also carries the keys
    the real dispatcher adds to every error answer.
    """
    body = {"error_message": message, "debug_message": debug_message, "error": f"RequestNotAuthorized():{message}"}
    if installed_instruments is not None:
        body.update(common_error_payload(installed_instruments, debug=debug))
    return body


def _clean(value):
    """Turn numpy scalars and arrays into plain JSON types and NaN/Inf into None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def to_json(value) -> str:
    """Serialise an answer for the client: no bare NaN/Infinity, numpy types converted."""
    return json.dumps(_clean(value), allow_nan=False)


def strings_containing_null(value, *, path: str = "") -> list[str]:
    """Return where strings containing ``null`` hide in an answer.

    The client replaces ``null`` inside every string by ``None``, so such
    strings arrive corrupted. Used by tests and by the encoder's self-check.
    """
    found = []
    if isinstance(value, str):
        if "null" in value:
            found.append(path or "<root>")
    elif isinstance(value, dict):
        for k, v in value.items():
            found.extend(strings_containing_null(v, path=f"{path}.{k}"))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found.extend(strings_containing_null(v, path=f"{path}[{i}]"))
    return found
