"""HTTP answers shared by the services: JSON and text bodies, request values, the short token check."""

from __future__ import annotations

from flask import Response, request

from . import auth, protocol

JSON = "application/json"


def json_response(body, status: int = 200) -> Response:
    """A JSON answer, serialised as the real dispatcher does (:func:`mmoda_local.protocol.to_json`).

    Parameters
    ----------
    body : object
        What to send.
    status : int, optional
        HTTP status.

    Returns
    -------
    flask.Response
    """
    return Response(protocol.to_json(body), status=status, mimetype=JSON)


def text_response(message: str, status: int) -> Response:
    """A text answer as the dispatcher's ``make_response(text, status)`` sends it (``text/html``).

    Parameters
    ----------
    message : str
        The body.
    status : int
        HTTP status.

    Returns
    -------
    flask.Response
    """
    return Response(message, status=status, mimetype="text/html")


def request_values() -> dict:
    """The request's raw values (query string and form), a list for a repeated key.

    Returns
    -------
    dict
    """
    values = {}
    for key in request.values.keys():
        items = request.values.getlist(key)
        values[key] = items[0] if len(items) == 1 else items
    return values


def validate_token(
    secret: str, token: str | None, *, required_roles=(), action: str = ""
) -> tuple[dict | None, Response | None]:
    """Check a request's token as the dispatcher's ``tokenHelper.validate_token_from_request`` does.

    Used by the secondary dispatcher routes (``inspect-state``, ``refresh_token``) and the gallery endpoints.

    Parameters
    ----------
    secret : str
        The server's token secret.
    token : str or None
        The request's ``token``.
    required_roles : iterable of str, optional
        Roles the token must carry.
    action : str, optional
        What the request wants to do, in the words of the refusal.

    Returns
    -------
    (dict or None, flask.Response or None)
        The decoded token, or the 403 text answer to send.
    """
    if token in (None, ""):
        return None, text_response("A token must be provided.", 403)
    try:
        decoded = auth.decode_token(secret, token)
    except auth.TokenError as exc:
        message = "The token provided is expired." if "expired" in str(exc) else "The token provided is not valid."
        return None, text_response(message, 403)
    roles = auth.roles_of(decoded)
    lacking = sorted(set(required_roles) - set(roles))
    if lacking:
        return None, text_response(
            f"Unfortunately, your privileges are not sufficient to {action}.\n"
            f"Your privilege roles include {roles}, but the following roles are missing: "
            f"{', '.join(lacking)}.",
            403,
        )
    return decoded, None
