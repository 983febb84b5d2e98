"""Stand-in for the real dispatcher's package name, for oda_api's own tests only.

oda_api 1.3.5's ``tests/conftest.py``, ``test_basic.py`` and ``test_cli.py``
import their fixtures from ``cdci_data_analysis.pytest_fixtures`` (the real
dispatcher, dispatcher-app, which is not installable here). This package sits
on the ``PYTHONPATH`` of the conformance run only (see
``tests/conformance/test_oda_api_suite.py``) and gives those fixtures the same
names and meanings, backed by the local MMODA instead of a dispatcher
subprocess. It contains no dispatcher code.
"""
