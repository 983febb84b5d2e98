"""The project's declared environment is coherent: ranges in pyproject.toml, exact pins in constraints.txt."""

from __future__ import annotations

import re
import tomllib

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
