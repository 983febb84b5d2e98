"""``python -m integral_pipeline``: ``run_all.py``'s command line (project: ``--project``, the setting, or here)."""

import sys

from .cli import main

sys.exit(main())
