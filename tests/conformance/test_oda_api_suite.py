"""oda_api 1.3.5's own tests, unmodified, against the local MMODA.

Code nobody here wrote decides whether the local MMODA behaves like the real
dispatcher: the tests of oda_api that address a dispatcher by URL
(``test_live.py``, ``test_basic.py``, ``test_cli.py``, vendored unmodified in
``tests/data/oda_api_tests/``) run in a pytest subprocess with
``--run-live --run-slow``, their dispatcher fixtures served by local MMODA
servers and the production URLs that ``test_live.py`` hard-codes redirected to
a local server (``oda_api_harness/``), with no network at all. Every test they
hold runs, except those listed in :data:`EXCLUDED` with the reason; any failure,
error or skip of the others fails this test, which names them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

log = logging.getLogger(__name__)

VENDORED = REPO / "tests" / "data" / "oda_api_tests"
HARNESS = Path(__file__).resolve().parent / "oda_api_harness"
MODULES = ("test_live.py", "test_basic.py", "test_cli.py")
#: Wall-clock limit of the whole upstream run; its slowest tests compute ISGRI images in a few seconds each.
SUITE_TIMEOUT_S = 1500
#: Limit per upstream test (pytest-timeout): a hung test must fail, not stall the run.
UPSTREAM_TEST_TIMEOUT_S = 300

_SCRATCH = "reads the scratch_sid_*_jid_* folders that the real dispatcher writes in its working folder"
_OSA11_0 = (
    "osa_version OSA11.0 is refused by the current INTEGRAL plugin before any analysis "
    '(dispatcher-plugin-integral osa_common_pars.py OSAVersion: "Please note OSA11.0 is being phased '
    'out...", asserted by its own tests/test_authorization.py::test_osa_versions): the test fails against '
    "the real current service too"
)

#: Upstream tests that are not run, with why (test id ``module.py::name`` covers all its parameters).
EXCLUDED = {
    "test_live.py::test_remote_301_post": "checks the 301 http->https redirect of the production web server in front of the dispatcher "
    "(http://www.astro.unige.ch), a property of that front server, not of the dispatcher; it also asks "
    "osa_version OSA11.1, refused by the current INTEGRAL plugin",
    "test_live.py::test_peculiar_request_causing_pickling_problem": "addresses the internal staging host http://dispatcher.staging.internal.odahub.io, and "
    + _OSA11_0,
    "test_basic.py::test_show_product": "asks isgri_lc as a Dummy query with "
    + _OSA11_0
    + "; it also expects the plugin's dummy light curve "
    "of OAO 1657-415",
    "test_basic.py::test_job_id_data_collection": _SCRATCH + " (query_output.json)",
    "test_basic.py::test_oda_api_code": _SCRATCH + " (query_output.json, for the api_code)",
    "test_basic.py::test_dry_run_param": _SCRATCH + " (query_output.json)",
    "test_basic.py::test_progress": _SCRATCH + " (DispatcherJobState.load_job_state_record reads the job "
    "monitor files there)",
    "test_cli.py::test_inspect_state": _SCRATCH + " (it deletes analysis_parameters.json in the first one)",
    "test_live.py::test_large_request": "sends scw_list as one string and expects analysis_parameters to echo that string "
    "(returned_analysis_parameters_consistency compares str() of both), but the real dispatcher returns a "
    "one-value scw_list as a list: captured exchange s4 (tests/data/dispatcher-captures, dispatcher-app HEAD) "
    'sends scw_list=\'066500220010.001\' and gets "scw_list": ["066500220010.001"], so the test fails '
    "against the real current dispatcher too; the local MMODA answers the same, and the rest of the test "
    "(a 4800-character ScW id sent by POST to a Dummy query) is checked in "
    "tests/mmoda_local/test_job_semantics.py::test_dummy_queries_accept_any_scw_id",
}


def vendored_checksums() -> dict[str, str]:
    """File name → expected SHA-256 of the vendored upstream files."""
    lines = (VENDORED / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def test_vendored_upstream_tests_are_unmodified():
    checksums = vendored_checksums()
    assert set(MODULES) | {"conftest.py", "pytest.ini", "LICENSE.rst"} <= set(checksums)
    changed = [
        name
        for name, digest in checksums.items()
        if hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() != digest
    ]
    assert not changed, f"vendored oda_api files differ from oda_api 1.3.5: {changed}"


def upstream_test_functions() -> set[str]:
    """``module.py::test_name`` of every test function the vendored modules define."""
    found = set()
    for name in MODULES:
        tree = ast.parse((VENDORED / name).read_text())
        found |= {
            f"{name}::{node.name}"
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    return found


def run_upstream_suite(work: Path, archive_cache: Path) -> dict:
    """Run the vendored tests in a pytest subprocess; return the harness's report."""
    run_dir = work / "oda_api"
    (run_dir / "tests").mkdir(parents=True)
    for name in ("conftest.py",) + MODULES:
        shutil.copy2(VENDORED / name, run_dir / "tests" / name)
    shutil.copy2(VENDORED / "pytest.ini", run_dir / "pytest.ini")
    exclusions = work / "exclusions.json"
    exclusions.write_text(json.dumps(EXCLUDED, indent=1))
    report_path = work / "report.json"
    home = work / "upstream-home"  # the upstream fixtures delete ~/.oda-token: a HOME of their own
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ODA_TOKEN", "PYTEST_ADDOPTS", "MMODA_LOCAL_HOME")
    }
    env.update(
        HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(HARNESS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OPENBLAS_NUM_THREADS="1",
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        *[f"tests/{name}" for name in MODULES],
        "-p",
        "mmoda_conformance",
        "-p",
        "no:cacheprovider",
        "--run-live",
        "--run-slow",
        "--mmoda-exclusions",
        str(exclusions),
        "--mmoda-report",
        str(report_path),
        "--mmoda-archive-cache",
        str(archive_cache),
        "--mmoda-sites-file",
        str(VENDORED / "oda-sites.ttl"),
        "-o",
        f"timeout={UPSTREAM_TEST_TIMEOUT_S}",
        "-q",
        "-rfEs",
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",
    ]
    completed = subprocess.run(command, cwd=run_dir, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S)
    (work / "pytest-output.txt").write_text(completed.stdout + completed.stderr)
    if not report_path.exists():
        pytest.fail(
            f"the upstream run wrote no report (exit {completed.returncode}):\n"
            f"{(completed.stdout + completed.stderr)[-5000:]}"
        )
    report = json.loads(report_path.read_text())
    report["pytest_tail"] = (completed.stdout + completed.stderr)[-3000:]
    return report


def outcome_table(report: dict) -> str:
    """Markdown table: upstream test | result | exclusion reason."""
    rows = [f"| {test} | {outcome} | |" for test, outcome in sorted(report["outcomes"].items())]
    rows += [f"| {test} | excluded | {report['excluded'][test]} |" for test in sorted(report["excluded"])]
    return "\n".join(["| upstream test | result | exclusion reason |", "|---|---|---|", *rows])


@pytest.mark.timeout(SUITE_TIMEOUT_S + 60)
def test_oda_api_own_tests_pass_against_the_local_mmoda(tmp_path, archive_cache):
    report = run_upstream_suite(tmp_path, archive_cache)
    log.info("oda_api 1.3.5 tests against the local MMODA:\n%s", outcome_table(report))
    outcomes = report["outcomes"]

    assert not report["unmatched_exclusions"], (
        f"exclusions that match no upstream test (stale list): {report['unmatched_exclusions']}"
    )
    ran_modules = {test.split("::")[0] for test in outcomes}
    assert ran_modules == set(MODULES), f"upstream modules that ran: {sorted(ran_modules)}"
    # every test function of the vendored modules is accounted for: it ran, or it is excluded with a reason
    accounted = {test.split("[")[0] for test in list(outcomes) + list(report["excluded"])}
    missing = sorted(upstream_test_functions() - accounted)
    assert not missing, f"upstream tests neither run nor excluded: {missing}"

    # the production URL that test_live.py hard-codes was served by the local MMODA, and nothing left the loopback
    network = report["network"]
    assert network["redirected_to_local_production"] > 0, network
    assert network["refused"] == 0, f"upstream tests tried to reach the network: {network}"

    not_passed = {test: outcome for test, outcome in outcomes.items() if outcome != "passed"}
    details = "\n\n".join(
        f"--- {test}: {outcome}\n{report['failures'].get(test, '')[:3000]}"
        for test, outcome in sorted(not_passed.items())
    )
    assert not not_passed, (
        f"{len(not_passed)} of {len(outcomes)} applicable oda_api 1.3.5 tests did not pass "
        f"against the local MMODA: {sorted(not_passed)}\n\n{details}"
    )
    assert report["exitstatus"] == 0, report["pytest_tail"]
