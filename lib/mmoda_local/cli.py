"""Command line: ``python -m mmoda_local serve | token | stats``.

``serve`` runs the server in the foreground and writes a state file (URL,
pid, data directory) that clients use to find it; the file is removed when
the server stops. ``token`` mints a token signed with the server's secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .config import FaultRates, ServerConfig, default_data_dir
from .lifetime import DataDirInUse, IdleWatch, claim_data_dir

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: A server left behind by a finished run stops by itself after this long (a server holds about 1 GB).
DEFAULT_IDLE_MINUTES = 30.0
STATE_FILE_NAME = "server.json"


def _parse_injection(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if not name or not value:
        raise argparse.ArgumentTypeError(f"--inject expects BODY=MCRAB, e.g. jupiter=5, got {text!r}")
    try:
        return name.strip().lower(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--inject flux must be a number of mCrab, got {value!r}") from None


def _parse_grb(text: str) -> dict:
    from .spiacs import parse_grb_injection

    try:
        return parse_grb_injection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--inject-grb: {exc}") from None


def _parse_source(text: str) -> dict:
    from .sky import parse_injected_source

    try:
        return parse_injected_source(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--inject-source: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser: the ``serve``, ``token`` and ``stats`` sub-commands and their options."""
    parser = argparse.ArgumentParser(
        prog="python -m mmoda_local", description="A local MMODA dispatcher over a simulated INTEGRAL sky."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback unless --allow-remote)")
    serve.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data directory (default ${'MMODA_LOCAL_HOME'} or {default_data_dir()})",
    )
    serve.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help=f"where to write the URL and pid (default <data-dir>/{STATE_FILE_NAME})",
    )
    serve.add_argument("--config", type=Path, default=None, help="JSON file with ServerConfig fields")
    serve.add_argument("--seed", type=int, default=None, help="seed of the simulated noise (default 0)")
    serve.add_argument(
        "--latency-per-scw",
        type=float,
        default=None,
        dest="latency_per_scw_s",
        help="compute time added per ScW, seconds (default 0)",
    )
    serve.add_argument("--workers", type=int, default=None, help="jobs computed concurrently (default 2)")
    serve.add_argument(
        "--idle-minutes",
        type=float,
        default=DEFAULT_IDLE_MINUTES,
        help=f"stop after this many minutes without requests or running jobs (default {DEFAULT_IDLE_MINUTES:g}; "
        "0: never)",
    )
    serve.add_argument("--fault-http500", type=float, default=0.0, help="fraction of requests answered HTTP 500")
    serve.add_argument("--fault-drop", type=float, default=0.0, help="fraction of connections dropped")
    serve.add_argument("--fault-stall", type=float, default=0.0, help="fraction of jobs that stall")
    serve.add_argument("--fault-fail", type=float, default=0.0, help="fraction of jobs that fail")
    serve.add_argument(
        "--inject",
        action="append",
        type=_parse_injection,
        default=[],
        metavar="BODY=MCRAB",
        help="flux injected at a solar-system body, e.g. jupiter=5 (repeatable)",
    )
    serve.add_argument(
        "--inject-grb",
        action="append",
        type=_parse_grb,
        default=[],
        dest="inject_grb",
        metavar="T0,FLUENCE,DURATION[,SPECTRUM[,RA,DEC]]",
        help="a simulated gamma-ray burst in the SPI-ACS data: T0 (ISO UTC), fluence (erg/cm2, "
        "75-2000 keV), duration (s), spectrum short|long, direction (deg; default drawn from "
        "the seed); repeatable",
    )
    serve.add_argument(
        "--inject-source",
        action="append",
        type=_parse_source,
        default=[],
        dest="inject_source",
        metavar="NAME,RA,DEC,FLUX_MCRAB[,INDEX[,SHAPE]]",
        help="a simulated point source: name, position (deg), flux (mCrab, ISGRI 20-60 keV), photon index "
        "(default 2), light-curve shape constant | flare:T0_IJD:WIDTH_DAYS:PEAK_FACTOR | "
        "sine:PERIOD_DAYS:AMPLITUDE[:T0_IJD] (default constant); repeatable",
    )
    serve.add_argument(
        "--debug-instruments",
        action="store_true",
        help="also serve the dispatcher's test instruments 'empty', 'empty-async' and "
        "'empty-semi-async' (as the real one in debug mode)",
    )
    serve.add_argument(
        "--scw-failure-policy",
        choices=("skip-scw", "fail-job"),
        default=None,
        help="a job holding ScWs that cannot be analysed: skip them and report them in the job "
        "monitor (default, as the real backend) or fail as a whole",
    )
    serve.add_argument(
        "--gallery-max-upload-mib",
        type=float,
        default=None,
        help="largest gallery upload accepted, MiB, counted as the body streams in (default 512)",
    )
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback interface (the server has no TLS)"
    )
    serve.add_argument("--log-level", default="INFO")

    token = commands.add_parser("token", help="mint a token signed with the server's secret")
    token.add_argument("--roles", default="general", help="comma-separated roles, e.g. general,unige-hpc-full")
    token.add_argument("--email", default="user@localhost", help="the user's e-mail (token subject)")
    token.add_argument("--name", default=None)
    token.add_argument("--days", type=float, default=7.0, help="validity in days")
    token.add_argument("--data-dir", type=Path, default=None)

    stats = commands.add_parser("stats", help="print the counters of a running server")
    stats.add_argument("--data-dir", type=Path, default=None)
    stats.add_argument("--state-file", type=Path, default=None)
    return parser


def _config_from_args(args) -> ServerConfig:
    overrides = {
        "data_dir": args.data_dir,
        "seed": args.seed,
        "latency_per_scw_s": args.latency_per_scw_s,
        "workers": args.workers,
        "scw_failure_policy": args.scw_failure_policy,
        "gallery_max_upload_bytes": (
            None if args.gallery_max_upload_mib is None else int(args.gallery_max_upload_mib * 2**20)
        ),
    }
    faults = FaultRates(
        http_500=args.fault_http500,
        drop_connection=args.fault_drop,
        stall_job=args.fault_stall,
        fail_job=args.fault_fail,
    )
    if args.config:
        config = ServerConfig.from_json_file(args.config, **overrides)
        if faults.any:
            config.faults = faults
    else:
        config = ServerConfig(**{k: v for k, v in overrides.items() if v is not None}, faults=faults)
    if args.inject:
        config.body_fluxes_mcrab.update(dict(args.inject))
    if args.inject_grb:
        config.injected_grbs.extend(args.inject_grb)
    if args.inject_source:
        config.injected_sources.extend(args.inject_source)
    config.debug_instruments = config.debug_instruments or args.debug_instruments
    return config


def serve(args) -> int:
    """Run the local MMODA in the foreground until SIGTERM or SIGINT.

    Binds loopback only unless ``--allow-remote``; writes the state file (URL, pid, port, data folder,
    configuration) other commands read, and removes it on exit.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``serve`` options.

    Returns
    -------
    int
        The exit status: 0, 2 when asked to bind a non-loopback interface without ``--allow-remote``,
        3 when another server already serves the data folder.
    """
    if args.host not in LOOPBACK_HOSTS and not args.allow_remote:
        print(
            f"refusing to bind {args.host}: the local MMODA listens on loopback only; "
            "pass --allow-remote if you really mean it",
            file=sys.stderr,
        )
        return 2
    config = _config_from_args(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        claim = claim_data_dir(config.data_dir)  # held until this process ends
    except DataDirInUse as exc:
        print(f"refusing to start: {exc}; stop it first or use another --data-dir", file=sys.stderr)
        return 3
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(config.data_dir / "server.log")],
    )
    from werkzeug.serving import make_server

    from .app import create_app

    app = create_app(config)
    server = make_server(args.host, args.port, app, threaded=True)
    host = args.host if ":" not in args.host else f"[{args.host}]"
    url = f"http://{host}:{server.server_port}"
    state_file = args.state_file or config.data_dir / STATE_FILE_NAME
    state = {
        "url": url,
        "pid": os.getpid(),
        "port": server.server_port,
        "data_dir": str(config.data_dir),
        "started": time.time(),
        "config": config.describe(),
        "code_digest": app.extensions["mmoda_local"].code_digest,
        "package_dir": str(Path(__file__).resolve().parent),
        "idle_minutes": args.idle_minutes,
    }
    tmp = state_file.with_suffix(".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(state_file)
    log.info("local MMODA (simulated INTEGRAL sky) listening on %s, data in %s", url, config.data_dir)

    def stop(signum, frame):
        log.info("signal %s: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backend = app.extensions["mmoda_local"]
    watch = IdleWatch(
        args.idle_minutes * 60.0,
        busy=backend.jobs.busy,
        on_idle=lambda: threading.Thread(target=server.shutdown, daemon=True).start(),
    )
    app.before_request(watch.touch)
    watch.start()
    try:
        server.serve_forever()
    finally:
        watch.stop()
        try:
            if json.loads(state_file.read_text()).get("pid") == os.getpid():
                state_file.unlink()
        except (OSError, ValueError):
            pass
        app.extensions["mmoda_local"].jobs.shutdown()
        claim.close()
    return 0


def token(args) -> int:
    """Print a token signed with the server's secret (data folder of ``--data-dir`` or the default); return 0."""
    from .auth import mint_token

    config = ServerConfig(**({"data_dir": args.data_dir} if args.data_dir else {}))
    print(mint_token(config.secret(), roles=args.roles, email=args.email, name=args.name, lifetime_s=args.days * 86400))
    return 0


def stats(args) -> int:
    """Print, as JSON, the ``/local/stats`` of the running server named by its state file; return 0."""
    import requests

    data_dir = args.data_dir or default_data_dir()
    state_file = args.state_file or Path(data_dir) / STATE_FILE_NAME
    url = json.loads(state_file.read_text())["url"]
    print(json.dumps(requests.get(f"{url}/local/stats", timeout=10).json(), indent=1))
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m mmoda_local``."""
    args = build_parser().parse_args(argv)
    return {"serve": serve, "token": token, "stats": stats}[args.command](args)
