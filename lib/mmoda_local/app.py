"""The HTTP face of the local MMODA: the real dispatcher's routes and answers.

Routes (protocol notes §2.1): ``run_analysis`` (GET and POST form),
``api/par-names``, ``api/meta-data``, ``api/instr-list`` (302 to
``instr-list``, as the real one), ``instr-list``, ``call_back``,
``inspect-state``, ``refresh_token``, ``update_token_email_options``, the
``gw`` services (ScW lists, time conversion, spacecraft), and two routes of
our own: ``local/stats`` (job and cache counters for tests) and
``local/health``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import socket
import string
import threading
import time

import numpy as np
from flask import Flask, Response, redirect, request

from . import __version__, auth, protocol, queries, spiacs
from .config import ServerConfig
from .jobs import DONE, FAILED, QUEUED, RUNNING, Counters, Job, JobFailure, JobManager, JobSpec, \
    ResultStore, fault_drawer, job_id_of

log = logging.getLogger(__name__)

JSON = "application/json"


def new_session_id() -> str:
    """A session id like the client's: 16 characters from [A-Z0-9]."""
    return "".join(random.choices(string.ascii_uppercase + string.digits, k=16))


def request_values() -> dict:
    """Raw request values (query string and form), lists for repeated keys."""
    values = {}
    for key in request.values.keys():
        items = request.values.getlist(key)
        values[key] = items[0] if len(items) == 1 else items
    return values


def json_response(body, status: int = 200) -> Response:
    return Response(protocol.to_json(body), status=status, mimetype=JSON)


class Backend:
    """State of one server: configuration, instruments, jobs, counters.

    Parameters
    ----------
    config : ServerConfig
        The server configuration.
    analysis : object, optional
        Computes INTEGRAL products; defaults to :class:`mmoda_local.analysis.Analysis`.
    """

    def __init__(self, config: ServerConfig, *, analysis=None):
        self.config = config
        self.instruments = queries.instruments(debug=config.debug_instruments)
        self.counters = Counters()
        self.secret = config.secret()
        if analysis is None:
            from .analysis import Analysis
            analysis = Analysis(config)
        self.analysis = analysis
        self.results = ResultStore(config.jobs_dir)
        self.jobs = JobManager(self._compute, self.results, self.counters, workers=config.workers,
                               fault_draw=fault_drawer(config.seed, stall=config.faults.stall_job,
                                                       fail=config.faults.fail_job))
        self._fault_rng = np.random.default_rng([config.seed, 4242])
        # what makes this server's products differ from another's: clients key their caches with it
        identity = {"version": __version__, "seed": config.seed,
                    "bodies": sorted(config.body_fluxes_mcrab.items()), "grbs": config.injected_grbs}
        self.fingerprint = "mmoda_local-" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
        self._fault_lock = threading.Lock()
        self.started_at = time.time()

    # -- faults -----------------------------------------------------------------------------------------------
    def draw_http_fault(self) -> str | None:
        """Decide whether this request is dropped or answered with HTTP 500."""
        faults = self.config.faults
        if faults.http_500 <= 0 and faults.drop_connection <= 0:
            return None
        with self._fault_lock:
            u = self._fault_rng.random()
        if u < faults.drop_connection:
            return "drop"
        if u < faults.drop_connection + faults.http_500:
            return "500"
        return None

    # -- computing --------------------------------------------------------------------------------------------
    def _compute(self, job: Job) -> tuple[str, str]:
        return self.analysis.compute(job, latency_per_scw_s=self.config.latency_per_scw_s)

    @property
    def installed(self) -> list[str]:
        return list(self.instruments)


def create_app(config: ServerConfig | None = None, *, analysis=None) -> Flask:
    """Build the Flask application of a local MMODA.

    Parameters
    ----------
    config : ServerConfig, optional
        Server configuration (defaults: ``ServerConfig()``).
    analysis : object, optional
        Product computation, replaceable in tests.
    """
    config = config or ServerConfig()
    backend = Backend(config, analysis=analysis)
    app = Flask("mmoda_local")
    app.extensions["mmoda_local"] = backend

    def bad_request(message: str, *, kind: str = "RequestNotUnderstood") -> Response:
        backend.counters.add("answers_400")
        return json_response(protocol.bad_request(message, backend.installed, kind=kind,
                                                  debug=config.debug_instruments), 400)

    def unknown_instrument(name) -> Response:
        return bad_request(f'instrument: "{name}", known: {backend.installed}', kind="InstrumentNotRecognized")

    def decoded_token(values: dict) -> dict | None:
        token = values.get("token")
        if token in (None, "", queries.NONE_MARKER):
            return None
        return auth.decode_token(backend.secret, token)

    @app.route("/")
    def index():
        return json_response({"service": "mmoda_local: a local MMODA dispatcher over a SIMULATED INTEGRAL sky",
                              "version": __version__, "instruments": backend.installed,
                              "simulated": True})

    @app.route("/local/health")
    def health():
        return json_response({"status": "ok", "version": __version__, "simulated": True,
                              "fingerprint": backend.fingerprint, "uptime_s": time.time() - backend.started_at})

    @app.route("/local/stats")
    def stats():
        if request.args.get("reset", "").lower() in ("1", "true", "yes"):
            backend.counters.reset()
        states = {}
        for job in backend.jobs.jobs():
            states[job.status] = states.get(job.status, 0) + 1
        return json_response({"counters": backend.counters.snapshot(), "jobs_by_status": states,
                              "config": config.describe()})

    def token_refused(values) -> Response | None:
        """The 403 of an expired or invalid token, checked first as by the real query constructor."""
        try:
            decoded_token(values)
        except auth.TokenError as exc:
            backend.counters.add("answers_403")
            return json_response(protocol.forbidden_token(str(exc), backend.installed,
                                                          debug=config.debug_instruments), 403)
        return None

    @app.route("/api/par-names")
    def par_names():
        backend.counters.add("requests_par_names")
        refused = token_refused(request.args)
        if refused:
            return refused
        name = request.args.get("instrument")
        if name not in backend.instruments:
            return unknown_instrument(name)
        try:
            return json_response(backend.instruments[name].par_names(request.args.get("product_type")))
        except queries.QueryError:
            # the real dispatcher answers an unknown product with an HTML 500 page
            return Response("<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
                            "<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was "
                            "unable to complete your request.</p>\n", status=500, mimetype="text/html")

    @app.route("/api/meta-data")
    @app.route("/meta-data")
    def meta_data():
        refused = token_refused(request.args)
        if refused:
            return refused
        name = request.args.get("instrument")
        if name not in backend.instruments:
            return unknown_instrument(name)
        try:
            return json_response(backend.instruments[name].meta_data(request.args.get("product_type")))
        except queries.QueryError as exc:
            return bad_request(exc.message)

    @app.route("/api/instr-list")
    def api_instr_list():
        return redirect(request.full_path.replace("/api/instr-list", "/instr-list", 1).rstrip("?"), code=302)

    @app.route("/instr-list")
    def instr_list():
        # tokenHelper.validate_token_from_request: a short text 403 for a bad token; no token is fine here
        token = request.args.get("token")
        if token is not None:
            try:
                auth.decode_token(backend.secret, token)
            except auth.TokenError as exc:
                return Response(exc.short_message, status=403, mimetype="text/html")
        return json_response(backend.installed)

    @app.route("/run_analysis", methods=["GET", "POST"])
    def run_analysis():
        backend.counters.add("requests_run_analysis")
        fault = backend.draw_http_fault()
        if fault == "drop":
            backend.counters.add("faults_dropped_connections")
            _drop_connection()
            return Response("", status=500)
        if fault == "500":
            backend.counters.add("faults_http_500")
            return json_response(protocol.server_error("injected fault: the dispatcher could not process the "
                                                       "request", backend.installed), 500)
        try:
            return _run_analysis(request_values())
        except queries.QueryError as exc:
            return bad_request(exc.message, kind=exc.kind)
        except Exception as exc:  # noqa: BLE001 - the real dispatcher answers 500 "request not valid"
            log.exception("run_analysis failed")
            return json_response(protocol.server_error(repr(exc), backend.installed), 500)

    def _run_analysis(values: dict) -> Response:
        session_id = values.get("session_id")
        if not isinstance(session_id, str) or session_id in ("", "new", queries.NONE_MARKER):
            session_id = new_session_id()
        instrument_name = values.get("instrument")
        if instrument_name is None:
            return bad_request("instrument not specified")
        if instrument_name not in backend.instruments:
            return unknown_instrument(instrument_name)
        instrument = backend.instruments[instrument_name]
        product_name = values.get("product_type")
        product = instrument.product(product_name)
        try:
            token = decoded_token(values)
        except auth.TokenError as exc:
            backend.counters.add("answers_403")
            return json_response(protocol.forbidden_token(str(exc)), 403)
        user = token.get("sub") if token else None
        parameters, comments = instrument.normalise(values, product_name)
        # The real dispatcher echoes the token in its answers; a local one never does.
        parameters["token"] = None
        query_status = values.get("query_status", "new")
        client_job_id = values.get("job_id")
        if query_status != "new" and not client_job_id:
            return bad_request(f'job_id must be present if query_status != "new" (it is "{query_status}")')
        hashed = {k: v for k, v in parameters.items() if k not in queries.API_KEYS}
        hashed.update(instrument=instrument_name, product_type=product_name,
                      query_type=parameters.get("query_type", "Real"))
        job_id = job_id_of(hashed, user=user)
        if client_job_id and client_job_id != job_id:
            return bad_request(f"job_id {client_job_id} does not match the parameters of this request "
                               f"(expected {job_id}); parameters must not change between polls")

        scw_ids = backend.analysis.scw_ids_for(instrument, parameters) if instrument.osa else []
        if instrument.name == "spi_acs":
            # the real plugin's test_has_input_products reports this placeholder
            scw_ids = list(spiacs.INPUT_PROD_LIST)
        missing = _missing_roles(instrument, product, parameters, scw_ids, auth.roles_of(token))
        if missing:
            backend.counters.add("answers_403")
            message = auth.missing_roles_message(auth.roles_of(token), missing)
            body = protocol.run_analysis_answer(
                query_status="failed", job_id=job_id, session_id=session_id,
                status=protocol.exit_status(status=1, job_status="failed", message=message), status_code=403)
            return json_response(body, 403)

        spec = JobSpec(job_id=job_id, instrument=instrument_name, product=product_name, kind=product.kind,
                       parameters=parameters, scw_ids=scw_ids)
        context = _Context(spec=spec, session_id=session_id, comments=comments)
        if not instrument.asynchronous:
            return _answer_synchronous(context)
        if query_status == "new":
            # what earlier jobs found about these ScWs, before this request adds its own findings
            known = backend.analysis.known_failure(spec) if instrument.osa else None
            if instrument.osa:
                backend.analysis.inspect(spec)
            job = backend.jobs.submit(spec, known_failure=known[0] if known else None,
                                      reports=known[1] if known else None)
            if job.status == DONE:
                backend.counters.add("answers_served_from_cache")
                return _answer_done(context, job)
            if job.status == FAILED:
                if job.failed_at_submission or session_id in job.sessions_told_failed:
                    return _answer_failed(context, job)
                # Another session asks again for a job that failed for a reason in the data: the real dispatcher
                # runs the query again (aliasing stops once a job has failed), and the backend answers from its
                # cache of analysis exceptions through a callback, so this session sees it submitted, then
                # failed at its next poll; nothing is computed again.
                return _answer_running(context, job, first=True, status=QUEUED)
            if parameters.get("query_type") == "Dummy":
                # the real dispatcher answers Dummy queries synchronously
                job = backend.jobs.wait(job.job_id)
                if job.status == DONE:
                    return _answer_done(context, job)
                if job.status == FAILED:
                    return _answer_failed(context, job)
            return _answer_running(context, job, first=True)
        if query_status == "failed":
            return json_response(protocol.run_analysis_answer(
                query_status="failed", job_id=job_id, session_id=session_id,
                status=protocol.exit_status(status=1, job_status="failed", message="failed: submitted job")))
        job = backend.jobs.get(job_id)
        if job is None:
            # this server does not know the job (it was restarted): start it again from the request
            job = backend.jobs.submit(spec)
        if job.status == FAILED:
            return _answer_failed(context, job)
        if job.status == DONE:
            if query_status == "ready":
                return _answer_done(context, job)
            return _answer_ready(context, job)
        return _answer_running(context, job, first=False)

    class _Context:
        def __init__(self, *, spec: JobSpec, session_id: str, comments: list[str]):
            self.spec = spec
            self.session_id = session_id
            self.comments = comments

        def base_products(self) -> dict:
            # Dummy queries answer fixed test products: the real dispatcher lists no input product for them
            dummy = self.spec.parameters.get("query_type") == "Dummy"
            return {"input_prod_list": [] if dummy else list(self.spec.scw_ids),
                    "analysis_parameters": dict(self.spec.parameters, session_id=self.session_id),
                    "api_code": api_code(self.spec.parameters, request.host_url.rstrip("/"))}

    def _answer_running(context, job: Job, *, first: bool, status: str | None = None) -> Response:
        status = status or (QUEUED if job.status == QUEUED else RUNNING)
        products = context.base_products() if first else {}
        body = protocol.run_analysis_answer(
            query_status=status, job_id=job.job_id, session_id=context.session_id, products=products,
            status=protocol.exit_status(job_status=status, comment=" ".join(context.comments)),
            reports=_reports(job, context.session_id))
        return json_response(body)

    def _answer_ready(context, job: Job) -> Response:
        body = protocol.run_analysis_answer(
            query_status="ready", job_id=job.job_id, session_id=context.session_id,
            status=protocol.exit_status(job_status="ready"), reports=_reports(job, context.session_id))
        return json_response(body)

    def _answer_failed(context, job: Job) -> Response:
        job.sessions_told_failed.add(context.session_id)
        failure = job.failure or JobFailure("")
        products = context.base_products() if failure.with_products else {}
        products.pop("input_prod_list", None)
        body = protocol.run_analysis_answer(
            query_status="failed", job_id=job.job_id, session_id=context.session_id, products=products,
            status=protocol.exit_status(status=failure.exit_code, job_status=failure.job_status,
                                        message=failure.message, error_message=failure.error_message,
                                        debug_message=failure.debug_message),
            job_status="failed", reports=_reports(job, context.session_id))
        return json_response(body)

    def _answer_done(context, job: Job) -> Response:
        record = backend.jobs.result(job.job_id)
        if record is None:
            # the result vanished from the disk cache: compute it again
            job = backend.jobs.submit(context.spec)
            return _answer_running(context, job, first=True)
        comment = " ".join(c for c in [record.get("comment", "")] + context.comments if c)
        products = dict(context.base_products(), session_id=context.session_id, job_id=job.job_id)
        if context.spec.kind != "numerical":
            # as the real dispatcher, whose numerical test product lacks it
            products["prod_process_message"] = ""
        # The per-ScW reports stay in the final answer too (the captured done answers of the test instruments
        # carry none; for OSA jobs they tell a client which ScWs ended in an analysis exception).
        body = protocol.run_analysis_answer(
            query_status="done", job_id=job.job_id, session_id=context.session_id, products={"__RAW__": 0},
            status=protocol.exit_status(job_status="done", comment=comment),
            reports=_reports(job, context.session_id)
            if job.reports and backend.instruments[context.spec.instrument].osa
            and context.spec.parameters.get("query_type") != "Dummy" else None)
        small = protocol.to_json(products)
        heavy = record["products_json"]
        merged = small if heavy.strip() == "{}" else heavy.rstrip()[:-1] + ", " + small[1:]
        text = protocol.to_json(body).replace('{"__RAW__": 0}', merged, 1)
        backend.counters.add("answers_done")
        return Response(text, status=200, mimetype=JSON)

    def _answer_synchronous(context) -> Response:
        spec = context.spec
        if spec.kind == "failing":
            body = protocol.run_analysis_answer(
                query_status="failed", job_id=spec.job_id, session_id=context.session_id,
                products={k: v for k, v in context.base_products().items() if k != "input_prod_list"},
                status=protocol.exit_status(
                    status=1, job_status="unknown", message="Error when getting query products",
                    error_message=f"Instrument: {spec.instrument}, product: {spec.product}" + protocol.SUPPORT_TEXT,
                    debug_message="InternalError()"),
                job_status="failed")
            return json_response(body)
        if spec.instrument == "spi_acs":
            try:
                products_json = json.dumps(spiacs.spiacs_products(spec.parameters, archive=backend.analysis.archive,
                                                                  config=config))
            except JobFailure as failure:
                return json_response(protocol.run_analysis_answer(
                    query_status="failed", job_id=spec.job_id, session_id=context.session_id,
                    products={k: v for k, v in context.base_products().items() if k != "input_prod_list"},
                    status=protocol.exit_status(status=failure.exit_code, job_status=failure.job_status,
                                                message=failure.message, error_message=failure.error_message,
                                                debug_message=failure.debug_message), job_status="failed"))
        else:
            products_json = backend.analysis.debug_products(spec)
        backend.results.put(spec.job_id, {"products_json": products_json, "comment": "", "reports": []})
        job = Job(spec=spec, status=DONE)
        return _answer_done(context, job)

    def _reports(job: Job, session_id: str) -> list[dict]:
        return [dict(entry, session_id=session_id) for entry in job.reports]

    def _missing_roles(instrument, product, parameters: dict, scw_ids: list[str], roles: list[str]) -> dict:
        # the real order: parameter values (400, in normalise), then roles (403), then the checks of a local
        # MMODA that the real one does not make (400), then the query itself
        lacking = auth.lacking_roles(roles, osa=instrument.osa, product_roles=product.required_roles,
                                     parameters=parameters)
        if instrument.name == "spi_acs":
            lacking.update({r: why for r, why in spiacs.required_roles(parameters).items() if r not in roles})
        if not lacking:
            instrument.check_after_roles(parameters)
        return lacking

    @app.route("/call_back", methods=["GET", "POST"])
    def call_back():
        started = time.time()
        job_id = request.values.get("job_id", "")
        action = request.values.get("action", "progress")
        job = backend.jobs.get(job_id)
        if job is not None:
            entry = {k: v for k, v in request.values.items()}
            job.reports.append(entry)
            if action == "done":
                backend.jobs.finish(job_id, backend.analysis.debug_products(job.spec),
                                    comment="")
            elif action == "failed":
                backend.jobs.fail(job_id, JobFailure("", exit_code=0, with_products=False))
        return json_response({"time_spent_s": time.time() - started})

    @app.route("/inspect-state", methods=["GET", "POST"])
    def inspect_state():
        denied = _require_role(auth.ROLE_JOB_MANAGER, "inspect the state for a given job_id")
        if denied:
            return denied
        wanted = request.values.get("job_id")
        records = []
        for job in backend.jobs.jobs():
            if wanted and job.job_id != wanted:
                continue
            records.append({"mtime": job.finished_at or job.submitted_at, "ctime": job.submitted_at,
                            "session_id": "", "job_id": job.job_id,
                            "request_completed": job.status in (DONE, FAILED), "aliased_marker": "",
                            "analysis_parameters": job.spec.parameters, "file_list": [], "email_history": [],
                            "matrix_message_history": [], "fits_files": [],
                            "job_monitor": [{"status": job.status, "attempt": job.attempt}]})
        return json_response({"records": records})

    @app.route("/refresh_token", methods=["GET", "POST"])
    def refresh_token():
        denied = _require_role(auth.ROLE_REFRESH_TOKENS, "refresh your token")
        if denied:
            return denied
        payload = auth.decode_token(backend.secret, request.values["token"])
        interval = request.values.get("refresh_interval", auth.MAX_REFRESH_INTERVAL_S)
        try:
            interval = int(interval)
        except (TypeError, ValueError):
            return bad_request(f"refresh_interval={interval!r} is not an integer number of seconds")
        if interval > auth.MAX_REFRESH_INTERVAL_S:
            # dispatcher_query.update_token: a RequestNotAuthorized, its debug_message says why
            body = protocol.forbidden_token(
                "Request not authorized", backend.installed, debug=config.debug_instruments,
                debug_message=("The refresh interval requested exceeds the maximum allowed, please provide a value "
                               f"which is lower than {auth.MAX_REFRESH_INTERVAL_S} seconds"))
            return json_response(body, 403)
        return Response(auth.refreshed_token(backend.secret, payload, refresh_interval_s=interval),
                        mimetype="text/html")

    @app.route("/update_token_email_options", methods=["GET", "POST"])
    def update_token_email_options():
        # the real route builds a query first: a bad token is a RequestNotAuthorized (JSON 403)
        try:
            payload = auth.decode_token(backend.secret, request.values.get("token", ""))
        except auth.TokenError as exc:
            return json_response(protocol.forbidden_token(str(exc), backend.installed,
                                                          debug=config.debug_instruments), 403)
        for option in ("msfail", "mssub", "msdone"):
            if option in request.values:
                payload[option] = request.values[option].lower() == "true"
        import jwt
        return Response(jwt.encode(payload, backend.secret, algorithm="HS256"), mimetype="text/html")

    def _require_role(role: str, what: str) -> Response | None:
        # tokenHelper.validate_token_from_request, shared with the gallery routes
        from .gallery import validate_token
        _, refused = validate_token(backend.secret, request.values.get("token"), required_roles=(role,),
                                    action=what)
        return refused

    @app.route("/gw/timesystem/api/v1.0/scwlist/<readiness>/<t1>/<t2>")
    def gw_scwlist(readiness, t1, t2):
        from . import gateway
        backend.counters.add("requests_scwlist")
        status, body = gateway.scwlist(backend.analysis.archive, readiness, t1, t2, request.args)
        return json_response(body, status)

    @app.route("/gw/timesystem/api/v1.0/converttime/<informat>/<value>/<outformat>")
    def gw_converttime(informat, value, outformat):
        from . import gateway
        status, body = gateway.converttime(backend.analysis.archive, informat, value, outformat)
        if isinstance(body, str):
            # the real service returns the tool's text as it is (Flask's default for a string: text/html)
            return Response(body, status=status, mimetype="text/html")
        return json_response(body, status)

    @app.route("/gw/scsystem/api/v1.0/sc/<when>/<ra>/<dec>")
    def gw_spacecraft(when, ra, dec):
        from . import gateway
        backend.counters.add("requests_spacecraft")
        status, body = gateway.spacecraft(backend.analysis.archive, when, ra, dec)
        return json_response(body, status)

    # the product gallery: the dispatcher's gallery endpoints and the website under /gallery/
    from .gallery import register_gallery
    register_gallery(app, backend)

    return app


def _drop_connection() -> None:
    """Close the client's connection without an answer (an injected network fault)."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def api_code(parameters: dict, url: str) -> str:
    """The Python snippet that repeats a request with oda_api (as ``products.api_code``).

    The token is left out on purpose: it is read from ``ODA_TOKEN`` or ``.oda-token``.
    """
    keep = {k: v for k, v in parameters.items()
            if k not in ("session_id", "job_id", "token", "query_status", "off_line", "api", "oda_api_version",
                         "query_type", "product_type") and v is not None}
    keep["product"] = parameters.get("product_type")
    keep["product_type"] = parameters.get("query_type", "Real")
    lines = ["from oda_api.api import DispatcherAPI",
             f"disp = DispatcherAPI(url={url!r}, instrument='mock')",
             "",
             "par_dict = " + json.dumps(dict(sorted(keep.items())), indent=4),
             "",
             "# the token (if any) is read from $ODA_TOKEN or .oda-token",
             "data_collection = disp.get_product(**par_dict)"]
    return "\n".join(lines)
