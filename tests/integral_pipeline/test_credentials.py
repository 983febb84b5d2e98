"""The batch's MMODA token: a ``.oda-token`` in the folder the batch starts from reaches every notebook's kernel
(which works in its run folder), by environment only, and is written nowhere."""

from __future__ import annotations

import logging

import pytest

import integral_pipeline
from integral_pipeline import Step
from integral_pipeline.credentials import kernel_environment, locate_token_file
from integral_workflows import provenance

from .helpers import FIXTURES, all_files, crab_file, run, write_file

DISPATCHER_ENV = "WHOAMI_DISPATCHER"  # read by the whoami fixture notebook


@pytest.fixture
def whoami(workflows):
    """The ``whoami`` workflow: one notebook asking a local MMODA for ``inspect-state`` with the token it finds."""
    integral_pipeline.register_workflow(
        "whoami", [Step("whoami", "whoami.ipynb", model="scw_selection")], notebooks_dir=FIXTURES, replace=True
    )
    yield
    integral_pipeline.unregister_workflow("whoami")


def _job_manager_server(server_factory, monkeypatch):
    server = server_factory()
    monkeypatch.setenv(DISPATCHER_ENV, server.url)
    return server


def _answer(result) -> tuple[str, str]:
    status, cwd = (result.run.run_dir / "whoami.txt").read_text(encoding="utf-8").split(maxsplit=1)
    return status, cwd.strip()


def test_a_token_file_in_the_start_folder_reaches_the_server_and_no_file(whoami, tmp_path, server_factory, monkeypatch):
    server = _job_manager_server(server_factory, monkeypatch)
    token = server.token("general,job manager")
    start = tmp_path  # the tests' working folder (conftest): where the batch starts
    (start / ".oda-token").write_text(token + "\n", encoding="utf-8")
    (start / ".oda-token").chmod(0o600)
    out = start / "out"
    results = run([write_file(start, "who", "workflow: whoami\nparameters:\n  src_name: Crab\n  @period\n")], out)
    # The careless notebook prints os.environ['ODA_TOKEN'] and hands it to its step record.
    results += run([write_file(start, "leaky", "workflow: leaky\n")], out)
    assert [result.status for result in results] == ["ok", "ok"], [result.error for result in results]
    status, cwd = _answer(results[0])
    # The kernel worked in the run folder, where there is no .oda-token, and still held the token.
    assert cwd == str(results[0].run.run_dir.resolve()) and not (results[0].run.run_dir / ".oda-token").exists()
    assert status == "200"
    files = all_files(out)
    assert len(files) > 8
    offenders = [path for path in files if token.encode() in path.read_bytes()]
    assert offenders == []
    leaky = results[1].run.run_dir
    assert provenance.REDACTED in (leaky / "01_leaky.ipynb").read_text(encoding="utf-8")


def test_without_a_token_the_same_run_is_anonymous_and_refused(whoami, tmp_path, server_factory, monkeypatch):
    _job_manager_server(server_factory, monkeypatch)
    [result] = run(
        [write_file(tmp_path, "who", "workflow: whoami\nparameters:\n  src_name: Crab\n  @period\n")], tmp_path
    )
    assert result.status == "ok" and _answer(result)[0] == "403"


def test_oda_token_in_the_environment_wins_over_the_start_folder(whoami, tmp_path, server_factory, monkeypatch):
    server = _job_manager_server(server_factory, monkeypatch)
    stranger = server_factory()  # another server's secret: a well-formed token this server refuses
    (tmp_path / ".oda-token").write_text(stranger.token("general,job manager"), encoding="utf-8")
    monkeypatch.setenv("ODA_TOKEN", server.token("general,job manager"))
    assert locate_token_file() is None
    [result] = run(
        [write_file(tmp_path, "who", "workflow: whoami\nparameters:\n  src_name: Crab\n  @period\n")], tmp_path
    )
    assert result.status == "ok" and _answer(result)[0] == "200"


def test_the_token_file_is_located_where_the_batch_starts_then_home(tmp_path, server_factory, monkeypatch):
    server = server_factory()
    assert locate_token_file() is None  # none anywhere: anonymous
    home_token = server.token("general")
    (tmp_path / "home" / ".oda-token").write_text(home_token, encoding="utf-8")
    assert locate_token_file() == (tmp_path / "home" / ".oda-token").resolve()
    (tmp_path / ".oda-token").write_text(server.token("general,job manager"), encoding="utf-8")
    assert locate_token_file() == (tmp_path / ".oda-token").resolve()
    assert kernel_environment(tmp_path / "home" / ".oda-token") == {"ODA_TOKEN": home_token}
    assert kernel_environment(None) == {}


def test_an_unreadable_token_file_leaves_the_kernel_to_find_its_own(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="integral_pipeline.credentials"):
        assert kernel_environment(tmp_path / "gone" / ".oda-token") == {}
    assert "cannot read the MMODA token file" in caplog.text


def test_only_the_token_files_path_is_handed_to_the_runs(tmp_path, server_factory, monkeypatch, workflows):
    token = server_factory().token("general")
    (tmp_path / ".oda-token").write_text(token, encoding="utf-8")
    seen = {}

    def fake_execute_run(run, **options):
        seen.update(options)
        return integral_pipeline.run.RunResult(run=run, status="ok")

    monkeypatch.setattr(integral_pipeline.batch, "execute_run", fake_execute_run)
    run([crab_file(tmp_path)], tmp_path / "out")
    assert seen["token_file"] == str((tmp_path / ".oda-token").resolve())
    assert token not in repr(seen)
