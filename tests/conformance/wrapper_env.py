"""Build the second virtual environment that runs oda-integral-wrapper 1.5.19 (it needs Python >= 3.13).

The project runs on Python 3.11; the MMODA team's ``oda-integral-wrapper`` (the library behind the MMODA gallery
notebooks) requires Python >= 3.13. This module finds such an interpreter on the machine and makes
``.venv-wrapper/`` at the repository root with the exact versions of ``wrapper-constraints.txt``. It only uses the
standard library, so it runs under any Python (the Makefile calls it with the project's 3.11).

Usage::

    python tests/conformance/wrapper_env.py            # build (or reuse) .venv-wrapper/, print its python
    python tests/conformance/wrapper_env.py --find     # only say which Python >= 3.13 would be used

The interpreter is looked for, in this order: ``$ODA_WRAPPER_PYTHON``; ``python3.13``, ``python3.14``, ``python3``
on PATH; ``$(pyenv root)/versions/3.1[3-9]*/bin/python``; ``~/.pyenv`` and ``/root/.pyenv`` alike. Each candidate is
run to read its version (a pyenv shim that is on PATH but not enabled fails and is passed over); the lowest version
>= 3.13 wins, as the pins were resolved on 3.13. When none is found, :class:`WrapperEnvError` says so.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
#: Where the environment is built (ignored by git).
DEFAULT_VENV = REPO / ".venv-wrapper"
CONSTRAINTS = Path(__file__).resolve().parent / "wrapper-constraints.txt"
#: What is installed; every other package comes pinned from the constraints file. ``decorator`` is imported by the
#: wrapper's ``catalog`` module (``get_oda_catalog_from_region_string``) but not declared by the wheel: the gallery's
#: Jupyter environments have it through IPython.
REQUIREMENTS = ("oda-integral-wrapper==1.5.19", "oda-api==1.3.5", "decorator==5.3.1")
MINIMUM_VERSION = (3, 13)
#: Environment variable naming an interpreter to use instead of searching.
PYTHON_ENV = "ODA_WRAPPER_PYTHON"
STAMP_NAME = ".installed.json"
#: Bound of the whole build (venv + pip install from the registry); measured at ~50 s on a 2-core machine.
BUILD_TIMEOUT_S = 900


class WrapperEnvError(RuntimeError):
    """No usable Python >= 3.13, or the environment could not be built."""


def _version_of(python: str) -> tuple[int, int, int] | None:
    """Run ``python`` to read its version; None if it does not run (e.g. a disabled pyenv shim)."""
    try:
        completed = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    try:
        major, minor, micro = (int(part) for part in completed.stdout.split())
    except ValueError:
        return None
    return major, minor, micro


def _pyenv_roots() -> list[Path]:
    roots = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            completed = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30, check=False)
            if completed.returncode == 0 and completed.stdout.strip():
                roots.append(Path(completed.stdout.strip()))
        except (OSError, subprocess.TimeoutExpired):
            pass
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    roots += [Path.home() / ".pyenv", Path("/root/.pyenv")]
    unique = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def candidate_pythons() -> list[str]:
    """Interpreters worth trying, in the order of the module docstring (not yet checked)."""
    names = []
    if os.environ.get(PYTHON_ENV):
        names.append(os.environ[PYTHON_ENV])
    for name in ("python3.13", "python3.14", "python3"):
        found = shutil.which(name)
        if found:
            names.append(found)
    for root in _pyenv_roots():
        names += sorted(glob.glob(str(root / "versions" / "3.1[3-9]*" / "bin" / "python")))
    unique = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique


def find_python(*, minimum: tuple[int, int] = MINIMUM_VERSION) -> tuple[str, tuple[int, int, int]]:
    """Return a Python >= ``minimum`` found on this machine and its version.

    Parameters
    ----------
    minimum : tuple of int, optional
        Lowest acceptable ``(major, minor)``.

    Returns
    -------
    (str, tuple of int)
        Path of the interpreter and its ``(major, minor, micro)``. An explicit ``$ODA_WRAPPER_PYTHON`` wins;
        otherwise the lowest acceptable version.

    Raises
    ------
    WrapperEnvError
        If no candidate runs with a version >= ``minimum``; the message lists what was tried.
    """
    tried = []
    usable = []
    for order, python in enumerate(candidate_pythons()):
        version = _version_of(python)
        tried.append(f"{python} -> {'.'.join(map(str, version)) if version else 'does not run'}")
        if version is not None and version[:2] >= tuple(minimum):
            explicit = python == os.environ.get(PYTHON_ENV)
            usable.append((not explicit, version, order, python))
    if not usable:
        wanted = ".".join(map(str, minimum))
        raise WrapperEnvError(
            f"no Python >= {wanted} found on this machine; oda-integral-wrapper 1.5.19 needs it. Tried: "
            + ("; ".join(tried) if tried else "nothing (no python3.13 on PATH, no pyenv versions)")
            + f". Install one (e.g. `pyenv install 3.13`) or name it in ${PYTHON_ENV}."
        )
    _, version, _, python = min(usable)
    return python, version


def _stamp_content(python: str, version: tuple[int, int, int]) -> dict:
    return {
        "requirements": list(REQUIREMENTS),
        "constraints_sha256": hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest(),
        "base_python": python,
        "base_version": ".".join(map(str, version)),
    }


def venv_python(venv: Path = DEFAULT_VENV) -> Path:
    """The interpreter of a built environment."""
    return Path(venv) / "bin" / "python"


def ensure_wrapper_env(venv: Path | str = DEFAULT_VENV, *, timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """Build ``venv`` with the pinned oda-integral-wrapper unless it is already built from the same pins.

    Parameters
    ----------
    venv : Path or str, optional
        Folder of the environment (default ``.venv-wrapper/`` at the repository root).
    timeout_s : float, optional
        Bound of the build; a build that takes longer fails.

    Returns
    -------
    Path
        The environment's Python.

    Raises
    ------
    WrapperEnvError
        No Python >= 3.13 on the machine, or ``venv``/``pip`` failed (the message holds pip's last lines).
    """
    venv = Path(venv)
    python, version = find_python()
    wanted = _stamp_content(python, version)
    stamp = venv / STAMP_NAME
    venv.parent.mkdir(parents=True, exist_ok=True)
    # two test processes may ask at once: one builds, the other waits and reuses
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and venv_python(venv).exists():
            recorded = json.loads(stamp.read_text())
            if all(recorded.get(key) == value for key, value in wanted.items()):
                return venv_python(venv)
        started = time.monotonic()
        if venv.exists():
            shutil.rmtree(venv)
        log.info("building %s from %s (Python %s)", venv, python, wanted["base_version"])
        steps = [
            [python, "-m", "venv", str(venv)],
            [
                str(venv_python(venv)),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "-c",
                str(CONSTRAINTS),
                *REQUIREMENTS,
            ],
        ]
        for step in steps:
            left = timeout_s - (time.monotonic() - started)
            try:
                completed = subprocess.run(step, capture_output=True, text=True, timeout=max(left, 1), check=False)
            except subprocess.TimeoutExpired as exc:
                raise WrapperEnvError(f"building {venv} took more than {timeout_s:.0f} s at: {' '.join(step)}") from exc
            if completed.returncode != 0:
                tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
                raise WrapperEnvError(f"building {venv} failed at: {' '.join(step)}\n{tail}")
        build_s = time.monotonic() - started
        stamp.write_text(
            json.dumps(
                {
                    **wanted,
                    "build_seconds": round(build_s, 1),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=1,
            )
        )
        log.info("built %s in %.1f s", venv, build_s)
        return venv_python(venv)


def main(argv: list[str] | None = None) -> int:
    """Command line: build (default) or only find (``--find``); exit 1 with the reason on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="folder of the environment")
    parser.add_argument("--find", action="store_true", help="only report the Python >= 3.13 that would be used")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.find:
            python, version = find_python()
            log.info("%s (Python %s)", python, ".".join(map(str, version)))
            return 0
        python = ensure_wrapper_env(args.venv)
    except WrapperEnvError as exc:
        log.error("%s", exc)
        return 1
    info = json.loads((args.venv / STAMP_NAME).read_text())
    log.info("%s ready (built in %s s from %s)", python, info.get("build_seconds"), info["base_python"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
