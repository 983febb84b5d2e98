"""The notebooks' parameters as pydantic models, one per notebook, built from shared blocks.

Typical use::

    from integral_workflows import parameters
    p = parameters.validate("mosaic", {"src_name": "Cyg X-1", "RA": 0, "DEC": 0})
    p.E1_keV                          # 28.0: ISGRI's default, since E1_keV was not given
    parameters.to_papermill(p)        # {name: value} for papermill -p and manifests

Design notes: ``docs/parameters.md`` (generated from the models by ``python -m
integral_workflows.parameters.docs``).
"""

from .errors import TOKEN_PARAMETER_NAMES, ParameterError
from .files import parse_override, read_parameter_file
from .models import declared_names, model_for, notebook_names
from .validation import to_papermill, validate, validate_run

__all__ = [
    "TOKEN_PARAMETER_NAMES",
    "ParameterError",
    "declared_names",
    "model_for",
    "notebook_names",
    "parse_override",
    "read_parameter_file",
    "to_papermill",
    "validate",
    "validate_run",
]
