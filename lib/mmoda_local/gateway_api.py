"""The ``gw`` services' routes: ScW lists and time conversion (``gw/timesystem``), spacecraft (``gw/scsystem``)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from . import gateway
from .backend import current_backend
from .responses import json_response

blueprint = Blueprint("gateway", __name__)


@blueprint.route("/gw/timesystem/api/v1.0/scwlist/<readiness>/<t1>/<t2>")
def gw_scwlist(readiness, t1, t2):
    """ScWs of a time span (:func:`mmoda_local.gateway.scwlist`)."""
    backend = current_backend()
    backend.counters.add("requests_scwlist")
    status, body = gateway.scwlist(backend.analysis.archive, readiness, t1, t2, request.args)
    return json_response(body, status)


@blueprint.route("/gw/timesystem/api/v1.0/converttime/<informat>/<value>/<outformat>")
def gw_converttime(informat, value, outformat):
    """A time in another format (:func:`mmoda_local.gateway.converttime`)."""
    status, body = gateway.converttime(current_backend().analysis.archive, informat, value, outformat)
    if isinstance(body, str):
        # the real service returns the tool's text as it is (Flask's default for a string: text/html)
        return Response(body, status=status, mimetype="text/html")
    return json_response(body, status)


@blueprint.route("/gw/scsystem/api/v1.0/sc/<when>/<ra>/<dec>")
def gw_spacecraft(when, ra, dec):
    """INTEGRAL's position and attitude at a time (:func:`mmoda_local.gateway.spacecraft`)."""
    backend = current_backend()
    backend.counters.add("requests_spacecraft")
    status, body = gateway.spacecraft(backend.analysis.archive, when, ra, dec)
    return json_response(body, status)
