"""Run nb2workflow 1.3.118 on the notebooks as MMODA's service would, and write what it understood as JSON.

Run by ``tests/conformance/test_nb2workflow.py`` in a subprocess (nb2workflow loads the odahub.io ontology over
HTTP when imported: the test gives the subprocess an offline proxy that serves a committed copy)::

    python nb2workflow_driver.py inspect OUT.json NOTEBOOK... [--cast NAME=VALUE...]
    python nb2workflow_driver.py run OUT.json NOTEBOOK PARAMETERS.json

``inspect`` reads each notebook with ``NotebookAdapter`` (what ``nbinspect`` and the service do): its parameters
(python type, ontology term, optional or not, default) and declared outputs, or the error that stops nb2workflow
reading it; ``--cast`` also turns request values (text, as a service receives them) into parameters with
``interpret_parameters``. ``run`` executes one notebook with ``NotebookAdapter.execute`` (a copy of the notebook's
folder in a temporary folder, papermill, nb2workflow's output-gathering cell) and returns its outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from nb2workflow import nbadapter


def _ontology_facts() -> dict:
    ontology = nbadapter.ontology
    return {"available": bool(ontology.is_ontology_available), "triples": len(ontology.g)}


def _describe(value):
    """JSON-safe value: types by name, the rest as is or as repr."""
    if isinstance(value, type):
        return value.__name__
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


def inspect(notebooks: list[str], casts: dict[str, str]) -> dict:
    """Parameters and outputs nb2workflow reads from each notebook (or why it cannot)."""
    result = {"ontology": _ontology_facts(), "notebooks": {}}
    for path in notebooks:
        name = nbadapter.notebook_short_name(path)
        try:
            adapter = nbadapter.NotebookAdapter(path)
            parameters = adapter.extract_parameters()
            outputs = adapter.extract_output_declarations()
        except Exception as error:  # noqa: BLE001 - any failure to read the notebook is the finding
            result["notebooks"][name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        entry = {
            "parameters": {
                key: {
                    "python_type": _describe(par["python_type"]),
                    "owl_type": par["owl_type"],
                    "is_optional": par["is_optional"],
                    "default_value": _describe(par["default_value"]),
                    "comment": par["comment"],
                }
                for key, par in parameters.items()
            },
            "outputs": {key: {"owl_type": out["owl_type"], "value": out["value"]} for key, out in outputs.items()},
        }
        wanted = {key: value for key, value in casts.items() if key in parameters}
        if wanted:
            interpreted = adapter.interpret_parameters(wanted)
            entry["cast"] = {
                "issues": interpreted["issues"],
                "values": {
                    key: {"value": value, "type": type(value).__name__}
                    for key, value in interpreted["request_parameters"].items()
                },
            }
        result["notebooks"][name] = entry
    return result


def run(notebook: str, request: dict[str, str]) -> dict:
    """Execute ``notebook`` with request values (text) through nb2workflow; its outputs and problems."""
    adapter = nbadapter.NotebookAdapter(notebook)
    interpreted = adapter.interpret_parameters(request)
    result = {"ontology": _ontology_facts(), "issues": interpreted["issues"]}
    result["parameters"] = {
        key: {"value": value, "type": type(value).__name__} for key, value in interpreted["request_parameters"].items()
    }
    if interpreted["issues"]:
        return result
    exceptions = adapter.execute(interpreted["request_parameters"], progress_bar=False, log_output=False)
    result["exceptions"] = [repr(exception) for exception in exceptions]
    result["workdir"] = adapter.tmpdir
    result["output_notebook"] = adapter.output_notebook_fn
    if not exceptions:
        result["outputs"] = {key: _describe(value) for key, value in adapter.extract_output().items()}
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line of the module docstring; writes the JSON answer, exit 0 unless the driver itself broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspecting = commands.add_parser("inspect")
    inspecting.add_argument("out", type=Path)
    inspecting.add_argument("notebooks", nargs="+")
    inspecting.add_argument("--cast", action="append", default=[], metavar="NAME=VALUE")
    running = commands.add_parser("run")
    running.add_argument("out", type=Path)
    running.add_argument("notebook")
    running.add_argument("parameters", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "inspect":
            casts = dict(item.split("=", 1) for item in args.cast)
            answer = inspect(args.notebooks, casts)
        else:
            answer = run(args.notebook, json.loads(args.parameters.read_text()))
    except Exception:  # noqa: BLE001 - reported to the test, which shows it
        answer = {"driver_error": traceback.format_exc()}
    args.out.write_text(json.dumps(answer, indent=1, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
