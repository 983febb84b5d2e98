"""Run every benchmark of ``bench/`` (the ``bench_*.py`` scripts), one after the other (what ``make bench`` does).

Each script prints its figures with their ratio to a baseline measured in the same run; this
runner prints each script's output as it comes, then a table of scripts, exit statuses and
wall times. Soak scripts (``soak_*.py``) are long stress runs, not benchmarks: run them by hand.

Run: ``python bench/run_all_benchmarks.py [--only pipeline] [--skip long_term]``.
Exit status: 0 when every script succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def benchmarks(only: list[str], skip: list[str]) -> list[Path]:
    """Return the benchmark scripts (``bench_<name>.py``), filtered by name."""
    scripts = sorted(BENCH.glob("bench_*.py"))
    names = {path.stem.removeprefix("bench_"): path for path in scripts}
    unknown = [name for name in [*only, *skip] if name not in names]
    if unknown:
        raise SystemExit(f"no benchmark {', '.join(unknown)}; there are: {', '.join(names)}")
    return [path for name, path in names.items() if (not only or name in only) and name not in skip]


def main() -> int:
    """Run the benchmarks; return 0 if every one succeeded, else 1."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this benchmark")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="do not run this benchmark")
    parser.add_argument("--timeout", type=float, default=3600.0, help="longest run of one script, in seconds")
    args = parser.parse_args()
    outcomes = []
    for script in benchmarks(args.only, args.skip):
        print(f"\n=== {script.name} ===", flush=True)
        started = time.perf_counter()
        try:
            status = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
        outcomes.append((script.name, status, time.perf_counter() - started))
    print("\n=== summary ===")
    width = max((len(name) for name, _, _ in outcomes), default=10)
    for name, status, elapsed in outcomes:
        print(f"{name:<{width}}  {'ok' if status == 0 else f'FAILED ({status})':<14} {elapsed:7.1f} s")
    return 0 if all(status == 0 for _, status, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
