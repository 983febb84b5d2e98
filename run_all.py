#!/usr/bin/env python3
"""Run the INTEGRAL workflows: parameter files in, run folders of executed notebooks and products out.

A thin command line over :mod:`integral_workflows.runner` (as papermill's CLI
is over ``execute_notebook``); the contracts (parameter files, workflows,
notebooks, run folders, manifests, reruns) are in that module's docstring.

Usage::

    python run_all.py                       # every parameters/*.yaml
    python run_all.py crab parameters/x.yaml -p T2 2005-01-01T00:00:00 --jobs 2
    python run_all.py --dry-run crab        # validate and show the plan, execute nothing
    python run_all.py --list                # workflows and parameter files
    python run_all.py --main                # parameters/main.yaml (what `make run` does)
    python run_all.py rerun outputs/long_term/Crab/isgri_28-40keV_2004-01-01_2006-01-01/03_lightcurve.ipynb \\
        -p E1_keV 30

Exit status: 0 when every run succeeded, 1 when a run failed (the others
still ran), 2 when nothing was executed because a parameter file, a
parameter or a notebook is invalid (or the command line is).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent

try:
    from integral_workflows import runner
except ImportError:  # a source tree that was never `pip install -e .`-ed
    sys.path.insert(0, str(PROJECT_ROOT / "lib"))
    from integral_workflows import runner

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
MAIN_PARAMETER_FILE = PROJECT_ROOT / "parameters" / "main.yaml"


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a parameter in every run (VALUE read with the parameter files' YAML rules: "
                             "quote '0044'); repeatable")
    parser.add_argument("--output-root", type=Path, default=None,
                        help="root of the run folders (default: outputs/; for rerun: the parent's root)")
    parser.add_argument("--force", action="store_true", help="execute every step, even those up to date")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and print the plan (runs, folders, steps), execute nothing")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="copy the notebooks' output to the log (papermill log_output) and log more")
    parser.add_argument("--workflow-module", action="append", default=[], metavar="MODULE",
                        help="import a module (dotted name or .py file) that registers more workflows with "
                             "integral_workflows.runner.register_workflow; repeatable")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``run_all.py [NAMES...]`` (``rerun`` has its own, see :func:`build_rerun_parser`)."""
    parser = argparse.ArgumentParser(
        prog="run_all.py", description="Run workflows of notebooks over parameter files (parameters/*.yaml). "
        "'run_all.py rerun NOTEBOOK -p NAME VALUE' reruns an archived executed notebook with new parameters.",
        epilog="exit status: 0 all runs ok, 1 a run failed, 2 invalid input (nothing executed)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="parameter files: names in parameters/ (crab = parameters/crab.yaml) or paths; "
                             "default: every parameters/*.yaml")
    parser.add_argument("--list", action="store_true", help="list the workflows and parameter files, and exit")
    parser.add_argument("--main", action="store_true",
                        help="run parameters/main.yaml and say where the products are (what `make run` does)")
    parser.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="runs executed in parallel")
    _common_options(parser)
    return parser


def build_rerun_parser() -> argparse.ArgumentParser:
    """Return the parser of ``run_all.py rerun NOTEBOOK [-p NAME VALUE]...``."""
    parser = argparse.ArgumentParser(
        prog="run_all.py rerun", description="Rerun an archived executed notebook (NN_<step>.ipynb in a run "
        "folder) with changed parameters into a new run folder that records its parent.")
    parser.add_argument("notebook", type=Path, help="the archived executed notebook")
    _common_options(parser)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # papermill logs every notebook it opens at INFO; its cell output (log_output) is only wanted with -v.
    logging.getLogger("papermill").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("traitlets", "asyncio", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _import_workflow_modules(names: list[str]) -> None:
    for name in names:
        if name.endswith(".py"):
            path = Path(name).resolve()
            spec = importlib.util.spec_from_file_location(f"_run_all_workflows_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise runner.PlanError(f"--workflow-module {name}: cannot be imported")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)


def _overrides(pairs: list[list[str]]) -> dict:
    return dict(runner.parse_override(name, value) for name, value in pairs)


def _report_invalid(error: Exception) -> int:
    print(f"run_all.py: nothing executed:\n{error}", file=sys.stderr)
    return EXIT_INVALID


def _execute(runs: list, options: argparse.Namespace, *, jobs: int) -> int:
    if options.dry_run:
        print(runner.format_plan(runs, force=options.force))
        return EXIT_OK
    results = runner.execute_runs(runs, jobs=jobs, force=options.force, log_output=options.verbose)
    print()
    print(runner.format_summary(results))
    return EXIT_OK if all(result.status == runner.OK for result in results) else EXIT_FAILED


def _rerun(argv: list[str]) -> int:
    options = build_rerun_parser().parse_args(argv)
    _configure_logging(options.verbose)
    try:
        _import_workflow_modules(options.workflow_module)
        run = runner.plan_rerun(options.notebook, overrides=_overrides(options.parameter),
                                output_root=options.output_root, project_root=PROJECT_ROOT)
    except runner.PlanError as error:
        return _report_invalid(error)
    status = _execute([run], options, jobs=1)
    if not options.dry_run:
        print(f"rerun folder: {run.run_dir}")
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (``sys.argv[1:]`` by default).

    Returns
    -------
    int
        0 all runs ok, 1 a run failed, 2 invalid input (nothing executed).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "rerun":
        return _rerun(argv[1:])
    parser = build_parser()
    options = parser.parse_args(argv)
    _configure_logging(options.verbose)
    if options.jobs < 1:
        parser.error("--jobs must be at least 1")
    try:
        _import_workflow_modules(options.workflow_module)
    except runner.PlanError as error:
        return _report_invalid(error)
    if options.list:
        print(runner.describe_workflows(project_root=PROJECT_ROOT))
        print()
        print(runner.describe_parameter_files(project_root=PROJECT_ROOT))
        return EXIT_OK
    if options.main:
        if options.names:
            parser.error("--main runs parameters/main.yaml: give no NAME with it")
        if not MAIN_PARAMETER_FILE.is_file():
            shown = (MAIN_PARAMETER_FILE.relative_to(PROJECT_ROOT) if MAIN_PARAMETER_FILE.is_relative_to(PROJECT_ROOT)
                     else MAIN_PARAMETER_FILE)
            print(f"run_all.py: {shown} does not exist: it defines the "
                  f"main run of `make run` (see integral_workflows.runner for its format)", file=sys.stderr)
            return EXIT_INVALID
        names = [str(MAIN_PARAMETER_FILE)]
    else:
        names = options.names or sorted(str(path) for path in (PROJECT_ROOT / "parameters").glob("*.yaml"))
        if not names:
            print("run_all.py: no parameter file given and none in parameters/", file=sys.stderr)
            return EXIT_INVALID
    try:
        runs = runner.plan_runs(names, overrides=_overrides(options.parameter), output_root=options.output_root,
                                project_root=PROJECT_ROOT)
    except runner.PlanError as error:
        return _report_invalid(error)
    status = _execute(runs, options, jobs=options.jobs)
    if options.main and not options.dry_run:
        for run in runs:
            print(f"products of {run.label}: {run.run_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
