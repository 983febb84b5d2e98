"""The project's declared environment is coherent: ranges in pyproject.toml, exact pins in constraints.txt."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import requests
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from .conftest import REPO


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line.strip())
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["lab"]]


def _constraints() -> dict[str, str]:
    return _pins((REPO / "constraints.txt").read_text().splitlines())


def test_the_package_declares_compatible_ranges_not_exact_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    for requirement in _declared():
        assert not any(spec.operator == "==" for spec in requirement.specifier), (
            f"{requirement}: exact pins belong in constraints.txt"
        )


def test_every_dependency_is_pinned_in_the_constraints_within_its_range():
    pins = _constraints()
    for requirement in _declared():
        name = _canonical(requirement.name)
        assert name in pins, f"{requirement.name} has no exact version in constraints.txt"
        assert requirement.specifier.contains(Version(pins[name]), prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside {requirement.specifier}"
        )


def test_environment_yml_pins_the_constraints_versions():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    conda_pins = _pins(pip_section)
    pins = _constraints()
    assert set(conda_pins) == {_canonical(r.name) for r in _declared()}
    assert {name: pins[name] for name in conda_pins} == conda_pins


def test_make_lab_starts_jupyterlab_on_the_notebooks_with_the_projects_kernel(tmp_path):
    """`make lab` (the README's JupyterLab route) serves JupyterLab, whoever runs it (root included)."""
    venv = Path(sys.prefix)
    log_file = tmp_path / "lab.log"
    command = [
        "make",
        "--no-print-directory",
        "-o",
        str(venv / ".installed"),  # the environment this test runs in is the one to use: never rebuilt here
        "lab",
        f"VENV={venv}",
        "LAB_ARGS=--no-browser --ServerApp.port=0 --IdentityProvider.token=lab-test",
    ]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        url = None
        deadline = time.monotonic() + 120  # a bound for a loaded machine, not a measure of speed
        while url is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            match = re.search(r"(http://(?:localhost|127\.0\.0\.1):\d+)/lab", log_file.read_text())
            url = match.group(1) if match else None
        assert url, log_file.read_text()[-3000:]
        headers = {"Authorization": "token lab-test"}
        assert requests.get(f"{url}/lab", headers=headers, timeout=30).status_code == 200
        kernels = requests.get(f"{url}/api/kernelspecs", headers=headers, timeout=30).json()
        assert Path(kernels["kernelspecs"]["python3"]["spec"]["argv"][0]).parent.parent.resolve() == venv.resolve()
        # it serves the notebooks folder
        contents = requests.get(f"{url}/api/contents", headers=headers, timeout=30).json()
        assert {"mosaic.ipynb", "spectrum.ipynb"} <= {item["name"] for item in contents["content"]}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
