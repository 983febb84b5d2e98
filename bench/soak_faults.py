"""Soak the fault tests: run them N times in a row and count the passes (not part of CI).

A fault test that passes by luck is a defect: "every good ScW is delivered"
must hold for any transient fault rate below 1 within the retry budget. Each
round runs the fault tests in one fresh pytest process; the script prints,
per test, how many rounds it passed, and exits with 1 if any round failed.

Run: ``python bench/soak_faults.py`` (``--rounds 20`` by default; ``-k`` to
pick tests by pytest expression).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

log = logging.getLogger("soak_faults")

REPO = Path(__file__).resolve().parents[1]
FAULT_TESTS = (
    "tests/integral_workflows/test_long_term_end_to_end.py::test_faults_at_a_high_rate_still_deliver_every_good_scw",
    "tests/integral_workflows/test_jobs.py::test_faults_at_a_high_rate_lose_no_good_scw",
    "tests/integral_workflows/test_session.py::test_faults_in_transit_at_a_high_rate_still_deliver_everything",
    "tests/integral_workflows/test_session.py::test_a_stalled_job_is_resubmitted_after_the_bound_of_its_size",
    "tests/integral_workflows/test_session.py::test_the_token_stays_out_of_urls_logs_and_records",
)


def one_round(tests: list[str], *, expression: str | None, report: Path) -> dict[str, str]:
    """Run the tests once; test id → ``passed``, ``failed``, ``error`` or ``skipped``."""
    command = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    if expression:
        command += ["-k", expression]
    subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcomes[name] = (
            "failed"
            if "failure" in kinds
            else "error"
            if "error" in kinds
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
    return outcomes


def main() -> int:
    """Run the chosen tests for ``--rounds`` rounds and print each one's passes; return 1 if any round failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("-k", dest="expression", default=None, help="pytest -k expression to pick tests")
    parser.add_argument("tests", nargs="*", default=list(FAULT_TESTS), help="test ids (default: the fault tests)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    passes: dict[str, int] = {}
    failures: dict[str, list[int]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        for round_number in range(1, args.rounds + 1):
            outcomes = one_round(args.tests, expression=args.expression, report=Path(scratch) / "report.xml")
            if not outcomes:
                print("pytest collected no test: check the test ids")
                return 1
            for name, outcome in outcomes.items():
                passes.setdefault(name, 0)
                if outcome == "passed":
                    passes[name] += 1
                else:
                    failures.setdefault(name, []).append(round_number)
            bad = sorted(name for name, outcome in outcomes.items() if outcome != "passed")
            log.info(
                "round %d/%d: %d passed%s",
                round_number,
                args.rounds,
                len(outcomes) - len(bad),
                f", not passed: {', '.join(bad)}" if bad else "",
            )
    print(f"{args.rounds} rounds in {time.perf_counter() - started:.0f} s")
    for name in sorted(passes):
        note = f"  (not passed in rounds {failures[name]})" if name in failures else ""
        print(f"{passes[name]:3d}/{args.rounds} {name}{note}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
