"""What every script driving oda-integral-wrapper 1.5.19 against a local MMODA shares (runs on Python >= 3.13).

The scripts in this folder run in ``.venv-wrapper/`` (see ``tests/conformance/wrapper_env.py``), started by
``tests/conformance/test_oda_integral_wrapper.py`` with a bound on their run time. They use the wrapper unmodified:

* :func:`point_wrapper_at` sets the module constant ``oda_integral_wrapper.wrapper.oda_public_host`` to the local
  server. The wrapper reads that constant when it is called: ``INTEGRALwrapper.__init__`` builds ``self.disp`` on it
  (``long_scw_list_call`` then makes one dispatcher per ScW group from ``self.disp.url``), and ``get_pointings``,
  ``get_utc_from_revnum`` and ``converttime`` build their ``/gw/timesystem`` URLs from it.
* :func:`install_network_guard` refuses, at the socket level, every connection that does not go to the loopback
  interface, and records it: a call that still tries the production service fails at once instead of reaching the
  network (or hanging in oda_api's retries until the bound).
* :class:`TransportObserver` reads, without changing them, the dispatcher's ``run_analysis`` answers as they pass
  through ``requests``: the job ids, their final status and the ScWs reported with ``"analysis exception"`` in
  ``job_monitor.full_report_dict_list`` (the wrapper does not keep those answers).
* :class:`Summary` runs each wrapper call as a timed step, keeps what came back (described by the script) or the
  exact error with the wrapper's code line that raised it, and writes everything as one JSON file.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("wrapper_harness")

#: Hosts a script may connect to: the local MMODA listens on the loopback interface only.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def parse_args(description: str) -> argparse.Namespace:
    """The command line every script takes.

    Parameters
    ----------
    description : str
        What the script drives.

    Returns
    -------
    argparse.Namespace
        ``url``, ``token_file``, ``call`` (the JSON request of the test, read), ``summary`` and ``log_level``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", required=True, help="the local MMODA's dispatcher URL (http://127.0.0.1:PORT)")
    parser.add_argument("--token-file", type=Path, default=None, help="file holding a token of that server")
    parser.add_argument("--call", type=Path, required=True, help="JSON file: what to ask the wrapper")
    parser.add_argument("--summary", type=Path, required=True, help="JSON file written with what came back")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.call = json.loads(args.call.read_text())
    args.token = args.token_file.read_text().strip() if args.token_file else None
    return args


def _host_of(address) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def install_network_guard(blocked: list) -> None:
    """Refuse name look-ups and connections to anything but the loopback interface; append each refusal to ``blocked``.

    Parameters
    ----------
    blocked : list
        Receives ``"host:port"`` of every refused attempt (the test requires it to stay empty).
    """
    original_getaddrinfo = socket.getaddrinfo
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host, port, *args, **kwargs):
        if host is not None and not _is_loopback(str(host)):
            blocked.append(f"{host}:{port}")
            log.error(
                "network guard: refused the name look-up of %s:%s (only the local MMODA may be reached)", host, port
            )
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: {host} is not the local MMODA")
        return original_getaddrinfo(host, port, *args, **kwargs)

    def check(address):
        if isinstance(address, tuple) and not _is_loopback(_host_of(address)):
            blocked.append(f"{_host_of(address)}:{address[1]}")
            log.error("network guard: refused a connection to %s", address)
            raise ConnectionRefusedError(f"network guard: {address} is not the local MMODA")

    def connect(self, address):
        check(address)
        return original_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return original_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    # astropy must not try to download IERS tables or anything else during time conversions
    from astropy.utils import iers
    from astropy.utils.data import conf as data_conf

    iers.conf.auto_download = False
    data_conf.allow_internet = False


class TransportObserver:
    """Record the dispatcher's ``run_analysis`` answers passing through ``requests`` (read-only).

    Attributes
    ----------
    jobs : dict
        job id → ``{"scws": [...], "statuses": [...], "analysis_exceptions": {scwid: exception}, "nodes": {...}}``.
    requests : int
        Number of ``run_analysis`` answers seen.
    """

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.requests = 0

    def install(self) -> None:
        """Wrap ``requests.Session.send`` (oda_api's ``requests.get``/``post`` go through it)."""
        import requests

        original_send = requests.Session.send
        observer = self

        def send(session, request, **kwargs):
            response = original_send(session, request, **kwargs)
            if urlsplit(request.url).path.rstrip("/").endswith("run_analysis"):
                try:
                    observer.record(request, response)
                except Exception:  # observing must never change what the wrapper sees
                    log.exception("could not read a run_analysis answer")
            return response

        requests.Session.send = send

    @staticmethod
    def _scws_of(request) -> list[str]:
        fields = parse_qs(urlsplit(request.url).query)
        body = request.body
        if body:
            fields.update(parse_qs(body.decode() if isinstance(body, bytes) else str(body)))
        scws = []
        for value in fields.get("scw_list", []):
            scws += [s.strip() for s in value.split(",") if s.strip()]
        return scws

    def record(self, request, response) -> None:
        """Keep the job id, status and analysis exceptions of one answer."""
        self.requests += 1
        if response.status_code != 200:
            return
        body = response.json()
        monitor = body.get("job_monitor") or {}
        job_id = monitor.get("job_id")
        if not job_id:
            return
        job = self.jobs.setdefault(job_id, {"scws": [], "statuses": [], "analysis_exceptions": {}, "nodes": {}})
        if not job["scws"]:
            job["scws"] = self._scws_of(request)
        status = body.get("query_status") or monitor.get("status")
        if not job["statuses"] or job["statuses"][-1] != status:
            job["statuses"].append(status)
        for entry in monitor.get("full_report_dict_list") or []:
            if entry.get("message") == "analysis exception":
                job["analysis_exceptions"][str(entry.get("scwid"))] = str(entry.get("exception"))
                job["nodes"][str(entry.get("scwid"))] = str(entry.get("node"))

    def describe(self) -> dict:
        """JSON-ready record of the jobs seen."""
        return {
            "run_analysis_answers": self.requests,
            "jobs": [
                {"job_id": job_id, **job, "final_status": job["statuses"][-1] if job["statuses"] else None}
                for job_id, job in self.jobs.items()
            ],
        }


def point_wrapper_at(url: str):
    """Make the unmodified wrapper talk to ``url``: returns the ``oda_integral_wrapper.wrapper`` module."""
    import oda_integral_wrapper.wrapper as wrapper_module

    wrapper_module.oda_public_host = url.rstrip("/")
    return wrapper_module


def make_wrapper(url: str, token: str | None):
    """An ``INTEGRALwrapper`` on the local server (it builds ``self.disp`` only when given a token)."""
    wrapper_module = point_wrapper_at(url)
    wrap = wrapper_module.INTEGRALwrapper(token=token)
    if getattr(wrap, "disp", None) is None or wrap.disp.url != url.rstrip("/"):
        raise RuntimeError(f"the wrapper's dispatcher does not point at {url}")
    return wrap


def error_record(exc: BaseException) -> dict:
    """The exact error: type, message, the wrapper's line that raised it, and the innermost frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    wrapper_frames = [frame for frame in frames if "oda_integral_wrapper" in frame.filename]
    where = wrapper_frames[-1] if wrapper_frames else None

    def show(frame):
        return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}: {frame.line}"

    return {
        "type": type(exc).__name__,
        "message": str(exc)[:3000],
        "wrapper_line": show(where) if where else None,
        "innermost": [show(frame) for frame in frames[-4:]],
    }


class Summary:
    """Timed steps and what they returned, written as JSON.

    Parameters
    ----------
    path : Path
        Where :meth:`write` puts the JSON.
    call : dict
        The request of the test (kept in the summary).
    """

    def __init__(self, path: Path, call: dict):
        self.path = path
        self.data = {"python": sys.version.split()[0], "call": call, "steps": [], "blocked_connections": []}
        self.observer = TransportObserver()

    def start(self) -> Summary:
        """Install the network guard and the observer."""
        install_network_guard(self.data["blocked_connections"])
        self.observer.install()
        from importlib.metadata import version

        import oda_api
        import oda_integral_wrapper

        self.data["versions"] = {
            "oda_api": version("oda_api"),
            "oda_integral_wrapper": version("oda_integral_wrapper"),
            "oda_integral_wrapper_file": oda_integral_wrapper.__file__,
            "oda_api_file": oda_api.__file__,
        }
        return self

    def step(self, name: str, function, describe=None):
        """Run ``function()``, timing it; keep ``describe(result)`` or the error. Returns the result or None."""
        record = {"name": name, "ok": False, "seconds": None}
        self.data["steps"].append(record)
        started = time.monotonic()
        log.info("step %s: start", name)
        try:
            result = function()
        except Exception as exc:  # the test reads the error from the summary
            record["seconds"] = round(time.monotonic() - started, 2)
            record["error"] = error_record(exc)
            log.exception("step %s failed after %.1f s", name, record["seconds"])
            self.write()
            return None
        record["seconds"] = round(time.monotonic() - started, 2)
        record["ok"] = True
        log.info("step %s: returned %s in %.1f s", name, type(result).__name__, record["seconds"])
        if describe is not None:
            try:
                record["result"] = describe(result)
            except Exception as exc:
                record["ok"] = False
                record["error"] = error_record(exc)
                record["error"]["while"] = "describing the result"
                log.exception("step %s: could not describe the result", name)
        self.write()
        return result

    def write(self) -> None:
        """Write the summary (after each step, so a killed script still leaves what it had done)."""
        self.data["transport"] = self.observer.describe()
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def unit_headers(unit, keys) -> dict:
    """The given header keywords of an oda_api ``NumpyDataUnit`` (missing ones left out)."""
    header = unit.header or {}
    return {key: header[key] for key in keys if key in header}


def apply_selected_catalog(wrap, call: dict) -> dict:
    """The oda_api arguments of ``call``, with ``selected_catalog`` made as gallery notebooks make it.

    When ``call`` has ``selected_catalog_region`` (a ds9 region string with one ``circle(...) # text={name}`` line per
    source), the wrapper's own ``get_oda_catalog_from_region_string`` turns it into the catalogue dictionary that is
    sent, JSON-encoded, as ``selected_catalog``.
    """
    parameters = dict(call["parameters"])
    region = call.get("selected_catalog_region")
    if region:
        parameters["selected_catalog"] = json.dumps(wrap.get_oda_catalog_from_region_string(region))
    return parameters
