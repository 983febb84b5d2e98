"""ParameterError and the translation of pydantic's ValidationError into plain words."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

#: Names a token could hide under; refused outright (compared case-insensitively).
TOKEN_PARAMETER_NAMES = frozenset({"token", "oda_token", "odatoken", "jwt", "access_token", "api_token"})

TOKEN_ADVICE = (
    "the MMODA token is never a parameter: it is read from the ODA_TOKEN environment variable or a "
    ".oda-token file (working folder, then home) by integral_workflows.hosts.discover_token(); papermill "
    "copies parameters verbatim into the executed notebook, where a token would leak"
)

# A JWT is three base64url parts, the first two JSON objects, so both start with "eyJ" ('{"').
_JWT_PATTERN = re.compile(r"^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class ParameterError(ValueError):
    """Parameters that are unknown, of the wrong type, out of range or inconsistent.

    Every problem of one input is reported at once.

    Parameters
    ----------
    problems : str or sequence of str
        What is wrong, one sentence per problem, each naming the parameter and what is allowed.
    names : iterable of str, optional
        The parameters at fault (empty for problems of a whole file).
    name : str, optional
        One parameter at fault (put first in ``names``).

    Attributes
    ----------
    problems : list of str
        Every problem.
    names : tuple of str
        Every parameter at fault, in the order of ``problems``.
    name : str or None
        The first parameter at fault.
    """

    def __init__(self, problems: str | Sequence[str], *, names: Iterable[str] = (), name: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.names = tuple(dict.fromkeys(str(item) for item in ([name] if name else []) + list(names)))
        self.name = self.names[0] if self.names else None
        super().__init__(self._text())

    def _text(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return f"{len(self.problems)} problems with the parameters:\n" + "\n".join(f"- {p}" for p in self.problems)

    def __str__(self) -> str:
        return self._text()

    def __reduce__(self):
        # Errors cross process boundaries (Dask workers): rebuild from the keyword-only arguments too.
        return (_rebuild_error, (self.problems, self.names))


def _rebuild_error(problems: list[str], names: tuple[str, ...]) -> ParameterError:
    return ParameterError(problems, names=names)


def looks_like_jwt(value: Any) -> bool:
    """Return True if ``value`` is a string shaped like a JSON Web Token (an MMODA token)."""
    return isinstance(value, str) and _JWT_PATTERN.match(value.strip()) is not None


def holds_token(value: Any) -> bool:
    """Return True if ``value``, or an item of a list or tuple ``value``, looks like a token."""
    if isinstance(value, (list, tuple)):
        return any(looks_like_jwt(item) for item in value)
    return looks_like_jwt(value)


def safe_repr(value: Any) -> str:
    """``repr`` of a value for an error message: never a token, never a page of text."""
    if holds_token(value):
        return "<a JWT token, not shown>"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def closest_names(name: str, candidates: Iterable[str], *, count: int = 3) -> list[str]:
    """The candidates closest to a mistyped ``name``, best first (case-insensitive).

    Parameters
    ----------
    name : str
        The unknown name.
    candidates : iterable of str
        The valid names.
    count : int
        At most this many.

    Returns
    -------
    list of str
        Close names as spelled in ``candidates``; abbreviations (``src`` for ``src_name``) count too.
    """
    by_casefold = {candidate.casefold(): candidate for candidate in candidates}
    folded = str(name).casefold()
    close = difflib.get_close_matches(folded, list(by_casefold), n=count, cutoff=0.6)
    # difflib misses abbreviations ("src" for "src_name"): a name the unknown one starts is a good guess too.
    if len(folded) >= 3:
        close += [key for key in by_casefold if key.startswith(folded) and key not in close]
    return [by_casefold[key] for key in close[:count]]


def unknown_name_problem(name: str, candidates: Iterable[str], *, where: str) -> str:
    """The sentence for a parameter ``name`` that ``where`` does not declare, with the closest valid names."""
    candidates = list(candidates)
    close = closest_names(name, candidates)
    if close:
        return f"unknown parameter {str(name)!r} for {where}: did you mean {' or '.join(map(repr, close))}?"
    return f"unknown parameter {str(name)!r} for {where}: the parameters are {', '.join(candidates)}"


def token_name_problem(name: str) -> str:
    """The sentence for a parameter named like a token."""
    return f"{name!r} must not be a parameter: {TOKEN_ADVICE}"


def token_value_problem(name: str) -> str:
    """The sentence for a parameter whose value looks like a token."""
    return f"{name} holds what looks like a token: {TOKEN_ADVICE}"


def is_token_name(name: Any) -> bool:
    """Return True if ``name`` is one of :data:`TOKEN_PARAMETER_NAMES` (any case)."""
    return isinstance(name, str) and name.casefold() in TOKEN_PARAMETER_NAMES
