"""HEASARC's fitsverify on products (Debian package ``fitsverify``, installed by ``.ci/run``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


def fitsverify_counts(path: Path) -> tuple[int, int, str]:
    """(warnings, errors, report) of HEASARC's fitsverify on one file."""
    executable = shutil.which("fitsverify")
    # never skipped: CI installs it (.ci/run, Debian package fitsverify); a machine without it fails here, saying so
    assert executable, "fitsverify is not installed: apt-get install fitsverify (Debian), as .ci/run does"
    report = subprocess.run([executable, str(path)], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r"Verification found (\d+) warning\(s\) and (\d+) error\(s\)", report)
    assert found, f"no verdict from fitsverify on {path.name}:\n{report[-2000:]}"
    return int(found.group(1)), int(found.group(2)), report


def assert_fitsverify_clean(paths: Iterable[Path]) -> None:
    """Every file has 0 warnings and 0 errors (the reports of those that do not are shown)."""
    paths = list(paths)
    assert paths, "no FITS product to verify"
    problems = {}
    for path in paths:
        n_warnings, n_errors, report = fitsverify_counts(path)
        if n_warnings or n_errors:
            problems[path.name] = report[-3000:]
    assert not problems, "\n\n".join(f"{name}:\n{text}" for name, text in problems.items())
