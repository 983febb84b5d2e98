"""The error of invalid input: a parameter file, a run's parameters or a workflow's notebooks; nothing executed."""

from __future__ import annotations

from collections.abc import Sequence


class PlanError(ValueError):
    """A parameter file, a run's parameters or a workflow's notebooks are not valid; nothing was executed.

    Parameters
    ----------
    message : str
        What is wrong, naming the file, the run and the parameter.
    file : str, optional
        The parameter file (or archived notebook) at fault.
    run : str, optional
        The run at fault, e.g. ``'run 2/4 [instrument=jemx]'``.
    parameter : str, optional
        The parameter at fault.
    problems : sequence of PlanError, optional
        Every problem, when several are reported at once.

    Attributes
    ----------
    file, run, parameter : str or None
        As given (those of the first problem for a collection).
    problems : tuple of PlanError
        Every problem (just this one if it is not a collection).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        run: str | None = None,
        parameter: str | None = None,
        problems: Sequence[PlanError] | None = None,
    ):
        super().__init__(message)
        self.file, self.run, self.parameter = file, run, parameter
        self.problems = tuple(problems) if problems else (self,)

    def __reduce__(self):
        """Pickle with the keyword-only state."""
        # Keyword-only state must survive pickling (errors cross process boundaries to and from Dask workers).
        return (
            _rebuild,
            (str(self), self.file, self.run, self.parameter, None if self.problems == (self,) else self.problems),
        )

    @classmethod
    def collect(cls, problems: Sequence[PlanError]) -> PlanError:
        """Return one error reporting every problem (the problem itself if there is one).

        Parameters
        ----------
        problems : sequence of PlanError
            At least one problem; repeated messages are reported once.

        Returns
        -------
        PlanError
            The single problem, or a collection naming them all.
        """
        unique = list({str(problem): problem for problem in problems}.values())
        if len(unique) == 1:
            return unique[0]
        first = unique[0]
        return cls(
            f"{len(unique)} problems:\n" + "\n".join(f"- {p}" for p in unique),
            file=first.file,
            run=first.run,
            parameter=first.parameter,
            problems=unique,
        )


def _rebuild(
    message: str, file: str | None, run: str | None, parameter: str | None, problems: Sequence[PlanError] | None
) -> PlanError:
    return PlanError(message, file=file, run=run, parameter=parameter, problems=problems)
