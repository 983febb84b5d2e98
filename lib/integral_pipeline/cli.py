"""The command line of the pipeline (``run_all.py`` is a thin script over :func:`main`).

Exit status: 0 when every run succeeded, 1 when a run failed (the others still ran), 2 when
nothing was executed because a parameter file, a parameter or a notebook is invalid (or the
command line is).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .batch import execute_runs
from .errors import PlanError
from .manifest import OK
from .plan import PlannedRun, plan_runs
from .progress import Progress
from .project import PROJECT_ENV, Project
from .report import describe_parameter_files, describe_workflows, format_plan, format_summary
from .rerun import plan_rerun
from .spec import parse_override

log = logging.getLogger(__name__)

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_INVALID", "build_parser", "build_rerun_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
MAIN_PARAMETER_FILE_NAME = "main.yaml"


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameter in every run (VALUE read with the parameter files' YAML rules: "
        "quote '0044'); repeatable; a name no step of the workflow declares is refused",
    )
    parser.add_argument(
        "--output-root",
        type=Path,
        default=None,
        help="root of the run folders (default: <project>/outputs; for rerun: the parent's root)",
    )
    parser.add_argument("--force", action="store_true", help="execute every step, even those up to date")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the plan (runs, folders, steps), execute nothing"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs executed at once, on a local Dask cluster of N worker processes (default: as many "
        "as CPUs and runs; a single run executes in this process); 0: in this process",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="execute on an existing Dask cluster (tcp://host:8786 or a scheduler file); its workers "
        "must see the project and the output folder at the same paths",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it shows on a terminal only)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="copy the notebooks' output to the log (papermill log_output) and log more",
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=None,
        help=f"the project folder (notebooks/, parameters/, outputs/); default: run_all.py's folder, "
        f"${PROJECT_ENV} or the working folder",
    )
    parser.add_argument(
        "--workflow-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (dotted name or .py file) that registers more workflows with "
        "integral_pipeline.register_workflow; repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``run_all.py [NAMES...]`` (``rerun`` has its own, see :func:`build_rerun_parser`)."""
    parser = argparse.ArgumentParser(
        prog="run_all.py",
        description="Run workflows of notebooks over parameter files (parameters/*.yaml). "
        "'run_all.py rerun NOTEBOOK -p NAME VALUE' reruns an archived executed notebook with new parameters.",
        epilog="exit status: 0 all runs ok, 1 a run failed, 2 invalid input (nothing executed)",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="parameter files: names in parameters/ (crab = parameters/crab.yaml) or paths; "
        "default: every parameters/*.yaml",
    )
    parser.add_argument("--list", action="store_true", help="list the workflows and parameter files, and exit")
    parser.add_argument(
        "--main",
        action="store_true",
        help="run parameters/main.yaml and say where the products are (what `make run` does)",
    )
    _common_options(parser)
    return parser


def build_rerun_parser() -> argparse.ArgumentParser:
    """Return the parser of ``run_all.py rerun NOTEBOOK [-p NAME VALUE]...``."""
    parser = argparse.ArgumentParser(
        prog="run_all.py rerun",
        description="Rerun an archived executed notebook (NN_<step>.ipynb in a run "
        "folder) with changed parameters into a new run folder that records its parent.",
    )
    parser.add_argument("notebook", type=Path, help="the archived executed notebook")
    _common_options(parser)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # papermill logs every notebook it opens at INFO; its cell output (log_output) is only wanted with -v.
    logging.getLogger("papermill").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("traitlets", "asyncio", "urllib3", "matplotlib", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _quiet_dask(verbose)


def _quiet_dask(verbose: bool) -> None:
    """Dask's own INFO lines (workers starting, closing) say nothing about the runs: warnings and errors only."""
    import dask

    # distributed sets its loggers' levels from this configuration when it is imported (here or in workers).
    dask.config.set({"logging.distributed": "info" if verbose else "error"})
    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.ERROR)


def _import_workflow_modules(names: list[str]) -> None:
    for name in names:
        if name.endswith(".py"):
            path = Path(name).resolve()
            spec = importlib.util.spec_from_file_location(f"_run_all_workflows_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise PlanError(f"--workflow-module {name}: cannot be imported")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            # Workers cannot import a file by that name: hooks and folder namers defined there travel by value.
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)
        else:
            importlib.import_module(name)


def _overrides(pairs: list[list[str]]) -> dict:
    return dict(parse_override(name, value) for name, value in pairs)


def _report_invalid(error: Exception) -> int:
    print(f"run_all.py: nothing executed:\n{error}", file=sys.stderr)
    return EXIT_INVALID


@contextlib.contextmanager
def _dask_client(options: argparse.Namespace, runs: list[PlannedRun]) -> Iterator[object]:
    """Yield the Dask client the runs execute on, or None to execute them in this process."""
    if options.scheduler:
        from .clusters import connect

        client = connect(options.scheduler)
        print(f"Dask scheduler {options.scheduler}; dashboard: {client.dashboard_link}", flush=True)
        try:
            yield client
        finally:
            client.close()
        return
    workers = options.jobs
    if workers is None:
        workers = min(os.cpu_count() or 1, len(runs))
        workers = 0 if workers <= 1 else workers
    if workers == 0:
        yield None
        return
    from distributed import Client

    from .clusters import local_cluster

    with local_cluster(workers) as cluster, Client(cluster) as client:
        dashboard = client.dashboard_link if cluster.dashboard_link else "none (install bokeh for it)"
        print(f"local Dask cluster of {workers} worker process(es); dashboard: {dashboard}", flush=True)
        yield client


def _execute(runs: list[PlannedRun], options: argparse.Namespace) -> int:
    if options.dry_run:
        print(format_plan(runs, force=options.force))
        return EXIT_OK
    with _dask_client(options, runs) as client, Progress(runs, bar=False if options.no_progress else None) as progress:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            results = execute_runs(
                runs, client=client, force=options.force, log_output=options.verbose, reporter=progress
            )
    print()
    print(format_summary(results))
    return EXIT_OK if all(result.status == OK for result in results) else EXIT_FAILED


def _rerun(argv: list[str], project_root: Path | None) -> int:
    options = build_rerun_parser().parse_args(argv)
    _configure_logging(options.verbose)
    project = _project(options, project_root)
    try:
        _import_workflow_modules(options.workflow_module)
        run = plan_rerun(
            options.notebook, overrides=_overrides(options.parameter), output_root=options.output_root, project=project
        )
    except PlanError as error:
        return _report_invalid(error)
    status = _execute([run], options)
    if not options.dry_run:
        print(f"rerun folder: {run.run_dir}")
    return status


def _project(options: argparse.Namespace, project_root: Path | None) -> Project:
    if options.project is not None:
        return Project.at(options.project)
    if project_root is not None:
        return Project.at(project_root)
    return Project.from_setting()


def main(argv: list[str] | None = None, *, project_root: str | Path | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (``sys.argv[1:]`` by default).
    project_root : str or Path, optional
        The project folder (``run_all.py`` passes its own); ``--project`` wins over it, and
        without either ``$INTEGRAL_PIPELINE_PROJECT`` or the working folder is used.

    Returns
    -------
    int
        0 all runs ok, 1 a run failed, 2 invalid input (nothing executed).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    project_root = Path(project_root) if project_root is not None else None
    if argv and argv[0] == "rerun":
        return _rerun(argv[1:], project_root)
    parser = build_parser()
    options = parser.parse_args(argv)
    _configure_logging(options.verbose)
    if options.jobs is not None and options.jobs < 0:
        parser.error("--jobs must be 0 (this process) or more")
    project = _project(options, project_root)
    try:
        _import_workflow_modules(options.workflow_module)
    except PlanError as error:
        return _report_invalid(error)
    if options.list:
        print(describe_workflows(project=project))
        print()
        print(describe_parameter_files(project=project))
        return EXIT_OK
    if options.main:
        if options.names:
            parser.error("--main runs parameters/main.yaml: give no NAME with it")
        main_file = project.parameters_dir / MAIN_PARAMETER_FILE_NAME
        if not main_file.is_file():
            print(
                f"run_all.py: {project.display(main_file)} does not exist: it defines the main run of `make run` "
                f"(see docs/pipeline.md for its format)",
                file=sys.stderr,
            )
            return EXIT_INVALID
        names = [str(main_file)]
    else:
        names = options.names or sorted(str(path) for path in project.parameters_dir.glob("*.yaml"))
        if not names:
            print(
                f"run_all.py: no parameter file given and none in {project.display(project.parameters_dir)}",
                file=sys.stderr,
            )
            return EXIT_INVALID
    try:
        runs = plan_runs(
            names, overrides=_overrides(options.parameter), output_root=options.output_root, project=project
        )
    except PlanError as error:
        return _report_invalid(error)
    status = _execute(runs, options)
    if options.main and not options.dry_run:
        for run in runs:
            print(f"products of {run.label}: {run.run_dir}")
    return status
