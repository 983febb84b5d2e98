#!/usr/bin/env python3
r"""Run the INTEGRAL workflows: parameter files in, run folders of executed notebooks and products out.

A thin command line over :mod:`integral_pipeline` (its ``cli.main``), with this folder as
the project (``notebooks/``, ``parameters/``, ``outputs/``). Design notes: ``docs/pipeline.md``.

Usage::

    python run_all.py                       # every parameters/*.yaml
    python run_all.py crab parameters/x.yaml -p T2 2005-01-01T00:00:00 -j 2
    python run_all.py --dry-run crab        # validate and show the plan, execute nothing
    python run_all.py --list                # workflows and parameter files
    python run_all.py --main                # parameters/main.yaml (what `make run` does)
    python run_all.py main --scheduler tcp://cluster:8786
    python run_all.py rerun outputs/long_term/Crab/isgri_28-40keV_2004-01-01_2006-01-01/03_lightcurve.ipynb \\
        -p E1_keV 30

Exit status: 0 when every run succeeded, 1 when a run failed (the others still ran), 2 when
nothing was executed because a parameter file, a parameter or a notebook is invalid (or the
command line is).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent

try:
    from integral_pipeline import cli
except ImportError:  # a source tree that was never `pip install -e .`-ed
    sys.path.insert(0, str(PROJECT_ROOT / "lib"))
    # Dask worker processes and notebook kernels need it too.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "lib"), os.environ.get("PYTHONPATH")]))
    from integral_pipeline import cli


def main(argv: list[str] | None = None) -> int:
    """Run the command line with this folder as the project; return the exit status (0, 1 or 2)."""
    return cli.main(argv, project_root=PROJECT_ROOT)


if __name__ == "__main__":
    sys.exit(main())
