"""The ``run_analysis`` answers about one job: submitted or progress, ready, failed, done, synchronous."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import Response

from . import protocol, spiacs
from .jobs import DONE, QUEUED, RUNNING, Job, JobFailure, JobSpec
from .responses import JSON, json_response


@dataclass
class JobRequest:
    """One ``run_analysis`` request about a job, as far as its answer depends on it.

    Attributes
    ----------
    spec : JobSpec
        The job the request asks for.
    session_id : str
        The client's session (echoed in every answer and report).
    comments : list of str
        Notes on the parameters (``exit_status.comment``).
    url : str
        The server's URL as the client reached it (for ``api_code``).
    """

    spec: JobSpec
    session_id: str
    comments: list
    url: str

    def base_products(self) -> dict:
        """The ``products`` every answer carries: input products, analysis parameters, ``api_code``.

        Returns
        -------
        dict
        """
        # Dummy queries answer fixed test products: the real dispatcher lists no input product for them
        dummy = self.spec.parameters.get("query_type") == "Dummy"
        return {
            "input_prod_list": [] if dummy else list(self.spec.scw_ids),
            "analysis_parameters": dict(self.spec.parameters, session_id=self.session_id),
            "api_code": api_code(self.spec.parameters, self.url),
        }


def reports(job: Job, session_id: str) -> list[dict]:
    """The job's per-ScW reports (``job_monitor.full_report_dict_list``) for one session.

    Parameters
    ----------
    job : Job
    session_id : str

    Returns
    -------
    list of dict
    """
    return [dict(entry, session_id=session_id) for entry in job.reports]


def running(asked: JobRequest, job: Job, *, first: bool, status: str | None = None) -> Response:
    """``submitted`` (queued) or ``progress`` (running); the first answer of a job carries the base products.

    Parameters
    ----------
    asked : JobRequest
    job : Job
    first : bool
        True for the answer to a ``new`` request.
    status : str, optional
        Force this ``query_status`` (by default the job's own).

    Returns
    -------
    flask.Response
    """
    status = status or (QUEUED if job.status == QUEUED else RUNNING)
    products = asked.base_products() if first else {}
    body = protocol.run_analysis_answer(
        query_status=status,
        job_id=job.job_id,
        session_id=asked.session_id,
        products=products,
        status=protocol.exit_status(job_status=status, comment=" ".join(asked.comments)),
        reports=reports(job, asked.session_id),
    )
    return json_response(body)


def ready(asked: JobRequest, job: Job) -> Response:
    """``ready``: the job is done; the products come with the client's ``query_status=ready`` poll.

    Parameters
    ----------
    asked : JobRequest
    job : Job

    Returns
    -------
    flask.Response
    """
    body = protocol.run_analysis_answer(
        query_status="ready",
        job_id=job.job_id,
        session_id=asked.session_id,
        status=protocol.exit_status(job_status="ready"),
        reports=reports(job, asked.session_id),
    )
    return json_response(body)


def failed(asked: JobRequest, job: Job) -> Response:
    """``failed`` with the failure's exit status; the session is remembered as told.

    Parameters
    ----------
    asked : JobRequest
    job : Job

    Returns
    -------
    flask.Response
    """
    job.sessions_told_failed.add(asked.session_id)
    failure = job.failure or JobFailure("")
    products = asked.base_products() if failure.with_products else {}
    products.pop("input_prod_list", None)
    body = protocol.run_analysis_answer(
        query_status="failed",
        job_id=job.job_id,
        session_id=asked.session_id,
        products=products,
        status=protocol.exit_status(
            status=failure.exit_code,
            job_status=failure.job_status,
            message=failure.message,
            error_message=failure.error_message,
            debug_message=failure.debug_message,
        ),
        job_status="failed",
        reports=reports(job, asked.session_id),
    )
    return json_response(body)


def done(backend, asked: JobRequest, job: Job) -> Response:
    """``done`` with the products, read from the result store (resubmitted if the result has vanished).

    Parameters
    ----------
    backend : mmoda_local.backend.Backend
    asked : JobRequest
    job : Job

    Returns
    -------
    flask.Response
    """
    record = backend.jobs.result(job.job_id)
    if record is None:
        # the result vanished from the disk cache: compute it again
        job = backend.jobs.submit(asked.spec)
        return running(asked, job, first=True)
    comment = " ".join(c for c in [record.get("comment", "")] + asked.comments if c)
    products = dict(asked.base_products(), session_id=asked.session_id, job_id=job.job_id)
    if asked.spec.kind != "numerical":
        # as the real dispatcher, whose numerical test product lacks it
        products["prod_process_message"] = ""
    # The per-ScW reports stay in the final answer too (the captured done answers of the test instruments
    # carry none; for OSA jobs they tell a client which ScWs ended in an analysis exception).
    body = protocol.run_analysis_answer(
        query_status="done",
        job_id=job.job_id,
        session_id=asked.session_id,
        products={"__RAW__": 0},
        status=protocol.exit_status(job_status="done", comment=comment),
        reports=reports(job, asked.session_id)
        if job.reports
        and backend.instruments[asked.spec.instrument].osa
        and asked.spec.parameters.get("query_type") != "Dummy"
        else None,
    )
    # the stored products are JSON already: spliced into the answer rather than parsed and written again
    small = protocol.to_json(products)
    heavy = record["products_json"]
    merged = small if heavy.strip() == "{}" else heavy.rstrip()[:-1] + ", " + small[1:]
    text = protocol.to_json(body).replace('{"__RAW__": 0}', merged, 1)
    backend.counters.add("answers_done")
    return Response(text, status=200, mimetype=JSON)


def synchronous(backend, asked: JobRequest) -> Response:
    """The one answer of a synchronous instrument (SPI-ACS, the test instruments): ``done`` or ``failed``.

    Parameters
    ----------
    backend : mmoda_local.backend.Backend
    asked : JobRequest

    Returns
    -------
    flask.Response
    """
    spec = asked.spec
    if spec.kind == "failing":
        body = protocol.run_analysis_answer(
            query_status="failed",
            job_id=spec.job_id,
            session_id=asked.session_id,
            products={k: v for k, v in asked.base_products().items() if k != "input_prod_list"},
            status=protocol.exit_status(
                status=1,
                job_status="unknown",
                message="Error when getting query products",
                error_message=f"Instrument: {spec.instrument}, product: {spec.product}" + protocol.SUPPORT_TEXT,
                debug_message="InternalError()",
            ),
            job_status="failed",
        )
        return json_response(body)
    if spec.instrument == "spi_acs":
        try:
            products_json = json.dumps(
                spiacs.spiacs_products(spec.parameters, archive=backend.analysis.archive, config=backend.config)
            )
        except JobFailure as failure:
            return json_response(
                protocol.run_analysis_answer(
                    query_status="failed",
                    job_id=spec.job_id,
                    session_id=asked.session_id,
                    products={k: v for k, v in asked.base_products().items() if k != "input_prod_list"},
                    status=protocol.exit_status(
                        status=failure.exit_code,
                        job_status=failure.job_status,
                        message=failure.message,
                        error_message=failure.error_message,
                        debug_message=failure.debug_message,
                    ),
                    job_status="failed",
                )
            )
    else:
        products_json = backend.analysis.debug_products(spec)
    backend.results.put(spec.job_id, {"products_json": products_json, "comment": "", "reports": []})
    job = Job(spec=spec, status=DONE)
    return done(backend, asked, job)


def api_code(parameters: dict, url: str) -> str:
    """The Python snippet that repeats a request with oda_api (as ``products.api_code``).

    The token is left out on purpose: it is read from ``ODA_TOKEN`` or ``.oda-token``.

    Parameters
    ----------
    parameters : dict
        The normalised parameters.
    url : str
        The server's URL.

    Returns
    -------
    str
    """
    keep = {
        k: v
        for k, v in parameters.items()
        if k
        not in (
            "session_id",
            "job_id",
            "token",
            "query_status",
            "off_line",
            "api",
            "oda_api_version",
            "query_type",
            "product_type",
        )
        and v is not None
    }
    keep["product"] = parameters.get("product_type")
    keep["product_type"] = parameters.get("query_type", "Real")
    lines = [
        "from oda_api.api import DispatcherAPI",
        f"disp = DispatcherAPI(url={url!r}, instrument='mock')",
        "",
        "par_dict = " + json.dumps(dict(sorted(keep.items())), indent=4),
        "",
        "# the token (if any) is read from $ODA_TOKEN or .oda-token",
        "data_collection = disp.get_product(**par_dict)",
    ]
    return "\n".join(lines)
