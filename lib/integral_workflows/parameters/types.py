"""Value types of the parameters: strict conversions that keep today's meaning of each value.

Models are strict (``"3"`` is not a number, ``1`` is not a boolean); the validators here only turn
lossless forms into the canonical one (a datetime into ISOT text, ``3.0`` into the integer 3, a
revolution integer ≥ 1000 into its 4-digit string) and refuse ambiguous ones with a clear reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import numbers
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from .errors import closest_names

log = logging.getLogger(__name__)

INSTRUMENTS = ("isgri", "jemx")
INSTRUMENT_LABELS = {"isgri": "ISGRI", "jemx": "JEM-X"}
HOST_TYPES = ("production", "staging", "esa", "local")

#: OSA versions the MMODA INTEGRAL plugin accepts as a base (``OSA11.2[-sub][--modifier...]``).
OSA_VERSIONS = ("OSA11.2", "OSA10.2")
OBSOLETE_OSA_VERSIONS = ("OSA11.0", "OSA11.1")
OSA_MODIFIERS = ("fullbkg", "jemxnrt", "rmfoffsetv1")

#: The mission's science window: launch (2002-10-17) to the end of science operations (2025-02-28).
MISSION_START = dt.datetime(2002, 10, 17)
MISSION_END = dt.datetime(2025, 3, 1)

_ISOT_PATTERN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
_REVOLUTION_PATTERN = re.compile(r"^\d{4}$")


def parse_isot(text: str) -> dt.datetime | None:
    """Return the datetime of an ISOT string ``YYYY-MM-DDThh:mm:ss[.fff]``, or None if it is not one."""
    match = _ISOT_PATTERN.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    microsecond = int((match[7] or "0")[:6].ljust(6, "0"))
    try:
        return dt.datetime(year, month, day, hour, minute, second, microsecond)
    except ValueError:
        return None


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _to_isot(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # A datetime is what plain yaml.safe_load makes of an unquoted time: lossless to convert back.
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    if not isinstance(value, str):
        return value  # the str type refuses it, naming the type
    text = value.strip()
    moment = parse_isot(text)
    if moment is None:
        raise ValueError(
            "not a valid UTC time: expected ISOT format YYYY-MM-DDThh:mm:ss[.fff], e.g. '2003-02-22T00:00:00'"
        )
    if not MISSION_START <= moment <= MISSION_END:
        # Outside the mission there is simply no data: worth a warning, not an error.
        log.warning(
            "%s is outside INTEGRAL's science operations (%s to %s): no data there",
            text,
            MISSION_START.date(),
            MISSION_END.date(),
        )
    return text


def _to_float(value: Any) -> Any:
    # numpy floats and integers are numbers too; bools are not.
    if _is_real(value) and not isinstance(value, float):
        return float(value)
    return value


def _to_int(value: Any) -> Any:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if _is_real(value) and math.isfinite(float(value)) and float(value).is_integer():
        return int(value)
    return value


def _to_count_or_fraction(value: Any) -> Any:
    # Counts stay ints (10, -1), fractions floats (-0.2): the two meanings of n_scw_image.
    if not _is_real(value) or not math.isfinite(float(value)):
        return value
    return int(value) if float(value).is_integer() else float(value)


def choice_validator(choices: tuple[str, ...]):
    """A before-validator matching ``choices`` case-insensitively, suggesting the closest one otherwise."""
    by_casefold = {choice.casefold(): choice for choice in choices}

    def match(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the Literal type refuses it
        folded = value.strip().casefold()
        if folded in by_casefold:
            return by_casefold[folded]
        close = closest_names(folded, choices, count=1)
        raise ValueError(f"did you mean {close[0]!r}?" if close else "not one of the choices")

    return BeforeValidator(match)


def _to_revolution(value: Any) -> Any:
    if isinstance(value, str):
        if _REVOLUTION_PATTERN.match(value.strip()):
            return value.strip()
        raise ValueError("not a revolution: write 4 digits with their zeros, e.g. '0044'")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if 1000 <= int(value) <= 9999:
            return f"{int(value):04d}"
        # An unquoted 0044 in plain YAML 1.1 becomes the octal 36: refuse to guess.
        raise ValueError(
            f"{value!r} is ambiguous: write revolution numbers as 4-digit strings with their zeros, "
            "e.g. '0044' (quote them in YAML)"
        )
    return value


def _to_revolution_number(value: Any) -> Any:
    # Zero or a negative number counts back from the current revolution; anything else names one revolution.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) <= 0:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"0|-[1-9][0-9]*", value.strip()):
        return int(value.strip())
    revolution = _to_revolution(value)
    if revolution == "0000":
        raise ValueError("there is no revolution 0000; the integer 0 means the current revolution")
    return revolution


def _to_revolutions(value: Any) -> Any:
    if isinstance(value, str):
        # "0044, 0045" is the natural way to write a few revolutions on a command line.
        value = [item for item in re.split(r"[,\s]+", value) if item]
    if isinstance(value, (list, tuple)):
        return tuple(sorted({_to_revolution(item) for item in value}))
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        # A lone surrogate ("\ud800" in a YAML double-quoted string) cannot be written into any file.
        raise ValueError(f"must be Unicode text: character {error.start + 1} is a lone surrogate") from None
    return value


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("a job of 0 ScWs means nothing")
    return value


def _check_n_scw_image(value: float) -> int | float:
    if value == 0:
        raise ValueError("an image of 0 ScWs means nothing")
    if value < -1:
        raise ValueError("below -1 means nothing (-1 already means all ScWs)")
    if value > 0 and not float(value).is_integer():
        raise ValueError("a positive value is a number of ScWs and must be whole")
    return value


def _check_osa_version(value: str) -> str:
    match = re.match(r"^(?P<base>OSA\d+\.\d+)(?P<sub>-[A-Za-z0-9_.]+)?(?P<mods>(?:--[A-Za-z0-9]+)*)$", value)
    if match is None:
        raise ValueError("must look like OSA11.2, OSA11.2-<subversion> or OSA11.2--<modifier>")
    base = match["base"]
    if base in OBSOLETE_OSA_VERSIONS:
        raise ValueError(f"{base} is obsolete and MMODA refuses it: use OSA11.2 (recommended) or OSA10.2")
    if base not in OSA_VERSIONS:
        raise ValueError(f"unknown OSA version {base}: use OSA11.2 (recommended) or OSA10.2")
    modifiers = [m for m in match["mods"].split("--") if m]
    unknown = [m for m in modifiers if m not in OSA_MODIFIERS]
    if unknown:
        raise ValueError(f"unknown modifier(s) {unknown}: known modifiers are {list(OSA_MODIFIERS)}")
    if modifiers != sorted(modifiers):
        raise ValueError(
            "modifiers must be sorted (MMODA's rule): write "
            f"{base}{match['sub'] or ''}--" + "--".join(sorted(modifiers))
        )
    return value


def _check_api_catalog(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise ValueError("must not be empty (use None for no catalog)")
    if text[0] in "{[":
        # Text that starts like JSON is the catalog itself, not a path: it must parse.
        import json

        try:
            json.loads(text)
        except ValueError as error:
            raise ValueError(f"looks like JSON catalog text but does not parse ({error})") from None
    return value


# -- the annotated types the blocks use ------------------------------------------------------------------------

#: A UTC time in ISOT format (a datetime is converted).
IsoTime = Annotated[str, BeforeValidator(_to_isot)]
#: A real number (numpy numbers accepted, strings and booleans refused, no NaN or infinity).
Real = Annotated[float, BeforeValidator(_to_float)]
#: An integer (an integral float such as 3.0 accepted).
Integer = Annotated[int, BeforeValidator(_to_int)]
#: A non-empty string.
Text = Annotated[str, AfterValidator(_not_blank)]
Instrument = Annotated[Literal["isgri", "jemx"], choice_validator(INSTRUMENTS)]
HostType = Annotated[Literal["production", "staging", "esa", "local"], choice_validator(HOST_TYPES)]
JemxUnit = Annotated[Literal[1, 2], BeforeValidator(_to_int)]
OsaVersion = Annotated[str, AfterValidator(_check_osa_version)]
JobSize = Annotated[int, BeforeValidator(_to_int), AfterValidator(_not_zero)]
CountOrFraction = Annotated[int | float, BeforeValidator(_to_count_or_fraction), AfterValidator(_check_n_scw_image)]
ApiCatalog = Annotated[str | None, AfterValidator(_check_api_catalog)]
#: A revolution as its 4-digit string ("0044"); integers ≥ 1000 are converted, smaller ones refused.
Revolution = Annotated[str, BeforeValidator(_to_revolution), Field(pattern=r"^\d{4}$")]
#: Sorted, distinct revolutions; a string "0044, 0045" is split.
Revolutions = Annotated[tuple[Revolution, ...], BeforeValidator(_to_revolutions)]
#: A list of non-empty strings (a list, or a tuple as the models store it).
TextList = Annotated[
    tuple[Text, ...], BeforeValidator(lambda value: tuple(value) if isinstance(value, list) else value)
]
#: A revolution ("0300") or an integer ≤ 0 counting back from the current one.
RevolutionNumber = Annotated[str | int, BeforeValidator(_to_revolution_number)]


def choice(*values: str):
    """An annotated ``Literal`` of ``values`` matched case-insensitively (``"ISGRI"`` is ``"isgri"``)."""
    return Annotated[Literal[values], choice_validator(tuple(values))]
