"""Tokens and roles, as the real dispatcher checks them.

Tokens are JWT (HS256) signed with the server's own secret. The payload keys
are those of MMODA tokens: ``sub``, ``email``, ``name``, ``roles`` (a
comma-separated string or a list), ``exp`` and the e-mail options.
"""

from __future__ import annotations

import logging
import time

import jwt

log = logging.getLogger(__name__)

ROLE_HPC_FULL = "unige-hpc-full"
ROLE_HPC_EXTREME = "unige-hpc-extreme"
ROLE_PRIVATE_QLA = "integral-private-qla"
ROLE_PUBLIC_NRT = "integral-public-nrt"
ROLE_GENERAL = "general"
ROLE_JOB_MANAGER = "job manager"
ROLE_REFRESH_TOKENS = "refresh-tokens"
ROLE_GALLERY = "gallery contributor"

#: Why each role is needed, in the words the real dispatcher uses.
ROLE_REASONS = {
    ROLE_HPC_FULL: "it is needed to request > 50 ScW",
    ROLE_HPC_EXTREME: "it is needed to request > 500 ScW",
    ROLE_PRIVATE_QLA: "it is needed to access private INTEGRAL data",
    ROLE_PUBLIC_NRT: "it is needed to access public near-real-time (NRT) INTEGRAL data",
    ROLE_GENERAL: "please refer to support for details",
}

EXPIRED_MESSAGE = "The token provided is expired, please try to logout and login again. If already logged out, please clean the cookies, and resubmit you request."
INVALID_MESSAGE = "The token provided is not valid, please try to logout and login again. If already logged out, please clean the cookies, and resubmit you request."


class TokenError(Exception):
    """A token that cannot be accepted (expired, forged or malformed)."""


def mint_token(secret: str, *, roles, email: str = "user@localhost", name: str | None = None,
               lifetime_s: float = 7 * 24 * 3600) -> str:
    """Create a token signed with ``secret``.

    Parameters
    ----------
    secret : str
        The server's signing secret.
    roles : str or list of str
        Roles, e.g. ``["general", "unige-hpc-full"]`` or ``"general, unige-hpc-full"``.
    email : str, optional
        Identity of the user (``sub`` and ``email``); job ids depend on it.
    name : str, optional
        Display name; defaults to the part of ``email`` before ``@``.
    lifetime_s : float, optional
        Validity from now, in seconds.

    Returns
    -------
    str
        The encoded JWT.
    """
    if isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",") if r.strip()]
    payload = {
        "sub": email,
        "email": email,
        "name": name or email.split("@")[0],
        "roles": ", ".join(roles),
        "exp": int(time.time() + lifetime_s),
        "tem": 0,
        "mstout": False,
        "mssub": False,
        "msdone": False,
        "msfail": False,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def decode_token(secret: str, token: str) -> dict:
    """Verify ``token`` and return its payload.

    Raises
    ------
    TokenError
        With the message the real dispatcher gives, if the token is expired,
        not signed by this server or malformed.
    """
    try:
        return jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.ExpiredSignatureError as exc:
        raise TokenError(EXPIRED_MESSAGE) from exc
    except jwt.PyJWTError as exc:
        raise TokenError(INVALID_MESSAGE) from exc


def roles_of(payload: dict | None) -> list[str]:
    """Return the roles of a decoded token (none for an anonymous request)."""
    if not payload:
        return []
    roles = payload.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split(",")
    return [r.strip() for r in roles if r and r.strip()]


def refreshed_token(secret: str, payload: dict, *, lifetime_s: float = 7 * 24 * 3600) -> str:
    """Return a copy of a token with a new expiry."""
    renewed = dict(payload, exp=int(time.time() + lifetime_s))
    return jwt.encode(renewed, secret, algorithm="HS256")


def missing_roles_message(have: list[str], missing: dict[str, str]) -> str:
    """Text of the real dispatcher's 403 answer for insufficient roles.

    Parameters
    ----------
    have : list of str
        The roles the user has.
    missing : dict
        Missing role → why it is needed for this request.
    """
    lines = "".join(f"\n - {role}: {why}" for role, why in missing.items())
    return ("Unfortunately, your priviledges are not sufficient to make the request for this particular "
            f"product and parameter combination.\n- Your priviledge roles include {have}\n"
            f"- You are lacking all of the following roles:{lines}\n"
            "You can request support if you think you should be able to make this request.")
