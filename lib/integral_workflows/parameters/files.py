"""Parameter files (``parameters/*.yaml``) and ``-p NAME VALUE`` overrides, with YAML rules made for parameters.

Plain YAML 1.1 turns ``T1: 2003-03-15T23:27:40`` into a datetime, ``rev: 0044`` into the octal 36,
``05:34:31`` into the sexagesimal 20071 and ``NO`` into False. Here only ``true`` and ``false`` are
booleans, only plain decimals are numbers, and nothing is a timestamp.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ParameterError

#: The top-level keys of a parameter file.
FILE_KEYS = ("workflow", "description", "parameters", "matrix")


class _ParameterLoader(yaml.SafeLoader):
    """SafeLoader that keeps times, zero-padded numbers and yes/no as strings and refuses repeated keys."""

    def construct_mapping(self, node, deep=False):
        # A key given twice is a mistake PyYAML would silently resolve to the last one.
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_REPLACED_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}
_ParameterLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ParameterLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_ParameterLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_ParameterLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"
        r"|^[-+]?(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+$"
    ),
    list("-+0123456789."),
)


def yaml_error_text(error: yaml.YAMLError, *, source: str, text: str | None = None) -> str:
    """One line naming the source, the line and column when known, and what PyYAML found wrong.

    Parameters
    ----------
    error : yaml.YAMLError
        From the loader.
    source : str
        The file (or ``-p NAME``).
    text : str, optional
        The text parsed: gives the line of a character the reader refuses.

    Returns
    -------
    str
        E.g. ``"crab.yaml, line 3, column 13: not valid YAML: expected ',' or ']', but got ':' (while
        parsing a flow sequence that starts on line 3)"``.
    """
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if isinstance(error, yaml.reader.ReaderError) and text is not None:
        # The reader's errors carry a character position, no mark.
        line = text[: error.position].count("\n") + 1
        where = f"{source}, line {line}"
        code = error.character if isinstance(error.character, int) else ord(error.character)
        problem = f"the control character U+{code:04X} is not allowed in YAML text"
    context = getattr(error, "context", None)
    context_mark = getattr(error, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        context = f"{context} that starts on line {context_mark.line + 1}"
    text = f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")
    if "'\\t'" in problem:  # PyYAML names the character by its repr
        text += "; indent with spaces, YAML does not allow tabs"
    return " ".join(text.split())


def parse_yaml(text: str, *, source: str = "<text>") -> dict:
    """Parse YAML text into a mapping, keeping times and zero-padded numbers as strings.

    Parameters
    ----------
    text : str
        A YAML mapping.
    source : str
        Where the text comes from, for error messages.

    Returns
    -------
    dict
        The raw mapping (an empty document gives an empty dict).

    Raises
    ------
    ParameterError
        If the text is not valid YAML, not a mapping, or repeats a key.
    """
    try:
        values = yaml.load(text, Loader=_ParameterLoader)
    except yaml.YAMLError as error:
        raise ParameterError(yaml_error_text(error, source=source, text=text)) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ParameterError(f"{source}: must be a mapping of names to values, got a {type(values).__name__}")
    return values


def read_parameter_file(path: str | Path) -> dict:
    """Read a parameter file: the mapping of ``workflow``, ``description``, ``parameters`` and ``matrix``.

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    dict
        The file's mapping; ``parameters`` and ``matrix`` raw (values are validated per run, per notebook).

    Raises
    ------
    ParameterError
        If the file is missing, not UTF-8, not valid YAML, has an unknown top-level key, no
        ``workflow`` name, or a ``parameters``/``matrix`` that is not a mapping.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ParameterError(f"{path}: cannot read the parameter file ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ParameterError(
            f"{path}: not UTF-8 text (byte {raw[error.start]:#04x} on line {line}); save the file as UTF-8"
        ) from None
    content = parse_yaml(text, source=str(path))
    problems = []
    unknown = [key for key in content if key not in FILE_KEYS]
    if unknown:
        hint = " (parameters go under 'parameters:')" if any(isinstance(key, str) for key in unknown) else ""
        problems.append(f"{path}: unknown top-level key(s) {unknown}{hint}; allowed: {list(FILE_KEYS)}")
    if not isinstance(content.get("workflow"), str) or not content.get("workflow"):
        problems.append(f"{path}: 'workflow:' must name a workflow")
    if not isinstance(content.get("parameters") or {}, dict):
        problems.append(f"{path}: 'parameters:' must be a mapping of parameter names to values")
    if not isinstance(content.get("matrix") or {}, dict):
        problems.append(f"{path}: 'matrix:' must map axis names to lists")
    else:
        for axis, entries in (content.get("matrix") or {}).items():
            if not isinstance(entries, list) or not entries:
                problems.append(f"{path}: matrix axis {axis!r} must be a non-empty list")
    if problems:
        raise ParameterError(problems, names=[str(key) for key in unknown])
    return content


def parse_override(name: str, text: str) -> tuple[str, Any]:
    """Parse a ``-p NAME VALUE`` command-line override with the parameter files' YAML rules.

    Parameters
    ----------
    name : str
        The parameter name.
    text : str
        Its value as typed: ``28``, ``2004-01-01T00:00:00``, ``0044`` (stays the string ``'0044'``),
        ``"[0044, 0045]"``, ``"1A 0535+262"``, ``null``.

    Returns
    -------
    tuple of (str, object)
        The name and the parsed value (validated later, with the run).

    Raises
    ------
    ParameterError
        If the value is not valid YAML or is a mapping.
    """
    try:
        value = parse_yaml(f"value: {text}" if text.strip() else "value: ''", source=f"-p {name}")["value"]
    except (ParameterError, KeyError, TypeError):
        raise ParameterError(
            f"-p {name} {text!r}: not a valid value (quote text that YAML would misread)", names=[name]
        ) from None
    if isinstance(value, dict):
        raise ParameterError(f"-p {name} {text!r}: a value cannot be a mapping", names=[name])
    return name, value
