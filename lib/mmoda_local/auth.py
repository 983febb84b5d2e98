"""Tokens and roles, as the real dispatcher checks them.

Tokens are JWT (HS256) signed with the server's own secret. The payload keys
are those of MMODA tokens: ``sub``, ``email``, ``name``, ``roles`` (a
comma-separated string or a list), ``exp`` and the e-mail options.
"""

from __future__ import annotations

import datetime
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
#: May change and delete any contributor's gallery products (a contributor changes only their own).
ROLE_GALLERY_ADMIN = "gallery admin"

#: Comment of a lacking role that the query does not explain (dispatcher-app ``check_instrument_query_role``).
DEFAULT_ROLE_COMMENT = "please refer to support for details"
#: OSA versions anyone may request (dispatcher-plugin-integral ``OsaDispatcher.check_query_roles``).
PUBLIC_OSA_VERSIONS = ("OSA10.2", "OSA11.2")

EXPIRED_MESSAGE = "The token provided is expired, please try to logout and login again. If already logged out, please clean the cookies, and resubmit you request."
INVALID_MESSAGE = "The token provided is not valid, please try to logout and login again. If already logged out, please clean the cookies, and resubmit you request."
#: Short forms, from ``tokenHelper.validate_token_from_request`` (instr-list, refresh_token, inspect-state...).
EXPIRED_SHORT_MESSAGE = "The token provided is expired."
INVALID_SHORT_MESSAGE = "The token provided is not valid."
MISSING_TOKEN_MESSAGE = "A token must be provided."


class TokenError(Exception):
    """A token that cannot be accepted (expired, forged or malformed).

    Attributes
    ----------
    expired : bool
        True for a well-signed token past its ``exp``.
    short_message : str
        The words of the real dispatcher's token check for the secondary routes.
    """

    def __init__(self, message: str, *, expired: bool):
        super().__init__(message)
        self.expired = expired
        self.short_message = EXPIRED_SHORT_MESSAGE if expired else INVALID_SHORT_MESSAGE


def mint_token(
    secret: str, *, roles, email: str = "user@localhost", name: str | None = None, lifetime_s: float = 7 * 24 * 3600
) -> str:
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
        raise TokenError(EXPIRED_MESSAGE, expired=True) from exc
    except jwt.PyJWTError as exc:
        raise TokenError(INVALID_MESSAGE, expired=False) from exc


def roles_of(payload: dict | None) -> list[str]:
    """Return the roles of a decoded token (none for an anonymous request)."""
    if not payload:
        return []
    roles = payload.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split(",")
    return [r.strip() for r in roles if r and r.strip()]


#: Longest refresh a token may get, seconds (dispatcher-app ``token_max_refresh_interval`` default).
MAX_REFRESH_INTERVAL_S = 604800
#: Expiry given when the refreshed one cannot be represented (dispatcher-app ``tokenHelper.refresh_token``).
LATEST_EXPIRY = 2177449199


def refreshed_token(secret: str, payload: dict, *, refresh_interval_s: float = MAX_REFRESH_INTERVAL_S) -> str:
    """Return a copy of a token whose expiry is pushed back by ``refresh_interval_s``.

    As ``tokenHelper.refresh_token``: the new ``exp`` is the old one plus the
    interval (not now plus the interval), or :data:`LATEST_EXPIRY` when that
    is not a representable time.
    """
    new_exp = int(payload["exp"] + refresh_interval_s)
    try:
        datetime.datetime.fromtimestamp(new_exp)
    except (ValueError, OverflowError, OSError):
        new_exp = LATEST_EXPIRY
    return jwt.encode(dict(payload, exp=new_exp), secret, algorithm="HS256")


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
    return (
        "Unfortunately, your priviledges are not sufficient to make the request for this particular "
        f"product and parameter combination.\n- Your priviledge roles include {have}\n"
        f"- You are lacking all of the following roles:{lines}\n"
        "You can request support if you think you should be able to make this request."
    )


def lacking_roles(roles: list[str], *, osa: bool, product_roles: tuple, parameters: dict) -> dict[str, str]:
    """Roles a request lacks, with why each is needed, as the real dispatcher decides.

    The rules are those of the real queries' ``check_query_roles``: the OSA
    plugin's (``OsaDispatcher.check_query_roles``: more than 50 or 500
    pointings, NRT ScWs with public data rights, private data, non-public OSA
    versions) and the test instruments' numerical product (role ``general``;
    ``unige-hpc-full`` too for p > 50). The dispatcher then lists the lacking
    roles sorted by name (``Instrument.check_instrument_query_role``).

    Parameters
    ----------
    roles : list of str
        Roles of the request's token (none without a token).
    osa : bool
        An INTEGRAL OSA instrument.
    product_roles : tuple of str
        Roles the product itself requires.
    parameters : dict
        Normalised request parameters.

    Returns
    -------
    dict
        Lacking role → comment, sorted by role; empty if the request is authorised.
    """
    if osa:
        authorised, needed = _osa_roles(roles, parameters)
    elif product_roles:
        needed = {role: DEFAULT_ROLE_COMMENT for role in product_roles}
        authorised = all(role in roles for role in product_roles)
        p_value = parameters.get("p")
        if p_value is not None and p_value > 50:
            needed = {
                ROLE_GENERAL: "general role is needed for p>50",
                ROLE_HPC_FULL: "unige-hpc-full role is needed for p>50 as well",
            }
            # the real check reads `'general' and 'unige-hpc-full' in roles`: only the second role is tested
            authorised = ROLE_HPC_FULL in roles
    else:
        return {}
    if authorised:
        return {}
    return {role: needed.get(role, DEFAULT_ROLE_COMMENT) for role in sorted(set(needed) - set(roles))}


def _osa_roles(roles: list[str], parameters: dict) -> tuple[bool, dict[str, str]]:
    max_pointings = int(parameters["max_pointings"])
    scw_list = list(parameters.get("scw_list") or [])
    needed = {}
    if max_pointings > 50:
        needed[ROLE_HPC_FULL] = f"it is needed to request > 50 ScW, you requested max_pointings={max_pointings}"
    if len(scw_list) > 50:
        needed[ROLE_HPC_FULL] = (
            f"it is needed to request > 50 ScW, you requested scw_list) = [ .. {len(scw_list)} items .. ]"
        )
    if max_pointings > 500 or len(scw_list) > 500:
        needed[ROLE_HPC_EXTREME] = "it is needed to request > 500 ScW"
    data_rights = parameters["integral_data_rights"]
    if any(scw.endswith(".000") for scw in scw_list) and data_rights == "public":
        needed[ROLE_PUBLIC_NRT] = (
            "some of the pointings you requested are NRT, but you requested public data. "
            "This was likely a mistake, since almost none of of NRT data is public."
        )
    if data_rights == "all-private":
        needed[ROLE_PRIVATE_QLA] = (
            'this role is needed to access private INTEGRAL data requested with integral_data_rights == "all-private"'
        )
    osa_version = parameters["osa_version"]
    if osa_version not in PUBLIC_OSA_VERSIONS:
        needed[ROLE_PRIVATE_QLA] = (
            f"the requested OSA ({osa_version}) version is restricted, publicly available "
            f"osa versions: are {', '.join(PUBLIC_OSA_VERSIONS)}. "
            "Most likely you do not need to request it."
        )
    return all(role in roles for role in needed), needed
