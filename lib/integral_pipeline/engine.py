"""The papermill engine of the steps: papermill's nbclient engine, saving the executed notebook less often.

Papermill rewrites the whole executed notebook (validated, serialised, written) when each cell starts and
when it ends, about 40 times for a notebook of 20 cells, and a notebook that shows a mosaic holds it as
a PNG of 0.7 MB. This engine writes it when the notebook starts, when it ends (whether it succeeded or
not, as papermill does), and while it runs when a cell starts or ends at least :data:`SAVE_INTERVAL_S`
after the last write (papermill's own autosave during a long cell is kept). The executed notebook a step
leaves is the same; what someone watching a running step sees is at most that much behind, and a process
killed during a step leaves its partial notebook as of the last write.

Imported by :mod:`integral_pipeline.execute` when a step executes (it imports papermill).
"""

from __future__ import annotations

from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

__all__ = ["ENGINE_NAME", "SAVE_INTERVAL_S", "StepEngine"]

#: The name the engine is registered under with papermill.
ENGINE_NAME = "integral-pipeline"

#: Shortest time between two writes of the executed notebook while its cells run (seconds).
SAVE_INTERVAL_S = 5.0


class _ExecutionManager(NotebookExecutionManager):
    """Papermill's execution manager; its saves at cell starts and ends are spaced by :data:`SAVE_INTERVAL_S`."""

    _forced = True  # the first write (notebook_start) always happens

    def save(self, **kwargs: Any) -> None:
        if "nb" in kwargs:
            self.nb = kwargs["nb"]
        if self._forced or (self.now() - self.last_save_time).total_seconds() >= SAVE_INTERVAL_S:
            super().save()

    def notebook_start(self, **kwargs: Any) -> None:
        self._forced = True
        try:
            super().notebook_start(**kwargs)
        finally:
            self._forced = False

    def notebook_complete(self, **kwargs: Any) -> None:
        self._forced = True
        super().notebook_complete(**kwargs)


class StepEngine(NBClientEngine):
    """Papermill's nbclient engine with :class:`_ExecutionManager` (papermill's ``Engine.execute_notebook`` body)."""

    @classmethod
    def execute_notebook(
        cls,
        nb,
        kernel_name,
        output_path=None,
        progress_bar=True,
        log_output=False,
        autosave_cell_every=30,
        **kwargs,
    ):
        """Execute ``nb`` as papermill's engines do; see :meth:`papermill.engines.Engine.execute_notebook`."""
        nb_man = _ExecutionManager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(ENGINE_NAME, StepEngine)
