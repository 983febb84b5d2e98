"""Validation of a notebook's (or a run's) parameters, with every problem reported together."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError

from .blocks import INSTRUMENT_DEFAULTS, CrossFieldProblems
from .errors import (
    ParameterError,
    holds_token,
    is_token_name,
    safe_repr,
    token_name_problem,
    token_value_problem,
    unknown_name_problem,
)
from .models import NOTEBOOK_MODELS, model_for

Problem = tuple[tuple[str, ...], str]

_TYPE_WORDS = {
    float: "a number",
    int: "an integer",
    bool: "a boolean (true or false)",
    str: "a string",
    tuple: "a list",
}


def _core_type(annotation: Any) -> tuple[Any, bool]:
    """The annotation without Annotated and None, and whether None is allowed."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            optional = optional or len(members) < len(typing.get_args(annotation))
            if len(members) == 1:
                annotation = members[0]
            else:
                return tuple(members), optional
        else:
            return annotation, optional


def expected_kind(model: type[BaseModel], name: str) -> str:
    """The kind of value ``name`` takes in ``model``, in words: ``"a number"``, ``"a string"``..."""
    core, optional = _core_type(model.model_fields[name].annotation)
    if typing.get_origin(core) is typing.Literal:
        words = "one of " + ", ".join(map(repr, typing.get_args(core)))
    elif isinstance(core, tuple):
        words = " or ".join(_TYPE_WORDS.get(member, str(member)) for member in core)
    else:
        words = _TYPE_WORDS.get(typing.get_origin(core) or core, "a value")
    return words + (" or None" if optional else "")


def allowed_text(model: type[BaseModel], name: str) -> str:
    """The values ``name`` allows in ``model``, in words (for errors and the docs).

    Parameters
    ----------
    model : type of pydantic.BaseModel
        A parameter model.
    name : str
        One of its fields.

    Returns
    -------
    str
        E.g. ``"a number; 0 < radius ≤ 180 deg; None (null in YAML) for the instrument default"``.
    """
    field = model.model_fields[name]
    extra = field.json_schema_extra or {}
    core, optional = _core_type(field.annotation)
    parts = []
    if extra.get("allowed"):
        parts.append(extra["allowed"])
    elif typing.get_origin(core) is typing.Literal:
        parts.append("one of " + ", ".join(map(repr, typing.get_args(core))))
    else:
        if isinstance(core, tuple):
            parts.append(" or ".join(_TYPE_WORDS.get(member, str(member)) for member in core))
        else:
            parts.append(_TYPE_WORDS.get(typing.get_origin(core) or core, "a value"))
        unit = f" {extra['unit']}" if extra.get("unit") else ""
        low = high = ""
        for constraint in field.metadata:
            if isinstance(constraint, annotated_types.Ge):
                low = f"{constraint.ge:g} ≤ "
            elif isinstance(constraint, annotated_types.Gt):
                low = f"{constraint.gt:g} < "
            elif isinstance(constraint, annotated_types.Le):
                high = f" ≤ {constraint.le:g}"
            elif isinstance(constraint, annotated_types.Lt):
                high = f" < {constraint.lt:g}"
        if low or high:
            parts.append(f"{low}{name}{high}{unit}")
    if optional:
        # an instrument default fills a field left at None only when None is its default (not the transient
        # follow-up's error radius, whose None means a point)
        by_instrument = name in INSTRUMENT_DEFAULTS and field.default is None
        parts.append("None (null in YAML) for " + ("the instrument's default" if by_instrument else "not given"))
    return "; ".join(parts)


def _reason(error: dict) -> str:
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message[0].lower() + message[1:]


def problems_from(error: ValidationError, model: type[BaseModel], *, where: str) -> list[Problem]:
    """Turn pydantic's ValidationError into one plain sentence per parameter at fault.

    Parameters
    ----------
    error : pydantic.ValidationError
        From ``model.model_validate``.
    model : type of pydantic.BaseModel
        The model validated.
    where : str
        What the parameters are for (``"notebook mosaic"``), for unknown names.

    Returns
    -------
    list of (tuple of str, str)
        ``(names at fault, problem)`` pairs, one per parameter (union members merged), in input order.
    """
    problems: list[Problem] = []
    by_field: dict[str, list[dict]] = {}
    for item in error.errors(include_url=False):
        loc = item["loc"]
        if item["type"] == "extra_forbidden":
            problems.append(((str(loc[0]),), unknown_name_problem(str(loc[0]), model.model_fields, where=where)))
        elif not loc:
            cause = (item.get("ctx") or {}).get("error")
            if isinstance(cause, CrossFieldProblems):
                problems.extend(cause.problems)
            else:
                problems.append(((), _reason(item)))
        else:
            by_field.setdefault(str(loc[0]), []).append(item)
    for name, items in by_field.items():
        # A union (int | float) reports each member; the reason of our own validators says it best.
        own = [item for item in items if item["type"] == "value_error"]
        item = (own or items)[0]
        value = item["input"]
        where_in_list = f" (item {item['loc'][1]})" if len(item["loc"]) > 1 and isinstance(item["loc"][1], int) else ""
        if item["type"].endswith("_type") or item["type"] == "none_required":
            # A value of the wrong kind: say which kind is expected, in the user's words.
            reason = f"({type(value).__name__}) has the wrong type: expected {expected_kind(model, name)}"
        else:
            reason = f"is not allowed: {_reason(item)}"
        text = f"{name} = {safe_repr(value)}{where_in_list} {reason}; allowed: {allowed_text(model, name)}"
        problems.append(((name,), text))
    return problems


def _screen_tokens(values: Mapping) -> tuple[dict, list[Problem]]:
    clean, problems = {}, []
    for name, value in values.items():
        if is_token_name(name):
            problems.append(((str(name),), token_name_problem(name)))
        elif holds_token(value):
            problems.append(((str(name),), token_value_problem(name)))
        else:
            clean[name] = value
    return clean, problems


def _validate_problems(notebook: str, values: Mapping) -> tuple[BaseModel | None, list[Problem]]:
    return _model_problems(model_for(notebook), values, where=f"notebook {notebook}")


def _model_problems(model: type[BaseModel], values: Mapping, *, where: str) -> tuple[BaseModel | None, list[Problem]]:
    if not isinstance(values, Mapping):
        return None, [((), f"parameters must be a mapping of name to value, got {type(values).__name__}")]
    clean, problems = _screen_tokens(values)
    try:
        result = model.model_validate(clean)
    except ValidationError as error:
        found = problems_from(error, model, where=where)
        problems += found
        failed = {name for names, _ in found if len(names) == 1 for name in names}
        if failed and not any(len(names) > 1 for names, _ in found):
            # Cross-field rules ran on nothing: run them without the failed fields (defaults in their place)
            # and keep the problems that involve none of them, so that one pass reports everything.
            try:
                model.model_validate({k: v for k, v in clean.items() if str(k) not in failed})
            except ValidationError as second:
                problems += [
                    (names, text)
                    for names, text in problems_from(second, model, where=where)
                    if names and not failed & set(names)
                ]
        return None, problems
    if problems:
        return None, problems
    return result, []


def validate_model(model: type[BaseModel], values: Mapping, *, where: str) -> BaseModel:
    """Validate ``values`` against any parameter model, with every problem in one :class:`ParameterError`.

    Parameters
    ----------
    model : type of pydantic.BaseModel
        A parameter model (a notebook's, or :class:`~integral_workflows.parameters.models.ObservationParameters`).
    values : mapping
        Parameter values by name.
    where : str
        What the parameters are for, in messages about unknown names.

    Returns
    -------
    pydantic.BaseModel
        The validated model.

    Raises
    ------
    ParameterError
        As :func:`validate`.
    """
    result, problems = _model_problems(model, values, where=where)
    if problems:
        raise ParameterError([text for _, text in problems], names=[n for names, _ in problems for n in names])
    return result


def validate(notebook: str, values: Mapping) -> BaseModel:
    """Validate one notebook's parameters; missing ones take their defaults.

    Parameters
    ----------
    notebook : str
        The notebook name (``"mosaic"``).
    values : mapping
        Parameter values by name (a YAML file's, papermill's, a notebook's globals already filtered).

    Returns
    -------
    pydantic.BaseModel
        The notebook's model, validated and frozen, instrument defaults filled in.

    Raises
    ------
    ParameterError
        With every problem at once: unknown names (with the closest valid name), tokens, wrong types,
        values out of range, inconsistent values (T1 ≥ T2, energies outside the instrument's range...).
    """
    result, problems = _validate_problems(notebook, values)
    if problems:
        raise ParameterError([text for _, text in problems], names=[n for names, _ in problems for n in names])
    return result


def validate_run(notebooks: Sequence[str], values: Mapping) -> dict[str, BaseModel]:
    """Validate the parameters of a run of several notebooks, each with the values it declares.

    Parameters
    ----------
    notebooks : sequence of str
        The notebooks of the run (a workflow's steps).
    values : mapping
        The run's parameter values.

    Returns
    -------
    dict
        Notebook name → its validated model.

    Raises
    ------
    ParameterError
        With every problem of every notebook at once (each problem once): a name no notebook declares
        (closest valid name), a shared parameter left out whose defaults differ between the notebooks,
        and each notebook's own problems.
    """
    if not isinstance(values, Mapping):
        raise ParameterError(f"parameters must be a mapping of name to value, got {type(values).__name__}")
    declared = {notebook: model_for(notebook).model_fields for notebook in notebooks}
    all_names = list(dict.fromkeys(name for fields in declared.values() for name in fields))
    clean, problems = _screen_tokens(values)
    where = "the notebooks " + ", ".join(notebooks)
    problems += [
        ((str(name),), unknown_name_problem(str(name), all_names, where=where))
        for name in clean
        if name not in all_names
    ]
    for name in all_names:
        owners = [notebook for notebook, fields in declared.items() if name in fields]
        defaults = {json.dumps(_json_default(declared[notebook][name].default)) for notebook in owners}
        if name not in clean and len(defaults) > 1:
            shown = ", ".join(f"{notebook} {declared[notebook][name].default!r}" for notebook in owners)
            text = (
                f"{name} is not given and its default differs between the notebooks ({shown}): give {name} explicitly"
            )
            problems.append(((name,), text))
    models = {}
    for notebook in notebooks:
        subset = {name: value for name, value in clean.items() if name in declared[notebook]}
        result, found = _validate_problems(notebook, subset)
        problems += found
        if result is not None:
            models[notebook] = result
    unique: dict[str, tuple[str, ...]] = {}
    for names, text in problems:
        unique.setdefault(text, names)
    if unique:
        raise ParameterError(list(unique), names=[n for names in unique.values() for n in names])
    return models


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def to_papermill(model: BaseModel) -> dict:
    """The model's values as a JSON-safe dict, for ``papermill -p`` and manifests (tuples become lists).

    Parameters
    ----------
    model : pydantic.BaseModel
        A validated parameter model.

    Returns
    -------
    dict
        ``{name: value}`` with str, int, float, bool, None and list values, in the parameters cell's order.
    """
    return model.model_dump(mode="json")


def replace(model: BaseModel, **changes: Any) -> BaseModel:
    """A validated copy of ``model`` with ``changes``; defaults the user did not set are resolved again.

    Parameters
    ----------
    model : pydantic.BaseModel
        A validated parameter model.
    **changes
        New values by name.

    Returns
    -------
    pydantic.BaseModel
        The new model (changing ``instrument`` also changes the default band and radius).

    Raises
    ------
    ParameterError
        If the changed values do not validate.
    """
    notebook = next((name for name, klass in NOTEBOOK_MODELS.items() if klass is type(model)), None)
    given = {name: getattr(model, name) for name in model.model_fields_set}
    if notebook is None:
        return type(model).model_validate({**given, **changes})
    return validate(notebook, {**given, **changes})
