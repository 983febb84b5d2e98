"""Progress events of runs and steps: emitted where a run executes, rendered where the runs were submitted.

In-process the reporter is called directly; on a Dask worker the events travel to the
client through the scheduler's event log (:mod:`integral_pipeline.batch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

__all__ = ["RUN_STARTED", "STEP_STARTED", "STEP_FINISHED", "RUN_FINISHED", "Event", "Reporter"]

RUN_STARTED, STEP_STARTED, STEP_FINISHED, RUN_FINISHED = "run-started", "step-started", "step-finished", "run-finished"


@dataclasses.dataclass(frozen=True)
class Event:
    """Something that happened to a run or one of its steps.

    Parameters
    ----------
    kind : str
        :data:`RUN_STARTED`, :data:`STEP_STARTED`, :data:`STEP_FINISHED` or :data:`RUN_FINISHED`.
    run_id : str
        The run's identifier (:attr:`integral_pipeline.plan.PlannedRun.run_id`).
    run : str
        The run's label.
    attempt : str
        Identifies this execution of the run (a run executed again, or rescheduled after its
        worker died, is another attempt).
    sequence : int
        Position of the event among the attempt's events (events may arrive out of order or twice).
    step : str, optional
        The step, for step events.
    index : int, optional
        The step's position in the workflow.
    status : str, optional
        The step's or run's status, for finished events.
    reason : str, optional
        Why the step runs or not, or why it failed.
    duration_s : float, optional
        How long it took.
    """

    kind: str
    run_id: str
    run: str
    attempt: str
    sequence: int
    step: str | None = None
    index: int | None = None
    status: str | None = None
    reason: str | None = None
    duration_s: float | None = None

    def as_message(self) -> dict:
        """Return the event as a plain dict (what travels through the Dask scheduler)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_message(cls, message: dict) -> Event:
        """Rebuild an event from :meth:`as_message`'s dict (keys added on the way, e.g. ``worker``, are dropped)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in message.items() if key in names})


#: Receives the events of runs as they happen.
Reporter = Callable[[Event], None]
