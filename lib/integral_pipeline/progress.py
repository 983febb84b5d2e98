"""The live view of a batch: one log line per step event and a progress bar of runs and steps (tqdm)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from tqdm import tqdm

from .events import RUN_FINISHED, RUN_STARTED, STEP_FINISHED, STEP_STARTED, Event
from .manifest import FAILED, NOT_RUN, OK, REUSED, SKIPPED
from .plan import PlannedRun

log = logging.getLogger(__name__)

__all__ = ["Progress"]


class Progress:
    """Render progress events: log lines, and a bar of steps done with runs done, failed and running.

    Events may come twice or out of order (from Dask workers through the scheduler): each is
    handled once. Safe to call from several threads.

    Parameters
    ----------
    runs : sequence of PlannedRun
        The runs of the batch.
    bar : bool, optional
        Show the bar; by default only on a terminal.
    stream : file, optional
        Where the bar goes (standard error by default).
    """

    def __init__(self, runs: Sequence[PlannedRun], *, bar: bool | None = None, stream: TextIO | None = None):
        self._lock = threading.Lock()
        self._seen: set[tuple[str, int]] = set()
        self._steps = {run.run_id: len(run.steps) for run in runs}
        self.total_runs = len(runs)
        self.runs_ok = self.runs_failed = 0
        self.steps_done = self.steps_failed = 0
        self.running_runs: set[str] = set()
        self.running_steps: set[tuple[str, str]] = set()
        stream = stream or sys.stderr
        disable = None if bar is None else not bar  # None: tqdm shows it on a terminal only
        self._bar = tqdm(
            total=sum(self._steps.values()),
            unit="step",
            desc="steps",
            file=stream,
            disable=disable,
            dynamic_ncols=True,
            leave=True,
        )
        self._refresh()

    def _refresh(self) -> None:
        self._bar.set_postfix_str(
            f"runs {self.runs_ok + self.runs_failed}/{self.total_runs} done, {self.runs_failed} failed, "
            f"{len(self.running_runs)} running; steps {self.steps_failed} failed, {len(self.running_steps)} running",
            refresh=True,
        )

    def __call__(self, event: Event) -> None:
        """Handle one event (once)."""
        with self._lock:
            if (event.attempt, event.sequence) in self._seen:
                return
            self._seen.add((event.attempt, event.sequence))
            self._count(event)
            self._refresh()
        self._log(event)

    def _count(self, event: Event) -> None:
        if event.kind == RUN_STARTED:
            self.running_runs.add(event.run_id)
        elif event.kind == STEP_STARTED:
            self.running_steps.add((event.run_id, event.step))
        elif event.kind == STEP_FINISHED:
            self.running_steps.discard((event.run_id, event.step))
            self.steps_done += 1
            self.steps_failed += event.status == FAILED
            self._bar.update(1)
        elif event.kind == RUN_FINISHED:
            self.running_runs.discard(event.run_id)
            if event.status == OK:
                self.runs_ok += 1
            else:
                self.runs_failed += 1

    def _log(self, event: Event) -> None:
        total = self._steps.get(event.run_id, 0)
        where = f"{event.run}: step {event.index}/{total} {event.step}"
        if event.kind == STEP_STARTED:
            log.info("%s: executing (%s)", where, event.reason)
        elif event.kind == STEP_FINISHED and event.status == OK:
            log.info("%s done in %.1f s", where, event.duration_s or 0.0)
        elif event.kind == STEP_FINISHED and event.status == SKIPPED:
            log.info(
                "%s is up to date (notebook, parameters, upstream products and products unchanged): skipped; "
                "--force re-executes",
                where,
            )
        elif event.kind == STEP_FINISHED and event.status == REUSED:
            log.info("%s: reused from the parent run folder", where)
        elif event.kind == STEP_FINISHED and event.status == FAILED:
            log.error("%s: %s", where, event.reason)
        elif event.kind == STEP_FINISHED and event.status == NOT_RUN:
            log.debug("%s: not run (%s)", where, event.reason)
        elif event.kind == RUN_FINISHED and event.status != OK and not self._had_step_failure(event):
            log.error("%s: %s", event.run, event.reason)

    def _had_step_failure(self, event: Event) -> bool:
        return event.reason is not None and event.reason.startswith("step ")

    def close(self) -> None:
        """Finish the bar."""
        with self._lock:
            self._refresh()
            self._bar.close()

    def __enter__(self) -> Progress:
        """Return the progress view."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Finish the bar."""
        self.close()
