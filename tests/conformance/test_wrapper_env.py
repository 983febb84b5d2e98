"""How the environment of oda-integral-wrapper finds its Python >= 3.13 (tests/conformance/wrapper_env.py)."""

from __future__ import annotations

import sys

import pytest

from tests.conformance import wrapper_env


def test_no_python_313_is_an_error_that_names_what_was_tried(monkeypatch, tmp_path):
    """Without a Python >= 3.13 the build fails with a message listing the candidates (the wrapper tests then fail)."""
    missing = str(tmp_path / "no-such-python3.13")
    monkeypatch.setattr(wrapper_env, "candidate_pythons", lambda: [missing, sys.executable])
    with pytest.raises(wrapper_env.WrapperEnvError) as raised:
        wrapper_env.find_python(minimum=(sys.version_info.major, sys.version_info.minor + 1))
    message = str(raised.value)
    assert "no Python >=" in message and "oda-integral-wrapper 1.5.19 needs it" in message
    assert f"{missing} -> does not run" in message
    assert f"{sys.executable} -> {sys.version_info.major}.{sys.version_info.minor}" in message
    # the build itself, with no usable candidate at all (the running Python may be >= 3.13 itself)
    monkeypatch.setattr(wrapper_env, "candidate_pythons", lambda: [missing])
    monkeypatch.delenv(wrapper_env.PYTHON_ENV, raising=False)
    with pytest.raises(wrapper_env.WrapperEnvError):
        wrapper_env.ensure_wrapper_env(tmp_path / "venv-never-built")
    assert not (tmp_path / "venv-never-built").exists()


def test_the_lowest_suitable_version_wins_unless_one_is_named(monkeypatch, tmp_path):
    """The pins were resolved on 3.13: the lowest version >= the minimum is taken, or the one named explicitly."""
    versions = {"/opt/py-a": (3, 14, 1), "/opt/py-b": (3, 13, 2), "/opt/py-c": (3, 11, 7)}
    monkeypatch.setattr(wrapper_env, "_version_of", versions.get)
    monkeypatch.setattr(wrapper_env, "candidate_pythons", lambda: list(versions))
    monkeypatch.delenv(wrapper_env.PYTHON_ENV, raising=False)
    assert wrapper_env.find_python() == ("/opt/py-b", (3, 13, 2))

    monkeypatch.setenv(wrapper_env.PYTHON_ENV, "/opt/py-a")
    assert wrapper_env.find_python() == ("/opt/py-a", (3, 14, 1))


def test_candidates_skip_a_pyenv_shim_that_does_not_run():
    """A pyenv shim on PATH whose version is not enabled exits non-zero: it is not taken for a Python."""
    assert wrapper_env._version_of(sys.executable)[:2] == sys.version_info[:2]
    assert wrapper_env._version_of("/bin/false") is None
