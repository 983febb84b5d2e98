"""``python -m mmoda_local``: see :mod:`mmoda_local.cli`."""

import sys

from .cli import main

sys.exit(main())
