"""The dispatcher's routes: ``run_analysis``, the instrument descriptions, tokens, job state, and ``local/*``."""

from __future__ import annotations

import logging
import random
import socket
import string
import time

import jwt
from flask import Blueprint, Response, redirect, request

from . import __version__, answers, auth, protocol, queries, spiacs
from .answers import JobRequest
from .backend import current_backend
from .jobs import DONE, FAILED, QUEUED, JobFailure, JobSpec, job_id_of
from .responses import json_response, request_values, validate_token

log = logging.getLogger(__name__)

blueprint = Blueprint("dispatcher", __name__)

#: The real dispatcher's answer to ``api/par-names`` for an unknown product: Flask's HTML 500 page.
INTERNAL_ERROR_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    "<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was "
    "unable to complete your request.</p>\n"
)


def new_session_id() -> str:
    """A session id like the client's: 16 characters from [A-Z0-9].

    Returns
    -------
    str
    """
    return "".join(random.choices(string.ascii_uppercase + string.digits, k=16))


# -- answers shared by the routes -------------------------------------------------------------------------------
def _bad_request(message: str, *, kind: str = "RequestNotUnderstood") -> Response:
    backend = current_backend()
    backend.counters.add("answers_400")
    return json_response(
        protocol.bad_request(message, backend.installed, kind=kind, debug=backend.config.debug_instruments), 400
    )


def _unknown_instrument(name) -> Response:
    return _bad_request(f'instrument: "{name}", known: {current_backend().installed}', kind="InstrumentNotRecognized")


def _decoded_token(values) -> dict | None:
    token = values.get("token")
    if token in (None, "", queries.NONE_MARKER):
        return None
    return auth.decode_token(current_backend().secret, token)


def _token_refused(values) -> Response | None:
    """The 403 of an expired or invalid token, checked first as by the real query constructor."""
    backend = current_backend()
    try:
        _decoded_token(values)
    except auth.TokenError as exc:
        backend.counters.add("answers_403")
        return json_response(
            protocol.forbidden_token(str(exc), backend.installed, debug=backend.config.debug_instruments), 403
        )
    return None


def _require_role(role: str, what: str) -> Response | None:
    # tokenHelper.validate_token_from_request, shared with the gallery routes
    _, refused = validate_token(
        current_backend().secret, request.values.get("token"), required_roles=(role,), action=what
    )
    return refused


def _drop_connection() -> None:
    """Close the client's connection without an answer (an injected network fault)."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- the server itself ------------------------------------------------------------------------------------------
@blueprint.route("/")
def index():
    """The server's name, version and instruments (not a route of the real dispatcher)."""
    backend = current_backend()
    return json_response(
        {
            "service": "mmoda_local: a local MMODA dispatcher over a SIMULATED INTEGRAL sky",
            "version": __version__,
            "instruments": backend.installed,
            "simulated": True,
        }
    )


@blueprint.route("/local/health")
def health():
    """``local/health``: liveness, version and fingerprint (a route of the local MMODA only)."""
    backend = current_backend()
    return json_response(
        {
            "status": "ok",
            "version": __version__,
            "simulated": True,
            "fingerprint": backend.fingerprint,
            "code_digest": backend.code_digest,
            "busy": backend.jobs.busy(),
            "uptime_s": time.time() - backend.started_at,
        }
    )


@blueprint.route("/local/stats")
def stats():
    """``local/stats``: job and cache counters (``?reset=1`` clears them), for tests and benchmarks."""
    backend = current_backend()
    if request.args.get("reset", "").lower() in ("1", "true", "yes"):
        backend.counters.reset()
    states = {}
    for job in backend.jobs.jobs():
        states[job.status] = states.get(job.status, 0) + 1
    return json_response(
        {"counters": backend.counters.snapshot(), "jobs_by_status": states, "config": backend.config.describe()}
    )


# -- instruments ------------------------------------------------------------------------------------------------
@blueprint.route("/api/par-names")
def par_names():
    """``api/par-names``: the parameter names of an instrument (and product)."""
    backend = current_backend()
    backend.counters.add("requests_par_names")
    refused = _token_refused(request.args)
    if refused:
        return refused
    name = request.args.get("instrument")
    if name not in backend.instruments:
        return _unknown_instrument(name)
    try:
        return json_response(backend.instruments[name].par_names(request.args.get("product_type")))
    except queries.QueryError:
        # the real dispatcher answers an unknown product with an HTML 500 page
        return Response(INTERNAL_ERROR_PAGE, status=500, mimetype="text/html")


@blueprint.route("/api/meta-data")
@blueprint.route("/meta-data")
def meta_data():
    """``api/meta-data``: the parameters of an instrument's product, as the real dispatcher describes them."""
    backend = current_backend()
    refused = _token_refused(request.args)
    if refused:
        return refused
    name = request.args.get("instrument")
    if name not in backend.instruments:
        return _unknown_instrument(name)
    try:
        return json_response(backend.instruments[name].meta_data(request.args.get("product_type")))
    except queries.QueryError as exc:
        return _bad_request(exc.message)


@blueprint.route("/api/instr-list")
def api_instr_list():
    """``api/instr-list``: a 302 to ``instr-list``, as the real dispatcher answers."""
    return redirect(request.full_path.replace("/api/instr-list", "/instr-list", 1).rstrip("?"), code=302)


@blueprint.route("/instr-list")
def instr_list():
    """``instr-list``: the installed instruments."""
    backend = current_backend()
    # tokenHelper.validate_token_from_request: a short text 403 for a bad token; no token is fine here
    token = request.args.get("token")
    if token is not None:
        try:
            auth.decode_token(backend.secret, token)
        except auth.TokenError as exc:
            return Response(exc.short_message, status=403, mimetype="text/html")
    return json_response(backend.installed)


# -- run_analysis -----------------------------------------------------------------------------------------------
@blueprint.route("/run_analysis", methods=["GET", "POST"])
def run_analysis():
    """``run_analysis``: submit a job or poll it; injected HTTP faults are drawn here."""
    backend = current_backend()
    backend.counters.add("requests_run_analysis")
    fault = backend.draw_http_fault()
    if fault == "drop":
        backend.counters.add("faults_dropped_connections")
        _drop_connection()
        return Response("", status=500)
    if fault == "500":
        backend.counters.add("faults_http_500")
        return json_response(
            protocol.server_error("injected fault: the dispatcher could not process the request", backend.installed),
            500,
        )
    try:
        return _run_analysis(request_values())
    except queries.QueryError as exc:
        return _bad_request(exc.message, kind=exc.kind)
    except Exception as exc:  # noqa: BLE001 - the real dispatcher answers 500 "request not valid"
        log.exception("run_analysis failed")
        return json_response(protocol.server_error(repr(exc), backend.installed), 500)


def _run_analysis(values: dict) -> Response:
    """A request's way through the dispatcher: checks, the job id, then the job's state decides the answer."""
    backend = current_backend()
    session_id = values.get("session_id")
    if not isinstance(session_id, str) or session_id in ("", "new", queries.NONE_MARKER):
        session_id = new_session_id()
    instrument_name = values.get("instrument")
    if instrument_name is None:
        return _bad_request("instrument not specified")
    if instrument_name not in backend.instruments:
        return _unknown_instrument(instrument_name)
    instrument = backend.instruments[instrument_name]
    product_name = values.get("product_type")
    product = instrument.product(product_name)
    try:
        token = _decoded_token(values)
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
        return _bad_request(f'job_id must be present if query_status != "new" (it is "{query_status}")')
    hashed = {k: v for k, v in parameters.items() if k not in queries.API_KEYS}
    hashed.update(
        instrument=instrument_name, product_type=product_name, query_type=parameters.get("query_type", "Real")
    )
    job_id = job_id_of(hashed, user=user)
    if client_job_id and client_job_id != job_id:
        return _bad_request(
            f"job_id {client_job_id} does not match the parameters of this request "
            f"(expected {job_id}); parameters must not change between polls"
        )

    scw_ids = backend.analysis.scw_ids_for(instrument, parameters) if instrument.osa else []
    if instrument.name == "spi_acs":
        # the real plugin's test_has_input_products reports this placeholder
        scw_ids = list(spiacs.INPUT_PROD_LIST)
    missing = _missing_roles(instrument, product, parameters, scw_ids, auth.roles_of(token))
    if missing:
        backend.counters.add("answers_403")
        message = auth.missing_roles_message(auth.roles_of(token), missing)
        body = protocol.run_analysis_answer(
            query_status="failed",
            job_id=job_id,
            session_id=session_id,
            status=protocol.exit_status(status=1, job_status="failed", message=message),
            status_code=403,
        )
        return json_response(body, 403)

    spec = JobSpec(
        job_id=job_id,
        instrument=instrument_name,
        product=product_name,
        kind=product.kind,
        parameters=parameters,
        scw_ids=scw_ids,
    )
    asked = JobRequest(spec=spec, session_id=session_id, comments=comments, url=request.host_url.rstrip("/"))
    if not instrument.asynchronous:
        return answers.synchronous(backend, asked)
    if query_status == "new":
        return _submit(backend, asked, instrument=instrument)
    if query_status == "failed":
        return json_response(
            protocol.run_analysis_answer(
                query_status="failed",
                job_id=job_id,
                session_id=session_id,
                status=protocol.exit_status(status=1, job_status="failed", message="failed: submitted job"),
            )
        )
    job = backend.jobs.get(job_id)
    if job is None:
        # this server does not know the job (it was restarted): start it again from the request
        job = backend.jobs.submit(spec)
    if job.status == FAILED:
        return answers.failed(asked, job)
    if job.status == DONE:
        if query_status == "ready":
            return answers.done(backend, asked, job)
        return answers.ready(asked, job)
    return answers.running(asked, job, first=False)


def _submit(backend, asked: JobRequest, *, instrument) -> Response:
    """The answer to a ``new`` request of an asynchronous instrument (see docs/architecture.md, job life cycle)."""
    spec = asked.spec
    # what earlier jobs found about these ScWs, before this request adds its own findings
    known = backend.analysis.known_failure(spec) if instrument.osa else None
    if instrument.osa:
        backend.analysis.inspect(spec)
    job = backend.jobs.submit(spec, known_failure=known[0] if known else None, reports=known[1] if known else None)
    if job.status == DONE:
        backend.counters.add("answers_served_from_cache")
        return answers.done(backend, asked, job)
    if job.status == FAILED:
        if job.failed_at_submission or asked.session_id in job.sessions_told_failed:
            return answers.failed(asked, job)
        # Another session asks again for a job that failed for a reason in the data: the real dispatcher
        # runs the query again (aliasing stops once a job has failed), and the backend answers from its
        # cache of analysis exceptions through a callback, so this session sees it submitted, then
        # failed at its next poll; nothing is computed again.
        return answers.running(asked, job, first=True, status=QUEUED)
    if spec.parameters.get("query_type") == "Dummy":
        # the real dispatcher answers Dummy queries synchronously
        job = backend.jobs.wait(job.job_id)
        if job.status == DONE:
            return answers.done(backend, asked, job)
        if job.status == FAILED:
            return answers.failed(asked, job)
    return answers.running(asked, job, first=True)


def _missing_roles(instrument, product, parameters: dict, scw_ids: list[str], roles: list[str]) -> dict:
    # the real order: parameter values (400, in normalise), then roles (403), then the checks of a local
    # MMODA that the real one does not make (400), then the query itself
    lacking = auth.lacking_roles(roles, osa=instrument.osa, product_roles=product.required_roles, parameters=parameters)
    if instrument.name == "spi_acs":
        lacking.update({r: why for r, why in spiacs.required_roles(parameters).items() if r not in roles})
    if not lacking:
        instrument.check_after_roles(parameters)
    return lacking


# -- callbacks, job state and tokens ----------------------------------------------------------------------------
@blueprint.route("/call_back", methods=["GET", "POST"])
def call_back():
    """``call_back``: a backend's progress, done or failed report about a job."""
    backend = current_backend()
    started = time.time()
    job_id = request.values.get("job_id", "")
    action = request.values.get("action", "progress")
    job = backend.jobs.get(job_id)
    if job is not None:
        entry = {k: v for k, v in request.values.items()}
        job.reports.append(entry)
        if action == "done":
            backend.jobs.finish(job_id, backend.analysis.debug_products(job.spec), comment="")
        elif action == "failed":
            backend.jobs.fail(job_id, JobFailure("", exit_code=0, with_products=False))
    return json_response({"time_spent_s": time.time() - started})


@blueprint.route("/inspect-state", methods=["GET", "POST"])
def inspect_state():
    """``inspect-state``: the jobs' records (role ``job manager``)."""
    backend = current_backend()
    denied = _require_role(auth.ROLE_JOB_MANAGER, "inspect the state for a given job_id")
    if denied:
        return denied
    wanted = request.values.get("job_id")
    records = []
    for job in backend.jobs.jobs():
        if wanted and job.job_id != wanted:
            continue
        records.append(
            {
                "mtime": job.finished_at or job.submitted_at,
                "ctime": job.submitted_at,
                "session_id": "",
                "job_id": job.job_id,
                "request_completed": job.status in (DONE, FAILED),
                "aliased_marker": "",
                "analysis_parameters": job.spec.parameters,
                "file_list": [],
                "email_history": [],
                "matrix_message_history": [],
                "fits_files": [],
                "job_monitor": [{"status": job.status, "attempt": job.attempt}],
            }
        )
    return json_response({"records": records})


@blueprint.route("/refresh_token", methods=["GET", "POST"])
def refresh_token():
    """``refresh_token``: the token with a later expiry (role ``refresh-tokens``)."""
    backend = current_backend()
    denied = _require_role(auth.ROLE_REFRESH_TOKENS, "refresh your token")
    if denied:
        return denied
    payload = auth.decode_token(backend.secret, request.values["token"])
    interval = request.values.get("refresh_interval", auth.MAX_REFRESH_INTERVAL_S)
    try:
        interval = int(interval)
    except (TypeError, ValueError):
        return _bad_request(f"refresh_interval={interval!r} is not an integer number of seconds")
    if interval > auth.MAX_REFRESH_INTERVAL_S:
        # dispatcher_query.update_token: a RequestNotAuthorized, its debug_message says why
        body = protocol.forbidden_token(
            "Request not authorized",
            backend.installed,
            debug=backend.config.debug_instruments,
            debug_message=(
                "The refresh interval requested exceeds the maximum allowed, please provide a value "
                f"which is lower than {auth.MAX_REFRESH_INTERVAL_S} seconds"
            ),
        )
        return json_response(body, 403)
    return Response(auth.refreshed_token(backend.secret, payload, refresh_interval_s=interval), mimetype="text/html")


@blueprint.route("/update_token_email_options", methods=["GET", "POST"])
def update_token_email_options():
    """``update_token_email_options``: the token with new e-mail options."""
    backend = current_backend()
    # the real route builds a query first: a bad token is a RequestNotAuthorized (JSON 403)
    try:
        payload = auth.decode_token(backend.secret, request.values.get("token", ""))
    except auth.TokenError as exc:
        return json_response(
            protocol.forbidden_token(str(exc), backend.installed, debug=backend.config.debug_instruments), 403
        )
    for option in ("msfail", "mssub", "msdone"):
        if option in request.values:
            payload[option] = request.values[option].lower() == "true"
    return Response(jwt.encode(payload, backend.secret, algorithm="HS256"), mimetype="text/html")
