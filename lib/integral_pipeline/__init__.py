"""The batch pipeline: parameter files → validated runs → notebooks executed by papermill → run folders, on Dask.

Typical use (what ``run_all.py`` does)::

    from integral_pipeline import Project, plan_runs, execute_runs, format_summary
    runs = plan_runs(["main"], project=Project.at("."))
    print(format_summary(execute_runs(runs)))          # or execute_runs(runs, client=dask_client)

The science library (:mod:`integral_workflows`) knows nothing of this package. Design notes:
``docs/pipeline.md``.
"""

from . import builtin  # noqa: F401 - registers the suite's workflows
from .batch import execute_runs
from .errors import PlanError
from .hooks import GALLERY_UPLOAD, Hook, StepContext
from .manifest import Manifest, StepEntry, load_manifest
from .plan import PlannedRun, PlannedStep, plan_runs
from .project import Project
from .report import describe_parameter_files, describe_workflows, format_plan, format_summary, preview_run
from .rerun import plan_rerun
from .run import RunResult, execute_run
from .spec import parse_override
from .workflows import (
    Step,
    Upstream,
    Workflow,
    get_workflow,
    register_workflow,
    registered_workflows,
    unregister_workflow,
)

__all__ = [
    "PlanError",
    "Project",
    "Step",
    "Upstream",
    "Workflow",
    "Hook",
    "StepContext",
    "GALLERY_UPLOAD",
    "register_workflow",
    "unregister_workflow",
    "registered_workflows",
    "get_workflow",
    "parse_override",
    "PlannedRun",
    "PlannedStep",
    "plan_runs",
    "plan_rerun",
    "RunResult",
    "execute_run",
    "execute_runs",
    "Manifest",
    "StepEntry",
    "load_manifest",
    "preview_run",
    "format_plan",
    "format_summary",
    "describe_workflows",
    "describe_parameter_files",
]
